"""Losses on time-major network outputs ``[T, B, C]`` (C classes) against class
labels ``[B]``.

=========================  ==================================================
loss                       logits or prediction from the output
=========================  ==================================================
spike_count_cross_entropy  ``n = sum_t s[t]`` (spike counts) as logits (seed 003)
spike_count_mse            ``n = sum_t s[t]`` against target counts (seed 004)
membrane_cross_entropy     ``max_t``, ``mean_t``, ``sum_t`` or last ``v[t]`` as logits
=========================  ==================================================

Every loss averages over the batch (and, for the MSE, over classes) and checks its
inputs: the output must be ``[T, B, C]`` and the target ``[B]`` integer labels in
``[0, C)``; anything else raises a ``ValueError`` or ``TypeError`` that says what
was expected.
"""

from __future__ import annotations

from typing import Optional

import torch

from ._choice import Choice
import torch.nn.functional as F

__all__ = [
    "TimeReduce",
    "membrane_cross_entropy",
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
    """
    spikes = _check_output(spikes, "spikes")
    target = _check_target(target, spikes, "spikes")
    steps = spikes.shape[0]
    on = float(steps) if on is None else float(on)
    off = 0.1 * steps if off is None else float(off)
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
