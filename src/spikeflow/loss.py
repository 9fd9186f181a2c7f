"""Losses on time-major network outputs ``[T, B, C]`` (C classes) against class
labels ``[B]``.

=========================  ==================================================
loss                       logits or prediction from the output
=========================  ==================================================
spike_count_cross_entropy  ``n = sum_t s[t]`` (spike counts) as logits (seed 003)
spike_count_mse            ``n = sum_t s[t]`` against target counts (seed 004)
membrane_cross_entropy     ``max_t``, ``mean_t``, ``sum_t`` or last ``v[t]`` as logits
first_spike_time_loss      ``-t_first / tau`` as logits: earliest spike wins
=========================  ==================================================

Every loss averages over the batch (and, for the MSE, over classes) and checks its
inputs: the output must be ``[T, B, C]`` and the target ``[B]`` integer labels in
``[0, C)``; anything else raises a ``ValueError`` or ``TypeError`` that says what
was expected.

:func:`first_spike_times` gives the differentiable first-spike times ``[B, C]``
behind :func:`first_spike_time_loss`, and :func:`rate_regularizer` is the
activity penalty of Zenke & Vogels (2021), to add to any of the losses for hidden
layers of any shape ``[T, B, *features]``.
"""

from __future__ import annotations

from typing import Optional

import torch

from ._choice import Choice
from .encode import _check_real as _check_scalar
import torch.nn.functional as F

__all__ = [
    "TimeReduce",
    "first_spike_time_loss",
    "first_spike_times",
    "membrane_cross_entropy",
    "rate_regularizer",
    "reduce_time",
    "spike_count_cross_entropy",
    "spike_count_mse",
]


class TimeReduce(Choice):
    """How a membrane trace ``v [T, B, C]`` becomes logits ``[B, C]``."""

    MAX = "max"  # max_t v[t]
    MEAN = "mean"  # (1/T) sum_t v[t]
    LAST = "last"  # v[T-1]
    SUM = "sum"  # sum_t v[t]

    @classmethod
    def _what(cls) -> str:
        return "time reduction"


def _check_output(x: object, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape [T, B, C], got {type(x).__name__}")
    if x.dim() != 3:
        hint = "; for a single time step use x.unsqueeze(0)" if x.dim() == 2 else ""
        raise ValueError(f"{name} must have shape [T, B, C], got {tuple(x.shape)}{hint}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.shape[0] == 0 or x.shape[1] == 0 or x.shape[2] == 0:
        raise ValueError(f"{name} must have T, B, C >= 1, got shape {tuple(x.shape)}")
    return x


def _check_target(target: object, output: torch.Tensor, name: str) -> torch.Tensor:
    batch, classes = output.shape[1], output.shape[2]
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be a torch.Tensor of class labels [B], got {type(target).__name__}")
    if target.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise TypeError(f"target must hold integer class labels, got dtype {target.dtype}")
    if target.shape != (batch,):
        raise ValueError(
            f"target must have shape [B] = ({batch},) to match {name} of shape "
            f"{tuple(output.shape)} [T, B, C], got {tuple(target.shape)}"
        )
    if target.device != output.device:
        raise ValueError(f"target is on {target.device} but {name} is on {output.device}")
    lo, hi = int(target.min()), int(target.max())
    if lo < 0 or hi >= classes:
        raise ValueError(
            f"target labels must be in [0, {classes}) for C = {classes} classes, "
            f"got min {lo} and max {hi}"
        )
    return target.long()


def reduce_time(v: torch.Tensor, reduce: "TimeReduce | str" = TimeReduce.MAX) -> torch.Tensor:
    """Reduce ``v [T, B, C]`` over time to ``[B, C]`` (see :class:`TimeReduce`)."""
    v = _check_output(v, "v")
    mode = TimeReduce.parse(reduce)
    if mode is TimeReduce.MAX:
        return v.amax(dim=0)
    if mode is TimeReduce.MEAN:
        return v.mean(dim=0)
    if mode is TimeReduce.SUM:
        return v.sum(dim=0)
    return v[-1]


def spike_count_cross_entropy(spikes: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the spike counts (seed 003).

    With counts ``n[b, c] = sum_t s[t, b, c]``::

        loss = -(1/B) sum_b log softmax(n[b])[y_b]

    Args:
        spikes: ``[T, B, C]`` output spikes (or any non-negative output).
        target: ``[B]`` integer class labels in ``[0, C)``.

    Returns:
        A scalar: the mean over the batch.
    """
    spikes = _check_output(spikes, "spikes")
    target = _check_target(target, spikes, "spikes")
    return F.cross_entropy(spikes.sum(dim=0), target)


def spike_count_mse(
    spikes: torch.Tensor,
    target: torch.Tensor,
    *,
    on: Optional[float] = None,
    off: Optional[float] = None,
) -> torch.Tensor:
    """Mean squared error between spike counts and target counts (seed 004, after
    SLAYER, Shrestha & Orchard 2018).

    With counts ``n[b, c] = sum_t s[t, b, c]`` and targets ``m[b, c] = on`` for the
    true class ``c = y_b`` and ``off`` for every other class::

        loss = (1 / (B C)) sum_{b, c} (n[b, c] - m[b, c])^2

    Args:
        spikes: ``[T, B, C]`` output spikes.
        target: ``[B]`` integer class labels in ``[0, C)``.
        on: target spike count of the true class over the window; None means ``T``
            (a spike at every step; seed 004: 100 spikes in 100 steps).
        off: target spike count of the other classes; None means ``0.1 * T``
            (seed 004: 10 spikes in 100 steps).

    Returns:
        A scalar.

    Raises:
        TypeError, ValueError: a bad ``spikes`` or ``target`` (see the module), or
            ``on`` / ``off`` not a finite number >= 0.
    """
    spikes = _check_output(spikes, "spikes")
    target = _check_target(target, spikes, "spikes")
    steps = spikes.shape[0]
    on = float(steps) if on is None else _check_scalar(on, "on", "spike_count_mse")
    off = 0.1 * steps if off is None else _check_scalar(off, "off", "spike_count_mse")
    counts = spikes.sum(dim=0)  # [B, C]
    wanted = torch.full_like(counts, off)
    wanted.scatter_(1, target.unsqueeze(1), on)
    return F.mse_loss(counts, wanted)


def membrane_cross_entropy(
    v: torch.Tensor, target: torch.Tensor, reduce: "TimeReduce | str" = TimeReduce.MAX
) -> torch.Tensor:
    """Cross-entropy of a membrane readout (for example a non-spiking LI layer).

    The trace ``v [T, B, C]`` is reduced over time to logits ``z [B, C]`` by
    ``reduce`` (``"max"``: ``z = max_t v[t]``; ``"mean"``; ``"sum"``; ``"last"``:
    ``z = v[T-1]``), then::

        loss = -(1/B) sum_b log softmax(z[b])[y_b]

    Args:
        v: ``[T, B, C]`` membrane potentials.
        target: ``[B]`` integer class labels in ``[0, C)``.
        reduce: a :class:`TimeReduce` or its name.

    Returns:
        A scalar: the mean over the batch.
    """
    v = _check_output(v, "v")
    target = _check_target(target, v, "v")
    return F.cross_entropy(reduce_time(v, reduce), target)


def first_spike_times(spikes: torch.Tensor) -> torch.Tensor:
    """The step of each output neuron's first spike, differentiable in the spikes.

    For every batch element ``b`` and neuron ``c``, with ``z[t] = 1`` if
    ``s[t, b, c] > 0`` (any positive value is a spike) and 0 otherwise::

        t_first[b, c] = sum_{t=0}^{T-1} prod_{k=0}^{t} (1 - z[k])

    which counts the silent steps before the first spike: the first spike's step
    (0-based, in time steps) when there is one, and ``T`` for a neuron that never
    spikes. (snnTorch's ``SpikeTime`` gives a silent neuron ``T - 1``, the same
    time as a spike at the last step; here it is one step later than any spike.)

    **Gradient.** The formula is multilinear in ``z``, and its gradient is taken
    with ``z`` standing in for ``s`` (a straight-through estimate, ``dz/ds = 1``).
    For a neuron whose first spike is at ``f`` (``f = T`` if none) and whose
    second spike is at ``g`` (``T`` if none)::

        d t_first / d s[k] = -(f - k)   for k < f    (a spike at k would move it to k)
                           = -(g - f)   for k = f    (losing the spike at f moves it to g)
                           =  0         for k > f

    each the exact change of ``t_first`` when that one ``z[k]`` flips. Every step
    up to the first spike thus gets gradient, pushing earlier spikes; snnTorch's
    ``SpikeTime`` instead passes ``-1`` to the first-spike step only.

    Args:
        spikes: ``[T, B, C]`` output spikes (values ``> 0`` count as spikes).

    Returns:
        ``[B, C]`` first-spike steps in ``[0, T]``, of ``spikes``' dtype (whole
        numbers), differentiable as above.

    Raises:
        TypeError: ``spikes`` is not a floating-point tensor.
        ValueError: ``spikes`` is not ``[T, B, C]`` with T, B, C >= 1.
    """
    spikes = _check_output(spikes, "spikes")
    z = (spikes > 0).to(spikes.dtype)
    z = z + (spikes - spikes.detach())  # value z, gradient passes to spikes
    return torch.cumprod(1.0 - z, dim=0).sum(dim=0)  # [B, C]


def first_spike_time_loss(
    spikes: torch.Tensor, target: torch.Tensor, *, tau: float = 1.0
) -> torch.Tensor:
    """Cross-entropy on first-spike times: the output neuron that spikes first is
    the prediction (time-to-first-spike classification).

    With ``t = first_spike_times(spikes)`` (steps; ``T`` for a silent neuron) as
    negative logits scaled by ``tau``::

        loss = -(1/B) sum_b log softmax(-t[b] / tau)[y_b]

    So the loss falls as the true class spikes earlier and the others later; only
    differences of first-spike times matter. With ``tau = 1`` and every output
    spiking at least once this equals snnTorch's ``functional.ce_temporal_loss()``
    (``inverse="negate"``); the two differ for silent neurons (time ``T`` here,
    ``T - 1`` in snnTorch) and in the gradient (see :func:`first_spike_times`).

    Args:
        spikes: ``[T, B, C]`` output spikes.
        target: ``[B]`` integer class labels in ``[0, C)``.
        tau: the time scale in steps (finite, > 0): a first-spike lead of ``tau``
            steps is worth one unit of logit. Larger values soften the softmax for
            long windows.

    Returns:
        A scalar: the mean over the batch.

    Raises:
        TypeError: ``spikes`` or ``target`` has the wrong type or dtype, or ``tau``
            is not a number.
        ValueError: wrong shapes, labels outside ``[0, C)``, or ``tau`` not
            positive.
    """
    spikes = _check_output(spikes, "spikes")
    target = _check_target(target, spikes, "spikes")
    tau = _check_scalar(tau, "tau", "first_spike_time_loss", positive=True)
    return F.cross_entropy(-first_spike_times(spikes) / tau, target)


def rate_regularizer(
    spikes: torch.Tensor,
    *,
    lower: Optional[float] = None,
    upper: Optional[float] = None,
    lower_strength: float = 1.0,
    upper_strength: float = 1.0,
) -> torch.Tensor:
    """Firing-rate regularizer of Zenke & Vogels (2021): a per-neuron lower bound and
    a population upper bound on spike counts, as squared hinges.

    With the spike count of neuron ``i`` on sample ``b``, ``n[b, i] = sum_t s[t, b,
    i]`` (``i`` running over the ``N`` flattened features), a floor ``lower`` and a
    ceiling ``upper`` in spikes per window::

        L_lower = lower_strength * (1 / (B N)) sum_{b, i} max(0, lower - n[b, i])^2
        L_upper = upper_strength * (1 / B) sum_b max(0, (1/N) sum_i n[b, i] - upper)^2
        loss    = L_lower + L_upper

    The lower bound keeps every neuron from falling silent on any sample, the upper
    bound caps the population's mean count per sample while letting individual
    neurons fire more. This follows the authors' library (``stork.regularizers``:
    ``LowerBoundL2`` per neuron and sample, ``UpperBoundL2`` on the mean over
    neurons); a term whose bound is None is left out. For a bound on the rate in Hz
    over a window of ``T`` steps of ``dt`` seconds, pass ``rate * T * dt``.

    Args:
        spikes: ``[T, B, *features]`` spikes of one layer (at least one feature
            dimension).
        lower: the per-neuron floor on the count per window (>= 0), or None.
        upper: the ceiling on the population mean count per window (>= 0), or
            None. At least one of ``lower`` and ``upper`` must be given.
        lower_strength: the weight of the lower-bound term (>= 0).
        upper_strength: the weight of the upper-bound term (>= 0).

    Returns:
        A non-negative scalar, differentiable in ``spikes``.

    Raises:
        TypeError: ``spikes`` is not a floating-point tensor, or a bound or
            strength is not a number.
        ValueError: ``spikes`` is not ``[T, B, *features]``, neither bound is
            given, a bound or strength is negative or not finite, or
            ``lower > upper`` (no activity could satisfy both).
    """
    what = "rate_regularizer"
    if not isinstance(spikes, torch.Tensor):
        raise TypeError(f"spikes must be a torch.Tensor of shape [T, B, *features], got {type(spikes).__name__}")
    if spikes.dim() < 3:
        raise ValueError(
            f"spikes must have shape [T, B, *features] (at least 3 dimensions), got "
            f"{tuple(spikes.shape)}; for a single neuron use spikes.unsqueeze(-1)"
        )
    if not spikes.is_floating_point():
        raise TypeError(f"spikes must be a floating-point tensor, got dtype {spikes.dtype}")
    if spikes.numel() == 0:
        raise ValueError(f"spikes must have T, B and features >= 1, got shape {tuple(spikes.shape)}")
    if lower is None and upper is None:
        raise ValueError(f"{what}: give lower, upper or both (bounds on the spike count per window)")
    lower = None if lower is None else _check_scalar(lower, "lower", what)
    upper = None if upper is None else _check_scalar(upper, "upper", what)
    lower_strength = _check_scalar(lower_strength, "lower_strength", what)
    upper_strength = _check_scalar(upper_strength, "upper_strength", what)
    if lower is not None and upper is not None and lower > upper:
        raise ValueError(f"{what}: lower ({lower:g}) must not exceed upper ({upper:g})")
    counts = spikes.sum(dim=0).flatten(1)  # [B, N]
    loss = counts.new_zeros(())
    if lower is not None:
        loss = loss + lower_strength * torch.relu(lower - counts).square().mean()
    if upper is not None:
        loss = loss + upper_strength * torch.relu(counts.mean(dim=1) - upper).square().mean()
    return loss
