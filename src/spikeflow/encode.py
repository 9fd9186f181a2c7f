"""Encoders: turn static inputs ``x`` of shape ``[B, *features]`` into time-major
sequences ``[T, B, *features]``.

=========  ====================================================  ====================
encoder    step ``t`` (0-based, ``t = 0 .. T-1``)                 output
=========  ====================================================  ====================
direct     ``out[t] = x``                                        analog current
rate       ``out[t] ~ Bernoulli(x)``, independent over t          spikes {0, 1}
latency    ``out[t] = 1`` iff ``t == t_x`` and ``x >= threshold``  one spike per input
=========  ====================================================  ====================

All encoders keep ``x``'s dtype and device. ``rate`` and ``latency`` need ``x`` in
[0, 1] (scale pixel values first) and raise a ``ValueError`` naming the offending
range otherwise.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

__all__ = ["direct", "latency", "rate"]


def _check_steps(T: int) -> int:
    if isinstance(T, bool) or not isinstance(T, int):
        raise TypeError(f"the number of time steps T must be an int, got {type(T).__name__}")
    if T < 1:
        raise ValueError(f"the number of time steps T must be >= 1, got {T}")
    return T


def _check_input(x: torch.Tensor, what: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what}: x must be a torch.Tensor of shape [B, *features], got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{what}: x must be a floating-point tensor, got dtype {x.dtype} "
            f"(convert with x.float(), and scale integer pixels to [0, 1])"
        )
    if x.dim() < 1:
        raise ValueError(f"{what}: x must have shape [B, *features], got a scalar")


def _check_unit_interval(x: torch.Tensor, what: str) -> None:
    if x.numel() == 0:
        return
    if bool(torch.isnan(x).any()):
        raise ValueError(f"{what}: x contains NaN; values must be probabilities in [0, 1]")
    lo, hi = x.min().item(), x.max().item()
    if lo < 0.0 or hi > 1.0:
        raise ValueError(
            f"{what}: values must be in [0, 1], got min {lo:g} and max {hi:g}; "
            f"scale the input first (for example x / x.max())"
        )


def direct(x: torch.Tensor, T: int) -> torch.Tensor:
    """Direct (analog current) encoding: the same input at every step.

    ``out[t] = x`` for ``t = 0 .. T-1``.

    Args:
        x: ``[B, *features]``, any real values (they enter the first layer as a
            current, so no range is imposed).
        T: number of time steps (>= 1).

    Returns:
        ``[T, B, *features]``, a broadcast *view* of ``x`` (no copy; gradients
        flow back to ``x``). Call ``.clone()`` before writing into it.
    """
    _check_input(x, "direct")
    _check_steps(T)
    return x.unsqueeze(0).expand(T, *x.shape)


def rate(
    x: torch.Tensor, T: int, *, generator: Optional[torch.Generator] = None
) -> torch.Tensor:
    """Rate (Bernoulli) encoding: independent spikes with probability ``x``.

    ``out[t] = 1 if u[t] < x else 0`` with ``u[t] ~ Uniform[0, 1)`` drawn
    independently for every step and element, so ``P(out[t] = 1) = x`` and the
    expected spike count over the window is ``T * x``.

    Args:
        x: ``[B, *features]``, firing probabilities in [0, 1].
        T: number of time steps (>= 1).
        generator: the random generator to draw from (for reproducible spikes);
            None uses torch's global generator. It must be on ``x``'s device.

    Returns:
        ``[T, B, *features]`` spikes of ``x``'s dtype, values in {0, 1}. The
        encoding has no gradient.

    Raises:
        ValueError: a value of ``x`` is outside [0, 1] or NaN.
    """
    _check_input(x, "rate")
    _check_steps(T)
    _check_unit_interval(x, "rate")
    u = torch.rand((T, *x.shape), generator=generator, dtype=x.dtype, device=x.device)
    return (u < x.detach()).to(x.dtype)  # [T, B, *features]


def latency(
    x: torch.Tensor, T: int, *, threshold: float = 0.25, normalize: bool = False
) -> torch.Tensor:
    """Latency (time-to-first-spike) encoding, as in seed 004: brighter inputs spike
    earlier, inputs below ``threshold`` never spike, each input spikes at most once.

    The spike step of an input ``x >= threshold`` is::

        t_x = round((1 - x) * (T - 1))                          # normalize=False
        t_x = round((1 - x) / (1 - threshold) * (T - 1))        # normalize=True

    rounded to the nearest step, halves up (to the later step). So ``x = 1`` spikes
    at ``t = 0``; without ``normalize``, ``x = 0`` would spike at ``t = T - 1`` and
    the cut-off input ``x = threshold`` at ``round((1 - threshold) (T - 1))`` (seed
    004: ``t = (1 - x) * 100`` ms, pixels under 0.25 removed). ``normalize`` stretches
    ``[threshold, 1]`` over the whole window, so ``x = threshold`` spikes at
    ``T - 1``.

    Args:
        x: ``[B, *features]``, intensities in [0, 1].
        T: number of time steps (>= 1).
        threshold: cut-off in [0, 1]; inputs strictly below it never spike
            (``threshold = 0`` makes every input spike once). With ``normalize``
            it must be < 1.
        normalize: use the whole window for ``[threshold, 1]``.

    Returns:
        ``[T, B, *features]`` spikes of ``x``'s dtype, one-hot over time for each
        input at or above ``threshold``, all zero for the others. No gradient.

    Raises:
        ValueError: a value of ``x`` is outside [0, 1] or NaN, or ``threshold`` is
            invalid.
    """
    _check_input(x, "latency")
    _check_steps(T)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise TypeError(f"latency: threshold must be a number, got {type(threshold).__name__}")
    threshold = float(threshold)
    if not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
        raise ValueError(f"latency: threshold must be in [0, 1], got {threshold:g}")
    if normalize and threshold >= 1.0:
        raise ValueError("latency: normalize=True needs threshold < 1")
    _check_unit_interval(x, "latency")
    x = x.detach()
    scale = (T - 1) / (1.0 - threshold) if normalize else float(T - 1)
    # In float64 (where the device has it) so that the rounding of exact halves does not
    # depend on x's dtype.
    wide = x.float() if x.device.type == "mps" else x.double()
    steps = torch.floor((1.0 - wide) * scale + 0.5).clamp_(0, T - 1).long()  # [B, *features]
    fires = x >= threshold  # [B, *features]
    times = torch.arange(T, device=x.device).view(T, *([1] * x.dim()))  # [T, 1, ...]
    return ((times == steps.unsqueeze(0)) & fires.unsqueeze(0)).to(x.dtype)  # [T, B, *features]
