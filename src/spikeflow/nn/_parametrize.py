"""Safe storage of neuron parameters on a module: learnable or fixed, always in range.

A learnable parameter is stored unconstrained and mapped into its valid range on
every read:

- a *decay* (``beta``, ``alpha``) in (0, 1) is stored as its logit and read through
  ``sigmoid``: ``beta = sigmoid(beta_logit)``;
- a *positive* value (``threshold``) is stored as its log and read through ``exp``:
  ``threshold = exp(clamp(threshold_log, -80, 80))``; the clamp keeps it a finite
  number > 0 in float32 too (``exp`` alone underflows to 0 below -103 and overflows
  to inf above 88, and an infinite threshold turns a subtract reset into NaN).

so no optimizer step can move it out of range. A fixed parameter is a buffer
(``beta_value``), so it follows ``.to()``, ``.double()`` and the ``state_dict``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["as_shape", "add_value", "read_value", "describe"]

_LOG_LIMIT = 80.0  # exp(+-80) is finite and nonzero in float32

_KINDS = {
    # kind: (stored-name suffix, to unconstrained, from unconstrained)
    "decay": ("logit", torch.logit, torch.sigmoid),
    "positive": ("log", torch.log, lambda raw: torch.exp(raw.clamp(-_LOG_LIMIT, _LOG_LIMIT))),
}


def as_shape(shape: Any) -> torch.Size:
    """Validate a parameter ``shape`` argument: ``()``, ``(N,)``, ``(C, 1, 1)``, or an int."""
    if isinstance(shape, int) and not isinstance(shape, bool):
        shape = (shape,)
    if isinstance(shape, (tuple, list, torch.Size)) and all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape
    ):
        return torch.Size(shape)
    raise TypeError(
        f"shape must be a tuple of positive ints, e.g. () for one shared value or (N,) "
        f"for one value per neuron, got {shape!r}"
    )


def _initial(name: str, value: Any, shape: torch.Size) -> torch.Tensor:
    if isinstance(value, bool) or not isinstance(value, (int, float, torch.Tensor)):
        raise TypeError(f"{name} must be a number or a tensor, got {type(value).__name__}")
    dtype = torch.get_default_dtype()
    if isinstance(value, torch.Tensor):
        if not value.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
        dtype = value.dtype
    t = torch.as_tensor(value, dtype=dtype).detach().clone()
    try:
        target = torch.broadcast_shapes(t.shape, shape)
    except RuntimeError:
        target = None
    if target is None or (len(shape) > 0 and target != shape):
        raise ValueError(
            f"{name} of shape {tuple(t.shape)} does not match the parameter shape {tuple(shape)}"
        )
    return t.expand(target).clone()


def add_value(
    module: torch.nn.Module, name: str, value: Any, *, kind: str, learnable: bool, shape: torch.Size
) -> None:
    """Store parameter ``name`` on ``module`` (a Parameter if ``learnable``, else a buffer).

    The value must already have passed the params dataclass's validation; this adds
    the checks that the parametrization needs (a learnable decay strictly inside (0, 1)).
    """
    suffix, forward, _ = _KINDS[kind]
    t = _initial(name, value, shape)
    if learnable:
        if kind == "decay" and bool(((t <= 0) | (t >= 1)).any()):
            raise ValueError(
                f"a learnable {name} must be strictly between 0 and 1 (it is stored as its "
                f"logit), got {describe(t)}; use learn_{name}=False for a fixed {name} of 0 or 1"
            )
        if kind == "positive" and bool((t <= 0).any()):  # pragma: no cover - params check first
            raise ValueError(f"a learnable {name} must be > 0, got {describe(t)}")
        module.register_parameter(f"{name}_{suffix}", torch.nn.Parameter(forward(t)))
    else:
        module.register_buffer(f"{name}_value", t)


def read_value(module: torch.nn.Module, name: str, kind: str) -> torch.Tensor:
    """The current value of parameter ``name`` (differentiable if it is learnable)."""
    suffix, _, inverse = _KINDS[kind]
    raw = module._parameters.get(f"{name}_{suffix}")
    if raw is not None:
        return inverse(raw)
    return module._buffers[f"{name}_value"]


def is_learnable(module: torch.nn.Module, name: str, kind: str) -> bool:
    return f"{name}_{_KINDS[kind][0]}" in module._parameters


def describe(value: Any) -> str:
    """A short text for ``extra_repr``: the number, or the shape and range of a tensor."""
    if isinstance(value, torch.Tensor):
        value = value.detach()
        if value.numel() == 1:
            return f"{value.item():.4g}"
        return f"tensor{tuple(value.shape)}[{value.min().item():.4g}..{value.max().item():.4g}]"
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else repr(value)
    return repr(value)
