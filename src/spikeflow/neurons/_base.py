"""What every neuron model shares: reset modes, parameter checks, the model record.

A neuron model is four things (see :class:`NeuronModel`): a frozen parameter
dataclass, a NamedTuple state, a pure step function and a state constructor. The
step function is the reference semantics; every backend is tested against it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Union

import torch

from .._choice import Choice

Number = Union[float, int]
Scalar = Union[float, torch.Tensor]
"""A numeric parameter: a Python number, or a tensor broadcastable to the feature shape."""


class Reset(Choice):
    """What happens to the membrane after a spike.

    - ``SUBTRACT``: ``v <- v - threshold`` (keeps the excess; best for rate coding).
    - ``ZERO``: ``v <- 0`` (hard reset).
    - ``NONE``: no reset (the membrane keeps integrating).
    """

    SUBTRACT = "subtract"
    ZERO = "zero"
    NONE = "none"

    @classmethod
    def _what(cls) -> str:
        return "reset"


def decay_from_tau(tau: Scalar, dt: float = 1.0) -> Scalar:
    """Exact per-step decay of a first-order filter: ``exp(-dt / tau)``.

    ``tau`` and ``dt`` are in the same time unit (for example ms).
    """
    check_positive("tau", tau)
    check_positive("dt", dt)
    if isinstance(tau, torch.Tensor):
        return torch.exp(-dt / tau)
    return math.exp(-dt / float(tau))


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        if value.numel() == 1:
            return f"{value.item():g}"
        return f"a tensor with min {value.min().item():g} and max {value.max().item():g}"
    return repr(value)


def _as_checked(name: str, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float, torch.Tensor)):
        raise TypeError(f"{name} must be a number or a tensor, got {type(value).__name__}")
    if isinstance(value, torch.Tensor):
        if not value.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
        return value
    return float(value)


def _all(value: Any, predicate: Callable[[Any], Any]) -> bool:
    if torch.compiler.is_compiling():
        # torch.compile traces a forward pass: the values were checked when the module
        # was built, and reading a flag out of a tensor would break the graph
        return True
    if isinstance(value, torch.Tensor):
        if value.requires_grad or value.numel() == 0 or value.device.type != "cpu":
            # Learnable values are kept in range by their parametrization and modules
            # check their values once at construction; checking an accelerator tensor
            # here would force a device sync on every forward pass.
            return True
        return bool(predicate(value).all())
    return bool(predicate(value))


def check_finite(name: str, value: Any) -> None:
    value = _as_checked(name, value)
    if not _all(value, lambda v: torch.isfinite(v) if isinstance(v, torch.Tensor) else math.isfinite(v)):
        raise ValueError(f"{name} must be finite, got {_describe(value)}")


def check_positive(name: str, value: Any) -> None:
    check_finite(name, value)
    if not _all(value, lambda v: v > 0):
        raise ValueError(f"{name} must be > 0, got {_describe(value)}")


def check_nonnegative(name: str, value: Any) -> None:
    check_finite(name, value)
    if not _all(value, lambda v: v >= 0):
        raise ValueError(f"{name} must be >= 0, got {_describe(value)}")


def check_decay(name: str, value: Any) -> None:
    """A per-step decay factor must lie in [0, 1]."""
    check_finite(name, value)
    if not _all(value, lambda v: (v >= 0) & (v <= 1) if isinstance(v, torch.Tensor) else 0 <= v <= 1):
        raise ValueError(f"{name} must be in [0, 1], got {_describe(value)}")


def materialize(params: Any, dtype: torch.dtype, device: torch.device) -> Any:
    """Return ``params`` with every numeric field a tensor of ``dtype`` on ``device``.

    Backends call this so that the reference loop and the fused kernels compute with
    exactly the same parameter values (a Python float rounded once to ``dtype``).
    """
    changes = {}
    for name in type(params).NUMERIC:
        value = getattr(params, name)
        if isinstance(value, torch.Tensor):
            if value.dtype != dtype or value.device != device:
                changes[name] = value.to(dtype=dtype, device=device)
        else:
            changes[name] = torch.tensor(value, dtype=dtype, device=device)
    return dataclasses.replace(params, **changes) if changes else params


@dataclass(frozen=True)
class NeuronModel:
    """The record that ties a neuron's parts together (one per neuron family).

    Attributes:
        name: registry key, also used in kernel and error messages.
        params_type: the frozen parameter dataclass.
        state_type: the NamedTuple of state tensors.
        step: ``step(params, state, x_t) -> (output_t, next_state)``, the reference.
        init_state: ``init_state(params, shape, dtype, device) -> state`` at rest.
        materialize: ``materialize(params, dtype, device)``, the parameters with every
            numeric value a tensor of ``dtype``: what the backends compute with.
        takes_recurrent: the step accepts ``recurrent=`` (a recurrent drive it routes
            itself); otherwise a recurrent layer adds the drive to the input.
    """

    name: str
    params_type: type
    state_type: type
    step: Callable[..., tuple[torch.Tensor, NamedTuple]]
    init_state: Callable[[Any, torch.Size, torch.dtype, torch.device], NamedTuple]
    materialize: Callable[[Any, torch.dtype, torch.device], Any] = materialize
    takes_recurrent: bool = False


_MODELS: dict[type, NeuronModel] = {}


def register_model(model: NeuronModel) -> NeuronModel:
    """Register a neuron model under its parameter type (done once, at import of its file)."""
    if model.params_type in _MODELS:
        raise ValueError(f"a neuron model for {model.params_type.__name__} is already registered")
    _MODELS[model.params_type] = model
    return model


def model_of(params: Any) -> NeuronModel:
    """The neuron model that a parameter object belongs to."""
    try:
        return _MODELS[type(params)]
    except KeyError:
        known = ", ".join(sorted(t.__name__ for t in _MODELS))
        raise TypeError(
            f"{type(params).__name__} is not a neuron parameter type; known: {known}"
        ) from None


def zeros_state(state_type: type, shape: torch.Size, dtype: torch.dtype, device: torch.device):
    """A state of ``state_type`` with every field zero, of the given shape."""
    fields = state_type._fields
    return state_type(*(torch.zeros(shape, dtype=dtype, device=device) for _ in fields))
