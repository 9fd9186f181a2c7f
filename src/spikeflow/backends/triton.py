"""The GPU backend ``"triton"``: one generic Triton scan kernel.

The same design as the fused CPU backend (:mod:`spikeflow.backends.cpu`): one
forward kernel and one backward-through-time kernel, generic over the neuron, whose
step and vector-Jacobian product are small ``@triton.jit`` functions selected by a
compile-time neuron code (``_triton_kernels.py``, transcribed from the structs in
``_kernels/scan.cpp`` in the same order of operations). Each program owns a block of
neurons (of the ``B * prod(features)`` elements) and walks the whole sequence with
the state in registers. Spikes are bitwise identical to the reference backend: the
kernels are launched with ``enable_fp_fusion=False`` (no FMA contraction) and
compute with the parameters ``materialize`` rounded.

Supported: ``lif`` (and IF), ``cuba_lif`` (without ``alpha_rec``), ``asn``,
``graded_lif``, ``li``; float32 and float64; CUDA tensors; no recurrent weights.
Gradients reach the input, every initial-state field and every numeric parameter
tensor that requires grad (ASN parameters are fixed configuration).

The backward recomputes every step from the state before it: with ``record`` the
trajectory (returned anyway) holds every state; otherwise the forward keeps a
checkpoint every K steps (K about sqrt(T), 4..64) and the backward recomputes each
segment of K steps from it into a ``[K, fields, M]`` scratch buffer (bit for bit)
before walking it in reverse.

:mod:`triton` is imported only when the backend runs (or :func:`available` finds a
CUDA device): without triton or without CUDA, :func:`available` returns the reason,
``backend="auto"`` passes over this backend and an explicit ``backend="triton"``
raises it. The kernels are made at first use, so with ``TRITON_INTERPRET=1`` set
before then they run in Triton's interpreter (on CPU tensors when :func:`run_triton`
is called directly: how the tests check them on machines without a GPU).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import math
import threading
from typing import Any, NamedTuple, Optional, Sequence

import torch

from ..neurons._base import NeuronModel
from ._fused import (
    NEURONS,
    FusedKernels,
    FusedNeuron,
    contiguous_grad,
    fields_of,
    register_fused,
)

__all__ = ["available", "run_triton"]

# ---------------------------------------------------------------------------
# Availability and the lazily made kernels

_lock = threading.Lock()
_import_error: Optional[str] = None
_imported = False
_kernels_module = None


def _triton_import_error() -> Optional[str]:
    """None when triton imports, else why not (imports it once)."""
    global _import_error, _imported
    if _imported:
        return _import_error
    with _lock:
        if not _imported:
            try:
                spec = importlib.util.find_spec("triton")
            except (ImportError, ValueError):
                spec = None
            if spec is None:
                _import_error = "triton is not installed (pip install triton)"
            else:
                try:
                    import triton  # noqa: F401
                except Exception as exc:  # noqa: BLE001 - any failure makes it unusable
                    _import_error = f"triton cannot be imported ({type(exc).__name__}: {exc})"
            _imported = True
    return _import_error


def available() -> Optional[str]:
    """None when the triton backend can run here, else why not.

    Needs the :mod:`triton` package and a CUDA device. Cheap when either is missing
    (triton is imported only when it is installed and CUDA is present).
    """
    try:
        spec = importlib.util.find_spec("triton")
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return "triton is not installed (pip install triton)"
    if not torch.cuda.is_available():
        return "no CUDA device (torch.cuda.is_available() is False)"
    return _triton_import_error()


def _kernels():
    """The kernel module (made at first use; see the module docstring)."""
    global _kernels_module
    if _kernels_module is None:
        error = _triton_import_error()
        if error is not None:
            raise RuntimeError(f"spikeflow triton backend unavailable: {error}")
        from . import _triton_kernels

        _kernels_module = _triton_kernels
    return _kernels_module


# ---------------------------------------------------------------------------
# Per-neuron description (codes and orders as in _triton_kernels.py / scan.cpp)


_DTYPES = frozenset({torch.float32, torch.float64})


class _Call(NamedTuple):
    """Everything static about one scan call."""

    neuron: FusedNeuron
    config: dict  # the kernels' settings constexprs
    detach: bool  # detach_reset
    surrogate: int  # SurrogateKind value (0 for the smooth neurons)
    consts: tuple[float, float]  # (gain, surrogate constant), rounded to the dtype in the kernel
    no_grad_fields: frozenset
    record: bool
    interval: int  # checkpoint interval K


def _call_from(neuron: str, cfg: Sequence[float], record: bool, interval: int, mask: int,
               dtype: torch.dtype) -> _Call:
    """The kernels' compile-time settings from the shared settings list
    (:func:`~spikeflow.backends._fused.config`); ``dtype`` is the tensors' (the kernels
    take it from them)."""
    spec = NEURONS[neuron]
    kind, alpha = int(cfg[0]), cfg[1]
    settings = dict(RESET=int(cfg[2]), CUR_FIRST=bool(cfg[5]), NORMALIZE=bool(cfg[6]),
                    ASN_SPIKES=bool(cfg[7]))
    # atan's derivative uses k = pi alpha / 2, rounded once (as scan.cpp does)
    constant = 0.5 * math.pi * alpha if kind == 2 else float(alpha)
    return _Call(spec, settings, bool(cfg[3]), kind if spec.spiking else 0, (float(cfg[4]), constant),
                 fields_of(mask, len(spec.fields)), record, interval)


def _checkpoint_interval(steps: int) -> int:
    """Steps between the forward's checkpoints: about sqrt(T) (the checkpoints and the
    backward's scratch then take about 2 sqrt(T) states per element), 4..64."""
    k = 1 << max(0, math.ceil(math.log2(max(1.0, math.sqrt(steps)))))
    return max(4, min(64, k))


def _launch(m: int) -> tuple[int, int]:
    """(BLOCK, num_warps): one element per thread, smaller blocks for small layers so
    that there are programs for every multiprocessor."""
    if m >= 1 << 17:
        block = 256
    elif m >= 1 << 15:
        block = 128
    elif m >= 1 << 13:
        block = 64
    else:
        block = 32
    return block, max(1, block // 32)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _device_guard(x: torch.Tensor):
    """Launch on the input's GPU (Triton launches on the current device)."""
    return torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext()


def _param_array(params: Sequence[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The parameters per element, ``[NP, M]`` (scalars and per-feature values expanded)."""
    shape = x.shape[1:]
    m = x[0].numel()
    if not params:
        return x.new_zeros((1, max(1, m)))
    return torch.stack([p.detach().to(x.dtype).expand(shape).reshape(m) for p in params])


def _consts(call: _Call, x: torch.Tensor) -> torch.Tensor:
    """(gain, surrogate constant) as a tensor of the compute dtype (rounded once, as
    torch rounds a Python scalar), kept per device: no host-to-device copy per call."""
    return _consts_tensor(call.consts, x.dtype, x.device)


@functools.lru_cache(maxsize=256)
def _consts_tensor(consts: tuple, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.tensor(consts, dtype=dtype, device=device)


def _pad4(tensors: Sequence[Optional[torch.Tensor]], dummy: torch.Tensor) -> list[torch.Tensor]:
    return [t if t is not None else dummy for t in list(tensors) + [None] * (4 - len(tensors))]


def _forward(call: _Call, x: torch.Tensor, states: Sequence[torch.Tensor],
             params: Sequence[torch.Tensor], checkpoints: bool):
    """Run the forward kernel: (output, trajectory or None, [checkpoints] or None, final).

    The trajectory (every state, ``[T, B, ...]`` per field) is made with ``record``;
    checkpoints (one ``[ceil(T / K), fields, M]`` tensor) when asked for without
    ``record``.
    """
    neuron = call.neuron
    T, M = x.shape[0], x[0].numel()
    ns = len(neuron.fields)
    out = torch.empty_like(x)
    post = [torch.empty_like(x) for _ in range(ns)] if call.record else None
    ckpt = None
    if checkpoints and post is None:
        ckpt = x.new_empty((-(-T // call.interval), ns, M))
    fin = [torch.empty_like(s) for s in states]
    kept = None if ckpt is None else [ckpt]
    if M == 0:
        return out, post, kept, fin
    block, warps = _launch(M)
    k = _kernels()
    with _device_guard(x):
        k.scan_forward[(_cdiv(M, block),)](
            x, *_pad4(states, x), _param_array(params, x), _consts(call, x), out,
            *_pad4(post or [], out), ckpt if ckpt is not None else out, *_pad4(fin, out),
            T, M, call.interval,
            NEURON=neuron.code, NS=ns, NP=len(neuron.params), **call.config,
            POST=post is not None, CKPT=ckpt is not None, BLOCK=block,
            num_warps=warps, enable_fp_fusion=False,
        )
    return out, post, kept, fin


def _mask(tensors: Sequence[Optional[torch.Tensor]]) -> int:
    return sum(1 << k for k, t in enumerate(tensors) if t is not None)


def _backward(call: _Call, x: torch.Tensor, states: Sequence[torch.Tensor],
              kept: Sequence[torch.Tensor], params: Sequence[torch.Tensor],
              g_out: Optional[torch.Tensor], g_fin: Sequence[Optional[torch.Tensor]],
              g_traj: Sequence[Optional[torch.Tensor]], needs: Sequence[bool]):
    """Run the backward kernel: (grad x, [grad initial state], [grad params]), None where
    not needed. ``kept`` is the trajectory (``record``) or ``[checkpoints]``; ``needs``
    says which of (x, *states, *params) want a gradient."""
    neuron = call.neuron
    ns = len(neuron.fields)
    ng = neuron.learnable
    post = kept if call.record else None
    ckpt = None if call.record else kept[0]
    g_fin = [contiguous_grad(g) for g in g_fin]
    g_traj = [contiguous_grad(g) for g in g_traj] if call.record else [None] * ns
    g_out = contiguous_grad(g_out)
    T, M = x.shape[0], x[0].numel()
    g_x = torch.empty_like(x) if needs[0] else None
    g_init = x.new_empty((ns, M))
    g_prm = x.new_empty((max(1, ng), M))
    if M > 0:
        block, warps = _launch(M)
        k = _kernels()
        K = call.interval
        nseg = -(-T // K)
        scratch = x.new_empty((K, ns, M)) if ckpt is not None else x
        with _device_guard(x):
            k.scan_backward[(_cdiv(M, block),)](
                x, *_pad4(states, x), *_pad4(post or [], x), ckpt if ckpt is not None else x,
                scratch, _param_array(params, x), _consts(call, x),
                g_out if g_out is not None else x, *_pad4(g_fin, x), *_pad4(g_traj, x),
                g_x if g_x is not None else x, g_init, g_prm,
                T, M, K, nseg,
                NEURON=neuron.code, NS=ns, NP=len(neuron.params), NG=ng, **call.config,
                DETACH=call.detach,
                SURR=call.surrogate, SAVED_ALL=call.record, HAS_GOUT=g_out is not None,
                GFIN=_mask(g_fin), GTRAJ=_mask(g_traj), HAS_GX=g_x is not None, BLOCK=block,
                num_warps=warps, enable_fp_fusion=False,
            )
    else:
        g_init.zero_()
        g_prm.zero_()
    shape = x.shape[1:]
    g_states = [
        g_init[k].view(shape) if needs[1 + k] and k not in call.no_grad_fields else None
        for k in range(ns)
    ]
    g_params = [
        g_prm[k].view(shape).sum_to_size(p.shape) if k < ng and needs[1 + ns + k] else None
        for k, p in enumerate(params)
    ]
    return g_x, g_states, g_params


def _kept_shapes(neuron: str, x: torch.Tensor, record: bool, interval: int) -> list:
    ns = len(NEURONS[neuron].fields)
    if record:
        return [tuple(x.shape)] * ns
    return [(-(-x.shape[0] // interval), ns, x[0].numel())]


# CPU tensors too: run_triton runs them in Triton's interpreter (TRITON_INTERPRET=1).
_KERNELS = FusedKernels(
    "triton", devices=frozenset({"cuda", "cpu"}), dtypes=_DTYPES, make_call=_call_from,
    forward=_forward, backward=_backward, kept_shapes=_kept_shapes,
    interval=lambda neuron, x: _checkpoint_interval(x.shape[0]),
)


# ---------------------------------------------------------------------------
# The backend


def run_triton(model: NeuronModel, values: Any, x: torch.Tensor, state: NamedTuple,
               recurrent: Any, record: bool):
    """Run ``model`` over ``x`` with the Triton kernels (see the module docstring)."""
    if recurrent is not None:  # pragma: no cover - the registry never routes these here
        raise ValueError("the triton backend does not run recurrent layers")
    return _KERNELS.run(model, values, x, state, record)


register_fused("triton", run_triton, dtypes=_DTYPES, devices=frozenset({"cuda"}), recurrent=False,
               available=available, priority=20)
