"""Reading checkpoints offline: ``hpcars.checkpoint.read(path)`` and its companions.

The code lives in ``hpcars.run.checkpoint`` (the format is in
``docs/checkpoint-format.md``); this module keeps the documented names where analysis
scripts and notebooks have always found them.
"""

from __future__ import annotations

from hpcars.errors import CheckpointError, HistoryUnavailable
from hpcars.run.checkpoint import (
    FORMAT_VERSION,
    NOISE_SCHEME,
    BestPolicy,
    Checkpoint,
    Member,
    latest,
    listing,
    locate,
    params_sha256,
    read,
    read_config,
)

__all__ = [
    "FORMAT_VERSION",
    "NOISE_SCHEME",
    "BestPolicy",
    "Checkpoint",
    "CheckpointError",
    "HistoryUnavailable",
    "Member",
    "latest",
    "listing",
    "locate",
    "params_sha256",
    "read",
    "read_config",
]
