"""Compressed search spaces: pruned, shared, subspace."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from hpcars.algorithm.branches import ParamSpec
from hpcars.algorithm.noise import stream_key
from hpcars.algorithm.spaces.pruned import prune_mask
from hpcars.algorithm.spaces.shared import kmeans_1d
from hpcars.algorithm.spaces.subspace import NONZEROS, STREAM, Subspace
from hpcars.tasks.supervised import digits_problem
from tests.conftest import checkpoint_file, inspect_json, run_cli, train_in_process

SPACES = {
    "pruned": ["--search-space", "pruned", "--sparsity", "0.8"],
    "shared": ["--search-space", "shared", "--bits", "3", "--sparsity", "0.3"],
    "subspace": ["--search-space", "subspace", "--subspace-dim", "50"],
}
DIGITS = ["--task", "digits", "--hidden", "16", "--directions", "6", "--branch-batch", "4", "--eval-every", "5"]


def _params(run_dir) -> dict[str, np.ndarray]:
    with h5py.File(checkpoint_file(run_dir)) as f:
        return {name: np.asarray(v) for name, v in f["members/00000"].items()}


def _search_space(run_dir) -> dict[str, np.ndarray]:
    with h5py.File(checkpoint_file(run_dir)) as f:
        return {name: np.asarray(v) for name, v in f["search_space"].items()}


@pytest.mark.parametrize("space", sorted(SPACES))
def test_resume_is_bit_exact_and_ranks_agree(tmp_path, space, capsys):
    args = [*DIGITS, *SPACES[space], "--population", "2", "--checkpoint-every", "4"]
    assert train_in_process([*args, "--iterations", "10", "--run-dir", str(tmp_path / "a")], capsys)[0] == 0
    assert train_in_process([*args, "--iterations", "4", "--run-dir", str(tmp_path / "b")], capsys)[0] == 0
    assert train_in_process(["--resume", str(tmp_path / "b"), "--iterations", "10"], capsys)[0] == 0
    three = run_cli([*args, "--iterations", "10", "--run-dir", str(tmp_path / "c")], ranks=3)
    assert three.returncode == 0, three.stderr
    hashes = {name: inspect_json(tmp_path / name)["params_sha256"] for name in "abc"}
    assert hashes["a"] == hashes["b"] == hashes["c"], hashes
    za, zb = _search_space(tmp_path / "a")["z"], _search_space(tmp_path / "b")["z"]
    assert za.shape[0] == 2 and np.array_equal(za, zb)
    info = inspect_json(tmp_path / "a")["search_space"]
    assert info["kind"] == space and info["searched"] == za.shape[1] < info["parameters"]


def test_pruned_weights_stay_zero(tmp_path, capsys):
    args = [*DIGITS, *SPACES["pruned"], "--checkpoint-every", "4"]
    assert train_in_process([*args, "--iterations", "4", "--run-dir", str(tmp_path / "r")], capsys)[0] == 0
    assert train_in_process(["--resume", str(tmp_path / "r"), "--iterations", "8"], capsys)[0] == 0
    theta0 = {n: p.detach().numpy() for n, p in digits_problem(0, 16).model.named_parameters()}
    trained = _params(tmp_path / "r")
    for name, value in trained.items():
        if value.ndim < 2:  # biases are never pruned
            continue
        kept = prune_mask(theta0[name].reshape(-1), 0.8)
        flat = value.reshape(-1)
        assert np.all(flat[~kept] == 0.0) and (~kept).sum() == int(0.8 * flat.size)
        assert np.all(flat[kept] != theta0[name].reshape(-1)[kept])  # the survivors were trained


def test_shared_weights_take_only_codebook_values(tmp_path, capsys):
    args = [*DIGITS, "--search-space", "shared", "--bits", "2", "--iterations", "6"]
    assert train_in_process([*args, "--run-dir", str(tmp_path / "r")], capsys)[0] == 0
    z = _search_space(tmp_path / "r")["z"][0]
    for name, value in _params(tmp_path / "r").items():
        if value.ndim >= 2:
            distinct = np.unique(value)
            assert distinct.size <= 4 and np.all(np.isin(distinct, z)), (name, distinct)


def test_kmeans_linear_initialisation_and_convergence():
    values = np.array([-1.0, -0.9, -0.95, 0.0, 0.05, 2.0, 2.1])
    centroids, assign = kmeans_1d(values, 3)
    np.testing.assert_allclose(centroids, [-0.95, 0.025, 2.05])
    assert assign.tolist() == [0, 0, 0, 1, 1, 2, 2]
    assert kmeans_1d(np.array([5.0, 5.0]), 4)[0].size == 2  # never more clusters than values


def test_subspace_params_equal_theta0_plus_projection_recomputed_independently():
    spec = ParamSpec.of(digits_problem(0, 16).model)
    theta0 = torch.randn(spec.size, generator=torch.Generator().manual_seed(1))
    space = Subspace.build(spec, theta0, dim=40, seed=9)
    z = torch.randn(3, 40, generator=torch.Generator().manual_seed(2))
    # the documented rule: (seed ^ STREAM) -> columns randint(d, (P, c)), then signs randint(2, (P, c))
    g = torch.Generator().manual_seed(stream_key(9 ^ STREAM, 0, 0, 0) & (2**63 - 1))
    columns = torch.randint(40, (spec.size, NONZEROS), generator=g).numpy()
    signs = torch.randint(2, (spec.size, NONZEROS), generator=g).numpy() * 2.0 - 1.0
    dense = np.zeros((spec.size, 40))
    for c in range(NONZEROS):
        np.add.at(dense, (np.arange(spec.size), columns[:, c]), signs[:, c])
    dense *= np.sqrt(40 / (spec.size * NONZEROS))
    expected = theta0.double().numpy()[None] + z.double().numpy() @ dense.T
    np.testing.assert_allclose(space.to_params(z).numpy(), expected, rtol=1e-5, atol=1e-6)
    assert np.allclose(np.linalg.norm(dense, axis=0).mean(), 1.0, atol=0.1)  # unit columns on average


@pytest.mark.parametrize(
    "args, message",
    [
        (["--search-space", "shared"], "--bits: must be in [1, 16] with --search-space shared"),
        (["--search-space", "shared", "--bits", "0"], "--bits: must be in [1, 16] with --search-space shared"),
        (["--search-space", "pruned", "--sparsity", "1"], "--sparsity: must be in [0, 1)"),
        (["--search-space", "pruned", "--sparsity", "-0.1"], "--sparsity: must be in [0, 1)"),
        (["--sparsity", "0.5"], "--sparsity: only with --search-space pruned or shared"),
        (["--search-space", "subspace"], "--subspace-dim: must be >= 1 with --search-space subspace"),
        (["--search-space", "subspace", "--subspace-dim", "99999"], "--subspace-dim: must be in [1, 2410]"),
        (["--search-space", "ternary"], "--search-space: must be one of full, pruned, shared, subspace"),
    ],
)
def test_bad_combinations_are_one_line_errors(tmp_path, args, message, capsys):
    status, lines = train_in_process(["--task", "digits", *args, "--run-dir", str(tmp_path / "r")], capsys)
    assert status == 2 and len(lines) == 1 and lines[0].startswith(f"hpcars.train: error: {message}"), lines
    assert not (tmp_path / "r").exists()
