"""One time-loop driver for every neuron: :func:`scan` (``spikeflow.scan``).

``scan(params, x, state)`` runs the neuron that ``params`` belongs to over a
time-major input ``x`` of shape ``[T, B, *features]`` and returns a :class:`ScanResult`
``(output, state, trajectory)``. The work is done by a backend from the registry:

- ``"reference"``: a loop over the step function (every neuron, device, dtype).
- ``"cpu"``: fused C++/OpenMP kernels whose forward and backward each walk the
  whole sequence once (see :mod:`spikeflow.backends.cpu`); recurrent layers step by
  step with the recurrent product between kernel steps.
- ``"triton"``: the same design as Triton GPU kernels, for CUDA tensors (see
  :mod:`spikeflow.backends.triton`).

``backend="auto"`` (the default) picks the fastest backend that supports the call.

float16 and bfloat16 inputs are computed with a float32 state and returned in the
input's dtype; a state that becomes NaN or Inf is reported (see
:mod:`spikeflow.numerics`).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import torch

from .backends import resolve
from .neurons._base import model_of
from .numerics import check_state, state_dtype

__all__ = ["RecurrentState", "ScanResult", "init_state", "scan"]


class ScanResult(NamedTuple):
    """What :func:`scan` returns.

    Attributes:
        output: ``[T, B, *features]``, the neuron output at every step.
        state: the state after the last step (``RecurrentState`` for recurrent layers).
        trajectory: with ``record=True``, the state after every step, each field
            ``[T, B, *features]``; otherwise None.
    """

    output: torch.Tensor
    state: Any
    trajectory: Optional[NamedTuple]


class RecurrentState(NamedTuple):
    """State of a recurrent layer: the neuron state and the last output ``[B, N]``
    (which drives the recurrent weights at the next step)."""

    neuron: NamedTuple
    output: torch.Tensor


def _check_input(x: Any) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"input must be a torch.Tensor of shape [T, B, *features], got {type(x).__name__}")
    if x.dim() < 2:
        raise ValueError(
            f"input must be time-major with shape [T, B, *features] (at least 2 dims), "
            f"got shape {tuple(x.shape)}; for a single step use x.unsqueeze(0)"
        )
    if not x.is_floating_point():
        raise TypeError(f"input must be a floating-point tensor, got dtype {x.dtype}")
    if x.shape[0] == 0:
        raise ValueError(f"input has no time steps: shape {tuple(x.shape)}")


def _check_tensor_like(value: Any, x: torch.Tensor, what: str) -> None:
    """A state tensor must match one step of the input: shape, device and the state
    dtype of the input (:func:`~spikeflow.numerics.state_dtype`)."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{what} must be a tensor, got {type(value).__name__}")
    shape = x.shape[1:]
    if value.shape != shape:
        raise ValueError(
            f"{what} has shape {tuple(value.shape)} but the input's [B, *features] "
            f"is {tuple(shape)}; pass state=None to start from rest"
        )
    expected = state_dtype(x.dtype)
    if value.dtype != expected:
        kept = "" if expected == x.dtype else f", whose state is kept in {expected}"
        raise TypeError(f"{what} has dtype {value.dtype} but the input has {x.dtype}{kept}")
    if value.device != x.device:
        raise ValueError(f"{what} is on {value.device} but the input is on {x.device}")


def _check_state(state: Any, state_type: type, x: torch.Tensor, what: str = "state") -> None:
    if not isinstance(state, state_type):
        raise TypeError(f"{what} must be a {state_type.__name__}, got {type(state).__name__}")
    for name, value in zip(state_type._fields, state):
        _check_tensor_like(value, x, f"{what}.{name}")


def _check_params_shape(params: Any, x: torch.Tensor) -> None:
    for name in getattr(type(params), "NUMERIC", ()):
        value = getattr(params, name, None)
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            try:
                torch.broadcast_shapes(value.shape, x.shape[1:])
            except RuntimeError:
                raise ValueError(
                    f"parameter {name} of shape {tuple(value.shape)} does not broadcast to the "
                    f"input's [B, *features] = {tuple(x.shape[1:])}"
                ) from None
            if torch.broadcast_shapes(value.shape, x.shape[1:]) != x.shape[1:]:
                raise ValueError(
                    f"parameter {name} of shape {tuple(value.shape)} would grow the input's "
                    f"[B, *features] = {tuple(x.shape[1:])}"
                )


def init_state(params: Any, shape: torch.Size | tuple, *, dtype=torch.float32, device=None) -> NamedTuple:
    """The resting state of the neuron ``params`` belongs to, for ``[B, *features] = shape``
    and inputs of ``dtype`` (float16 and bfloat16 inputs keep a float32 state)."""
    model = model_of(params)
    return model.init_state(params, torch.Size(shape), state_dtype(dtype), torch.device(device or "cpu"))


def scan(
    params: Any,
    x: torch.Tensor,
    state: Optional[NamedTuple] = None,
    *,
    backend: str = "auto",
    recurrent_weight: Optional[torch.Tensor] = None,
    recurrent_bias: Optional[torch.Tensor] = None,
    record: bool = False,
) -> ScanResult:
    """Run a neuron over time.

    Args:
        params: a neuron parameter object (``LIFParams``, ``CubaLIFParams``, ...).
        x: input ``[T, B, *features]`` in membrane units.
        state: the state before the first step; None starts from rest. For a
            recurrent layer, a :class:`RecurrentState`.
        backend: ``"auto"``, ``"reference"``, ``"cpu"``, ... (see module docstring).
        recurrent_weight: ``[N, N]`` lateral weights (inputs ``[T, B, N]`` only).
        recurrent_bias: ``[N]`` bias of the recurrent drive, or None.
        record: also return the state after every step.

    Returns:
        :class:`ScanResult` ``(output, state, trajectory)``; the output in the input's
        dtype, the state and trajectory in :func:`~spikeflow.numerics.state_dtype`.

    Raises:
        TypeError, ValueError: the input, state or recurrent weights do not fit (the
            message names the argument, what was expected and what came).
        spikeflow.numerics.NonFiniteError: the state became NaN or Inf under the
            ``"raise"`` policy (see :mod:`spikeflow.numerics`).
    """
    model = model_of(params)
    _check_input(x)
    _check_params_shape(params, x)
    out_dtype = x.dtype
    compute = state_dtype(x.dtype)
    recurrent = None
    if recurrent_weight is not None:
        if x.dim() != 3:
            raise ValueError(f"recurrent layers need input [T, B, N], got shape {tuple(x.shape)}")
        n = x.shape[2]
        if recurrent_weight.shape != (n, n):
            raise ValueError(
                f"recurrent_weight must have shape [{n}, {n}] for {n} neurons, "
                f"got {tuple(recurrent_weight.shape)}"
            )
        if recurrent_bias is not None and recurrent_bias.shape != (n,):
            raise ValueError(f"recurrent_bias must have shape [{n}], got {tuple(recurrent_bias.shape)}")
        for name, value in (("recurrent_weight", recurrent_weight), ("recurrent_bias", recurrent_bias)):
            if value is not None and (not value.is_floating_point() or value.device != x.device):
                raise TypeError(
                    f"{name} must be a floating-point tensor on the input's device {x.device}, "
                    f"got dtype {value.dtype} on {value.device}"
                )
        recurrent_weight = recurrent_weight.to(compute)
        recurrent_bias = None if recurrent_bias is None else recurrent_bias.to(compute)
        if state is None:
            neuron_state = model.init_state(params, x.shape[1:], compute, x.device)
            previous = torch.zeros(x.shape[1:], dtype=compute, device=x.device)
        else:
            if not isinstance(state, RecurrentState):
                raise TypeError(
                    f"a recurrent layer's state must be a RecurrentState, got {type(state).__name__}"
                )
            neuron_state, previous = state
            _check_state(neuron_state, model.state_type, x, "state.neuron")
            _check_tensor_like(previous, x, "state.output")
        recurrent = (recurrent_weight, recurrent_bias, previous)
        state = neuron_state
    elif state is None:
        state = model.init_state(params, x.shape[1:], compute, x.device)
    else:
        _check_state(state, model.state_type, x)
    x_compute = x if x.dtype == compute else x.to(compute)
    chosen = resolve(model, backend, params, x_compute, recurrent is not None)
    values = model.materialize(params, compute, x.device)
    output, final, trajectory = chosen.run(model, values, x_compute, state, recurrent, record)
    check_state(type(params).__name__.removesuffix("Params"), x, state, values, final)
    if recurrent is not None:
        # A copy, not the view output[-1]: the next call's recurrent product then reads an
        # operand aligned as within one call (BLAS may round differently otherwise), so
        # a sequence fed in pieces gives the spikes of the whole.
        final = RecurrentState(final, output[-1].clone())
    return ScanResult(output if output.dtype == out_dtype else output.to(out_dtype), final, trajectory)
