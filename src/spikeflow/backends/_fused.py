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
from torch.autograd.function import once_differentiable

from ..neurons._base import NeuronModel, Reset
from ..neurons.asn import ASNInput
from ..neurons.cuba import CubaOrder
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


def needs_grad(tensors: Sequence[Optional[torch.Tensor]]) -> bool:
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


# ---------------------------------------------------------------------------
# Static settings as one list of numbers (what the kernels and the operators take)

CFG_SIZE = 8  # surrogate kind, alpha, reset, detach_reset, gain, current_first, normalize, ASN spikes


def config(values: Any) -> list[float]:
    """A call's static settings: ``[surrogate kind, surrogate alpha, reset code,
    detach_reset, gain, order is current_first, normalize, ASN input is spikes]``
    (the layout of ``enum Cfg`` in scan.cpp; zeros where a neuron has no such setting)."""
    cfg = [0.0] * CFG_SIZE
    surrogate = getattr(values, "surrogate", None)
    if surrogate is not None:
        cfg[0] = float(surrogate.kind.value)
        cfg[1] = float(surrogate.alpha)
    reset = getattr(values, "reset", None)
    if reset is not None:
        cfg[2] = float(RESET_CODE[reset])
    cfg[3] = float(bool(getattr(values, "detach_reset", False)))
    cfg[4] = float(getattr(values, "gain", 1.0))
    cfg[5] = float(getattr(values, "order", None) is CubaOrder.CURRENT_FIRST)
    cfg[6] = float(bool(getattr(values, "normalize", False)))
    cfg[7] = float(getattr(values, "input", None) is ASNInput.SPIKES)
    return cfg


def no_grad_mask(neuron: FusedNeuron, values: Any) -> int:
    """``neuron.no_grad_fields(values)`` as a bit mask (bit k: field k)."""
    return sum(1 << k for k in neuron.no_grad_fields(values))


def fields_of(mask: int, count: int) -> frozenset:
    return frozenset(k for k in range(count) if mask >> k & 1)


# ---------------------------------------------------------------------------
# One backend's kernels: the eager autograd function, the torch operators for
# torch.compile, and the run the registry calls
#
# Dynamo cannot trace into a ctypes call or a lazily made Triton launch, and an
# autograd.Function around one is a graph break. Under torch.compile a fused backend
# runs through two registered operators instead, ``spikeflow::<name>_scan`` and
# ``spikeflow::<name>_scan_backward`` (the forward's autograd formula calls the
# backward operator), which compiled graphs keep as opaque nodes with known output
# shapes. Eager calls go through :class:`_FusedScan` directly: operator dispatch costs
# more than a one-step scan.


class _FusedScan(torch.autograd.Function):
    """(kernels, call, x, *state, *params) -> (output, *final_state, *trajectory if record)."""

    @staticmethod
    def forward(ctx, kernels: "FusedKernels", call: Any, x: torch.Tensor, *tensors: torch.Tensor):
        ns = len(call.neuron.fields)
        states, params = tensors[:ns], tensors[ns:]
        out, post, ckpt, fin = kernels.forward(call, x, states, params, True)
        kept = post if call.record else ckpt  # with record the trajectory, else checkpoints
        ctx.kernels, ctx.call, ctx.kept = kernels, call, len(kept)
        ctx.save_for_backward(x, *states, *kept, *params)
        ctx.set_materialize_grads(False)
        return (out, *fin, *(post if call.record else ()))

    @staticmethod
    @once_differentiable
    def backward(ctx, g_out: Optional[torch.Tensor], *g_rest: Optional[torch.Tensor]):
        ns = len(ctx.call.neuron.fields)
        saved = ctx.saved_tensors
        x, states = saved[0], saved[1 : 1 + ns]
        kept, params = saved[1 + ns : 1 + ns + ctx.kept], saved[1 + ns + ctx.kept :]
        g_x, g_init, g_params = ctx.kernels.backward(
            ctx.call, x, states, kept, params, g_out, g_rest[:ns], g_rest[ns:],
            ctx.needs_input_grad[2:],
        )
        return (None, None, g_x, *g_init, *g_params)


class FusedKernels:
    """A fused backend's kernels behind one interface.

    Args:
        name: the backend's name (the operators are ``spikeflow::<name>_scan`` and
            ``spikeflow::<name>_scan_backward``).
        devices, dtypes: what the kernels read (the operators refuse anything else).
        make_call: ``make_call(neuron, cfg, record, interval, mask, dtype)``: the
            backend's static description of a call (``cfg`` from :func:`config`,
            ``mask`` from :func:`no_grad_mask`); it has ``.neuron`` and ``.record``.
        forward: ``forward(call, x, states, params, checkpoints)`` ->
            ``(output, trajectory or None, [checkpoints] or None, [final state])``.
        backward: ``backward(call, x, states, kept, params, g_out, g_fin, g_traj, needs)``
            -> ``(g_x, [g_state], [g_param])``, None where not needed; ``kept`` is the
            trajectory (``record``) or the checkpoints; ``needs`` covers
            ``(x, *states, *params)``.
        kept_shapes: ``kept_shapes(neuron, x, record, interval)``: the shapes of kept.
        interval: ``interval(neuron, x)``: the checkpoint interval K for a call.
    """

    def __init__(self, name: str, *, devices: frozenset, dtypes: frozenset,
                 make_call: Callable[..., Any], forward: Callable[..., tuple],
                 backward: Callable[..., tuple], kept_shapes: Callable[..., list],
                 interval: Callable[[FusedNeuron, torch.Tensor], int]):
        self.name, self.devices, self.dtypes = name, devices, dtypes
        self.make_call, self.forward, self.backward = make_call, forward, backward
        self.kept_shapes, self.interval = kept_shapes, interval
        self.op = _register_operators(self)

    def run(self, model: NeuronModel, values: Any, x: torch.Tensor, state: NamedTuple,
            record: bool):
        """Run ``model`` over ``x``: ``(output, final state, trajectory or None)``."""
        neuron, x, states, params = unpack(model, values, x, state)
        ns = len(neuron.fields)
        cfg, interval, mask = config(values), self.interval(neuron, x), no_grad_mask(neuron, values)
        if torch.compiler.is_compiling():
            results = self.op(x, states, params, model.name, cfg, record, interval, mask)
            out, fin = results[0], results[1 : 1 + ns]
            traj = results[1 + ns :] if record else None
        else:
            call = self.make_call(model.name, cfg, record, interval, mask, x.dtype)
            if needs_grad([x, *states, *params[: neuron.learnable]]):
                results = _FusedScan.apply(self, call, x, *states, *params)
                out, fin = results[0], results[1 : 1 + ns]
                traj = results[1 + ns :] if record else None
            else:
                out, traj, _, fin = self.forward(call, x, states, params, False)
        return assemble(model, neuron, state, x, out, fin, traj, record)

    def check_op_args(self, neuron: str, x: torch.Tensor, states: Sequence[torch.Tensor],
                      params: Sequence[torch.Tensor]) -> None:
        """The kernels read raw memory: refuse what they would misread."""
        op = f"spikeflow::{self.name}_scan"
        if neuron not in NEURONS:
            raise ValueError(f"{op}: unknown neuron {neuron!r} (known: {sorted(NEURONS)})")
        spec = NEURONS[neuron]
        if len(states) != len(spec.fields) or len(params) != len(spec.params):
            raise ValueError(
                f"{op}: {neuron} takes {len(spec.fields)} state fields {spec.fields} and "
                f"{len(spec.params)} parameters {spec.params}; got {len(states)} and {len(params)}"
            )
        names = "/".join(sorted(str(d).replace("torch.", "") for d in self.dtypes))
        if x.dtype not in self.dtypes or x.device.type not in self.devices or x.dim() < 2:
            raise ValueError(f"{op}: x must be a {names} tensor [T, B, ...] on "
                             f"{'/'.join(sorted(self.devices))}; got {x.dtype} on {x.device} "
                             f"with shape {tuple(x.shape)}")
        for t in states:
            if t.dtype != x.dtype or t.device != x.device or t.shape != x.shape[1:]:
                raise ValueError(f"{op}: every state tensor must be {x.dtype} on {x.device}, shaped "
                                 f"like x[0] {tuple(x.shape[1:])}; got {t.dtype} {tuple(t.shape)}")


def _register_operators(kernels: FusedKernels) -> Callable[..., list]:
    """Register ``spikeflow::<name>_scan`` and its backward for ``kernels``; returns the
    forward operator ``op(x, states, params, neuron, cfg, record, interval, mask)`` ->
    ``[output, *final state, *kept]``."""
    name = kernels.name

    def call_of(neuron, cfg, record, interval, mask, x):
        return kernels.make_call(neuron, cfg, record, interval, mask, x.dtype)

    @torch.library.custom_op(f"spikeflow::{name}_scan", mutates_args=())
    def scan_op(x: torch.Tensor, states: list[torch.Tensor], params: list[torch.Tensor],
                neuron: str, cfg: list[float], record: bool, interval: int,
                mask: int) -> list[torch.Tensor]:
        x, states = x.contiguous(), [s.contiguous() for s in states]
        kernels.check_op_args(neuron, x, states, params)
        call = call_of(neuron, cfg, record, interval, mask, x)
        out, post, ckpt, fin = kernels.forward(call, x, states, params, True)
        return [out, *fin, *(post if record else ckpt)]

    @scan_op.register_fake
    def _(x, states, params, neuron, cfg, record, interval, mask):
        return [torch.empty_like(x), *[torch.empty_like(s) for s in states],
                *[x.new_empty(shape) for shape in kernels.kept_shapes(neuron, x, record, interval)]]

    @torch.library.custom_op(f"spikeflow::{name}_scan_backward", mutates_args=())
    def backward_op(x: torch.Tensor, states: list[torch.Tensor], kept: list[torch.Tensor],
                    params: list[torch.Tensor], neuron: str, cfg: list[float], record: bool,
                    interval: int, mask: int, g_out: Optional[torch.Tensor],
                    g_fin: list[Optional[torch.Tensor]], g_traj: list[Optional[torch.Tensor]],
                    needs: list[bool]) -> list[torch.Tensor]:
        x, states = x.contiguous(), [s.contiguous() for s in states]
        kernels.check_op_args(neuron, x, states, params)
        expected = kernels.kept_shapes(neuron, x, record, interval)
        kept = [k.contiguous() for k in kept]
        if [tuple(k.shape) for k in kept] != [tuple(s) for s in expected] or any(
                k.dtype != x.dtype for k in kept):
            raise ValueError(f"spikeflow::{name}_scan_backward: kept tensors must be {x.dtype} "
                             f"{expected}; got {[tuple(k.shape) for k in kept]}")
        call = call_of(neuron, cfg, record, interval, mask, x)
        g_x, g_init, g_params = kernels.backward(call, x, states, kept, params, g_out, g_fin,
                                                 g_traj, needs)
        # Outputs must not alias each other: one fresh tensor per unneeded slot, and a
        # copy of a view (a backend may hand out the rows of one buffer).
        return [x.new_empty(0) if g is None else g.clone() if g._base is not None else g
                for g in (g_x, *g_init, *g_params)]

    @backward_op.register_fake
    def _(x, states, kept, params, neuron, cfg, record, interval, mask, g_out, g_fin, g_traj, needs):
        ns, learnable = len(states), NEURONS[neuron].learnable
        grads = [torch.empty_like(x) if needs[0] else x.new_empty(0)]
        grads += [torch.empty_like(s) if needs[1 + k] and not mask >> k & 1 else x.new_empty(0)
                  for k, s in enumerate(states)]
        grads += [torch.empty_like(p) if k < learnable and needs[1 + ns + k] else x.new_empty(0)
                  for k, p in enumerate(params)]
        return grads

    def setup_context(ctx, inputs, output):
        x, states, params, neuron, cfg, record, interval, mask = inputs
        ns = len(states)
        ctx.static = (neuron, cfg, record, interval, mask, ns)
        ctx.save_for_backward(x, *states, *output[1 + ns :], *params)
        ctx.kept = len(output) - 1 - ns
        ctx.needs = [x.requires_grad, *[s.requires_grad for s in states],
                     *[p.requires_grad for p in params]]

    def backward(ctx, grads):
        neuron, cfg, record, interval, mask, ns = ctx.static
        saved = ctx.saved_tensors
        x, states = saved[0], list(saved[1 : 1 + ns])
        kept, params = list(saved[1 + ns : 1 + ns + ctx.kept]), list(saved[1 + ns + ctx.kept :])
        g_traj = list(grads[1 + ns :]) if record else [None] * ns
        result = backward_op(x, states, kept, params, neuron, cfg, record, interval, mask,
                             grads[0], list(grads[1 : 1 + ns]), g_traj, ctx.needs)
        g = [r if need else None for need, r in zip(ctx.needs, result)]
        learnable = NEURONS[neuron].learnable
        g_init = [None if mask >> k & 1 else gk for k, gk in enumerate(g[1 : 1 + ns])]
        g_params = [gk if k < learnable else None for k, gk in enumerate(g[1 + ns :])]
        return g[0], g_init, g_params, None, None, None, None, None

    scan_op.register_autograd(backward, setup_context=setup_context)
    return scan_op
