"""Randman: the random-manifold spike-timing task (seed 003)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spikeflow.data import make_spike_raster_dataset, make_spike_times, time_major_batches
from spikeflow.data.randman import Randman

SMALL = dict(nb_classes=3, nb_units=8, nb_steps=20, nb_samples=40)


def test_shapes_dtypes_and_labels():
    spikes, labels = make_spike_raster_dataset(**SMALL, seed=0)
    assert spikes.shape == (120, 20, 8) and spikes.dtype == torch.float32
    assert labels.shape == (120,) and labels.dtype == torch.int64
    assert torch.equal(torch.bincount(labels), torch.tensor([40, 40, 40]))


@pytest.mark.parametrize("nb_spikes", [1, 3])
def test_exactly_nb_spikes_per_unit_per_sample(nb_spikes):
    spikes, _ = make_spike_raster_dataset(**SMALL, nb_spikes=nb_spikes, seed=1)
    assert torch.all(spikes.sum(1) == nb_spikes)
    assert torch.all(spikes >= 0) and torch.all(spikes == spikes.round())


def test_raster_matches_spike_times_and_step_frac():
    times, labels = make_spike_times(**SMALL, nb_spikes=2, step_frac=0.5, seed=3)
    spikes, labels2 = make_spike_raster_dataset(**SMALL, nb_spikes=2, step_frac=0.5, seed=3)
    assert torch.equal(labels2, torch.from_numpy(labels))
    assert times.shape == (120, 2, 8) and times.min() >= 0 and times.max() < 10
    assert torch.all(spikes[:, 10:] == 0)  # only the first step_frac * T steps hold spikes
    n, j, u = 17, 1, 5
    assert spikes[n, times[n, j, u], u] >= 1
    # each unit's times span the allowed window over the data set (min-max scaling)
    assert times[:, 0, :].min() == 0 and times[:, 0, :].max() == 9


def test_deterministic_under_seed_and_seeds_differ():
    a = make_spike_raster_dataset(**SMALL, seed=7)
    b = make_spike_raster_dataset(**SMALL, seed=7)
    c = make_spike_raster_dataset(**SMALL, seed=8)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_generator_seed_and_global_rng_untouched():
    state = np.random.get_state()[1].copy()
    torch_state = torch.get_rng_state()
    x1, _ = make_spike_raster_dataset(**SMALL, seed=np.random.default_rng(5))
    x2, _ = make_spike_raster_dataset(**SMALL, seed=np.random.default_rng(5))
    assert torch.equal(x1, x2)
    assert np.array_equal(np.random.get_state()[1], state)
    assert torch.equal(torch.get_rng_state(), torch_state)


def test_shuffle_false_sorts_by_class_and_is_a_permutation_of_shuffled():
    ordered_t, ordered_y = make_spike_times(**SMALL, shuffle=False, seed=2)
    shuffled_t, shuffled_y = make_spike_times(**SMALL, shuffle=True, seed=2)
    assert np.array_equal(ordered_y, np.repeat(np.arange(3), 40))
    assert not np.array_equal(shuffled_y, ordered_y)
    key = lambda t: sorted(map(bytes, t.reshape(len(t), -1)))  # noqa: E731
    assert key(ordered_t) == key(shuffled_t)


def test_manifold_is_smooth_and_varied():
    rng = np.random.default_rng(0)
    manifold = Randman(nb_units=5, dim_manifold=2, alpha=2.0, rng=rng)
    assert manifold.cutoff == 32  # ceil(1e-3 ** -0.5)
    x = rng.random((200, 2))
    y = manifold(x)
    y_near = manifold(x + 1e-4)
    assert y.shape == (200, 5)
    assert np.max(np.abs(y_near - y)) < 0.05 * np.ptp(y, axis=0).min()  # smooth
    assert np.all(np.ptp(y, axis=0) > 0)  # not constant


def _features(times: np.ndarray) -> np.ndarray:
    return times.reshape(len(times), -1).astype(np.float64)


def test_two_classes_are_separable_by_spike_times():
    times, labels = make_spike_times(nb_classes=2, nb_units=16, nb_samples=300, seed=42)
    x = _features(times)
    train, test = slice(0, 400), slice(400, 600)
    means = np.stack([x[train][labels[train] == k].mean(0) for k in range(2)])  # [2, F]
    nearest_mean = ((x[test][:, None, :] - means) ** 2).sum(-1).argmin(1)
    assert (nearest_mean == labels[test]).mean() > 0.75  # chance is 0.5
    distance = ((x[test][:, None, :] - x[train][None]) ** 2).sum(-1)  # [200, 400]
    nearest_neighbour = labels[train][distance.argmin(1)]
    assert (nearest_neighbour == labels[test]).mean() > 0.95


def test_spike_counts_carry_no_class_information():
    spikes, labels = make_spike_raster_dataset(**SMALL, seed=4)
    counts = spikes.sum(1)  # [N, units]
    assert torch.equal(counts[labels == 0].mean(0), counts[labels == 1].mean(0))


def test_time_major_batches():
    spikes, labels = make_spike_raster_dataset(**SMALL, seed=0)
    batches = list(time_major_batches(spikes, labels, 50))
    assert [tuple(x.shape) for x, _ in batches] == [(20, 50, 8), (20, 50, 8), (20, 20, 8)]
    x0, y0 = batches[0]
    assert torch.equal(x0, spikes[:50].transpose(0, 1)) and x0.is_contiguous()
    assert torch.equal(y0, labels[:50])
    dropped = list(time_major_batches(spikes, labels, 50, drop_last=True))
    assert len(dropped) == 2
    shuffled = list(time_major_batches(spikes, labels, 120, shuffle=True, seed=1))
    again = list(time_major_batches(spikes, labels, 120, shuffle=True, seed=1))
    (xs, ys), = shuffled
    assert torch.equal(xs, again[0][0]) and not torch.equal(ys, labels)
    assert torch.equal(torch.sort(ys).values, torch.sort(labels).values)


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(nb_classes=0), r"nb_classes must be an integer >= 1, got 0"),
        (dict(nb_units=2.5), r"nb_units must be an integer >= 1, got 2\.5"),
        (dict(nb_steps=True), r"nb_steps must be an integer >= 1, got True"),
        (dict(nb_spikes=-1), r"nb_spikes must be an integer >= 1"),
        (dict(nb_samples=0), r"nb_samples must be an integer >= 1"),
        (dict(dim_manifold=0), r"dim_manifold must be an integer >= 1"),
        (dict(step_frac=0.0), r"step_frac must be in \(0\.0, 1\.0\], got 0\.0"),
        (dict(step_frac=1.5), r"step_frac must be in \(0\.0, 1\.0\]"),
        (dict(alpha=0), r"alpha must be in \(0\.0, inf\]"),
        (dict(alpha=float("nan")), r"alpha must be in"),
        (dict(alpha="2"), r"alpha must be a number, got '2'"),
        (dict(seed=-3), r"seed must be a non-negative integer"),
        (dict(seed="abc"), r"seed must be an int, a numpy Generator or None"),
    ],
)
def test_bad_arguments(bad, match):
    with pytest.raises(ValueError, match=match):
        make_spike_raster_dataset(**{**SMALL, **bad})


def test_bad_batch_arguments():
    spikes, labels = make_spike_raster_dataset(**SMALL, seed=0)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        time_major_batches(spikes, labels, 0)
    with pytest.raises(ValueError, match=r"expected spikes \[N, T, \.\.\.\] and labels \[N\]"):
        time_major_batches(spikes, labels[:-1], 8)


def test_seed_003_configuration():
    """The call of seed 003 (2 classes x 1000 samples, 16 units, 100 steps), keyword-only."""
    spikes, labels = make_spike_raster_dataset(
        seed=np.random.default_rng(42), nb_classes=2, nb_units=16, nb_steps=100, step_frac=1.0,
        dim_manifold=2, nb_spikes=1, nb_samples=1000, alpha=2.0, shuffle=True,
    )
    assert spikes.shape == (2000, 100, 16) and labels.shape == (2000,)
    assert torch.all(spikes.sum(1) == 1)
    with pytest.raises(TypeError):
        make_spike_raster_dataset(np.random.default_rng(42))  # positional: refused
