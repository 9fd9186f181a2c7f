"""What the fused backends (``cpu``, ``triton``) share: how each neuron maps onto a
generic scan kernel, and the driver-facing plumbing around the kernel calls.

A fused kernel carries a neuron's state fields and numeric parameters as flat
per-element arrays, in the order given here (``scan.cpp``'s structs and
``_triton_kernels.py``'s step functions use the same order and the same codes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Optional, Sequence

import torch

from ..neurons._base import NeuronModel, Reset
from ..neurons.asn import ASNInput
from ._registry import Backend, Capabilities, register_backend

RESET_CODE = {Reset.SUBTRACT: 0, Reset.ZERO: 1, Reset.NONE: 2}


def _no_alpha_rec(params: Any) -> Optional[str]:
    if getattr(params, "alpha_rec", None) is not None:
        return "alpha_rec (a separate recurrent synaptic current) is not supported by the fused kernels"
    return None


@dataclass(frozen=True)
class FusedNeuron:
    """How a neuron model maps onto the fused kernels.

    Attributes:
        code: the neuron's code in the kernels.
        fields: the state fields the kernel carries, in the kernels' order.
        params: the numeric parameters, in the kernels' order.
        learnable: how many leading ``params`` have gradients.
        spiking: whether the step has a surrogate gradient.
        passthrough: state fields the kernel does not touch (kept unchanged).
        no_grad_fields: ``no_grad_fields(values)``: kernel fields that do not reach the
            output (their initial value gets no gradient).
        params_check: a parameter-dependent limitation, or None.
    """

    code: int
    fields: tuple[str, ...]
    params: tuple[str, ...]
    learnable: int
    spiking: bool
    passthrough: tuple[str, ...] = ()
    no_grad_fields: Callable[[Any], frozenset] = lambda values: frozenset()
    params_check: Optional[Callable[[Any], Optional[str]]] = None


NEURONS: dict[str, FusedNeuron] = {
    "lif": FusedNeuron(0, ("v",), ("beta", "threshold"), 2, True),
    "cuba_lif": FusedNeuron(
        1, ("v", "i"), ("alpha", "beta", "threshold"), 3, True, passthrough=("i_rec",),
        params_check=_no_alpha_rec,
    ),
    "asn": FusedNeuron(
        2,
        ("i", "s_dyn", "theta_dyn", "s_hat"),
        ("d_beta", "d_phi", "d_eta", "d_gamma", "m_f", "theta0", "h", "bias"),
        0,
        True,
        no_grad_fields=lambda v: frozenset({0}) if v.input is ASNInput.CURRENT else frozenset(),
    ),
    "graded_lif": FusedNeuron(3, ("v", "o"), ("beta", "threshold", "penalty"), 3, False),
    "li": FusedNeuron(4, ("v",), ("beta",), 1, False),
}


def contiguous_grad(g: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return None if g is None else g.contiguous()


def unpack(model: NeuronModel, values: Any, x: torch.Tensor, state: NamedTuple):
    """(neuron, x, states, params): the kernel's view of one call (contiguous input and
    state fields in the kernel's order, the numeric parameters in the kernel's order)."""
    neuron = NEURONS[model.name]
    states = [getattr(state, f).contiguous() for f in neuron.fields]
    return neuron, x.contiguous(), states, [getattr(values, name) for name in neuron.params]


def needs_grad(neuron: FusedNeuron, tensors: Sequence[Optional[torch.Tensor]]) -> bool:
    """Whether autograd must record the call (any differentiable input requires grad)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def assemble(model: NeuronModel, neuron: FusedNeuron, state: NamedTuple, x: torch.Tensor,
             out: torch.Tensor, fin: Sequence[torch.Tensor],
             traj: Optional[Sequence[torch.Tensor]], record: bool):
    """(output, final state, trajectory) in the model's state type; fields the kernel
    does not carry (``passthrough``) stay constant."""
    fields = dict(zip(neuron.fields, fin))
    traj_fields = dict(zip(neuron.fields, traj)) if record else {}
    for name in neuron.passthrough:
        value = getattr(state, name)
        fields[name] = value
        if record:
            traj_fields[name] = value.unsqueeze(0).expand(x.shape).contiguous()
    final = model.state_type(**fields)
    trajectory = model.state_type(**traj_fields) if record else None
    return out, final, trajectory


def register_fused(name: str, run: Callable[..., tuple], *, dtypes: frozenset, devices: frozenset,
                   recurrent: bool, available: Callable[[], Optional[str]], priority: int) -> None:
    """Register ``run`` as backend ``name`` for every neuron in :data:`NEURONS`."""
    for neuron_name, neuron in NEURONS.items():
        register_backend(
            Backend(
                name,
                neuron_name,
                run,
                Capabilities(dtypes=dtypes, devices=devices, recurrent=recurrent,
                             params_check=neuron.params_check, available=available),
                priority=priority,
            )
        )
