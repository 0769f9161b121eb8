"""Run under ``mpirun -n 2 python -m pytest --with-mpi tests/mpi`` (pytest-mpi)."""

import numpy as np
import pytest
import torch

from hpcars.config import TrainConfig
from hpcars.run.engine import ARSTrainer, DivergenceError
from hpcars.runtime.comm import make_transport, shares
from tests.tasks_for_tests import Quadratic


@pytest.mark.mpi(min_size=2)
def test_allgather_rows_uneven_counts():
    transport = make_transport()
    counts = shares(7, transport.size)
    start = sum(counts[: transport.rank])
    local = np.array([[start + i, -(start + i)] for i in range(counts[transport.rank])], dtype=float)
    rows = transport.allgather_rows(local, counts)
    np.testing.assert_array_equal(rows[:, 0], np.arange(7))
    assert transport.bytes_moved == 7 * 2 * 8


@pytest.mark.mpi(min_size=2)
def test_guard_trips_on_a_perturbed_rank():
    transport = make_transport()
    trainer = ARSTrainer(TrainConfig(directions=5, device="cpu"), Quadratic(), transport, [torch.device("cpu")])
    for _ in range(3):
        trainer.step()
    trainer.guard()  # in agreement so far
    if transport.rank == 1:
        trainer.theta[2] += 1e-6
    with pytest.raises(DivergenceError, match=r"iteration 3: rank\(s\) \[1\] differ from rank 0"):
        trainer.guard()


@pytest.mark.mpi(min_size=2)
def test_only_scalars_cross_ranks():
    transport = make_transport()
    sizes = {}
    for size in (10, 10_000):
        task = Quadratic(size=size)
        trainer = ARSTrainer(TrainConfig(directions=6, device="cpu"), task, transport, [torch.device("cpu")])
        before = transport.bytes_moved
        trainer.step()
        sizes[size] = transport.bytes_moved - before
    assert sizes[10] == sizes[10_000] == 2 * 6 * 2 * 8


@pytest.mark.mpi(min_size=2)
def test_population_sends_only_scalars():
    """With every population operator on, an iteration (a generation's end included)
    moves one row of scalars per branch (annealing's judge rows included), whatever the
    parameter count."""
    transport = make_transport()
    cfg = TrainConfig(
        directions=3, device="cpu", population=4, generation_every=2, anneal_t0=1.0, swarm=True, repulsion=0.5
    )
    per_iteration = {}
    for size in (10, 10_000):
        trainer = ARSTrainer(cfg, Quadratic(size=size), transport, [torch.device("cpu")])
        per_iteration[size] = [trainer.step().comm_bytes for _ in range(4)]
        assert len(trainer.state.lineage) == 2 * 2  # two generations happened
    # M members x (2N branches + 2J annealing judge rows) x (reward, samples) x 8 bytes
    assert per_iteration[10] == per_iteration[10_000] == [4 * (2 * 3 + 2 * 1) * 2 * 8] * 4


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("message", ["", "--x: no good"])
def test_a_refusal_on_one_rank_is_heard_on_every_rank_even_without_a_message(message):
    from hpcars.errors import CheckpointError, Refused
    from hpcars.runtime.agreement import agree

    transport = make_transport()

    def attempt() -> int:
        if transport.rank == 1:
            raise CheckpointError(message)
        return 7

    with pytest.raises(Refused) as refused:
        agree(transport, attempt)
    expected = message or "CheckpointError"
    assert str(refused.value) == f"{expected} (on rank 1 of {transport.size})"
    assert agree(transport, lambda: 7) == 7  # and the ranks go on in step
