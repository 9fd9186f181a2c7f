"""Benchmark a spiking MLP, forward + backward, in spikeflow and each peer.

Network: ``Linear(784 -> H) + LIF + Linear(H -> 10) + LIF`` (beta 0.9, threshold 1,
reset by subtraction, SuperSpike / fast-sigmoid slope 10 where the library lets us
choose), ``T = 100``, ``B = 64``, ``H in {512, 2048}`` (``--quick``: T 10, B 8, H 64),
float32, time-major.

Input: random spikes ``x ~ Bernoulli(0.2)`` of shape ``[T, B, 784]``. Loss (the same
for all): ``(out_spikes * G).sum()`` with a fixed random ``G ~ N(0, 1)`` of the output's
shape. One timed call = zero the parameter gradients (untimed), forward, loss,
backward (weight and bias gradients of both Linear layers).

Every library starts from the same weights (one seeded pair of ``torch.nn.Linear``,
with the first layer's weights x2 and the second's x4 so both layers spike). Each
library is built the idiomatic way:

- ``spikeflow``: ``spikeflow.nn.Sequential(Linear, LIF, Linear, LIF)``, backend
  ``auto`` (the Linear layers run over all T*B rows at once).
- ``snntorch``: ``nn.Linear`` + ``snn.Leaky`` in a per-step Python loop with explicit
  membranes (its tutorials' form; Leaky's default delayed reset).
- ``norse``: ``norse.torch.SequentialState(Linear, LIFBoxCell, Linear, LIFBoxCell)``
  stepped over time (Norse's own stateful sequential). Its LIF integrates
  ``dt*tau_mem_inv*i``: the weights are multiplied by 10 once, outside the timing.
- ``spikingjelly``: ``nn.Sequential(layer.Linear, neuron.LIFNode, layer.Linear,
  neuron.LIFNode)``, ``step_mode='m'`` (multi-step), ``functional.reset_net`` per call.

Floor: the GEMM work, 3 GEMMs per Linear (forward, grad input, grad weight),
``4*T*B*784*H + 6*T*B*H*10`` flops (the data needs no gradient, so the first layer
has no input-gradient GEMM) / measured GEMM rate (the LIF and elementwise work is
not counted, so the floor is optimistic).
"""

from __future__ import annotations

import gc
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import torch

from .lif_layer import BETA, NORSE_DT, SLOPE, THRESHOLD, norse_lif_parameters  # the same neuron
from .options import BenchOptions
from .timing import Timed, json_safe, load_average, round_robin, summarize, synchronizer

INPUT_RATE = 0.2
T_STEPS, BATCH, N_IN, N_OUT = 100, 64, 784, 10
HIDDEN = (512, 2048)
QUICK = dict(T=10, B=8, hidden=(64,))
WEIGHT_GAINS = (2.0, 4.0)  # first and second Linear: x default init, so that both layers spike


@dataclass
class NetImpl:
    """One network implementation: ``forward(x) -> output spikes [T, B, n_out]``;
    ``params`` are zeroed between calls."""

    name: str
    library: str
    api: str
    forward: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
    params: List[torch.Tensor] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    unavailable: Optional[str] = None


def _unavailable(name: str, library: str, api: str, exc: BaseException) -> NetImpl:
    return NetImpl(name, library, api, unavailable=f"{type(exc).__name__}: {' '.join(str(exc).split())[:400]}")


def make_weights(sizes: Sequence[int], seed: int, gains: Optional[Sequence[float]] = None) -> List[tuple]:
    """(weight, bias) per Linear of ``sizes``: torch.nn.Linear's default init from
    ``seed``, weights multiplied by ``gains`` (default 1)."""
    torch.manual_seed(seed)
    out = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = torch.nn.Linear(a, b)
        gain = gains[i] if gains else 1.0
        out.append((lin.weight.detach() * gain, lin.bias.detach().clone()))
    return out


def _load(linear: torch.nn.Linear, w: torch.Tensor, b: torch.Tensor, scale: float = 1.0) -> None:
    with torch.no_grad():
        linear.weight.copy_(w * scale)
        linear.bias.copy_(b * scale)


def spikeflow_net(weights, device) -> NetImpl:
    name, api = "spikeflow", "spikeflow.nn.Sequential(Linear, LIF, ...), backend='auto'"
    try:
        import spikeflow.nn as snn_sf
        from spikeflow.surrogate import superspike

        layers = []
        for w, b in weights:
            lin = torch.nn.Linear(w.shape[1], w.shape[0])
            _load(lin, w, b)
            layers += [lin, snn_sf.LIF(beta=BETA, threshold=THRESHOLD, reset="subtract", surrogate=superspike(SLOPE))]
        net = snn_sf.Sequential(*layers).to(device)

        def forward(x):
            out, _states = net(x)
            return out

        forward(torch.zeros(2, 1, weights[0][0].shape[1], device=device))
    except Exception as exc:  # noqa: BLE001
        return _unavailable(name, "spikeflow", api, exc)
    notes = [f"LIF backend chosen by 'auto' here: {_auto_backend(device)}"]
    return NetImpl(name, "spikeflow", api, forward, list(net.parameters()), notes)


def _auto_backend(device: str) -> str:
    try:
        from spikeflow.backends import resolve
        from spikeflow.neurons import LIFParams
        from spikeflow.neurons._base import model_of

        params = LIFParams(beta=BETA, threshold=THRESHOLD)
        return resolve(model_of(params), "auto", params, torch.zeros(2, 1, 4, device=device), False).name
    except Exception as exc:  # noqa: BLE001
        return f"unknown ({type(exc).__name__}: {exc})"


def snntorch_net(weights, device) -> NetImpl:
    name, api = "snntorch", "nn.Linear + snntorch.Leaky(fast_sigmoid(slope=10)), per-step Python loop with explicit mem"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import snntorch as snn
            from snntorch import surrogate as snn_surrogate
        linears, lifs = torch.nn.ModuleList(), torch.nn.ModuleList()
        for w, b in weights:
            lin = torch.nn.Linear(w.shape[1], w.shape[0])
            _load(lin, w, b)
            linears.append(lin)
            lifs.append(snn.Leaky(beta=BETA, threshold=THRESHOLD, reset_mechanism="subtract",
                                  spike_grad=snn_surrogate.fast_sigmoid(slope=SLOPE)))
        linears.to(device)
        lifs.to(device)

        def forward(x):
            mems = [torch.zeros(x.shape[1], lin.out_features, device=x.device, dtype=x.dtype) for lin in linears]
            rec = []
            for t in range(x.shape[0]):
                h = x[t]
                for i, (lin, lif) in enumerate(zip(linears, lifs)):
                    h, mems[i] = lif(lin(h), mems[i])
                rec.append(h)
            return torch.stack(rec)

        forward(torch.zeros(2, 1, weights[0][0].shape[1], device=device))
    except Exception as exc:  # noqa: BLE001
        return _unavailable(name, "snntorch", api, exc)
    return NetImpl(name, "snntorch", api, forward, list(linears.parameters()) + list(lifs.parameters()),
                   ["Leaky's default reset_delay=True (reset subtracted after the decay, detached)."])


def norse_net(weights, device) -> NetImpl:
    name, api = "norse", "norse.torch.SequentialState(Linear, LIFBoxCell, ...) stepped over time"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from norse.torch import LIFBoxCell, LIFBoxParameters, SequentialState
            from norse.torch.functional.reset import reset_subtract
        p, gain = norse_lif_parameters(LIFBoxParameters, reset_subtract, device)
        layers = []
        for w, b in weights:
            lin = torch.nn.Linear(w.shape[1], w.shape[0])
            _load(lin, w, b, scale=gain)
            layers += [lin, LIFBoxCell(p, dt=NORSE_DT)]
        net = SequentialState(*layers).to(device)

        def forward(x):
            state = None
            rec = []
            for t in range(x.shape[0]):
                z, state = net(x[t], state)
                rec.append(z)
            return torch.stack(rec)

        forward(torch.zeros(2, 1, weights[0][0].shape[1], device=device))
    except Exception as exc:  # noqa: BLE001
        return _unavailable(name, "norse", api, exc)
    return NetImpl(name, "norse", api, forward, list(net.parameters()),
                   [f"weights and biases x{gain:g} (Norse integrates dt*tau_mem_inv*i; folded once, untimed): "
                    "the same forward as spikeflow up to rounding; SuperSpike with slope 1 (Norse ignores alpha)."])


def spikingjelly_net(weights, device) -> NetImpl:
    name = "spikingjelly"
    api = "nn.Sequential(layer.Linear, neuron.LIFNode(tau=10, decay_input=False, v_reset=None), ...), step_mode='m'"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from spikingjelly.activation_based import functional as sjf
            from spikingjelly.activation_based import layer as sjl
            from spikingjelly.activation_based import neuron as sjn
            from spikingjelly.activation_based import surrogate as sjs
        layers = []
        for w, b in weights:
            lin = sjl.Linear(w.shape[1], w.shape[0], step_mode="m")
            _load(lin, w, b)
            layers += [lin, sjn.LIFNode(tau=1.0 / (1.0 - BETA), decay_input=False, v_threshold=THRESHOLD, v_reset=None,
                                        surrogate_function=sjs.Sigmoid(alpha=4.0), detach_reset=False, step_mode="m")]
        net = torch.nn.Sequential(*layers).to(device)

        def forward(x):
            sjf.reset_net(net)
            return net(x)

        forward(torch.zeros(2, 1, weights[0][0].shape[1], device=device))
    except Exception as exc:  # noqa: BLE001
        return _unavailable(name, "spikingjelly", api, exc)
    return NetImpl(name, "spikingjelly", api, forward, list(net.parameters()),
                   ["multi-step LIFNode (SpikingJelly picks its implementation by device); Sigmoid(alpha=4) surrogate; "
                    "spike on >= (spikeflow: >)."])


BUILDERS: Dict[str, Callable] = {
    "spikeflow": spikeflow_net,
    "snntorch": snntorch_net,
    "norse": norse_net,
    "spikingjelly": spikingjelly_net,
}


def build(weights, device: str, only: Optional[Sequence[str]] = None) -> List[NetImpl]:
    out = []
    for name, builder in BUILDERS.items():
        if only and not any(name.startswith(o) or o.startswith(name) for o in only):
            continue
        out.append(builder(weights, device))
    return out


def time_networks(impls: List[NetImpl], x: torch.Tensor, grad_out: Optional[torch.Tensor], opts: BenchOptions,
                  repeats: Optional[int] = None, warmup: Optional[int] = None) -> Dict[str, dict]:
    """Forward + backward of every available impl, interleaved round-robin. The loss is
    ``(out * grad_out).sum()`` (``out.sum()`` when ``grad_out`` is None)."""
    sync = synchronizer(opts.device)
    entries: Dict[str, dict] = {}
    timed = []
    for impl in impls:
        if impl.unavailable is not None:
            entries[impl.name] = {"status": "unavailable", "reason": impl.unavailable}
            continue

        def setup(impl=impl):
            for p in impl.params:
                p.grad = None
            sync()

        def call(impl=impl):
            out = impl.forward(x)
            loss = out.sum() if grad_out is None else (out * grad_out).sum()
            loss.backward()
            sync()
            return out, loss

        try:
            setup()
            out, loss = call()
            entries[impl.name] = {
                "status": "ok",
                "output_firing_rate": out.detach().float().mean().item(),
                "loss": loss.item(),
            }
            del out, loss
        except Exception as exc:  # noqa: BLE001
            entries[impl.name] = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
            continue
        timed.append(Timed(impl.name, call, setup))
    round_robin(timed, repeats=repeats or opts.repeats, warmup=opts.warmup if warmup is None else warmup)
    for item in timed:
        if item.error is not None:
            entries[item.name].update(status="failed", reason=item.error)
        if item.samples_s:
            entries[item.name].update(summarize(item.samples_s))
    return entries


def rows_and_targets(config: str, case: str, entries: Dict[str, dict], floor_ms: Optional[float], device: str,
                     speedup_target: Optional[float], floor_target: Optional[float]) -> tuple:
    """Adds ratio_to_floor and speedup columns to ``entries``; returns (rows, target rows)."""
    from .ceilings import ratio_to_floor
    from .lif_layer import fastest
    from .suite import target_row

    sf_name, sf_ms = fastest(entries, "spikeflow")
    peer_name, peer_ms = fastest(entries, "", exclude="spikeflow")
    rows = []
    for name, e in entries.items():
        if e.get("status") == "ok":
            e["ratio_to_floor"] = ratio_to_floor(e.get("median_ms"), floor_ms)
            e["ms_over_spikeflow"] = (e["median_ms"] / sf_ms) if (sf_ms and e.get("median_ms")) else None
        rows.append({"case": case, "implementation": name, "floor_ms": floor_ms, **e})
    targets = [
        target_row(config, case, "speedup_vs_fastest_peer", (peer_ms / sf_ms) if (peer_ms and sf_ms) else None,
                   ">=" if speedup_target else None, speedup_target,
                   f"{peer_name or 'fastest peer (none ran)'} ms / {sf_name or 'spikeflow'} ms"),
        target_row(config, case, "ratio_to_gemm_floor", (sf_ms / floor_ms) if (sf_ms and floor_ms) else None,
                   "<=" if floor_target else None, floor_target, f"{sf_name or 'spikeflow'} ms / GEMM floor"),
    ]
    return rows, targets


def markdown(rows: List[dict]) -> str:
    def fmt(v, spec=".2f"):
        return "–" if v is None else format(v, spec)

    lines = ["| case | implementation | median ms | IQR ms | x floor | x spikeflow | out rate |", "|---|---|---:|---:|---:|---:|---:|"]
    last = None
    for r in rows:
        if r["case"] != last:
            lines.append(f"| {r['case']} | *GEMM floor* | {fmt(r.get('floor_ms'), '.3f')} | | 1 | | |")
            last = r["case"]
        if r.get("status") == "ok":
            lines.append(f"| {r['case']} | {r['implementation']} | {fmt(r.get('median_ms'))} | {fmt(r.get('iqr_ms'))} "
                         f"| {fmt(r.get('ratio_to_floor'), '.1f')} | {fmt(r.get('ms_over_spikeflow'))} "
                         f"| {fmt(r.get('output_firing_rate'), '.3f')} |")
        elif r.get("status") == "failed":
            lines.append(f"| {r['case']} | {r['implementation']} | failed | | | | |")
    unavailable = sorted({f"{r['implementation']} ({r.get('reason')})" for r in rows if r.get("status") == "unavailable"})
    if unavailable:
        lines += ["", "Unavailable: " + "; ".join(unavailable)]
    return "\n".join(lines)


def run(opts: BenchOptions, hidden: Optional[Sequence[int]] = None) -> dict:
    """The suite's "mlp" configuration (see the module docstring)."""
    from . import ceilings as _ceilings

    T, B = (QUICK["T"], QUICK["B"]) if opts.quick else (T_STEPS, BATCH)
    hidden = tuple(hidden or (QUICK["hidden"] if opts.quick else HIDDEN))
    ceil = _ceilings.cached(opts)
    rows, targets, impl_info = [], [], {}
    cpu = opts.device == "cpu"
    for H in hidden:
        case = f"T{T} B{B} H{H}"
        if opts.progress:
            print(f"[bench] mlp: {case}", file=sys.stderr, flush=True)
        sizes = (N_IN, H, N_OUT)
        gen = torch.Generator().manual_seed(opts.seed)
        x = (torch.rand(T, B, N_IN, generator=gen) < INPUT_RATE).float().to(opts.device)
        g = torch.randn(T, B, N_OUT, generator=gen).to(opts.device)
        impls = build(make_weights(sizes, opts.seed, WEIGHT_GAINS), opts.device, opts.impls)
        for impl in impls:
            impl_info[impl.name] = {"library": impl.library, "api": impl.api, "notes": impl.notes,
                                    "status": "unavailable" if impl.unavailable else "ok",
                                    **({"reason": impl.unavailable} if impl.unavailable else {})}
        started = time.perf_counter()
        load_before = load_average()
        entries = time_networks(impls, x, g, opts)
        floor = _ceilings.gemm_floor_ms(_ceilings.mlp_flops(T, B, sizes), ceil)
        r, t = rows_and_targets("mlp", case, entries, floor, opts.device, 2.0 if cpu else None, 1.5 if cpu else None)
        for row in r:
            row.update(T=T, B=B, H=H, flops=_ceilings.mlp_flops(T, B, sizes), wall_s=round(time.perf_counter() - started, 2),
                       load_average_before=load_before)
        rows += r
        targets += t
        del impls, x, g
        gc.collect()
    return json_safe({
        "name": "mlp",
        "description": f"Linear(784->H)+LIF+Linear(H->10)+LIF, forward+backward, loss (out*G).sum(), on {opts.device}; "
        "GEMM floor = (4*T*B*784*H + 6*T*B*H*10) flops / measured GEMM rate (no input gradient for the data)",
        "settings": {"T": T, "B": B, "hidden": list(hidden), "input": f"Bernoulli({INPUT_RATE}) spikes [T, B, 784]",
                     "weights": f"torch.nn.Linear default init (seed {opts.seed}), x{WEIGHT_GAINS[0]:g} and x{WEIGHT_GAINS[1]:g}",
                     "neuron": f"beta {BETA}, threshold {THRESHOLD}, subtract reset, slope-{SLOPE:g} surrogate where possible",
                     "repeats": opts.repeats, "warmup": opts.warmup, "threads": torch.get_num_threads()},
        "implementations": impl_info,
        "results": rows,
        "markdown": markdown(rows),
        "ratios": targets,
    })
