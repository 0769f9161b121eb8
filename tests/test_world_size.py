"""Same seed and config -> bitwise identical parameters whatever the world size."""

import pytest

from tests.conftest import inspect_json, run_cli, run_train

CASES = {
    # N = 13: 26 branches, not divisible by 3 or 4 ranks
    "regression-v1": ["--task", "regression", "--directions", "13", "--iterations", "30"],
    "digits-v2-t": [
        "--task",
        "digits",
        "--variant",
        "v2",
        "--directions",
        "13",
        "--top-directions",
        "5",
        "--iterations",
        "12",
        "--branch-batch",
        "4",
    ],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_params_identical_on_1_and_3_ranks(tmp_path, case):
    """3 ranks: uneven shares (26 branches), the case 2 ranks would show and more."""
    hashes = {}
    for ranks in (1, 3):
        run_dir = tmp_path / f"n{ranks}"
        done = run_train(CASES[case] + ["--run-dir", str(run_dir), "--guard-every", "3"], ranks=ranks)
        assert done.returncode == 0, done.stderr
        info = inspect_json(run_dir)
        assert info["world_size"] == ranks
        hashes[ranks] = info["params_sha256"]
    assert len(set(hashes.values())) == 1, hashes


def test_four_ranks_more_than_branches_per_rank(tmp_path):
    """4 ranks, 2N = 6 branches: some ranks hold one branch; result unchanged."""
    args = ["--directions", "3", "--iterations", "10"]
    one = run_train(args + ["--run-dir", str(tmp_path / "a")])
    four = run_cli(args + ["--run-dir", str(tmp_path / "b")], ranks=4)
    assert one.returncode == 0 and four.returncode == 0, four.stderr
    assert inspect_json(tmp_path / "a")["params_sha256"] == inspect_json(tmp_path / "b")["params_sha256"]


@pytest.mark.parametrize(
    "options",
    [{"task": "regression"}, {"task": "digits", "perturbation": "lowrank"}, {"task": "regression", "variant": "v2"}],
    ids=["regression", "digits-lowrank", "regression-v2"],
)
def test_a_branch_scores_the_same_at_any_position_of_a_call(options):
    """What world-size invariance rests on, checked on this machine: in a call of a power-of-two
    width a branch's reward has the same bits alone (its call padded with copies of it) as beside
    the others, whatever its position — as a rank with a share of any size computes it."""
    import torch

    from hpcars.config import TrainConfig
    from hpcars.run.engine import ARSTrainer
    from hpcars.runtime.comm import SingleProcess
    from hpcars.tasks import make_task

    for directions in (3, 8, 13):
        cfg = TrainConfig(directions=directions, device="cpu", **options)
        trainer = ARSTrainer(cfg, make_task(cfg), SingleProcess(), [torch.device("cpu")])
        branches = 2 * directions
        assert trainer.width == min(64, 1 << (branches - 1).bit_length())
        whole = trainer.score_branches(trainer.models[0], list(range(branches)), 0)
        for g in range(branches):
            for share in ([g], list(range(g, branches))):
                part = trainer.score_branches(trainer.models[0], share, 0)
                assert (part[0] == whole[g]).all(), (directions, g, share)
