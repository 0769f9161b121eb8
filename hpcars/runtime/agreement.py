"""Refusals every rank hears about: no rank waits in a collective for one that gave up.

Start-up work that can refuse the input runs on each rank on its own — parsing a
``--config`` file, choosing devices (they depend on the node-local rank), building
the task (a plug-in factory may read a node-local file), reading ``--init-from`` or
a checkpoint. A rank that refused and returned would leave the others waiting in
the next collective until the allocation ran out. So each such step is wrapped in
``agree``: every rank runs it, then one 4-byte all-reduce says whether any rank
refused; only then (rarely) do the ranks gather the refusals' one-line messages,
and every rank raises the same ``Refused`` naming the first refusing rank — the
lead prints it and all exit 2 together.

Only refusals (``ConfigError``, ``CheckpointError``: bad input) are agreed on. An
unexpected exception is a bug: the entry points take the whole MPI job down with
it (``Transport.abort``) instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from hpcars.errors import CheckpointError, ConfigError, Refused
from hpcars.runtime.comm import Transport

T = TypeVar("T")

#: what counts as a refusal of the input (one line; exit status 2)
REFUSALS = (ConfigError, CheckpointError)


def settle(transport: Transport, refusal: Exception | None) -> None:
    """Collective: return if no rank refused, else raise ``Refused`` on every rank."""
    if not transport.allmax(int(refusal is not None)):
        return
    # a refusal travels as b"!" + its message (one with no text says what it is), so an empty one still counts
    mine = b"!" + (str(refusal) or type(refusal).__name__).encode() if refusal is not None else b""
    messages = transport.allgather_bytes(mine)
    ranks = [r for r, m in enumerate(messages) if m[:1] == b"!"]
    message = messages[ranks[0]][1:].decode(errors="replace")
    if len(ranks) < transport.size:  # name the ranks when it is not everyone's problem
        where = f"rank {ranks[0]}" if len(ranks) == 1 else f"ranks {ranks[0]} and {len(ranks) - 1} more"
        message = f"{message} (on {where} of {transport.size})"
    raise Refused(message, ranks)


def agree(transport: Transport, attempt: Callable[[], T]) -> T:
    """Run ``attempt`` on every rank; if it refused on any rank, every rank raises ``Refused``."""
    try:
        result = attempt()
    except REFUSALS as err:
        settle(transport, err)
        raise AssertionError("unreachable: settle raises after a refusal") from err
    settle(transport, None)
    return result


def on_rank_0(transport: Transport, decide: Callable[[], T]) -> T:
    """Rank 0 decides (or refuses); every rank learns the decision, or raises the same refusal."""
    decision: T | Exception | None = None
    if transport.rank == 0:
        try:
            decision = decide()
        except REFUSALS as err:
            decision = err
    decision = transport.bcast(decision)
    if isinstance(decision, Exception):
        raise decision
    return decision
