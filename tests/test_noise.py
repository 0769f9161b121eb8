import itertools

import numpy as np
import pytest
import torch

from hpcars.algorithm import noise
from hpcars.errors import CheckpointError
from tests import reference


def test_words_match_numpy_uint64_reference():
    for seed, j, m, k in [(0, 0, 0, 0), (7, 3, 0, 11), (2**62 + 5, 10**6, 63, 229)]:
        assert noise.stream_key(seed, j, m, k) == int(reference.key(seed, j, m, k))
        key = torch.tensor([noise._signed(noise.stream_key(seed, j, m, k))])
        ours = noise.pair_words(key, 1000)[0].numpy().view(np.uint64)
        np.testing.assert_array_equal(ours, reference.words(seed, j, m, k, 1000))


@pytest.mark.parametrize("size", [1001, 3 * noise.CHUNK + 77])  # one pass for all rows, and chunks of one
def test_directions_match_reference_values(size):
    src = noise.NoiseSource(seed=42)
    got = src.directions(5, 0, [0, 3, 17], size).numpy()
    assert got.dtype == np.float32
    for row, k in zip(got, [0, 3, 17], strict=True):
        np.testing.assert_allclose(row, reference.direction(42, 5, 0, k, size), rtol=2e-6, atol=2e-6)


def test_scheme_1_still_regenerates_old_runs_directions():
    src = noise.NoiseSource(seed=42, scheme=noise.SCHEME_1)
    got = src.directions(5, 0, [0, 3, 17], 1001).numpy()
    for row, k in zip(got, [0, 3, 17], strict=True):
        np.testing.assert_allclose(row, reference.direction_v1(42, 5, 0, k, 1001), rtol=1e-6, atol=1e-7)
    assert not np.array_equal(got, noise.NoiseSource(seed=42).directions(5, 0, [0, 3, 17], 1001).numpy())


def test_an_unknown_scheme_is_one_line():
    with pytest.raises(CheckpointError, match=r"^noise scheme 'gauss/9' is unknown to this hpcars \(known: "):
        noise.NoiseSource(seed=1, scheme="gauss/9")


@pytest.mark.parametrize("scheme", noise.SCHEMES)
@pytest.mark.parametrize("size", [37, 5000, 2 * noise.CHUNK + 3])
def test_a_direction_does_not_depend_on_its_batch(scheme, size):
    src = noise.NoiseSource(seed=1, scheme=scheme)
    alone = src.directions(2, 0, [9], size)
    together = src.directions(2, 0, [4, 9, 1, 2, 3], size)
    assert torch.equal(alone[0], together[1])


def test_standard_normal_and_independent_streams():
    src = noise.NoiseSource(seed=3)
    d = src.directions(0, 0, range(8), 50_000, dtype=torch.float64)
    assert abs(float(d.mean())) < 0.01
    assert abs(float(d.std()) - 1.0) < 0.01
    corr = torch.corrcoef(d)
    off_diagonal = corr - torch.eye(8, dtype=torch.float64)
    assert float(off_diagonal.abs().max()) < 0.03
    # every coordinate of the key matters
    base = src.directions(0, 0, [0], 64)
    for other in (
        src.directions(1, 0, [0], 64),
        src.directions(0, 1, [0], 64),
        src.directions(0, 0, [1], 64),
        noise.NoiseSource(4).directions(0, 0, [0], 64),
    ):
        assert not torch.equal(base, other)


def test_same_seed_same_bits():
    a = noise.NoiseSource(11).directions(3, 2, [5, 6], 333)
    b = noise.NoiseSource(11).directions(3, 2, [5, 6], 333)
    assert torch.equal(a, b)


@pytest.mark.parametrize("scheme", noise.SCHEMES)
@pytest.mark.parametrize("size", [noise.ALIGN, 3 * noise.ALIGN + 1001])
def test_column_blocks_have_the_bits_of_the_whole(scheme, size):
    src = noise.NoiseSource(seed=11, scheme=scheme)
    whole = src.directions(4, 1, [0, 5], size)
    cuts = list(range(0, size, noise.ALIGN)) + [size]
    parts = [src.directions(4, 1, [0, 5], size, entries=slice(a, b)) for a, b in itertools.pairwise(cuts)]
    assert torch.equal(torch.cat(parts, dim=1), whole)
    with pytest.raises(ValueError, match="aligned"):
        src.directions(4, 1, [0], size, entries=slice(100, noise.ALIGN))
