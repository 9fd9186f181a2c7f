"""Recurrent layers on the fused CPU kernels: the recurrent product inside the time loop.

A recurrent layer's drive at step ``t`` is ``r[t] = s[t-1] W^T + b`` (``s[-1]`` is the
state's last output), added to the input: the neuron then sees ``u[t] = x[t] + r[t]``.
The product needs the previous step's output, so the time loop cannot be one kernel
call over the whole sequence; here it is one ``autograd`` node over the whole
sequence instead of the reference's ~10 per step:

forward, per step: ``r = F.linear(s, W, b)`` (the reference's own call, so the sums
round identically), ``u = x[t] + r``, then the neuron's step in the C++ kernel
(``T = 1``) writing the output and the state after the step in place. Spikes are
bit for bit the reference's.

backward, per step in reverse: the kernel's vector-Jacobian product of the step
(``T = 1``, from the saved state before it) gives ``g_u[t]`` and the gradient of the
state before the step; ``g_u[t] W`` joins the output gradient of step ``t - 1``.
After the loop one GEMM over all steps gives ``g_W = sum_t g_u[t]^T s[t-1]`` and one
reduction ``g_b``; ``g_x = g_u``.

Saved for the backward: the total input ``u`` and the state after every step (the
backward's per-step kernel call needs the state before it), the outputs, ``W``.
"""

from __future__ import annotations

import ctypes
from typing import Any, NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from . import cpu
from ._fused import assemble, config, contiguous_grad, needs_grad, no_grad_mask, unpack
from ..neurons._base import NeuronModel


class _Loop:
    """The per-step kernel calls of one recurrent scan (buffers and pointer arrays)."""

    def __init__(self, call: "cpu._Call", x: torch.Tensor, params: Sequence[torch.Tensor]):
        self.call = call
        self.lib = cpu._lib()
        self.T, self.M = x.shape[0], x[0].numel()
        self.arrays, self.strides = cpu._param_arrays(params, x.shape[1:])
        self.prm = cpu._ptrs(self.arrays)
        self.threads = torch.get_num_threads()

    def forward(self, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                previous: torch.Tensor, states: Sequence[torch.Tensor], keep_all: bool):
        """Run every step: (u, out, trajectory per field) or, without ``keep_all``,
        (None, out, final state per field)."""
        T, ns = self.T, len(self.call.neuron.fields)
        out = cpu._empty_large(x)
        u = torch.empty_like(x) if keep_all else None
        if keep_all:
            traj = [cpu._empty_large(x) for _ in range(ns)]
        else:  # two alternating state buffers
            traj = [[torch.empty_like(s) for s in states] for _ in range(2)]
        before = list(states)
        # The product reads the previous output from a buffer of its own: a slice out[t]
        # may sit at any 4-byte offset, and BLAS kernels may round differently for
        # differently aligned operands; the reference's operand is the initial output
        # at t = 0, then a fresh allocation.
        operand = torch.empty_like(previous)
        for t in range(T):
            if t > 0:
                operand.copy_(previous)
            drive = F.linear(previous if t == 0 else operand, weight, bias)
            u_t = torch.add(x[t], drive, out=u[t]) if keep_all else x[t] + drive
            after = [f[t] for f in traj] if keep_all else traj[t % 2]
            rc = self.lib.sf_forward(
                self.call.neuron.code, self.call.dtype, 1, self.M, u_t.data_ptr(),
                cpu._ptrs(before), self.prm, self.strides, self.call.cfg, out[t].data_ptr(),
                None, None, 1, cpu._ptrs(after), self.threads,
            )
            if rc != 0:  # pragma: no cover - codes are fixed by cpu.py
                raise RuntimeError(f"spikeflow cpu kernel failed (recurrent forward, code {rc})")
            previous, before = out[t], after
        return u, out, (traj if keep_all else before)


class _FusedRecurrentScan(torch.autograd.Function):
    """(x, weight, bias, previous, *state, *params) -> (output, *final, *trajectory if record)."""

    @staticmethod
    def forward(ctx, call, x, weight, bias, previous, *tensors):
        ns = len(call.neuron.fields)
        states, params = tensors[:ns], tensors[ns:]
        loop = _Loop(call, x, params)
        u, out, traj = loop.forward(x, weight, bias, previous, states, keep_all=True)
        ctx.call = call
        ctx.has_bias = bias is not None
        ctx.save_for_backward(u, out, weight, previous, *states, *traj, *params)
        ctx.set_materialize_grads(False)
        fin = [f[-1].clone() for f in traj]
        return (out, *fin, *(traj if call.record else ()))

    @staticmethod
    @once_differentiable
    def backward(ctx, g_out, *g_rest):
        call = ctx.call
        neuron = call.neuron
        ns = len(neuron.fields)
        saved = ctx.saved_tensors
        u, out, weight, previous = saved[:4]
        states = saved[4 : 4 + ns]
        traj = saved[4 + ns : 4 + 2 * ns]
        params = saved[4 + 2 * ns :]
        needs = ctx.needs_input_grad  # (call, x, weight, bias, previous, *states, *params)
        T, M = u.shape[0], u[0].numel()
        loop = _Loop(call, u, params)
        g_fin = [contiguous_grad(g) for g in g_rest[:ns]]
        g_traj = [contiguous_grad(g) for g in g_rest[ns:]] if call.record else [None] * ns
        g_u = cpu._empty_large(u)
        learn = [k < neuron.learnable and needs[5 + ns + k] for k in range(len(params))]
        g_prm_step = [torch.empty_like(u[0]) if want else None for want in learn]
        g_prm_total = [torch.zeros_like(u[0]) if want else None for want in learn]
        # The gradient of the state after step t (starts as the final state's), and
        # where the kernel writes the gradient of the state before it.
        g_state = [g if g is None else g.clone() for g in g_fin]
        g_before = [[torch.empty_like(s) for s in states] for _ in range(2)]
        g_carry = None  # g_u[t + 1] @ W: the gradient reaching out[t] through the recurrence
        for t in range(T - 1, -1, -1):
            if g_carry is None:
                g_total = None if g_out is None else g_out[t]
            else:
                g_total = g_carry if g_out is None else g_out[t] + g_carry
            if g_total is not None:
                g_total = g_total.contiguous()
            before = [s if t == 0 else f[t - 1] for s, f in zip(states, traj)]
            after = [f[t] for f in traj]
            for k in range(ns):  # a recorded state's gradient joins the carried one
                if g_traj[k] is not None:
                    g_state[k] = g_traj[k][t] if g_state[k] is None else g_state[k] + g_traj[k][t]
            writes = g_before[t % 2]
            rc = loop.lib.sf_backward(
                neuron.code, call.dtype, 1, M, u[t].data_ptr(), cpu._ptrs(before),
                cpu._ptrs(after), None, 1, loop.prm, loop.strides, call.cfg,
                None if g_total is None else g_total.data_ptr(),
                cpu._ptrs([None if g is None else g.contiguous() for g in g_state]),
                cpu._ptrs([None] * ns), g_u[t].data_ptr(),
                cpu._ptrs([w if k not in call.no_grad_fields else None for k, w in enumerate(writes)]),
                cpu._ptrs(g_prm_step[: neuron.learnable]), loop.threads,
            )
            if rc != 0:  # pragma: no cover
                raise RuntimeError(f"spikeflow cpu kernel failed (recurrent backward, code {rc})")
            for total, step in zip(g_prm_total, g_prm_step):
                if total is not None:
                    total += step
            g_state = [None if k in call.no_grad_fields else writes[k] for k in range(ns)]
            if t > 0 or needs[4]:
                g_carry = g_u[t] @ weight
        g_x = g_u if needs[1] else None
        previous_all = torch.cat([previous.unsqueeze(0), out[:-1]]) if T > 1 else previous.unsqueeze(0)
        flat_g = g_u.reshape(T * u.shape[1], -1)
        g_weight = flat_g.t() @ previous_all.reshape(T * u.shape[1], -1) if needs[2] else None
        g_bias = flat_g.sum(0) if ctx.has_bias and needs[3] else None
        g_previous = g_carry if needs[4] else None
        g_init = [
            None if not needs[5 + k] or g_state[k] is None else g_state[k].clone() for k in range(ns)
        ]
        g_params = [None if g is None else g.sum_to_size(p.shape) for g, p in zip(g_prm_total, params)]
        return (None, g_x, g_weight, g_bias, g_previous, *g_init, *g_params)


def run_recurrent(model: NeuronModel, values: Any, x: torch.Tensor, state: NamedTuple,
                  recurrent: tuple, record: bool):
    """``cpu.run_cpu`` for a layer with recurrent weights (see the module docstring)."""
    weight, bias, previous = recurrent
    neuron, x, states, params = unpack(model, values, x, state)
    ns = len(neuron.fields)
    call = cpu._call_from(model.name, config(values), record, 1, no_grad_mask(neuron, values), x.dtype)
    weight, previous = weight.contiguous(), previous.contiguous()
    if needs_grad([x, weight, bias, previous, *states, *params[: neuron.learnable]]):
        results = _FusedRecurrentScan.apply(call, x, weight, bias, previous, *states, *params)
        out, fin = results[0], results[1 : 1 + ns]
        traj = results[1 + ns :] if record else None
    else:
        with torch.no_grad():
            _, out, kept = _Loop(call, x, params).forward(x, weight, bias, previous, states,
                                                          keep_all=record)
        fin = [f[-1].clone() for f in kept] if record else kept
        traj = kept if record else None
    return assemble(model, neuron, state, x, out, fin, traj, record)
