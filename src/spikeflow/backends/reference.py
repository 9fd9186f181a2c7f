"""The reference backend: a plain PyTorch loop over a neuron's step function.

Always available, on every device and dtype, with recurrent weights. It is the
definition every other backend is tested against, so it stays as simple as the
step functions themselves.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import torch
import torch.nn.functional as F

from ..neurons._base import NeuronModel
from ._registry import Backend, Capabilities, register_backend


def stack_states(states: list[NamedTuple]) -> NamedTuple:
    """Stack a list of per-step states into one state of ``[T, B, ...]`` tensors."""
    state_type = type(states[0])
    return state_type(*(torch.stack(fields) for fields in zip(*states)))


def run_reference(
    model: NeuronModel,
    params: Any,
    x: torch.Tensor,
    state: NamedTuple,
    recurrent: Optional[tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor]],
    record: bool,
):
    """Loop ``model.step`` over ``x`` (``[T, B, ...]``).

    ``recurrent`` is ``(weight, bias, previous_output)`` for a recurrent layer:
    the drive ``r[t] = previous_output @ weight.T + bias`` uses the output of the
    step before.
    """
    outputs = []
    trajectory = []
    previous = recurrent[2] if recurrent is not None else None
    # unbind, not x[t]: indexing would make every step's backward allocate and add a
    # full [T, ...] gradient (quadratic in T); unbind's backward stacks once.
    for x_t in x.unbind(0):
        if recurrent is None:
            out, state = model.step(params, state, x_t)
        else:
            drive = F.linear(previous, recurrent[0], recurrent[1])
            if model.takes_recurrent:
                out, state = model.step(params, state, x_t, recurrent=drive)
            else:
                out, state = model.step(params, state, x_t + drive)
            previous = out
        outputs.append(out)
        if record:
            trajectory.append(state)
    return torch.stack(outputs), state, (stack_states(trajectory) if record else None)


REFERENCE = register_backend(
    Backend("reference", "*", run_reference, Capabilities(recurrent=True), priority=0)
)
