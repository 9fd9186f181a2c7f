"""Benchmark one LIF layer: every spikeflow backend that runs on the device against
snnTorch, Norse and SpikingJelly (every implementation it offers there), in one process.

The layer: input current ``x`` of shape ``[T, B, N]`` float32 (time-major, membrane
units), beta = 0.9, threshold = 1.0, reset by subtraction, SuperSpike / fast-sigmoid
surrogate with slope 10 where the library lets us choose, ``x = rand * 0.5``.

Modes:
  forward            spikes = layer(x) under torch.no_grad()
  forward_backward   x.requires_grad; spikes.backward(g) with a fixed random
                     upstream gradient g

Two entry points share the adapters, the check and the timing:

- :func:`run` (``spikeflow bench --only lif_layer``): the suite's configuration, sizes
  ``100x32x{1024,4096,16384}`` and ``300x32x4096``, with bandwidth floors
  (:func:`spikeflow.bench.ceilings.lif_bytes`) and the issue's targets.
- :func:`main` (``benchmarks/lif_layer.py``, ``python -m spikeflow.bench.lif_layer``):
  the standalone benchmark, schema ``spikeflow-bench/lif_layer/1`` (options and JSON
  in benchmarks/README.md), now also with ``--device``.

A library that cannot be imported, or a backend that cannot run on the device, is
recorded as unavailable with the reason; nothing here crashes on it.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import inspect
import json
import os
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import torch

from .options import BenchOptions
from .timing import (
    Timed,
    json_safe,
    library_versions,
    load_average,
    machine_info,
    round_robin,
    summarize,
    synchronizer,
    write_report,
)

SCHEMA = "spikeflow-bench/lif_layer/1"
BETA = 0.9
THRESHOLD = 1.0
SLOPE = 10.0  # SuperSpike / fast-sigmoid slope, where the library lets us choose it
INPUT_SCALE = 0.5  # x = torch.rand(T, B, N) * INPUT_SCALE
DEFAULT_SIZES = ["100x32x1024", "100x32x4096", "100x32x16384"]
SUITE_SIZES = ["100x32x1024", "100x32x4096", "100x32x16384", "300x32x4096"]
QUICK_SIZE = "10x4x64"
SUITE_QUICK_SIZES = ["10x4x64", "20x4x256"]
MODES = ("forward", "forward_backward")
CHECK_SIZE = (100, 4, 512)  # the small input of the correctness check
RATE_TOL_ABS = 0.02  # |firing rate - spikeflow reference firing rate|, absolute
AGREEMENT_MIN = 0.99  # fraction of spikes equal to the impl's own documented semantics

SPIKEFLOW_REF = "spikeflow-reference"
SPIKEFLOW_CPU = "spikeflow-cpu"
SJ_CUDA_IMPLEMENTATIONS = ("cuda", "triton", "torch")  # SpikingJelly 2.x's CUDA implementations


def _say(progress: bool, text: str) -> None:
    if progress:
        print(f"[bench] {text}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- adapters


@dataclass
class Impl:
    """One implementation of the layer.

    ``run(x)`` maps a prepared input ``[T, B, N]`` to spikes ``[T, B, N]``; ``prepare``
    (untimed) converts the membrane-unit input to what the library expects (None:
    use it as is). ``emulate`` reproduces the library's documented semantics with a
    plain loop on membrane-unit input (None: identical to spikeflow's reference).
    ``finalize`` (if any) undoes global settings the adapter changed, after timing.
    """

    name: str
    library: str
    api: str
    run: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
    prepare: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
    emulate: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
    surrogate: str = ""
    grad_cosine_min: Optional[float] = None  # set when the gradients must match the reference too
    notes: List[str] = field(default_factory=list)
    unavailable: Optional[str] = None
    mode_unavailable: Dict[str, str] = field(default_factory=dict)
    check: Optional[dict] = None
    finalize: Optional[Callable[[], None]] = None

    def available_for(self, mode: str) -> bool:
        return self.unavailable is None and mode not in self.mode_unavailable


def _unavailable(name: str, library: str, api: str, reason: str, notes: Optional[List[str]] = None) -> Impl:
    return Impl(name=name, library=library, api=api, unavailable=reason, notes=list(notes or []))


def _import_error(exc: BaseException) -> str:
    return f"not importable in this environment ({type(exc).__name__}: {exc})"


def _spikeflow_params():
    from spikeflow.neurons import LIFParams
    from spikeflow.surrogate import superspike

    return LIFParams(beta=BETA, threshold=THRESHOLD, reset="subtract", detach_reset=False, surrogate=superspike(SLOPE))


def spikeflow_backend_names() -> List[str]:
    """Every backend registered for the LIF neuron (reference first), from the registry."""
    from spikeflow.backends import backends_for
    from spikeflow.neurons._base import model_of

    names = [b.name for b in backends_for(model_of(_spikeflow_params()))]
    return sorted(set(names), key=lambda n: (n != "reference", names.index(n)))


def adapter_spikeflow(backend: str, device: str = "cpu") -> Impl:
    """spikeflow.scan(LIFParams(...), x, backend=backend).output"""
    name = f"spikeflow-{backend}"
    api = f"spikeflow.scan(spikeflow.neurons.LIFParams(...), x, backend={backend!r}).output"
    try:
        import spikeflow

        params = _spikeflow_params()
    except Exception as exc:  # noqa: BLE001
        return _unavailable(name, "spikeflow", api, _import_error(exc))
    try:
        # Availability probe (also triggers any one-time build/JIT outside the timing).
        spikeflow.scan(params, torch.zeros(2, 1, 4, device=device), backend=backend)
    except Exception as exc:  # noqa: BLE001
        return _unavailable(name, "spikeflow", api, f"{type(exc).__name__}: {' '.join(str(exc).split())}")

    def run(x: torch.Tensor) -> torch.Tensor:
        return spikeflow.scan(params, x, backend=backend).output

    return Impl(
        name=name,
        library="spikeflow",
        api=api,
        run=run,
        surrogate=f"superspike(alpha={SLOPE:g}): g(u) = 1/(1+{SLOPE:g}|u|)^2",
        grad_cosine_min=0.999,
        notes=[
            "h[t] = beta*v[t-1] + x[t]; s[t] = H(h[t] - thr) (strict >); v[t] = h[t] - s[t]*thr; "
            "reset not detached (gradient flows through the reset)."
        ],
    )


def adapters_spikeflow(device: str = "cpu") -> List[Impl]:
    """One adapter per backend in spikeflow's registry (those that cannot run on the
    device come out unavailable, with the registry's reason)."""
    try:
        names = spikeflow_backend_names()
    except Exception as exc:  # noqa: BLE001
        return [_unavailable("spikeflow-reference", "spikeflow", "spikeflow.scan", _import_error(exc))]
    return [adapter_spikeflow(n, device) for n in names]


def _emulate_snntorch(x: torch.Tensor) -> torch.Tensor:
    """snnTorch Leaky(reset_mechanism='subtract', reset_delay=True) in plain torch."""
    mem = torch.zeros_like(x[0])
    out = []
    for t in range(x.shape[0]):
        reset = (mem - THRESHOLD > 0).to(x.dtype)
        mem = BETA * mem + x[t] - reset * THRESHOLD
        out.append((mem - THRESHOLD > 0).to(x.dtype))
    return torch.stack(out)


def adapter_snntorch(device: str = "cpu") -> Impl:
    name, api = "snntorch-leaky", "snntorch.Leaky; per-step Python loop with explicit mem"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import snntorch as snn
            from snntorch import surrogate as snn_surrogate
    except Exception as exc:  # noqa: BLE001
        return _unavailable(name, "snntorch", api, _import_error(exc))

    lif = snn.Leaky(
        beta=BETA,
        threshold=THRESHOLD,
        spike_grad=snn_surrogate.fast_sigmoid(slope=SLOPE),
        reset_mechanism="subtract",
    ).to(device)

    def run(x: torch.Tensor) -> torch.Tensor:
        mem = torch.zeros(x.shape[1:], dtype=x.dtype, device=x.device)
        spikes = []
        for t in range(x.shape[0]):
            spk, mem = lif(x[t], mem)
            spikes.append(spk)
        return torch.stack(spikes)

    return Impl(
        name=name,
        library="snntorch",
        api=api,
        run=run,
        emulate=_emulate_snntorch,
        surrogate=f"fast_sigmoid(slope={SLOPE:g}): g(u) = 1/(1+{SLOPE:g}|u|)^2 (same as spikeflow superspike)",
        notes=[
            "Leaky defaults to reset_delay=True (used as is): the reset is computed from the PREVIOUS "
            "step's membrane and subtracted AFTER the decay, mem[t] = beta*mem[t-1] + x[t] - H(mem[t-1]-thr)*thr, "
            "whereas spikeflow subtracts before the decay, h[t] = beta*(h[t-1] - s[t-1]*thr) + x[t]. "
            "snnTorch therefore removes thr instead of beta*thr per spike and fires slightly less "
            "(about 1-2 percentage points at this input); the spike trains are not identical.",
            "snnTorch's reset signal is detached (no gradient through the reset); spikeflow's is not (detach_reset=False).",
            "Spike where mem - thr > 0 (strict), as spikeflow.",
        ],
    )



NORSE_DT = 1e-3  # s


def norse_lif_parameters(parameters_type, reset_subtract, device):
    """Norse's ``LIFBoxParameters`` for this benchmark's neuron, and the input gain it needs.

    ``dt * tau_mem_inv = 1 - beta`` (tau_mem = 10 ms at dt = 1 ms), and Norse integrates
    ``dt * tau_mem_inv * i``, so the input current is ``i = gain * x`` with
    ``gain = 1 / (dt * tau_mem_inv)``. (The caller passes Norse's classes: it imports them.)
    """
    tau_mem_inv = (1.0 - BETA) / NORSE_DT
    params = parameters_type(
        tau_mem_inv=torch.as_tensor(tau_mem_inv, device=device),
        v_leak=torch.as_tensor(0.0, device=device),
        v_th=torch.as_tensor(THRESHOLD, device=device),
        v_reset=torch.as_tensor(0.0, device=device),
        method="super",
        alpha=torch.as_tensor(SLOPE, device=device),
        reset_method=reset_subtract,
    )
    return params, 1.0 / (NORSE_DT * tau_mem_inv)


def adapter_norse(device: str = "cpu") -> Impl:
    name = "norse-lifbox"
    api = "norse.torch.LIFBoxCell stepped in a Python loop (the module form of lif_box_feed_forward_step)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from norse.torch import LIFBoxCell, LIFBoxFeedForwardState, LIFBoxParameters
            from norse.torch.functional.reset import reset_subtract
    except Exception as exc:  # noqa: BLE001
        return _unavailable(name, "norse", api, _import_error(exc))

    p, gain = norse_lif_parameters(LIFBoxParameters, reset_subtract, device)
    dt, tau_mem_inv = NORSE_DT, float(p.tau_mem_inv)
    cell = LIFBoxCell(p, dt=dt)

    def prepare(x: torch.Tensor) -> torch.Tensor:
        return x * gain

    def run(i: torch.Tensor) -> torch.Tensor:
        state = LIFBoxFeedForwardState(v=torch.zeros(i.shape[1:], dtype=i.dtype, device=i.device))
        spikes = []
        for t in range(i.shape[0]):
            z, state = cell(i[t], state)
            spikes.append(z)
        return torch.stack(spikes)

    return Impl(
        name=name,
        library="norse",
        api=api,
        run=run,
        prepare=prepare,
        surrogate="method='super' (SuperSpike), alpha=10 passed but ignored by Norse: g(u) = 1/(1+|u|)^2",
        notes=[
            "Norse has no multi-step LIFBox module; norse.torch.module.snn.SNN (what its other multi-step "
            "modules use) is the same Python loop over the cell, so the cell is looped directly.",
            f"dt/tau mapping: dt = {dt:g} s, tau_mem_inv = {tau_mem_inv:g} 1/s (tau_mem = {1e3 / tau_mem_inv:g} ms), "
            f"v_leak = 0, so v <- v + dt*tau_mem_inv*(i - v) = 0.9*v + 0.1*i; the input current is "
            f"i = x * {gain:g} (scaling done once, outside the timing: in a network it folds into the weights).",
            "reset_method=reset_subtract (v - z*thr, not detached); spike where v - thr > 0 (strict): "
            "same spikes as spikeflow up to float rounding.",
            "Norse 1.1's SuperSpike backward ignores alpha (grad/(|u|+1)^2, i.e. slope 1), so its "
            "gradients differ from slope 10; the forward pass is unaffected.",
            "Gradients reach the scaled input i, not x (d/dx = 0.1 * d/di would be one more multiply).",
        ],
    )


def _sj_cuda_selected(run_base: Callable, name: str, device: str):
    """Wrap ``run_base`` so that SpikingJelly 2.x's LIF op uses CUDA implementation
    ``name`` ("cuda", "triton" or "torch"). SpikingJelly picks it once per process from
    ``SJ_LIF_CUDA_IMPLEMENTATION`` (read at import) and caches the choice; to time all
    of them in one process the adapter swaps in its own request and selection cache
    before every call (private attributes of ``spikingjelly._ops.lif._selection``; the
    backward of the same call then uses the same choice). Returns ``(run, selected
    implementation name, restore)``."""
    from spikingjelly._ops import lif as sj_lif_ops

    selection = sj_lif_ops._selection
    original = (selection._requested, selection._selections)
    own: dict = {}

    def activate() -> None:
        selection._requested = name
        selection._selections = own

    def restore() -> None:
        selection._requested, selection._selections = original

    def run(x: torch.Tensor) -> torch.Tensor:
        activate()
        return run_base(x)

    try:
        x = torch.zeros(2, 1, 4, device=device, requires_grad=True)
        run(x).sum().backward()
        chosen = selection.diagnostics(torch.device(device))["implementation"]
    finally:
        restore()
    return run, chosen, restore


def adapters_spikingjelly(device: str = "cpu") -> List[Impl]:
    base_api = "spikingjelly.activation_based.neuron.LIFNode(step_mode='m', decay_input=False, v_reset=None)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from spikingjelly.activation_based import functional as sj_functional
            from spikingjelly.activation_based import neuron as sj_neuron
            from spikingjelly.activation_based import surrogate as sj_surrogate
    except Exception as exc:  # noqa: BLE001
        return [_unavailable("spikingjelly-lif-torch", "spikingjelly", base_api, _import_error(exc))]

    tau = 1.0 / (1.0 - BETA)  # h = v - v/tau + x = (1 - 1/tau) v + x  ->  tau = 10
    sj_alpha = 4.0
    common_notes = [
        f"tau = {tau:g} so that 1 - 1/tau = beta = {BETA:g}; decay_input=False (input not scaled by 1/tau); "
        "v_reset=None (soft reset: v = h - s*thr), detach_reset=False; functional.reset_net before every run.",
        "Spike where h - thr >= 0 (SpikingJelly uses >=, spikeflow uses >): equal except on exact ties; "
        "the decay is computed as v - v/tau (float rounding differs from 0.9*v).",
        f"No SuperSpike-with-slope surrogate (SpikingJelly's SuperSpike is alpha/(1+|u|)^2, a scale, not a slope); "
        f"surrogate Sigmoid(alpha={sj_alpha:g}): g(u) = alpha*s*(1-s), g(0) = 1.",
    ]
    surrogate_desc = f"Sigmoid(alpha={sj_alpha:g}): g(u) = alpha*sigmoid(alpha*u)*(1-sigmoid(alpha*u))"
    has_backend_arg = "backend" in inspect.signature(sj_neuron.LIFNode.__init__).parameters

    def make(backend: Optional[str]):
        kwargs = dict(
            tau=tau,
            decay_input=False,
            v_threshold=THRESHOLD,
            v_reset=None,
            surrogate_function=sj_surrogate.Sigmoid(alpha=sj_alpha),
            detach_reset=False,
            step_mode="m",
        )
        if backend is not None:
            kwargs["backend"] = backend
        node = sj_neuron.LIFNode(**kwargs).to(device)

        def run(x: torch.Tensor) -> torch.Tensor:
            sj_functional.reset_net(node)
            return node(x)

        return run

    impls = []
    if has_backend_arg:
        # SpikingJelly <= 0.0.0.0.15: explicit backends ('torch', 'cupy'; 'triton' in some builds).
        for backend in ("torch", "cupy", "triton"):
            name = f"spikingjelly-lif-{backend}"
            api = base_api[:-1] + f", backend={backend!r})"
            try:
                run = make(backend)
                run(torch.zeros(2, 1, 4, device=device))
            except Exception as exc:  # noqa: BLE001
                impls.append(_unavailable(name, "spikingjelly", api, f"{type(exc).__name__}: {exc}"))
                continue
            impls.append(
                Impl(name=name, library="spikingjelly", api=api, run=run, surrogate=surrogate_desc, notes=list(common_notes))
            )
        return impls

    try:
        import cupy  # noqa: F401

        cupy_reason = "SpikingJelly 2.x has no CuPy backend (its CUDA kernels are native/Triton)"
    except Exception:  # noqa: BLE001
        cupy_reason = "cupy is not installed, and SpikingJelly 2.x has no CuPy backend (its CUDA kernels are native/Triton)"

    if device == "cuda":
        # SpikingJelly >= 2.0 on CUDA: native CUDA kernels, Triton kernels, or its torch
        # implementation, chosen per process; each is timed as its own implementation.
        for impl_name in SJ_CUDA_IMPLEMENTATIONS:
            name = f"spikingjelly-lif-{impl_name}"
            api = base_api + f" on CUDA with SJ_LIF_CUDA_IMPLEMENTATION={impl_name}"
            try:
                run, chosen, restore = _sj_cuda_selected(make(None), impl_name, device)
            except Exception as exc:  # noqa: BLE001
                impls.append(_unavailable(name, "spikingjelly", api, f"{type(exc).__name__}: {' '.join(str(exc).split())[:400]}"))
                continue
            if chosen != impl_name:
                impls.append(_unavailable(name, "spikingjelly", api, f"SpikingJelly selected {chosen!r} instead"))
                continue
            impls.append(
                Impl(
                    name=name,
                    library="spikingjelly",
                    api=api,
                    run=run,
                    surrogate=surrogate_desc,
                    finalize=restore,
                    notes=common_notes
                    + [
                        "The implementation is forced per call through SpikingJelly's private selection object "
                        "(spikingjelly._ops.lif._selection), as SJ_LIF_CUDA_IMPLEMENTATION would per process."
                    ],
                )
            )
        impls.append(_unavailable("spikingjelly-lif-cupy", "spikingjelly", base_api, cupy_reason))
        return impls

    # SpikingJelly >= 2.0 on CPU: no backend argument; CPU tensors use the registered op
    # torch.ops.sj_lif (a Python loop forward and a hand-written Python loop backward).
    impls.append(
        Impl(
            name="spikingjelly-lif-torch",
            library="spikingjelly",
            api=base_api + " (SpikingJelly >= 2.0 has no backend argument; CPU tensors use its torch implementation)",
            run=make(None),
            surrogate=surrogate_desc,
            notes=common_notes
            + [
                "On CPU, SpikingJelly 2.x runs torch.ops.sj_lif.forward/backward: a per-step torch loop "
                "forward and a hand-written per-step backward (no autograd graph through the loop)."
            ],
        )
    )
    cuda_reason = (
        "CUDA-only in SpikingJelly 2.x (chosen by device, via SJ_LIF_CUDA_IMPLEMENTATION); "
        + ("run with --device cuda to time it" if torch.cuda.is_available() else "no CUDA device here")
    )
    impls.append(_unavailable("spikingjelly-lif-cupy", "spikingjelly", base_api, cupy_reason + "; CUDA-only anyway"))
    impls.append(_unavailable("spikingjelly-lif-triton", "spikingjelly", base_api, "Triton kernels: " + cuda_reason))
    impls.append(_unavailable("spikingjelly-lif-cuda", "spikingjelly", base_api, "native CUDA kernels: " + cuda_reason))
    return impls


ADAPTER_GROUPS: Dict[str, Callable[[str], List[Impl]]] = {
    "spikeflow": adapters_spikeflow,
    "snntorch": lambda device: [adapter_snntorch(device)],
    "norse": lambda device: [adapter_norse(device)],
    "spikingjelly": adapters_spikingjelly,
}


def build_impls(only: Optional[List[str]] = None, device: str = "cpu") -> List[Impl]:
    """Every implementation (or those whose name starts with one of ``only``) for ``device``."""
    impls: List[Impl] = []
    for group, factory in ADAPTER_GROUPS.items():
        if only and not any(group.startswith(o) or o.startswith(group) for o in only):
            continue
        impls.extend(factory(device))
    if only:
        impls = [i for i in impls if any(i.name.startswith(o) for o in only)]
    return impls


# --------------------------------------------------------------------------- inputs


def parse_size(text: str):
    parts = text.lower().replace("×", "x").split("x")
    if len(parts) != 3 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"size must be TxBxN with positive integers, got {text!r}")
    return tuple(int(p) for p in parts)


def make_inputs(size, seed: int, device: str = "cpu"):
    """The input current (membrane units) and the upstream gradient for one size
    (drawn on the CPU, so every device gets the same values)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(size, generator=gen, dtype=torch.float32) * INPUT_SCALE
    g = torch.randn(size, generator=gen, dtype=torch.float32)
    return x.to(device), g.to(device)


def forward_backward(impl: Impl, x_leaf: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    spikes = impl.run(x_leaf)
    spikes.backward(g)  # the layer's own backward, with upstream gradient g
    return spikes


# --------------------------------------------------------------------------- correctness


def check_correctness(impls: List[Impl], size, seed: int, device: str = "cpu") -> None:
    """Loose check of every available impl against spikeflow's reference on a small input:
    firing rate within RATE_TOL_ABS, and spikes equal (>= AGREEMENT_MIN) to the impl's own
    documented semantics. Also records the gradient cosine similarity to the reference
    (information only: surrogates differ between libraries). Fills ``impl.check`` and marks
    impls / modes that raise as unavailable."""
    ref = next((i for i in impls if i.name == SPIKEFLOW_REF and i.unavailable is None), None)
    x, g = make_inputs(size, seed + 1, device)
    ref_spikes = ref_grad = None
    if ref is None:
        try:
            ref = adapter_spikeflow("reference", device)
        except Exception:  # noqa: BLE001
            ref = None
        if ref is not None and ref.unavailable is not None:
            ref = None
    if ref is not None:
        with torch.no_grad():
            ref_spikes = ref.run(x)
        xl = x.clone().requires_grad_(True)
        forward_backward(ref, xl, g)
        ref_grad = xl.grad
    for impl in impls:
        if impl.unavailable is not None:
            continue
        info: dict = {"input_shape": list(size), "seed": seed + 1}
        prepared = impl.prepare(x) if impl.prepare else x
        try:
            with torch.no_grad():
                spikes = impl.run(prepared).detach().to(torch.float32)
        except Exception as exc:  # noqa: BLE001
            impl.unavailable = f"forward failed on the check input: {type(exc).__name__}: {exc}"
            continue
        if tuple(spikes.shape) != tuple(size):
            impl.unavailable = f"returned shape {tuple(spikes.shape)}, expected {tuple(size)}"
            continue
        rate = spikes.mean().item()
        info["firing_rate"] = rate
        passed = True
        if ref_spikes is not None:
            ref_rate = ref_spikes.mean().item()
            info["reference_firing_rate"] = ref_rate
            info["rate_abs_diff"] = rate - ref_rate
            info["rate_rel_diff"] = (rate - ref_rate) / ref_rate if ref_rate else None
            info["agreement_with_reference"] = (spikes == ref_spikes).float().mean().item()
            passed &= abs(rate - ref_rate) <= RATE_TOL_ABS
            if impl.emulate is None:
                own = info["agreement_with_reference"]
            else:
                own = (spikes == impl.emulate(x)).float().mean().item()
                info["agreement_with_own_semantics"] = own
            passed &= own >= AGREEMENT_MIN
        try:
            leaf = prepared.detach().clone().requires_grad_(True)
            forward_backward(impl, leaf, g)
            if leaf.grad is None:
                raise RuntimeError("no gradient reached the input")
            if ref_grad is not None:
                cosine = torch.nn.functional.cosine_similarity(
                    leaf.grad.flatten().double(), ref_grad.flatten().double(), dim=0
                ).item()
                info["grad_cosine_vs_reference"] = cosine
                if impl.grad_cosine_min is not None:
                    passed &= cosine >= impl.grad_cosine_min
        except Exception as exc:  # noqa: BLE001
            impl.mode_unavailable["forward_backward"] = f"backward failed on the check input: {type(exc).__name__}: {exc}"
        info["tolerance"] = {"rate_abs": RATE_TOL_ABS, "agreement_min": AGREEMENT_MIN}
        if impl.grad_cosine_min is not None:
            info["tolerance"]["grad_cosine_min"] = impl.grad_cosine_min
        info["passed"] = bool(passed) if ref_spikes is not None else None
        impl.check = info


# --------------------------------------------------------------------------- timing


def time_config(impls: List[Impl], size, mode: str, args) -> dict:
    """Time every available impl on one (size, mode), interleaved round-robin.
    ``args`` needs ``seed``, ``repeats``, ``warmup`` (and optionally ``device``)."""
    device = getattr(args, "device", "cpu") or "cpu"
    sync = synchronizer(device)
    x, g = make_inputs(size, args.seed, device)
    entries: Dict[str, dict] = {}
    timed: List[Timed] = []
    firing: Dict[str, float] = {}
    shared_leaf = None
    for impl in impls:
        if not impl.available_for(mode):
            reason = impl.unavailable or impl.mode_unavailable.get(mode)
            entries[impl.name] = {"status": "unavailable", "reason": reason}
            continue
        entries[impl.name] = {"status": "ok"}
        prepared = impl.prepare(x) if impl.prepare else x
        if mode == "forward":

            def call(impl=impl, inp=prepared):
                with torch.no_grad():
                    out = impl.run(inp)
                sync()
                return out

            setup = sync
        else:
            if impl.prepare is None:
                if shared_leaf is None:
                    shared_leaf = x.detach().clone().requires_grad_(True)
                leaf = shared_leaf
            else:
                leaf = prepared.detach().clone().requires_grad_(True)

            def call(impl=impl, leaf=leaf):
                out = forward_backward(impl, leaf, g)
                sync()
                return out

            def setup(leaf=leaf):
                leaf.grad = None
                sync()

        # One untimed run: the firing rate on this input (and the first-call costs).
        try:
            setup()
            out = call()
            firing[impl.name] = out.detach().float().mean().item()
            del out
        except Exception as exc:  # noqa: BLE001
            entries[impl.name] = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
            continue
        timed.append(Timed(impl.name, call, setup))

    load_before = load_average()
    started = time.perf_counter()
    round_robin(timed, repeats=args.repeats, warmup=args.warmup)
    elapsed = time.perf_counter() - started
    for item in timed:
        entry = entries[item.name]
        if item.error is not None:
            entry.update(status="failed", reason=item.error)
        if item.samples_s:
            entry.update(summarize(item.samples_s))
        entry["firing_rate"] = firing.get(item.name)
    result = {
        "size": {"T": size[0], "B": size[1], "N": size[2]},
        "label": "x".join(map(str, size)),
        "mode": mode,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "wall_s": round(elapsed, 2),
        "implementations": entries,
        "ratios": ratios(entries),
    }
    del x, g, shared_leaf, timed
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    return result


def _median(entries: dict, name: str) -> Optional[float]:
    e = entries.get(name)
    if e and e.get("status") == "ok" and e.get("median_ms"):
        return e["median_ms"]
    return None


def ratios(entries: dict) -> dict:
    """speedup of the fused backend over the reference, and peer_ms / spikeflow_ms."""
    ref = _median(entries, SPIKEFLOW_REF)
    cpu = _median(entries, SPIKEFLOW_CPU)
    peers = [n for n in entries if not n.startswith("spikeflow-")]
    out = {
        "cpu_speedup_over_reference": (ref / cpu) if (ref and cpu) else None,
        "peer_ms_over_spikeflow_cpu_ms": {},
        "peer_ms_over_spikeflow_reference_ms": {},
    }
    for name in peers:
        ms = _median(entries, name)
        out["peer_ms_over_spikeflow_cpu_ms"][name] = (ms / cpu) if (ms and cpu) else None
        out["peer_ms_over_spikeflow_reference_ms"][name] = (ms / ref) if (ms and ref) else None
    return out


def fastest(entries: dict, prefix: str, exclude: str = "") -> tuple:
    """(name, median ms) of the fastest "ok" entry whose name starts with ``prefix``
    (``exclude``: a name prefix to skip); (None, None) when there is none."""
    best = (None, None)
    for name in entries:
        if not name.startswith(prefix) or (exclude and name.startswith(exclude)):
            continue
        ms = _median(entries, name)
        if ms is not None and (best[1] is None or ms < best[1]):
            best = (name, ms)
    return best


# --------------------------------------------------------------------------- memory (optional)


def vm_kib(field_name: str) -> Optional[int]:
    try:
        with open("/proc/self/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="utf-8") as f:
            f.write("5")
        return True
    except OSError:
        return False


def memory_probe(name: str, mode: str, size, seed: int) -> dict:
    """Runs in a fresh subprocess: growth of the peak RSS over one call of ``name`` (CPU).

    The peak mark is reset just before the call (/proc/self/clear_refs), so the parent's
    peak (which Linux carries into ru_maxrss of a child) does not hide the child's.
    """
    impls = build_impls([name])
    impl = next((i for i in impls if i.name == name), None)
    if impl is None or not impl.available_for(mode):
        return {"status": "unavailable", "reason": impl.unavailable if impl else "unknown implementation"}
    tiny, tiny_g = make_inputs((2, 1, 8), seed)  # first-call lazy initialisation, outside the measurement
    if mode == "forward":
        with torch.no_grad():
            impl.run(impl.prepare(tiny) if impl.prepare else tiny)
    else:
        forward_backward(impl, (impl.prepare(tiny) if impl.prepare else tiny).detach().requires_grad_(True), tiny_g)
    x, g = make_inputs(size, seed)
    prepared = impl.prepare(x) if impl.prepare else x
    if mode == "forward_backward":
        prepared = prepared.detach().clone().requires_grad_(True)
    gc.collect()
    if not reset_peak_rss():
        return {"status": "unavailable", "reason": "cannot reset the peak RSS (/proc/self/clear_refs not writable)"}
    before = vm_kib("VmRSS")
    if mode == "forward":
        with torch.no_grad():
            out = impl.run(prepared)
    else:
        out = forward_backward(impl, prepared, g)
    peak = vm_kib("VmHWM")
    del out
    if before is None or peak is None:
        return {"status": "unavailable", "reason": "/proc/self/status has no VmRSS/VmHWM"}
    return {
        "status": "ok",
        "rss_before_call_mib": round(before / 1024, 1),
        "peak_rss_mib": round(peak / 1024, 1),
        "peak_rss_delta_mib": round((peak - before) / 1024, 1),
    }


def measure_memory(impls: List[Impl], sizes, modes, args) -> Dict[str, dict]:
    out: Dict[str, dict] = {}
    for size in sizes:
        for mode in modes:
            key = f"{'x'.join(map(str, size))}/{mode}"
            out[key] = {}
            for impl in impls:
                if not impl.available_for(mode):
                    continue
                cmd = [
                    sys.executable,
                    "-m",
                    "spikeflow.bench.lif_layer",
                    "--_memory-probe",
                    impl.name,
                    mode,
                    "x".join(map(str, size)),
                    "--threads",
                    str(args.threads),
                    "--seed",
                    str(args.seed),
                ]
                try:
                    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
                    line = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
                    out[key][impl.name] = json.loads(line) if line.startswith("{") else {
                        "status": "failed",
                        "reason": (proc.stderr or proc.stdout)[-500:],
                    }
                except Exception as exc:  # noqa: BLE001
                    out[key][impl.name] = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
    return out


# --------------------------------------------------------------------------- reporting


def markdown_table(report: dict) -> str:
    lines = [
        "| T×B×N | mode | implementation | median ms | IQR ms | firing rate | peer / spikeflow-cpu | peer / spikeflow-reference |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]

    def fmt(v, spec=".2f"):
        return "–" if v is None else format(v, spec)

    for res in report["results"]:
        r = res["ratios"]
        for name, e in res["implementations"].items():
            if e.get("status") != "ok":
                if e.get("status") == "failed":
                    lines.append(f"| {res['label']} | {res['mode']} | {name} | failed | | | | |")
                continue
            if name == SPIKEFLOW_CPU:
                vs_cpu, vs_ref = "1", fmt(r["cpu_speedup_over_reference"] and 1 / r["cpu_speedup_over_reference"])
            elif name == SPIKEFLOW_REF:
                vs_cpu = fmt(r["cpu_speedup_over_reference"])
                vs_ref = "1"
            else:
                vs_cpu = fmt(r["peer_ms_over_spikeflow_cpu_ms"].get(name))
                vs_ref = fmt(r["peer_ms_over_spikeflow_reference_ms"].get(name))
            lines.append(
                f"| {res['label']} | {res['mode']} | {name} | {fmt(e.get('median_ms'))} | {fmt(e.get('iqr_ms'))} "
                f"| {fmt(e.get('firing_rate'), '.4f')} | {vs_cpu} | {vs_ref} |"
            )
    unavailable = {n: i["reason"] for n, i in report["implementations"].items() if i.get("status") == "unavailable"}
    if unavailable:
        lines.append("")
        lines.append("Unavailable: " + "; ".join(f"{n} ({why})" for n, why in unavailable.items()))
    return "\n".join(lines)


def implementations_info(impls: List[Impl]) -> Dict[str, dict]:
    out = {}
    for impl in impls:
        entry = {
            "library": impl.library,
            "api": impl.api,
            "status": "unavailable" if impl.unavailable else "ok",
            "surrogate": impl.surrogate or None,
            "notes": impl.notes,
            "check": impl.check,
        }
        if impl.unavailable:
            entry["reason"] = impl.unavailable
        if impl.mode_unavailable:
            entry["mode_unavailable"] = impl.mode_unavailable
        out[impl.name] = entry
    return out


def _settings(sizes, repeats, warmup, seed, threads, device, check_size) -> dict:
    return {
        "neuron": {
            "beta": BETA,
            "threshold": THRESHOLD,
            "reset": "subtract",
            "surrogate": f"superspike / fast sigmoid, slope {SLOPE:g}, where the library allows",
        },
        "input": f"torch.rand(T, B, N) * {INPUT_SCALE:g}, float32, time-major [T, B, N], on {device}",
        "device": device,
        "modes": {
            "forward": "spikes = layer(x) under torch.no_grad()",
            "forward_backward": "x.requires_grad_(); spikes.backward(g), g = torch.randn(T, B, N) fixed",
        },
        "sizes": ["x".join(map(str, s)) for s in sizes],
        "repeats": repeats,
        "warmup": warmup,
        "seed": seed,
        "timing": "time.perf_counter around one call (torch.cuda.synchronize before and after on CUDA), gc "
        "disabled during the call; implementations interleaved round-robin with the order rotated every round; "
        "median and IQR (q3 - q1) over the rounds",
        "threads": threads,
        "check": {"input_shape": list(check_size), "rate_abs_tolerance": RATE_TOL_ABS, "agreement_min": AGREEMENT_MIN},
    }


# --------------------------------------------------------------------------- suite configuration


def target_rows(results: list, device: str) -> List[dict]:
    """The issue's targets for one LIF layer, one row per (size, mode):

    - CPU: fastest spikeflow >= 3x faster than the fastest peer; fastest spikeflow
      <= 2x its bandwidth floor.
    - CUDA: fastest spikeflow >= 1.5x faster than SpikingJelly's fastest; achieved
      bandwidth (floor / measured) >= 70 %.

    Each row: config, case, metric, value, target, met (None when a side is missing).
    """
    from .suite import target_row  # local: suite imports this module lazily

    rows = []
    for res in results:
        case = f"{res['label']} {res['mode']}"
        entries = res["implementations"]
        sf_name, sf_ms = fastest(entries, "spikeflow-")
        floor = res.get("floor_ms")
        if device == "cuda":
            sj_name, sj_ms = fastest(entries, "spikingjelly")
            rows.append(target_row(
                "lif_layer", case, "speedup_vs_fastest_spikingjelly",
                (sj_ms / sf_ms) if (sj_ms and sf_ms) else None, ">=", 1.5,
                f"{sj_name or 'SpikingJelly (none ran)'} ms / {sf_name or 'spikeflow'} ms",
            ))
            rows.append(target_row(
                "lif_layer", case, "fraction_of_bandwidth",
                (floor / sf_ms) if (floor and sf_ms) else None, ">=", 0.7,
                f"bandwidth floor / {sf_name or 'spikeflow'} ms",
            ))
        else:
            peer_name, peer_ms = fastest(entries, "", exclude="spikeflow-")
            rows.append(target_row(
                "lif_layer", case, "speedup_vs_fastest_peer",
                (peer_ms / sf_ms) if (peer_ms and sf_ms) else None, ">=", 3.0,
                f"{peer_name or 'fastest peer (none ran)'} ms / {sf_name or 'spikeflow'} ms",
            ))
            rows.append(target_row(
                "lif_layer", case, "ratio_to_bandwidth_floor",
                (sf_ms / floor) if (floor and sf_ms) else None, "<=", 2.0,
                f"{sf_name or 'spikeflow'} ms / bandwidth floor",
            ))
    return rows


def add_floors(result: dict, ceilings: dict) -> None:
    """Add ``floor_ms``, ``floor_bytes`` to a (size, mode) result and ``ratio_to_floor``
    to each of its "ok" implementations."""
    from .ceilings import bandwidth_floor_ms, lif_bytes, ratio_to_floor

    s = result["size"]
    nbytes = lif_bytes(s["T"], s["B"], s["N"], result["mode"])
    floor = bandwidth_floor_ms(nbytes, ceilings)
    result["floor_bytes"] = nbytes
    result["floor_ms"] = floor
    for entry in result["implementations"].values():
        if entry.get("status") == "ok":
            entry["ratio_to_floor"] = ratio_to_floor(entry.get("median_ms"), floor)


def suite_markdown(results: list) -> str:
    def fmt(v, spec=".2f"):
        return "–" if v is None else format(v, spec)

    lines = ["| T×B×N | mode | implementation | median ms | IQR ms | x floor | firing rate |", "|---|---|---|---:|---:|---:|---:|"]
    for res in results:
        lines.append(f"| {res['label']} | {res['mode']} | *floor* | {fmt(res.get('floor_ms'), '.3f')} | | 1 | |")
        for name, e in res["implementations"].items():
            if e.get("status") == "ok":
                lines.append(
                    f"| {res['label']} | {res['mode']} | {name} | {fmt(e.get('median_ms'))} | {fmt(e.get('iqr_ms'))} "
                    f"| {fmt(e.get('ratio_to_floor'), '.1f')} | {fmt(e.get('firing_rate'), '.3f')} |"
                )
            elif e.get("status") == "failed":
                lines.append(f"| {res['label']} | {res['mode']} | {name} | failed | | | |")
    return "\n".join(lines)


def run(opts: BenchOptions, sizes: Optional[List[str]] = None) -> dict:
    """The suite's "lif_layer" configuration (see the module docstring)."""
    from . import ceilings as _ceilings

    device = opts.device
    size_list = [parse_size(s) for s in (sizes or (SUITE_QUICK_SIZES if opts.quick else SUITE_SIZES))]
    ceil = _ceilings.cached(opts)
    _say(opts.progress, "lif_layer: building implementations")
    impls = build_impls(list(opts.impls) if opts.impls else None, device)
    check_size = size_list[0] if opts.quick else CHECK_SIZE
    check_correctness(impls, check_size, opts.seed, device)
    args = argparse.Namespace(seed=opts.seed, repeats=opts.repeats, warmup=opts.warmup, device=device)
    results = []
    try:
        for size in size_list:
            for mode in MODES:
                _say(opts.progress, f"lif_layer: {'x'.join(map(str, size))} {mode}")
                res = time_config(impls, size, mode, args)
                add_floors(res, ceil)
                results.append(res)
    finally:
        for impl in impls:
            if impl.finalize is not None:
                impl.finalize()
    rows = [
        {"size": r["label"], "mode": r["mode"], "implementation": name, "floor_ms": r["floor_ms"], **e}
        for r in results
        for name, e in r["implementations"].items()
    ]
    return json_safe({
        "name": "lif_layer",
        "description": "one LIF layer over [T, B, N] float32 (beta 0.9, threshold 1, subtract reset), "
        f"forward and forward+backward, on {device}; floor = minimal bytes (forward: read x, write spikes; "
        "forward+backward: + read grad_out and x, write grad_x) / measured bandwidth",
        "settings": _settings(size_list, opts.repeats, opts.warmup, opts.seed, torch.get_num_threads(), device, check_size),
        "implementations": implementations_info(impls),
        "cases": results,
        "results": rows,
        "markdown": suite_markdown(results),
        "ratios": target_rows(results, device),
    })


# --------------------------------------------------------------------------- standalone main


def parse_args(argv=None, default_out: Optional[str] = None, quick_out: Optional[str] = None, prog: Optional[str] = None):
    default_out = default_out or os.path.join("bench-results", "lif_layer.json")
    quick_out = quick_out or os.path.join("bench-results", "lif_layer.quick.json")
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", default=None, help="TxBxN sizes (space or comma separated); default: " + " ".join(DEFAULT_SIZES))
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    p.add_argument("--impls", nargs="+", default=None, help="only these implementations (name prefixes, e.g. spikeflow snntorch)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the layer runs (default cpu)")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds per configuration (default 15; --quick: 1)")
    p.add_argument("--warmup", type=int, default=None, help="untimed rounds before timing (default 3; --quick: 1)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: cores available to the process)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help=f"JSON output (default {os.path.relpath(default_out)}; --quick: {os.path.relpath(quick_out)})")
    p.add_argument("--memory", action="store_true", help="also measure peak RSS growth per implementation, one subprocess each (slow; CPU)")
    p.add_argument("--quick", action="store_true", help=f"smoke run: size {QUICK_SIZE}, 1 repeat, 1 warm-up")
    p.add_argument("--_memory-probe", nargs=3, metavar=("IMPL", "MODE", "SIZE"), help=argparse.SUPPRESS, dest="memory_probe")
    args = p.parse_args(argv)
    if args.sizes is None:
        args.sizes = [QUICK_SIZE] if args.quick else list(DEFAULT_SIZES)
    try:
        args.sizes = [parse_size(s) for chunk in args.sizes for s in chunk.split(",") if s.strip()]
    except argparse.ArgumentTypeError as exc:
        p.error(str(exc))
    if args.repeats is None:
        args.repeats = 1 if args.quick else 15
    if args.warmup is None:
        args.warmup = 1 if args.quick else 3
    if args.repeats < 1 or args.warmup < 0:
        p.error("--repeats must be >= 1 and --warmup >= 0")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: torch.cuda.is_available() is False")
    if args.threads is None:
        try:
            args.threads = len(os.sched_getaffinity(0))
        except AttributeError:
            args.threads = os.cpu_count() or 1
    if args.out is None:
        args.out = quick_out if args.quick else default_out
    return args


def main(argv=None, default_out: Optional[str] = None, quick_out: Optional[str] = None, script: Optional[str] = None) -> dict:
    """The standalone benchmark (``benchmarks/lif_layer.py``); returns the report dict."""
    args = parse_args(argv, default_out, quick_out, prog=os.path.basename(script) if script else None)
    torch.set_num_threads(args.threads)
    if args.memory_probe:
        name, mode, size = args.memory_probe
        print(json.dumps(json_safe(memory_probe(name, mode, parse_size(size), args.seed))))
        return {}

    started = time.perf_counter()
    load = load_average()
    busy = None
    if load and not args.quick and load[0] > 0.5 * args.threads:
        busy = (
            f"1-minute load average {load[0]} at start with {args.threads} threads: the machine is not quiet, "
            "timings (especially multi-threaded ones) will be noisy"
        )
        print(f"[lif_layer] WARNING: {busy}", file=sys.stderr)
    impls = build_impls(args.impls, args.device)
    check_size = tuple(args.sizes[0]) if args.quick else CHECK_SIZE
    check_correctness(impls, check_size, args.seed, args.device)
    script_name = os.path.relpath(os.path.abspath(script)) if script else "-m spikeflow.bench.lif_layer"

    report = {
        "schema": SCHEMA,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": [os.path.basename(sys.executable), script_name] + list(sys.argv[1:] if argv is None else argv),
        "python_executable": sys.executable,
        "quick": args.quick,
        "not_quiet_warning": busy,
        "machine": {
            **machine_info(),
            "torch_num_threads": torch.get_num_threads(),
            "torch_num_interop_threads": torch.get_num_interop_threads(),
            "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
            "load_average_start": load_average(),
        },
        "libraries": library_versions(["torch", "spikeflow", "snntorch", "norse", "spikingjelly", "nir", "numpy"]),
        "settings": _settings(args.sizes, args.repeats, args.warmup, args.seed, args.threads, args.device, check_size),
        "implementations": implementations_info(impls),
        "results": [],
    }
    try:
        for size in args.sizes:
            for mode in args.modes:
                label = "x".join(map(str, size))
                print(f"[lif_layer] {label} {mode} ...", flush=True)
                report["results"].append(time_config(impls, size, mode, args))
                report["wall_s"] = round(time.perf_counter() - started, 1)
                write_report(json_safe(report), args.out)  # partial results survive an interruption
    finally:
        for impl in impls:
            if impl.finalize is not None:
                impl.finalize()
    if args.memory:
        report["memory"] = {
            "method": "peak RSS (VmHWM, reset via /proc/self/clear_refs just before the call) minus RSS before "
            "one call, in a fresh subprocess per implementation after a tiny warm-up call; the inputs (x, g) are "
            "allocated before and not counted; approximate (allocator slack)",
            "results": measure_memory(impls, args.sizes, args.modes, args),
        }
    report["machine"]["load_average_end"] = load_average()
    report["wall_s"] = round(time.perf_counter() - started, 1)
    report = json_safe(report)
    report["markdown"] = markdown_table(report)
    write_report(report, args.out)
    md_path = os.path.splitext(args.out)[0] + ".md"
    with open(md_path, "w", encoding="utf-8") as f:
        f.write(report["markdown"] + "\n")
    print(report["markdown"])
    for name, info in report["implementations"].items():
        chk = info.get("check") or {}
        if chk.get("passed") is False:
            print(f"[lif_layer] WARNING: {name} failed the loose correctness check: {chk}", file=sys.stderr)
    print(f"[lif_layer] wrote {os.path.relpath(args.out)} ({report['wall_s']} s)")
    return report


if __name__ == "__main__":
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        main()
