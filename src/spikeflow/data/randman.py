"""Randman: spike-timing classification on random smooth manifolds.

The task of Zenke & Vogels (2021), "The remarkable robustness of surrogate
gradient learning for instilling complex function in spiking neural networks",
Neural Computation 33(4), as used by seed 003; written here from its description
(after the ``randman`` package, without depending on it).

**Manifolds.** A manifold is a smooth random map from the unit cube ``[0, 1)^D``
(``D = dim_manifold`` intrinsic coordinates) to ``nb_units`` embedding coordinates.
Embedding coordinate ``u`` is a product over the intrinsic coordinates ``d`` of
random 1-D functions, each a sum of ``F`` random-phase sinusoids whose amplitudes
fall off as ``1/f^alpha`` (larger ``alpha``: smoother)::

    y_u(x) = prod_d sum_{i=0}^{F-1} a_udi / (i+1)^alpha * sin(2 pi (i * x_d * b_udi + c_udi))

with ``a, b, c ~ U[0, 1)`` and ``a_ud0 = 0`` (no constant term); ``F`` is
``ceil(1e-3 ** (-1 / alpha))`` (capped at 1000), where the spectrum has fallen
below 1e-3 of its first term.

**Spike times.** Each class has ``nb_spikes`` manifolds of its own. A sample of
class ``k`` is a point ``x ~ U[0, 1)^D``; each of the class's manifolds maps it to
``nb_units`` values, which are scaled per unit to [0, 1) over the class's samples
(min-max, as ``randman.standardize``) and read as spike times
``t = floor(value * nb_steps * step_frac)``. So every unit fires exactly
``nb_spikes`` times per sample, in the first ``nb_steps * step_frac`` steps, and all
the information is in spike timing (counts carry none).

**Layout.** :func:`make_spike_raster_dataset` returns sample-major arrays, as seed
003 does: ``spikes [N, T, units]`` with ``N = nb_classes * nb_samples``. spikeflow
networks take time-major input ``[T, B, units]``: use :func:`time_major_batches`
(or ``spikes.transpose(0, 1)``). Where two of a unit's ``nb_spikes`` spikes fall in
the same step, that raster entry is 2 (counts, not booleans), so
``spikes.sum(1) == nb_spikes`` always holds.
"""

from __future__ import annotations

import math
from typing import Iterator, Union

import numpy as np
import torch

__all__ = [
    "Randman",
    "make_spike_raster_dataset",
    "make_spike_times",
    "time_major_batches",
]

_PRECISION = 1e-3
_MAX_CUTOFF = 1000
_EPS = 1e-7
_CHUNK_ELEMENTS = 1 << 22  # bound on samples * units * dims * frequencies per block

SeedLike = Union[int, np.random.Generator, None]


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_float(name: str, value, *, low: float, low_open: bool, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    too_low = value <= low if low_open else value < low
    if not math.isfinite(value) or too_low or value > high:
        bracket = "(" if low_open else "["
        raise ValueError(f"{name} must be in {bracket}{low}, {high}], got {value!r}")
    return value


def _generator(seed: SeedLike) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or (isinstance(seed, (int, np.integer)) and not isinstance(seed, bool)):
        if seed is not None and seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        return np.random.default_rng(seed)
    raise ValueError(f"seed must be an int, a numpy Generator or None, got {seed!r}")


class Randman:
    """One random smooth manifold: ``[S, dim_manifold]`` in [0, 1) -> ``[S, nb_units]``.

    Args:
        nb_units: embedding dimension.
        dim_manifold: intrinsic dimension.
        alpha: spectral decay ``1/f^alpha`` of the random functions (> 0).
        rng: the NumPy generator that draws the parameters (consumed here).
    """

    def __init__(self, nb_units: int, dim_manifold: int, alpha: float, rng: np.random.Generator):
        self.nb_units = nb_units
        self.dim_manifold = dim_manifold
        self.alpha = alpha
        self.cutoff = int(min(math.ceil(_PRECISION ** (-1.0 / alpha)), _MAX_CUTOFF))
        # [units, dims, 3, F]: amplitude, frequency factor, phase of each sinusoid
        params = rng.random((nb_units, dim_manifold, 3, self.cutoff))
        params[:, :, 0, 0] = 0.0  # no constant (bias) term
        freqs = np.arange(self.cutoff, dtype=np.float64)  # [F]
        self.amplitude = params[:, :, 0, :] / (freqs + 1.0) ** alpha  # [U, D, F]
        self.frequency = freqs * params[:, :, 1, :]  # [U, D, F]
        self.phase = params[:, :, 2, :]  # [U, D, F]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The embedding ``[S, nb_units]`` (float64) of points ``x [S, dim_manifold]``."""
        x = np.asarray(x, dtype=np.float64)
        out = np.empty((len(x), self.nb_units))
        per_sample = self.nb_units * self.dim_manifold * self.cutoff
        block = max(1, _CHUNK_ELEMENTS // per_sample)
        for start in range(0, len(x), block):
            xb = x[start : start + block, None, :, None]  # [s, 1, D, 1]
            waves = np.sin(2.0 * np.pi * (xb * self.frequency + self.phase))  # [s, U, D, F]
            per_dim = (waves * self.amplitude).sum(-1)  # [s, U, D]
            out[start : start + block] = per_dim.prod(-1)  # [s, U]
        return out


def _standardize(y: np.ndarray) -> np.ndarray:
    """Min-max scale each column to [0, 1) over the rows."""
    low, high = y.min(0), y.max(0)
    return (y - low) / (high - low + _EPS)


def make_spike_times(
    *,
    nb_classes: int = 2,
    nb_units: int = 16,
    nb_steps: int = 100,
    step_frac: float = 1.0,
    dim_manifold: int = 2,
    nb_spikes: int = 1,
    nb_samples: int = 1000,
    alpha: float = 2.0,
    shuffle: bool = True,
    seed: SeedLike = 42,
) -> tuple[np.ndarray, np.ndarray]:
    """The Randman task as spike-time steps (the events behind the raster).

    Same arguments as :func:`make_spike_raster_dataset`.

    Returns:
        ``(times, labels)``: ``times [N, nb_spikes, nb_units]`` int64 step indices in
        ``[0, ceil(nb_steps * step_frac))`` (at most ``nb_steps - 1``), ``times[n, j, u]``
        the step of unit ``u``'s ``j``-th spike; ``labels [N]`` int64; ``N =
        nb_classes * nb_samples``.
    """
    nb_classes = _check_int("nb_classes", nb_classes, 1)
    nb_units = _check_int("nb_units", nb_units, 1)
    nb_steps = _check_int("nb_steps", nb_steps, 1)
    step_frac = _check_float("step_frac", step_frac, low=0.0, low_open=True, high=1.0)
    dim_manifold = _check_int("dim_manifold", dim_manifold, 1)
    nb_spikes = _check_int("nb_spikes", nb_spikes, 1)
    nb_samples = _check_int("nb_samples", nb_samples, 1)
    alpha = _check_float("alpha", alpha, low=0.0, low_open=True)
    if not isinstance(shuffle, bool):
        raise ValueError(f"shuffle must be True or False, got {shuffle!r}")
    rng = _generator(seed)
    # One child seed per (class, spike) manifold first, then the sample points, so
    # the manifolds do not depend on nb_samples.
    manifold_seeds = rng.integers(0, 2**63 - 1, size=(nb_classes, nb_spikes))
    span = nb_steps * step_frac
    times, labels = [], []
    for k in range(nb_classes):
        x = rng.random((nb_samples, dim_manifold))  # [S, D] points on the class's manifolds
        per_spike = []
        for j in range(nb_spikes):
            child = np.random.default_rng(manifold_seeds[k, j])
            manifold = Randman(nb_units, dim_manifold, alpha, child)
            value = _standardize(manifold(x))  # [S, U] in [0, 1)
            per_spike.append(np.minimum(np.floor(value * span), nb_steps - 1).astype(np.int64))
        times.append(np.stack(per_spike, axis=1))  # [S, nb_spikes, U]
        labels.append(np.full(nb_samples, k, dtype=np.int64))
    times_all = np.concatenate(times)  # [N, nb_spikes, U]
    labels_all = np.concatenate(labels)  # [N]
    if shuffle:
        order = rng.permutation(len(labels_all))
        times_all, labels_all = times_all[order], labels_all[order]
    return times_all, labels_all


def make_spike_raster_dataset(
    *,
    nb_classes: int = 2,
    nb_units: int = 16,
    nb_steps: int = 100,
    step_frac: float = 1.0,
    dim_manifold: int = 2,
    nb_spikes: int = 1,
    nb_samples: int = 1000,
    alpha: float = 2.0,
    shuffle: bool = True,
    seed: SeedLike = 42,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The Randman task as a dense spike raster (seed 003's data set).

    All arguments are keyword-only; seed 003's ``make_spike_raster_dataset(rng, ...)``
    becomes ``make_spike_raster_dataset(seed=rng, ...)`` (the same task, not the same
    numbers: the ``randman`` package draws with NumPy's legacy global RNG).

    Args:
        nb_classes: number of classes, each with its own manifolds.
        nb_units: input units (embedding dimension).
        nb_steps: time steps ``T`` of the raster.
        step_frac: share of the ``T`` steps, from the start, that hold spikes, in (0, 1].
        dim_manifold: intrinsic dimension of the manifolds.
        nb_spikes: spikes per unit per sample (each from its own manifold).
        nb_samples: samples **per class**.
        alpha: smoothness: sinusoid amplitudes fall as ``1/f^alpha`` (> 0).
        shuffle: shuffle the samples (else sorted by class).
        seed: an int, a ``numpy.random.Generator`` (consumed; seed 003 passes its
            ``rng``), or None for fresh entropy. The global RNGs are not touched.

    Returns:
        ``(spikes, labels)``: ``spikes [N, T, nb_units]`` float32, **sample-major**
        (use :func:`time_major_batches` or ``spikes.transpose(0, 1)`` for spikeflow's
        ``[T, B, units]``), entries are spike counts (0 or 1, 2+ only where a unit's
        spikes coincide) and ``spikes.sum(1) == nb_spikes``; ``labels [N]`` int64 in
        ``0..nb_classes-1``; ``N = nb_classes * nb_samples``.

    Raises:
        ValueError: an argument is out of range (counts must be integers >= 1,
            ``step_frac`` in (0, 1], ``alpha`` > 0) or ``seed`` is not a seed.
    """
    times, labels = make_spike_times(
        nb_classes=nb_classes, nb_units=nb_units, nb_steps=nb_steps, step_frac=step_frac,
        dim_manifold=dim_manifold, nb_spikes=nb_spikes, nb_samples=nb_samples, alpha=alpha,
        shuffle=shuffle, seed=seed,
    )
    n, _, units = times.shape
    raster = np.zeros((n, nb_steps, units), dtype=np.float32)  # [N, T, U]
    sample = np.arange(n)[:, None]  # [N, 1]
    unit = np.arange(units)[None, :]  # [1, U]
    for j in range(times.shape[1]):
        np.add.at(raster, (sample, times[:, j, :], unit), 1.0)
    return torch.from_numpy(raster), torch.from_numpy(labels)


def time_major_batches(
    spikes: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: SeedLike = None,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of sample-major data in spikeflow's time-major layout.

    Args:
        spikes: ``[N, T, *features]`` (as returned by :func:`make_spike_raster_dataset`).
        labels: ``[N]``.
        batch_size: samples per batch (>= 1).
        shuffle: visit the samples in a random order drawn from ``seed``.
        seed: int, ``numpy.random.Generator`` or None (see :func:`make_spike_raster_dataset`).
        drop_last: skip a final batch smaller than ``batch_size`` (seed 003 does).

    Returns:
        An iterator of ``(x [T, B, *features], y [B])``; ``x`` is a contiguous copy.
        The arguments are checked (and the order drawn) at the call, not lazily.

    Raises:
        TypeError: ``spikes`` or ``labels`` is not a tensor.
        ValueError: ``batch_size`` < 1; no samples; shapes that do not match.
    """
    batch_size = _check_int("batch_size", batch_size, 1)
    for name, value in (("spikes", spikes), ("labels", labels)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if len(spikes) == 0 and spikes.dim() >= 2:
        raise ValueError(f"spikes holds no samples (shape {tuple(spikes.shape)}); expected N >= 1")
    if spikes.dim() < 2 or labels.dim() != 1 or len(spikes) != len(labels):
        raise ValueError(
            f"expected spikes [N, T, ...] and labels [N], got {tuple(spikes.shape)} "
            f"and {tuple(labels.shape)}"
        )
    n = len(labels)
    order = torch.from_numpy(_generator(seed).permutation(n)) if shuffle else torch.arange(n)
    stop = n - n % batch_size if drop_last else n

    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, stop, batch_size):
            index = order[start : start + batch_size]
            yield spikes[index].transpose(0, 1).contiguous(), labels[index]  # [T, B, ...], [B]

    return batches()
