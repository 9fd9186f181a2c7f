"""Encoders: turn static inputs ``x`` of shape ``[B, *features]`` into time-major
sequences ``[T, B, *features]`` (``delta`` turns a sequence into a sequence).

==============  =======================================================  ===================
encoder         step ``t`` (0-based, ``t = 0 .. T-1``)                    output
==============  =======================================================  ===================
direct          ``out[t] = x``                                           analog current
rate            ``out[t] ~ Bernoulli(x)``, independent over t             spikes {0, 1}
poisson         ``out[t] ~ Bernoulli(1 - exp(-x f_max dt))``, or the      spikes {0, 1}, or
                event count ``~ Poisson(x f_max dt)`` with ``counts``     counts {0, 1, ...}
latency         ``out[t] = 1`` iff ``t == t_x`` and ``x`` reaches the     one spike per input
                threshold; ``t_x`` linear in ``x`` or the RC charging
                time ``tau ln(x / (x - threshold))`` (``kind="log"``)
delta           ``+1`` if ``x[t] - x[t-1] >= threshold``, ``-1`` if       spikes {-1, 0, 1}
                ``<= -threshold`` (input is a sequence ``[T, B, ...]``)
multiplicative  ``u[t] * x``, ``u[t] ~ Uniform[0, 1)`` (seed 001)        analog, sign of x
==============  =======================================================  ===================

All encoders keep ``x``'s dtype and device, and the random ones take an optional
``generator``. ``rate``, ``poisson`` and ``latency`` need ``x`` in [0, 1] (scale
pixel values first) and raise a ``ValueError`` naming the offending range
otherwise.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from ._choice import Choice

__all__ = [
    "DeltaStart",
    "LatencyKind",
    "delta",
    "direct",
    "latency",
    "multiplicative",
    "poisson",
    "rate",
]


class LatencyKind(Choice):
    """How :func:`latency` maps an intensity to a spike time."""

    LINEAR = "linear"  # t = (1 - x) (T - 1), seed 004
    LOG = "log"  # t = tau ln(x / (x - threshold)), RC charging time

    @classmethod
    def _what(cls) -> str:
        return "latency kind"


class DeltaStart(Choice):
    """What :func:`delta` compares the first step ``x[0]`` with."""

    ZERO = "zero"  # x[-1] = 0: an input that starts non-zero spikes at t = 0
    REPEAT = "repeat"  # x[-1] = x[0]: no spikes at t = 0

    @classmethod
    def _what(cls) -> str:
        return "delta start"


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


def _check_real(value: object, name: str, what: str, *, positive: bool = False) -> float:
    """``value`` as a finite float (> 0 with ``positive``, else >= 0)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what}: {name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value < 0.0 or (positive and value == 0.0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{what}: {name} must be finite and {bound}, got {value:g}")
    return value


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


def poisson(
    x: torch.Tensor,
    T: int,
    *,
    f_max: float = 100.0,
    dt: float = 1e-3,
    counts: bool = False,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Poisson encoding: each input drives a Poisson process of rate ``x * f_max``,
    observed in ``T`` bins of ``dt`` seconds.

    With the expected number of events per bin ``lam = x * f_max * dt``
    (dimensionless; ``f_max`` in Hz, ``dt`` in s)::

        out[t] = 1 with probability p = 1 - exp(-lam), else 0     # counts=False
        out[t] ~ Poisson(lam)                                      # counts=True

    independently for every bin and element. ``p`` is the exact probability that a
    Poisson process puts at least one event in the bin, so the spike train is the
    binned process with multiple events in a bin merged into one spike (for small
    ``lam``, ``p ~ lam``: the familiar ``rate * dt`` rule, which would exceed 1 for
    ``lam > 1``). With ``counts=True`` nothing is merged: ``out[t]`` is the number of
    events in the bin, with mean and variance ``lam``.

    The defaults, ``f_max = 100`` Hz and ``dt = 1`` ms, give at most ``lam = 0.1``
    per bin: a white pixel (``x = 1``) fires with probability ``1 - exp(-0.1) =
    0.0952`` per step, about 9.5 spikes in 100 steps.

    Args:
        x: ``[B, *features]``, intensities in [0, 1] (the rate is ``x * f_max``).
        T: number of time bins (>= 1).
        f_max: the rate of an input ``x = 1``, in Hz (> 0).
        dt: the bin width, in seconds (> 0).
        counts: return event counts per bin instead of spikes.
        generator: the random generator to draw from; None uses torch's global
            generator. It must be on ``x``'s device.

    Returns:
        ``[T, B, *features]`` of ``x``'s dtype: spikes in {0, 1}, or counts in
        {0, 1, 2, ...} with ``counts=True``. The encoding has no gradient.

    Raises:
        TypeError: ``x`` is not a floating-point tensor, or ``T``, ``f_max``, ``dt``
            are not numbers.
        ValueError: a value of ``x`` is outside [0, 1] or NaN, ``T < 1``, or
            ``f_max`` or ``dt`` is not finite and positive.
    """
    _check_input(x, "poisson")
    _check_steps(T)
    f_max = _check_real(f_max, "f_max", "poisson", positive=True)
    dt = _check_real(dt, "dt", "poisson", positive=True)
    _check_unit_interval(x, "poisson")
    # torch.poisson and expm1 are computed in at least float32.
    wide = x.detach().float() if x.element_size() < 4 else x.detach()
    lam = (wide * (f_max * dt)).unsqueeze(0).expand(T, *x.shape)  # [T, B, *features]
    if counts:
        return torch.poisson(lam, generator=generator).to(x.dtype)
    p = -torch.expm1(-lam)  # 1 - exp(-lam), accurate for small lam
    u = torch.rand((T, *x.shape), generator=generator, dtype=wide.dtype, device=x.device)
    return (u < p).to(x.dtype)  # [T, B, *features]


def latency(
    x: torch.Tensor,
    T: int,
    *,
    threshold: float = 0.25,
    normalize: bool = False,
    kind: "LatencyKind | str" = LatencyKind.LINEAR,
    tau: Optional[float] = None,
) -> torch.Tensor:
    """Latency (time-to-first-spike) encoding: brighter inputs spike earlier, inputs
    that do not reach ``threshold`` never spike, each input spikes at most once.

    ``kind="linear"`` (the default, seed 004): an input ``x >= threshold`` spikes at::

        t_x = round((1 - x) * (T - 1))                          # normalize=False
        t_x = round((1 - x) / (1 - threshold) * (T - 1))        # normalize=True

    So ``x = 1`` spikes at ``t = 0``; without ``normalize``, ``x = 0`` would spike at
    ``t = T - 1`` and the cut-off input ``x = threshold`` at ``round((1 - threshold)
    (T - 1))`` (seed 004: ``t = (1 - x) * 100`` ms, pixels under 0.25 removed).
    ``normalize`` stretches ``[threshold, 1]`` over the whole window, so
    ``x = threshold`` spikes at ``T - 1``.

    ``kind="log"``: the time an RC circuit (time constant ``tau`` steps) driven by a
    constant current ``x`` takes to charge from 0 to ``threshold``,
    ``v(t) = x (1 - exp(-t / tau)) = threshold``::

        t_x = round(tau * ln(x / (x - threshold)))              # only for x > threshold

    Inputs ``x <= threshold`` never reach the threshold and never spike; inputs
    whose ``t_x`` falls after the window (``t_x > T - 1``) do not spike either.
    This is snnTorch's ``spikegen.latency(x, T, threshold=..., tau=..., linear=False,
    clip=True)`` (``first_spike_time=0``, ``normalize=False``): snnTorch clamps
    below-threshold inputs to ``threshold + 1e-7`` and removes them only with
    ``clip=True``, and raises instead of dropping late spikes unless
    ``bypass=True``; its ``torch.round`` rounds exact halves to even where ours
    rounds them up.

    In both kinds the time is rounded to the nearest step, exact halves up (to the
    later step), computed in float64 so that rounding does not depend on ``x``'s
    dtype.

    Args:
        x: ``[B, *features]``, intensities in [0, 1].
        T: number of time steps (>= 1).
        threshold: in [0, 1]. Linear: inputs strictly below it never spike
            (``threshold = 0`` makes every input spike once; with ``normalize`` it
            must be < 1). Log: the charging threshold; inputs at or below it never
            spike.
        normalize: linear kind only: use the whole window for ``[threshold, 1]``.
        kind: a :class:`LatencyKind` or its name, ``"linear"`` or ``"log"``.
        tau: log kind only: the RC time constant in time steps (> 0); None means 1
            step (snnTorch's default).

    Returns:
        ``[T, B, *features]`` spikes of ``x``'s dtype, one-hot over time for each
        input that spikes, all zero for the others. No gradient.

    Raises:
        ValueError: a value of ``x`` is outside [0, 1] or NaN, ``threshold`` or
            ``tau`` is invalid, ``kind`` is unknown, or an option is given to the
            kind it does not apply to.
    """
    _check_input(x, "latency")
    _check_steps(T)
    mode = LatencyKind.parse(kind)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise TypeError(f"latency: threshold must be a number, got {type(threshold).__name__}")
    threshold = float(threshold)
    if not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
        raise ValueError(f"latency: threshold must be in [0, 1], got {threshold:g}")
    if mode is LatencyKind.LINEAR:
        if tau is not None:
            raise ValueError("latency: tau applies to kind='log' only")
        if normalize and threshold >= 1.0:
            raise ValueError("latency: normalize=True needs threshold < 1")
    else:
        if normalize:
            raise ValueError("latency: normalize applies to kind='linear' only")
        tau = 1.0 if tau is None else _check_real(tau, "tau", "latency", positive=True)
    _check_unit_interval(x, "latency")
    x = x.detach()
    # In float64 (where the device has it) so that the rounding of exact halves does not
    # depend on x's dtype.
    wide = x.float() if x.device.type == "mps" else x.double()
    if mode is LatencyKind.LINEAR:
        scale = (T - 1) / (1.0 - threshold) if normalize else float(T - 1)
        steps = torch.floor((1.0 - wide) * scale + 0.5).clamp_(0, T - 1).long()  # [B, *features]
        fires = x >= threshold  # [B, *features]
    else:
        fires = wide > threshold
        # tau ln(x / (x - theta)) = tau log1p(theta / (x - theta)); inf where x <= theta.
        gap = torch.where(fires, wide - threshold, torch.ones_like(wide))
        t = torch.where(fires, tau * torch.log1p(threshold / gap), torch.full_like(wide, math.inf))
        fires = fires & (torch.floor(t + 0.5) <= T - 1)
        steps = torch.where(fires, torch.floor(t + 0.5), torch.zeros_like(t)).long()
    times = torch.arange(T, device=x.device).view(T, *([1] * x.dim()))  # [T, 1, ...]
    return ((times == steps.unsqueeze(0)) & fires.unsqueeze(0)).to(x.dtype)  # [T, B, *features]


def delta(
    x: torch.Tensor,
    *,
    threshold: float = 0.1,
    off_spikes: bool = True,
    start: "DeltaStart | str" = DeltaStart.ZERO,
) -> torch.Tensor:
    """Delta (change) modulation of a sequence: spike where the input changes by at
    least ``threshold`` from one step to the next.

    With the step change ``d[t] = x[t] - x[t-1]``::

        out[t] = +1   if d[t] >= threshold
        out[t] = -1   if d[t] <= -threshold and off_spikes
        out[t] =  0   otherwise

    At ``t = 0`` the previous value ``x[-1]`` is 0 with ``start="zero"`` (an input
    that is already on spikes at ``t = 0``, like a sensor switched on; snnTorch's
    ``spikegen.delta`` default, ``padding=False``), or ``x[0]`` itself with
    ``start="repeat"`` (no spike at ``t = 0``; snnTorch's ``padding=True``). The
    comparisons are inclusive, as in snnTorch; unlike snnTorch (``off_spike=False``)
    decreases give ``-1`` spikes by default.

    Args:
        x: ``[T, B, *features]``, a time-major sequence of any real values, in the
            same units as ``threshold``.
        threshold: the change that triggers a spike (finite, > 0).
        off_spikes: emit ``-1`` for decreases; if False, decreases give 0.
        start: a :class:`DeltaStart` or its name, ``"zero"`` or ``"repeat"``.

    Returns:
        ``[T, B, *features]`` of ``x``'s dtype, values in {-1, 0, 1} ({0, 1}
        without ``off_spikes``). No gradient.

    Raises:
        TypeError: ``x`` is not a floating-point tensor, or ``threshold`` is not a
            number.
        ValueError: ``x`` is not at least ``[T, B]``, has ``T = 0`` or holds NaN or
            Inf, ``threshold`` is not finite and positive, or ``start`` is unknown.
    """
    _check_input(x, "delta")
    if x.dim() < 2 or x.shape[0] == 0:
        raise ValueError(
            f"delta: x must be a sequence of shape [T, B, *features] with T >= 1, "
            f"got {tuple(x.shape)}; for a static input, encode it over time first"
        )
    threshold = _check_real(threshold, "threshold", "delta", positive=True)
    mode = DeltaStart.parse(start)
    x = x.detach()
    bad = ~torch.isfinite(x)
    if bool(bad.any()):  # a NaN change compares false: it would vanish without a spike
        first = int(bad.flatten(1).any(1).nonzero()[0, 0])
        raise ValueError(
            f"delta: x holds {int(bad.sum())} NaN or Inf values (first at time step {first}); "
            f"a change to or from them is undefined"
        )
    first = torch.zeros_like(x[:1]) if mode is DeltaStart.ZERO else x[:1]
    change = torch.diff(x, dim=0, prepend=first)  # [T, B, *features]
    out = (change >= threshold).to(x.dtype)
    if off_spikes:
        out = out - (change <= -threshold).to(x.dtype)
    return out


def multiplicative(
    x: torch.Tensor, T: int, *, generator: Optional[torch.Generator] = None
) -> torch.Tensor:
    """Random multiplicative input (seed 001's ``InputDataToSpikingPerceptronLayer``):
    the input scaled by fresh uniform noise at every step.

    ``out[t] = u[t] * x`` with ``u[t] ~ Uniform[0, 1)`` drawn independently for
    every step and element, so ``E[out[t]] = x / 2`` and ``out[t]`` has the sign of
    ``x``. Seed 001 feeds MNIST normalised to ``x - 0.5`` (values in
    [-0.5, 0.5]), flattened to ``[B, 784]``; here the feature shape is kept.

    The noise is drawn as one ``torch.rand((T, *x.shape), dtype=x.dtype)``, which
    for float32 ``x`` on the CPU gives the same numbers as seed 001's ``T`` calls of
    ``torch.rand(x.shape)`` on the same generator.

    Args:
        x: ``[B, *features]``, any real values (the input current).
        T: number of time steps (>= 1).
        generator: the random generator to draw from; None uses torch's global
            generator. It must be on ``x``'s device.

    Returns:
        ``[T, B, *features]`` of ``x``'s dtype. Differentiable in ``x``
        (``d out[t] / dx = u[t]``), like the seed's layer.
    """
    _check_input(x, "multiplicative")
    _check_steps(T)
    u = torch.rand((T, *x.shape), generator=generator, dtype=x.dtype, device=x.device)
    return u * x  # [T, B, *features]
