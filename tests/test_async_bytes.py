"""The asynchronous mode sends rewards and seeds, never parameters: a real two-rank
``--schedule async`` training (``AsyncLoop`` over MPI), its bytes counted as they are
handed to the transport, for a small and a much larger model.

Run as a script (``mpirun -n 2 python -m tests.test_async_bytes OUT TRAIN-ARGS...``) it
trains through ``hpcars.train.main`` with the real MPI transport wrapped so that every
point-to-point ``send`` is recorded, and writes per rank, as ``OUT/rankR.json``: the
messages sent during ``AsyncLoop.run`` and what the transport's own receive counter
(``bytes_moved``) grew by over the same stretch.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hpcars import SupervisedProblem

DIRECTIONS = 4
HIDDEN = {"small": 4, "large": 2000}  # P = 6·hidden + 1: 25 and 12,001 parameters


def regression(config):
    """``--task tests.test_async_bytes:regression``: y = a cubic of x, fit by a 4 → hidden → 1 MLP."""
    g = torch.Generator().manual_seed(config.seed)
    x = torch.randn(256, 4, generator=g)
    y = (x**3).sum(dim=1, keepdim=True) - x[:, :1]
    model = nn.Sequential(nn.Linear(4, config.hidden), nn.Tanh(), nn.Linear(config.hidden, 1))
    return SupervisedProblem(model=model, train=(x[:192], y[:192]), test=(x[192:], y[192:]), batch_size=64)


# -- the script, one per rank under mpirun ----------------------------------------------------------
class CountingTransport:
    """The run's real transport; every ``send`` is recorded before it is handed on."""

    def __init__(self, inner) -> None:
        self._inner = inner
        self.sent: list[dict] = []
        self.counting = False

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def send(self, dest: int, rows: np.ndarray, tag: int) -> None:
        data = np.ascontiguousarray(rows, dtype=np.float64)
        if self.counting:
            head = data.reshape(-1)[:5].tolist()  # an update_schema row starts kind, seq, source, version, key
            self.sent.append({"dest": dest, "tag": tag, "bytes": data.nbytes, "head": head})
        self._inner.send(dest, data, tag)


def _count(out: Path, args: list[str]) -> int:
    from hpcars.cli.train import main
    from hpcars.run.asynchronous import AsyncLoop
    from hpcars.runtime.comm import MPITransport, make_transport

    transport = make_transport()
    assert isinstance(transport, MPITransport), "run under mpirun with two ranks"
    counting = CountingTransport(transport)
    facts: dict = {"rank": transport.rank}
    real_run = AsyncLoop.run

    def counted_run(loop: AsyncLoop) -> int:
        assert loop.transport is counting, "the loop must talk through the counted transport"
        received = transport.bytes_moved
        applied = loop.trainer.iteration
        counting.counting = True
        try:
            return real_run(loop)
        finally:
            counting.counting = False
            facts.update(
                received_in_loop=transport.bytes_moved - received,
                parameters=int(loop.trainer.spec.size),
                width=loop.schema.width,
                applied=loop.trainer.iteration - applied,
                log=[(e.seq, e.source, e.key, bool(e.applied)) for e in loop.session.async_log],
            )

    AsyncLoop.run = counted_run
    status = main(args, transport=counting)
    facts.update(status=status, sent=counting.sent)
    (out / f"rank{facts['rank']}.json").write_text(json.dumps(facts))
    return status


if __name__ == "__main__":
    sys.exit(_count(Path(sys.argv[1]), sys.argv[2:]))


# -- the test -----------------------------------------------------------------------------------------
def _traffic(tmp_path: Path, size: str) -> list[dict]:
    from hpcars.runtime.messages import UPDATE, update_schema
    from tests.conftest import run_cli

    out = tmp_path / size
    out.mkdir()
    args = ["--task", "tests.test_async_bytes:regression", "--hidden", str(HIDDEN[size])]
    args += ["--variant", "v2", "--directions", str(DIRECTIONS), "--iterations", "20", "--schedule", "async"]
    args += ["--eval-every", "5", "--guard-every", "5", "--run-dir", str(out / "run")]
    done = run_cli([str(out), *args], ranks=2, module="tests.test_async_bytes")
    assert done.returncode == 0, done.stderr
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["status"] for r in ranks] == [0, 0]
    # the message width is what messages.update_schema says: 2N rewards and samples, V2 moments of the 4 inputs
    assert ranks[0]["width"] == ranks[1]["width"] == update_schema(2 * DIRECTIONS, 4).width
    assert ranks[0]["applied"] == 20 and all(applied for *_, applied in ranks[0]["log"])
    assert {source for _, source, _, _ in ranks[0]["log"]} == {0, 1}, "rank 1 scored no update: nothing crossed"
    # the counted sends are all the loop's traffic: the receivers' own counter saw exactly those bytes
    sent = [m for r in ranks for m in r["sent"]]
    assert sum(m["bytes"] for m in sent) == sum(r["received_in_loop"] for r in ranks)
    assert any(m["head"][0] == UPDATE for m in ranks[1]["sent"])
    return ranks


def test_async_update_bytes_do_not_depend_on_parameters(tmp_path):
    """Bytes sent between the ranks per asynchronous update — rank 1's UPDATE row to rank 0
    (when rank 1 scored it) and rank 0's SEQUENCED forward to rank 1 — are the same for a
    25- and a 12,001-parameter model, and far below one float32 copy of either."""
    from hpcars.run.asynchronous import TAG_DOWN, TAG_UP
    from hpcars.runtime.messages import SEQUENCED, UPDATE

    per_update, sizes, parameters = {}, {}, {}
    for size in HIDDEN:
        ranks = _traffic(tmp_path, size)
        parameters[size] = ranks[0]["parameters"]
        row = 8 * ranks[0]["width"]
        sent = [m for r in ranks for m in r["sent"]]
        # every message of the loop's update stream is one row; the evaluation shares ride on their own tag
        assert {m["bytes"] for m in sent if m["tag"] in (TAG_UP, TAG_DOWN)} == {row}
        sizes[size] = sorted({(m["tag"], m["bytes"]) for m in sent})
        by_key: dict[int, int] = {}
        for m in sent:
            kind, _, _, _, key = m["head"]
            if kind in (UPDATE, SEQUENCED):
                by_key[int(key)] = by_key.get(int(key), 0) + m["bytes"]
        sequenced = {key: source for _, source, key, _ in ranks[0]["log"]}
        # rank 0's own update crosses once (the forward), rank 1's twice (to rank 0, then back sequenced)
        assert {key: by_key[key] for key in sequenced} == {key: row * (1 + source) for key, source in sequenced.items()}
        per_update[size] = {source: by_key[key] for key, source in sequenced.items()}
    assert parameters == {"small": 6 * HIDDEN["small"] + 1, "large": 6 * HIDDEN["large"] + 1}
    assert per_update["small"] == per_update["large"]
    assert sizes["small"] == sizes["large"]
    assert max(per_update["large"].values()) * 30 < 4 * parameters["large"]
