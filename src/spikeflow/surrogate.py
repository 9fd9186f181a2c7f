"""Surrogate gradients as values.

A spike is the Heaviside step of a membrane distance ``u = v - threshold``:
``spike(u) = 1 if u > 0 else 0`` (strictly greater, as in snnTorch, Norse and the
seed-003 network). Its true derivative is zero almost everywhere, so training uses
a *surrogate*: the forward pass stays the exact step and the backward pass uses the
derivative ``g(u)`` of a smooth primitive ``P(u)``.

**Scale convention (one for all surrogates).** Every surrogate passes gradient
exactly 1 at the threshold, ``g(0) = 1``, and ``alpha`` is a sharpness with units of
1 / (membrane units): a larger ``alpha`` gives a narrower bump. Formulas, with
``u`` in membrane units:

================  ===================================  ==========================
name              derivative g(u)                      primitive P(u)
================  ===================================  ==========================
superspike        1 / (1 + alpha |u|)^2                u / (1 + alpha |u|)
sigmoid           4 s (1 - s),  s = sigmoid(alpha u)   4 sigmoid(alpha u) / alpha
atan              1 / (1 + (pi alpha u / 2)^2)         2 atan(pi alpha u / 2) / (pi alpha)
triangle          max(0, 1 - alpha |u|)                 u - alpha u |u| / 2 (|u| < 1/alpha)
straight_through  1 if u >= 0 else 0                   max(u, 0)
================  ===================================  ==========================

``superspike(alpha)`` is Zenke & Ganguli (2018) and equals snnTorch's
``fast_sigmoid(slope=alpha)`` and Norse's SuperSpike; ``atan(alpha)`` equals
snnTorch's ``atan(alpha)``; snnTorch's ``sigmoid(slope=k)`` is ``k / 4`` times
spikeflow's ``sigmoid(alpha=k)``. ``straight_through`` is the ReLU derivative used
by the seed-004 network (gradient passes wherever the membrane is at or above
threshold).

Usage::

    sg = spikeflow.surrogate.superspike(10.0)
    spikes = sg(v - threshold)          # Heaviside forward, g(u) backward
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import torch

__all__ = [
    "Surrogate",
    "SurrogateKind",
    "atan",
    "by_name",
    "heaviside",
    "sigmoid",
    "straight_through",
    "superspike",
    "triangle",
]


class SurrogateKind(enum.Enum):
    """The shape of a surrogate derivative. The integer codes are shared with the fused kernels."""

    SUPERSPIKE = 0
    SIGMOID = 1
    ATAN = 2
    TRIANGLE = 3
    STRAIGHT_THROUGH = 4


def heaviside(u: torch.Tensor) -> torch.Tensor:
    """The exact spike function: 1 where ``u > 0``, else 0, in ``u``'s dtype."""
    return (u > 0).to(u.dtype)


def _derivative(kind: SurrogateKind, alpha: float, u: torch.Tensor) -> torch.Tensor:
    if kind is SurrogateKind.SUPERSPIKE:
        return 1.0 / (1.0 + alpha * u.abs()) ** 2
    if kind is SurrogateKind.SIGMOID:
        s = torch.sigmoid(alpha * u)
        return 4.0 * s * (1.0 - s)
    if kind is SurrogateKind.ATAN:
        return 1.0 / (1.0 + (0.5 * math.pi * alpha * u) ** 2)
    if kind is SurrogateKind.TRIANGLE:
        return torch.clamp(1.0 - alpha * u.abs(), min=0.0)
    if kind is SurrogateKind.STRAIGHT_THROUGH:
        return (u >= 0).to(u.dtype)
    raise AssertionError(kind)  # pragma: no cover - the enum is closed


def _primitive(kind: SurrogateKind, alpha: float, u: torch.Tensor) -> torch.Tensor:
    if kind is SurrogateKind.SUPERSPIKE:
        return u / (1.0 + alpha * u.abs())
    if kind is SurrogateKind.SIGMOID:
        return 4.0 * torch.sigmoid(alpha * u) / alpha
    if kind is SurrogateKind.ATAN:
        return 2.0 * torch.atan(0.5 * math.pi * alpha * u) / (math.pi * alpha)
    if kind is SurrogateKind.TRIANGLE:
        inside = u - 0.5 * alpha * u * u.abs()
        outside = torch.sign(u) / (2.0 * alpha)
        return torch.where(u.abs() < 1.0 / alpha, inside, outside)
    if kind is SurrogateKind.STRAIGHT_THROUGH:
        return torch.clamp(u, min=0.0)
    raise AssertionError(kind)  # pragma: no cover


class _SpikeFunction(torch.autograd.Function):
    """Heaviside forward, surrogate derivative backward."""

    @staticmethod
    def forward(u: torch.Tensor, kind: SurrogateKind, alpha: float) -> torch.Tensor:
        return heaviside(u)

    @staticmethod
    def setup_context(ctx, inputs, output):
        u, kind, alpha = inputs
        ctx.save_for_backward(u)
        ctx.kind = kind
        ctx.alpha = alpha

    @staticmethod
    def backward(ctx, grad_spike: torch.Tensor):
        (u,) = ctx.saved_tensors
        return grad_spike * _derivative(ctx.kind, ctx.alpha, u), None, None


@dataclass(frozen=True)
class Surrogate:
    """A surrogate gradient: a Heaviside forward with the derivative ``g(u)`` backward.

    Build one with the factories (:func:`superspike`, :func:`sigmoid`, :func:`atan`,
    :func:`triangle`, :func:`straight_through`) rather than directly.

    Args:
        kind: which shape (see the module docstring for the formulas).
        alpha: sharpness in 1 / (membrane units); ``g(0) = 1`` for every ``alpha``.
    """

    kind: SurrogateKind
    alpha: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.kind, SurrogateKind):
            raise TypeError(f"Surrogate kind must be a SurrogateKind, got {self.kind!r}")
        alpha = float(self.alpha)
        if not math.isfinite(alpha) or alpha <= 0:
            raise ValueError(f"surrogate alpha must be a finite number > 0, got {self.alpha!r}")
        object.__setattr__(self, "alpha", alpha)

    @property
    def name(self) -> str:
        return self.kind.name.lower()

    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        """Spike where ``u > 0``; gradient ``g(u)`` in the backward pass."""
        return _SpikeFunction.apply(u, self.kind, self.alpha)

    def derivative(self, u: torch.Tensor) -> torch.Tensor:
        """The surrogate derivative ``g(u)`` (what the backward pass multiplies by)."""
        return _derivative(self.kind, self.alpha, u)

    def primitive(self, u: torch.Tensor) -> torch.Tensor:
        """The smooth function ``P(u)`` whose derivative is ``g(u)``."""
        return _primitive(self.kind, self.alpha, u)

    def __repr__(self) -> str:
        return f"{self.name}(alpha={self.alpha:g})"


def superspike(alpha: float = 10.0) -> Surrogate:
    """SuperSpike / fast sigmoid, ``g(u) = 1 / (1 + alpha |u|)^2`` (seed 003 uses alpha=10)."""
    return Surrogate(SurrogateKind.SUPERSPIKE, alpha)


def sigmoid(alpha: float = 10.0) -> Surrogate:
    """Logistic, ``g(u) = 4 s (1 - s)`` with ``s = sigmoid(alpha u)``."""
    return Surrogate(SurrogateKind.SIGMOID, alpha)


def atan(alpha: float = 2.0) -> Surrogate:
    """Arc-tangent, ``g(u) = 1 / (1 + (pi alpha u / 2)^2)`` (snnTorch's default ATan)."""
    return Surrogate(SurrogateKind.ATAN, alpha)


def triangle(alpha: float = 1.0) -> Surrogate:
    """Triangle (piecewise linear), ``g(u) = max(0, 1 - alpha |u|)``."""
    return Surrogate(SurrogateKind.TRIANGLE, alpha)


def straight_through() -> Surrogate:
    """ReLU derivative, ``g(u) = 1 for u >= 0`` (seed 004's SpikeFunction)."""
    return Surrogate(SurrogateKind.STRAIGHT_THROUGH, 1.0)


_FACTORIES = {
    "superspike": superspike,
    "fast_sigmoid": superspike,
    "sigmoid": sigmoid,
    "atan": atan,
    "arctan": atan,
    "triangle": triangle,
    "straight_through": straight_through,
}


def by_name(name: str, alpha: float | None = None) -> Surrogate:
    """Look up a surrogate by name (for configs and the CLI): ``by_name("atan", 2.0)``."""
    key = name.strip().lower().replace("-", "_")
    if key not in _FACTORIES:
        raise ValueError(f"unknown surrogate {name!r}; known: {', '.join(sorted(_FACTORIES))}")
    factory = _FACTORIES[key]
    if key == "straight_through":
        if alpha is not None:
            raise ValueError("the straight_through surrogate has no alpha; pass alpha=None")
        return factory()
    return factory() if alpha is None else factory(alpha)
