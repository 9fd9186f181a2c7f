"""Training throughput of a spiking ResNet-18 (CIFAR form): spikeflow vs SpikingJelly.

The network, built identically in both libraries (the parameter counts and the
layer lists are asserted equal, and both run the *same* weights, copied from the
SpikingJelly model into spikeflow's):

* input ``32 x 32 x 3``, direct encoding (the image repeated at every one of T steps,
  time-major ``[T, B, 3, 32, 32]``);
* stem ``Conv 3x3 (3 -> 64, stride 1, no bias) -> BatchNorm -> LIF`` (no max pool);
* BasicBlocks ``[2, 2, 2, 2]``, widths 64 / 128 / 256 / 512 (stride 2 at the first
  block of stages 2-4): ``LIF(BN(conv3x3(LIF(BN(conv3x3(x))))) + shortcut(x))``, the
  shortcut ``conv1x1 + BatchNorm`` where the shape changes (SpikingJelly's own
  ``spiking_resnet.BasicBlock``); a LIF wherever ResNet has a ReLU (17 in all);
* ``AdaptiveAvgPool(1) -> Linear(512 -> 10)``; loss = cross-entropy of the output
  averaged over time, with fixed random labels.

LIF on both sides: ``tau = 2`` / ``beta = 0.5`` without input scaling
(SpikingJelly ``decay_input=False``), threshold 1, **hard reset to 0**
(spikeflow ``reset="zero"``, SpikingJelly ``v_reset=0``), reset not detached,
arc-tangent surrogate ``alpha = 2`` (``g(u) = 1 / (1 + (pi u)^2)`` in both).

spikeflow's network (:class:`SpikeflowResNet18`) is built here from
``spikeflow.nn`` parts (``Conv2d`` / ``BatchNorm2d`` / ``AdaptiveAvgPool2d`` /
``Linear`` = ``TimeDistributed`` torch layers over ``T * B``, and ``LIF`` scans):
``spikeflow.convert.models.resnet18`` is the ANN (ReLU) builder used for
conversion, not a time-major spiking network. SpikingJelly's is its
``spiking_resnet18`` (ImageNet form) with the CIFAR stem swapped in (3x3 stride-1
conv, max pool removed), multi-step mode.

Measured: one training step without the optimizer (``zero_grad``; forward; loss;
backward), median ms and images per second (``B / step time``), every
implementation interleaved round-robin.
"""

from __future__ import annotations

import copy
import datetime as _dt
import gc
import time
import warnings
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F

from .options import option, report_progress, selected
from .suite import target_row
from .timing import Timed, json_safe, library_versions, load_average, machine_info, round_robin, summarize, synchronizer

__all__ = ["SpikeflowResNet18", "spikeflow_resnet18", "spikingjelly_resnet18", "run", "layer_counts", "count_parameters"]

NAME = "resnet18"  # the configuration name in spikeflow.bench.suite
SCHEMA = "spikeflow-bench/resnet/1"
CLASSES = 10
WIDTHS = (64, 128, 256, 512)
BLOCKS = (2, 2, 2, 2)
TAU = 2.0
BETA = 1.0 - 1.0 / TAU  # 0.5
THRESHOLD = 1.0
ATAN_ALPHA = 2.0
FULL = {"timesteps": (4, 8), "batch": 32}
QUICK = {"timesteps": (2,), "batch": 2}
CPU_MAX_REPEATS = 3  # a step at T=8, B=32 takes seconds on a few CPU cores
CPU_MAX_WARMUP = 1
CHECK = {"timesteps": 2, "batch": 2}
CHECK_LOGIT_RTOL = 1e-4
CHECK_GRAD_COSINE_MIN = 0.99


# --------------------------------------------------------------------------- spikeflow


def _sf_lif(backend: str):
    from spikeflow import nn as snn
    from spikeflow.surrogate import atan

    return snn.LIF(beta=BETA, threshold=THRESHOLD, reset="zero", detach_reset=False, surrogate=atan(ATAN_ALPHA), backend=backend)


class _SFBasicBlock(torch.nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, backend: str) -> None:
        super().__init__()
        from spikeflow import nn as snn

        self.conv1 = snn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = snn.BatchNorm2d(cout)
        self.sn1 = _sf_lif(backend)
        self.conv2 = snn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = snn.BatchNorm2d(cout)
        self.sn2 = _sf_lif(backend)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = torch.nn.Sequential(snn.Conv2d(cin, cout, 1, stride, bias=False), snn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.sn1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        out, _ = self.sn2(out + identity)
        return out


class SpikeflowResNet18(torch.nn.Module):
    """Spiking ResNet-18, CIFAR form, time-major ``[T, B, 3, H, W] -> [T, B, classes]``,
    from ``spikeflow.nn`` parts (module order as SpikingJelly's ``SpikingResNet``)."""

    def __init__(self, classes: int = CLASSES, backend: str = "auto") -> None:
        super().__init__()
        from spikeflow import nn as snn

        self.conv1 = snn.Conv2d(3, WIDTHS[0], 3, 1, 1, bias=False)
        self.bn1 = snn.BatchNorm2d(WIDTHS[0])
        self.sn1 = _sf_lif(backend)
        cin = WIDTHS[0]
        for stage, (width, blocks) in enumerate(zip(WIDTHS, BLOCKS)):
            stride = 1 if stage == 0 else 2
            layers = []
            for b in range(blocks):
                layers.append(_SFBasicBlock(cin, width, stride if b == 0 else 1, backend))
                cin = width
            setattr(self, f"layer{stage + 1}", torch.nn.Sequential(*layers))
        self.avgpool = snn.AdaptiveAvgPool2d(1)
        self.flatten = snn.Flatten()
        self.fc = snn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, _ = self.sn1(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.flatten(self.avgpool(x)))


def spikeflow_resnet18(backend: str = "auto", classes: int = CLASSES) -> SpikeflowResNet18:
    return SpikeflowResNet18(classes, backend)


# --------------------------------------------------------------------------- SpikingJelly


def spikingjelly_resnet18(classes: int = CLASSES) -> torch.nn.Module:
    """SpikingJelly's ``spiking_resnet18`` with the CIFAR stem, multi-step LIFNode."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from spikingjelly.activation_based import functional, layer, neuron, surrogate
        from spikingjelly.activation_based.model import spiking_resnet

    net = spiking_resnet.spiking_resnet18(
        spiking_neuron=neuron.LIFNode,
        num_classes=classes,
        tau=TAU,
        decay_input=False,
        v_threshold=THRESHOLD,
        v_reset=0.0,
        surrogate_function=surrogate.ATan(alpha=ATAN_ALPHA),
        detach_reset=False,
    )
    net.conv1 = layer.Conv2d(3, WIDTHS[0], kernel_size=3, stride=1, padding=1, bias=False)
    torch.nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")  # as SpikingResNet inits
    net.maxpool = torch.nn.Identity()
    functional.set_step_mode(net, "m")
    return net


# --------------------------------------------------------------------------- structure


def count_parameters(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def _is_neuron(m: torch.nn.Module) -> bool:
    name = type(m).__name__
    return name in ("LIF", "LIFNode")


def layer_counts(net: torch.nn.Module) -> Dict[str, int]:
    """Number of Conv2d, BatchNorm2d, Linear and LIF modules (wrappers not counted twice)."""
    counts = {"conv2d": 0, "batchnorm2d": 0, "linear": 0, "lif": 0}
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            counts["conv2d"] += 1
        elif isinstance(m, torch.nn.BatchNorm2d):
            counts["batchnorm2d"] += 1
        elif isinstance(m, torch.nn.Linear):
            counts["linear"] += 1
        elif _is_neuron(m):
            counts["lif"] += 1
    return counts


def _weighted(net: torch.nn.Module) -> List[torch.nn.Module]:
    return [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.BatchNorm2d, torch.nn.Linear))]


def copy_weights(src: torch.nn.Module, dst: torch.nn.Module) -> None:
    """Copy conv / BN (with running statistics) / linear weights in module order."""
    a, b = _weighted(src), _weighted(dst)
    if len(a) != len(b):
        raise ValueError(f"different layer lists: {len(a)} vs {len(b)} weighted layers")
    for ma, mb in zip(a, b):
        sa = ma.state_dict()
        sb = mb.state_dict()
        if sa.keys() != sb.keys() or any(sa[k].shape != sb[k].shape for k in sa):
            raise ValueError(f"layer mismatch: {ma} vs {mb}")
        mb.load_state_dict(sa)


# --------------------------------------------------------------------------- helpers


def spikeflow_backends(device: torch.device) -> Dict[str, Optional[str]]:
    """Every backend registered for LIF -> None if it runs these settings on ``device``, else why not."""
    from spikeflow.backends import backends_for
    from spikeflow.neurons import LIFParams, model_of
    from spikeflow.surrogate import atan

    params = LIFParams(beta=BETA, threshold=THRESHOLD, reset="zero", detach_reset=False, surrogate=atan(ATAN_ALPHA))
    probe = torch.zeros(2, 1, 4, device=device)
    out: Dict[str, Optional[str]] = {}
    for b in backends_for(model_of(params)):
        if b.name in out:
            continue
        out[b.name] = b.why_not(params, probe, False)
    return out


def _inputs(timesteps: int, batch: int, seed: int, device: torch.device):
    gen = torch.Generator().manual_seed(seed)
    img = torch.randn(batch, 3, 32, 32, generator=gen)
    labels = torch.randint(0, CLASSES, (batch,), generator=gen)
    x = img.unsqueeze(0).repeat(timesteps, 1, 1, 1, 1)  # direct encoding, outside the timing
    return x.to(device), labels.to(device)


def _step_fn(net: torch.nn.Module, sj_reset) -> callable:
    def step(x, labels):
        if sj_reset is not None:
            sj_reset(net)
        out = net(x)  # [T, B, classes]
        loss = F.cross_entropy(out.mean(0), labels)
        loss.backward()
        return out

    return step


def firing_rates(net: torch.nn.Module, run) -> List[float]:
    """Mean spike rate of every LIF module (in module order) during ``run()``."""
    rates: List[float] = []
    hooks = []

    def hook(module, inputs, output):
        spikes = output[0] if isinstance(output, tuple) else output
        rates.append(spikes.detach().float().mean().item())

    for m in net.modules():
        if _is_neuron(m):
            hooks.append(m.register_forward_hook(hook))
    try:
        run()
    finally:
        for h in hooks:
            h.remove()
    return rates


def _check(sj_net, sf_nets: Dict[str, torch.nn.Module], sj_reset, device, seed: int) -> Dict[str, dict]:
    """Same weights, same input: logits and parameter gradients of each spikeflow
    network against SpikingJelly's (on copies, so the BN statistics stay untouched)."""
    x, labels = _inputs(CHECK["timesteps"], CHECK["batch"], seed + 1, device)
    sj = copy.deepcopy(sj_net)
    sj.zero_grad(set_to_none=True)
    box = {}
    sj_rates = firing_rates(sj, lambda: box.setdefault("out", _step_fn(sj, sj_reset)(x, labels)))
    ref_out = box["out"].detach()
    ref_grad = torch.cat([p.grad.flatten() for p in sj.parameters()])
    result = {"spikingjelly": {"lif_firing_rates": sj_rates, "mean_firing_rate": sum(sj_rates) / max(1, len(sj_rates))}}
    for name, net in sf_nets.items():
        info: dict = {"input": f"T={CHECK['timesteps']}, B={CHECK['batch']}, 3x32x32", "against": "spikingjelly"}
        try:
            sf = copy.deepcopy(net)
            sf.zero_grad(set_to_none=True)
            box = {}
            rates = firing_rates(sf, lambda: box.setdefault("out", _step_fn(sf, None)(x, labels)))
            out = box["out"].detach()
            info["lif_firing_rates"] = rates
            info["mean_firing_rate"] = sum(rates) / max(1, len(rates))
            info["lif_spike_rates_equal"] = rates == sj_rates
            grad = torch.cat([p.grad.flatten() for p in sf.parameters()])
            diff = (out - ref_out).abs().max().item()
            scale = ref_out.abs().max().item() or 1.0
            cos = F.cosine_similarity(grad.double(), ref_grad.double(), dim=0).item()
            info.update(
                logits_max_abs_diff=diff,
                logits_max_rel_diff=diff / scale,
                grad_cosine=cos,
                grad_rel_l2_diff=((grad - ref_grad).norm() / ref_grad.norm().clamp_min(1e-30)).item(),
                tolerance={"logits_rel": CHECK_LOGIT_RTOL, "grad_cosine_min": CHECK_GRAD_COSINE_MIN},
            )
            info["passed"] = bool(diff / scale <= CHECK_LOGIT_RTOL and cos >= CHECK_GRAD_COSINE_MIN)
        except Exception as exc:  # noqa: BLE001
            info.update(passed=False, error=f"{type(exc).__name__}: {exc}")
        result[name] = info
    return result


# --------------------------------------------------------------------------- run


def run(opts) -> dict:
    started = time.perf_counter()
    device = torch.device(option(opts, "device", "cpu"))
    quick = bool(option(opts, "quick", False))
    seed = int(option(opts, "seed", 0))
    impls = getattr(opts, "impls", None)
    cfg = QUICK if quick else FULL
    repeats_req = int(option(opts, "repeats", 1 if quick else CPU_MAX_REPEATS))
    warmup_req = int(option(opts, "warmup", 0 if quick else 1))
    repeats, warmup = repeats_req, warmup_req
    if device.type == "cpu" and not quick:
        repeats, warmup = min(repeats, CPU_MAX_REPEATS), min(warmup, CPU_MAX_WARMUP)
    sync = synchronizer(device)
    notes: List[str] = []

    implementations: Dict[str, dict] = {}
    torch.manual_seed(seed)

    # SpikingJelly first: its weights are copied into every spikeflow network.
    sj_net = sj_reset = None
    sj_name = "spikingjelly"
    sj_entry = {
        "library": "spikingjelly",
        "api": "spikingjelly.activation_based.model.spiking_resnet.spiking_resnet18(spiking_neuron=neuron.LIFNode, "
        "tau=2, decay_input=False, v_threshold=1, v_reset=0, surrogate_function=ATan(2), detach_reset=False), "
        "conv1 -> 3x3 stride 1, maxpool -> Identity, functional.set_step_mode(net, 'm'); functional.reset_net "
        "before every forward",
        "notes": [
            "LIFNode: h = v - (v - v_reset)/tau + x = 0.5 v + x (exact, as spikeflow's 0.5 v + x); spike where "
            "h - 1 >= 0 (spikeflow: > 0; only exact ties differ); hard reset v = h (1 - s).",
            "On CPU SpikingJelly 2.x runs its LIF as torch.ops.sj_lif (per-step loops, hand-written backward); on "
            "CUDA its own kernel selection (SJ_LIF_CUDA_IMPLEMENTATION, default as installed).",
        ],
    }
    if True:  # built even when filtered out: it provides the shared weights
        try:
            sj_net = spikingjelly_resnet18().to(device)
            from spikingjelly.activation_based import functional as sj_functional

            sj_reset = sj_functional.reset_net
            sj_entry["status"] = "ok" if selected(sj_name, impls) else "skipped"
            if sj_entry["status"] == "skipped":
                sj_entry["reason"] = "not selected by the impls filter (its weights are still used)"
        except Exception as exc:  # noqa: BLE001
            sj_entry.update(status="unavailable", reason=f"not importable / buildable here ({type(exc).__name__}: {exc})")
    implementations[sj_name] = sj_entry

    sf_nets: Dict[str, torch.nn.Module] = {}
    try:
        backends = spikeflow_backends(device)
    except Exception as exc:  # noqa: BLE001
        backends = {}
        implementations["spikeflow"] = {"status": "unavailable", "reason": f"{type(exc).__name__}: {exc}"}
    for backend, why_not in backends.items():
        name = f"spikeflow-{backend}"
        entry = {
            "library": "spikeflow",
            "api": f"SpikeflowResNet18(backend={backend!r}): spikeflow.nn Conv2d/BatchNorm2d/AdaptiveAvgPool2d/Linear "
            f"(TimeDistributed over T*B) + spikeflow.nn.LIF(beta=0.5, threshold=1, reset='zero', surrogate=atan(2), "
            f"backend={backend!r})",
            "notes": ["Spike where h - 1 > 0 (strict); hard reset v = h - s h; reset not detached."],
        }
        if not selected(name, impls):
            entry.update(status="skipped", reason="not selected by the impls filter")
        elif why_not is not None:
            entry.update(status="unavailable", reason=why_not)
        else:
            try:
                net = spikeflow_resnet18(backend).to(device)
                if sj_net is not None:
                    copy_weights(sj_net, net)
                sf_nets[name] = net
                entry["status"] = "ok"
            except Exception as exc:  # noqa: BLE001
                entry.update(status="unavailable", reason=f"{type(exc).__name__}: {exc}")
        implementations[name] = entry

    # Structure: identical layers and parameter counts (asserted).
    structure: dict = {}
    any_sf = next(iter(sf_nets.values()), None)
    if any_sf is None and backends:
        any_sf = spikeflow_resnet18("reference")
    if any_sf is not None:
        structure["spikeflow"] = {"parameters": count_parameters(any_sf), "layers": layer_counts(any_sf)}
    if sj_net is not None:
        structure["spikingjelly"] = {"parameters": count_parameters(sj_net), "layers": layer_counts(sj_net)}
    if "spikeflow" in structure and "spikingjelly" in structure:
        structure["equal"] = structure["spikeflow"] == structure["spikingjelly"]
        if not structure["equal"]:
            raise AssertionError(f"the two ResNet-18s differ: {structure}")
    if sj_net is None:
        notes.append("SpikingJelly unavailable: spikeflow's networks keep their own (default) initialisation.")

    check = {}
    if sj_net is not None and sf_nets:
        report_progress(opts, NAME, "checking spikeflow against SpikingJelly (same weights, same input)")
        check = _check(sj_net, sf_nets, sj_reset, device, seed)
        for name, info in check.items():
            if name in implementations:
                implementations[name]["check"] = info

    runners = {name: (net, None) for name, net in sf_nets.items()}
    if sj_net is not None and implementations[sj_name]["status"] == "ok":
        runners[sj_name] = (sj_net, sj_reset)

    results: List[dict] = []
    batch = cfg["batch"]
    for T in cfg["timesteps"]:
        report_progress(opts, NAME, f"T={T} B={batch}")
        x, labels = _inputs(T, batch, seed, device)
        timed: List[Timed] = []
        entries: Dict[str, dict] = {}
        for name, entry in implementations.items():
            if name not in runners:
                entries[name] = {"status": entry.get("status"), "reason": entry.get("reason")}
        for name, (net, reset) in runners.items():
            net.train()
            step = _step_fn(net, reset)

            def setup(net=net):
                net.zero_grad(set_to_none=True)
                sync()

            def call(step=step):
                out = step(x, labels)
                sync()
                return out

            entry: dict = {"status": "ok"}
            try:  # one untimed step (first-call costs; CUDA: its peak memory)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                    base = torch.cuda.memory_allocated(device)
                    torch.cuda.reset_peak_memory_stats(device)
                setup()
                call()
                if device.type == "cuda":
                    entry["cuda_peak_bytes_step"] = torch.cuda.max_memory_allocated(device) - base
            except Exception as exc:  # noqa: BLE001
                entries[name] = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
                continue
            entries[name] = entry
            timed.append(Timed(name, call, setup))
        load_before = load_average()
        t0 = time.perf_counter()
        round_robin(timed, repeats=repeats, warmup=warmup)
        wall = time.perf_counter() - t0
        for item in timed:
            e = entries[item.name]
            if item.error is not None:
                e.update(status="failed", reason=item.error)
            if item.samples_s:
                e.update(summarize(item.samples_s))
                e["images_per_s"] = batch / (e["median_ms"] / 1e3)
                e["image_steps_per_s"] = batch * T / (e["median_ms"] / 1e3)
        sj_ms = entries.get(sj_name, {}).get("median_ms")
        ratios = {
            f"{sj_name}_ms_over_{n}_ms": (sj_ms / entries[n]["median_ms"]) if (sj_ms and entries[n].get("median_ms")) else None
            for n in sf_nets
        }
        results.append(
            {
                "T": T,
                "batch": batch,
                "label": f"T={T} B={batch}",
                "implementations": entries,
                "ratios": ratios,
                "wall_s": round(wall, 2),
                "load_average_before": load_before,
                "load_average_after": load_average(),
            }
        )
        del x, labels, timed
        gc.collect()

    if repeats != repeats_req or warmup != warmup_req:
        notes.append(
            f"repeats/warmup capped to {repeats}/{warmup} (asked {repeats_req}/{warmup_req}): one step takes seconds "
            + ("on CPU" if not quick else "(quick mode)")
        )
    report = {
        "name": NAME,
        "schema": SCHEMA,
        "description": "spiking ResNet-18 (CIFAR form, 32x32x3, 3x3 stem, BasicBlocks [2,2,2,2], widths 64-512, BN, "
        f"LIF after every BN-ReLU position, avg pool, Linear 10), direct input repeated T times, one training step "
        f"(forward + cross-entropy + backward, no optimizer) on {device}: spikeflow vs SpikingJelly",
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "quick": quick,
        "device": str(device),
        "settings": {
            "timesteps": list(cfg["timesteps"]),
            "batch": batch,
            "input": "randn(B, 3, 32, 32) repeated over T (direct encoding, outside the timing); labels randint(10)",
            "neuron": f"LIF tau={TAU:g} (beta={BETA:g}, no input scaling), threshold {THRESHOLD:g}, hard reset to 0, "
            f"reset not detached, arc-tangent surrogate alpha={ATAN_ALPHA:g} (g(u) = 1/(1+(pi u)^2))",
            "loss": "cross_entropy(output.mean over T, labels); loss.backward(); zero_grad(set_to_none) before each step (untimed)",
            "mode": "train (BatchNorm batch statistics over T*B)",
            "weights": "SpikingJelly's initialisation (kaiming fan_out convs, BN 1/0), copied into every spikeflow network",
            "repeats": repeats,
            "warmup": warmup,
            "repeats_requested": repeats_req,
            "warmup_requested": warmup_req,
            "seed": seed,
            "threads": torch.get_num_threads(),
            "timing": "perf_counter around one step, gc off; implementations interleaved round-robin, order rotated "
            "every round; median and IQR" + ("; torch.cuda.synchronize before and after each step" if device.type == "cuda" else ""),
            "check": f"before timing, on copies: T={CHECK['timesteps']}, B={CHECK['batch']}, same weights and input: "
            f"logits max rel diff <= {CHECK_LOGIT_RTOL:g}, parameter-gradient cosine >= {CHECK_GRAD_COSINE_MIN:g}",
        },
        "structure": structure,
        "implementations": implementations,
        "results": results,
        "ratios": [
            target_row(NAME, r["label"], f"speedup_vs_spikingjelly ({n})", r["ratios"].get(f"{sj_name}_ms_over_{n}_ms"),
                        None, None, f"{sj_name} ms per step / {n} ms per step (no target in the issue)")
            for r in results for n in sf_nets
        ],
        "ratio_details": {r["label"]: r["ratios"] for r in results},
        "notes": notes
        + [
            "images_per_s = B / step time (each image simulated for T steps); image_steps_per_s = B*T / step time.",
            "spikeflow has no time-major spiking ResNet builder (spikeflow.convert.models.resnet18 is the ANN used "
            "for conversion); SpikeflowResNet18 in this module is built from spikeflow.nn parts.",
        ],
        "machine": {**machine_info(), "torch_num_threads": torch.get_num_threads(), "load_average_end": load_average()},
        "libraries": library_versions(["torch", "spikeflow", "spikingjelly"]),
        "wall_s": round(time.perf_counter() - started, 1),
    }
    report = json_safe(report)
    report["markdown"] = markdown(report)
    return report


def _fmt(v, spec=".1f"):
    return "–" if v is None else format(v, spec)


def markdown(report: dict) -> str:
    lines = ["| T | B | implementation | ms / step | IQR ms | images / s | SpikingJelly / this |", "|---:|---:|---|---:|---:|---:|---:|"]
    for r in report["results"]:
        for name, e in r["implementations"].items():
            if e.get("status") != "ok" or e.get("median_ms") is None:
                continue
            ratio = r["ratios"].get(f"spikingjelly_ms_over_{name}_ms")
            lines.append(
                f"| {r['T']} | {r['batch']} | {name} | {_fmt(e['median_ms'])} | {_fmt(e['iqr_ms'])} | "
                f"{_fmt(e.get('images_per_s'), '.2f')} | {_fmt(ratio, '.2f')} |"
            )
    off = [f"{n} ({e.get('status')}: {e.get('reason')})" for n, e in report["implementations"].items() if e.get("status") not in ("ok",)]
    if off:
        lines.append("")
        lines.append("Not timed: " + "; ".join(off))
    return "\n".join(lines)
