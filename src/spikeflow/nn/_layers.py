"""Stateless layers on sequences: one generic wrapper instead of a subclass per layer.

:class:`TimeDistributed` folds the time axis into the batch (``[T, B, ...]`` ->
``[T*B, ...]``), applies an ordinary torch module once (one large GEMM or
convolution instead of T small ones), and unfolds the result. The factories
(:func:`Linear`, :func:`Conv2d`, ...) are ``TimeDistributed(torch.nn.X(...))``.
"""

from __future__ import annotations

import torch

__all__ = [
    "AdaptiveAvgPool2d",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv1d",
    "Conv2d",
    "Dropout",
    "Flatten",
    "Linear",
    "MaxPool2d",
    "TimeDistributed",
]


def check_sequence(x: torch.Tensor, what: str) -> None:
    """``x`` must be a time-major tensor ``[T, B, ...]``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} expects a torch.Tensor of shape [T, B, ...], got {type(x).__name__}")
    if x.dim() < 2:
        raise ValueError(
            f"{what} expects a time-major input [T, B, ...] (at least 2 dims), got shape "
            f"{tuple(x.shape)}; add the time axis with x.unsqueeze(0)"
        )


class TimeDistributed(torch.nn.Module):
    """Apply a stateless torch module to every time step of ``[T, B, ...]`` at once.

    ``y = module(x.reshape(T * B, ...)).reshape(T, B, ...)``. The module sees an
    ordinary batch, so per-sample layers (Linear, Conv, pooling, Flatten with
    ``start_dim=1``) give the same result as a loop over time. BatchNorm computes its
    statistics over ``T * B`` samples; Dropout draws a new mask at every step.

    Args:
        module: a stateless ``torch.nn.Module`` (not a spikeflow neuron).
    """

    stateful = False

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"TimeDistributed wraps a torch.nn.Module, got {type(module).__name__}")
        if getattr(module, "stateful", False) or any(getattr(m, "stateful", False) for m in module.modules()):
            raise TypeError(
                f"TimeDistributed only wraps stateless layers; {type(module).__name__} has state "
                f"(use it directly in spikeflow.nn.Sequential)"
            )
        if isinstance(module, torch.nn.RNNBase):
            raise TypeError(
                f"{type(module).__name__} walks through time itself and cannot be applied per step"
            )
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``[T, B, *in_features]`` -> ``[T, B, *out_features]``."""
        check_sequence(x, f"TimeDistributed({type(self.module).__name__})")
        t, b = x.shape[:2]
        y = self.module(x.flatten(0, 1))  # [T*B, *out_features]
        return y.unflatten(0, (t, b))


class Flatten(torch.nn.Module):
    """Flatten the feature dims, keeping ``[T, B]``: ``[T, B, C, H, W]`` -> ``[T, B, C*H*W]``."""

    stateful = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_sequence(x, "Flatten")
        return x.reshape(x.shape[0], x.shape[1], -1)


def _factory(layer: type) -> callable:
    def make(*args, **kwargs) -> TimeDistributed:
        return TimeDistributed(layer(*args, **kwargs))

    make.__name__ = make.__qualname__ = layer.__name__
    make.__doc__ = (
        f"``TimeDistributed(torch.nn.{layer.__name__}(*args, **kwargs))``: "
        f"torch.nn.{layer.__name__} on every time step of ``[T, B, ...]``."
    )
    return make


Linear = _factory(torch.nn.Linear)
Conv1d = _factory(torch.nn.Conv1d)
Conv2d = _factory(torch.nn.Conv2d)
MaxPool2d = _factory(torch.nn.MaxPool2d)
AvgPool2d = _factory(torch.nn.AvgPool2d)
AdaptiveAvgPool2d = _factory(torch.nn.AdaptiveAvgPool2d)
BatchNorm1d = _factory(torch.nn.BatchNorm1d)
BatchNorm2d = _factory(torch.nn.BatchNorm2d)
Dropout = _factory(torch.nn.Dropout)
