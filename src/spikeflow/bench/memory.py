"""Training memory of one LIF layer: peak memory of one forward+backward pass.

One LIF layer over ``x [T, B, N]`` float32 (default ``100 x 32 x 16384``), the layer of
:mod:`spikeflow.bench.lif_layer` with its adapters and neuron settings (beta 0.9,
threshold 1, subtract reset, slope-10 SuperSpike where the library allows):
spikeflow (every backend in its registry that runs on the device), snnTorch
(``Leaky`` stepped in a loop), Norse (``LIFBoxCell`` stepped in a loop) and
SpikingJelly (multi-step ``LIFNode``). Every implementation is checked against
spikeflow's reference first (:func:`spikeflow.bench.lif_layer.check_correctness`).

What is measured is the memory a call ``spikes = layer(x); spikes.backward(g)`` needs
*beyond* its inputs ``x`` (a leaf that requires grad) and ``g`` (allocated before): the
autograd graph's saved tensors, temporaries, the returned spikes and ``x.grad``.

* **CPU**, each implementation in a fresh subprocess (``python -m
  spikeflow.bench.memory --_probe NAME TxBxN``), after a tiny untimed warm-up call:

  - ``tracked_peak_bytes`` (the reported ``peak_bytes``): exact peak of live tensor
    bytes during the call, counted by :class:`LiveTensorBytes`, a
    ``TorchDispatchMode`` that sees every ATen op (forward and backward): each output
    tensor whose storage is not one of the op's inputs' storages (so views and
    in-place results are not counted again) and not already tracked is a new
    allocation of ``storage.nbytes()``; a ``weakref.finalize`` on the storage (torch
    keeps one Python object per live storage) subtracts it when the storage is
    freed. Not seen: memory a native kernel allocates internally (spikeflow's fused
    backward uses one cache-sized scratch buffer per thread, ~256 KiB) and
    allocator overhead.
  - ``rss_peak_delta_bytes``: peak RSS (``VmHWM``, reset with
    ``/proc/self/clear_refs`` just before the call) minus RSS before it, and
    ``ru_maxrss_delta_bytes`` (``resource.getrusage(RUSAGE_SELF).ru_maxrss`` after
    minus before; 0 when the call stays under an earlier peak, e.g. the parent's,
    which Linux carries over). Both include allocator caching and fragmentation
    (glibc keeps freed small blocks; blocks above its mmap threshold go back to the
    OS), so they are approximate, and a warm allocator can make them smaller than the
    live bytes.

* **CUDA**, in this process, one implementation after another with the cache
  emptied in between: ``torch.cuda.max_memory_allocated()`` after
  ``reset_peak_memory_stats()`` minus ``memory_allocated()`` before the call (the
  reported ``peak_bytes``), and the same dispatch-mode count.

Ratio (the issue's target): ``spikeflow peak / lowest peer peak <= 0.5``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import resource
import subprocess
import sys
import threading
import time
import warnings
import weakref
from typing import Dict, List, Optional

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from .lif_layer import reset_peak_rss, vm_kib
from .options import option, report_progress
from .suite import target_row
from .timing import json_safe, library_versions, load_average, machine_info

__all__ = ["LiveTensorBytes", "run", "probe"]

NAME = "memory"
SCHEMA = "spikeflow-bench/memory/1"
FULL_SIZE = (100, 32, 16384)
QUICK_SIZE = (20, 4, 512)
CHECK_SIZE = (100, 4, 512)
TARGET_RATIO = 0.5
PROBE_TIMEOUT_S = 1800
MIB = 2**20


# --------------------------------------------------------------------------- live tensor bytes


class LiveTensorBytes(TorchDispatchMode):
    """Exact count of tensor storage bytes allocated while the mode is active.

    ``current`` is the bytes of storages created under the mode and still alive,
    ``peak`` its maximum; storages that existed before (inputs, parameters) are not
    counted, nor are views of them or in-place results. Use as a context manager::

        with LiveTensorBytes() as m:
            loss.backward()
        m.peak
    """

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._live: Dict[int, int] = {}
        self.current = 0
        self.peak = 0
        self.allocations = 0
        self.frees = 0
        self.allocated_total = 0

    def _freed(self, key: int) -> None:
        with self._lock:
            nbytes = self._live.pop(key, None)
            if nbytes is not None:
                self.current -= nbytes
                self.frees += 1

    def _storage_key(self, t: torch.Tensor):
        try:
            st = t.untyped_storage()
        except Exception:  # noqa: BLE001 - sparse / meta / tensor subclasses without storage
            return None, None
        return st, st._cdata

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = set()
        for a in tree_leaves((args, kwargs)):
            if isinstance(a, torch.Tensor):
                _, key = self._storage_key(a)
                if key is not None:
                    inputs.add(key)
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor):
                continue
            st, key = self._storage_key(t)
            if key is None:
                continue
            nbytes = st.nbytes()
            with self._lock:
                if key in self._live:  # a tracked storage that an op resized in place
                    grown = nbytes - self._live[key]
                    if grown:
                        self._live[key] = nbytes
                        self.current += grown
                        self.peak = max(self.peak, self.current)
                    continue
                if key in inputs or nbytes == 0:
                    continue
                self._live[key] = nbytes
                self.current += nbytes
                self.allocations += 1
                self.allocated_total += nbytes
                self.peak = max(self.peak, self.current)
            fin = weakref.finalize(st, self._freed, key)
            fin.atexit = False
        return out

    def summary(self) -> dict:
        return {
            "peak_bytes": self.peak,
            "live_bytes_at_exit": self.current,
            "allocations": self.allocations,
            "frees": self.frees,
            "allocated_total_bytes": self.allocated_total,
        }


METHOD_TRACKED = (
    "LiveTensorBytes (a torch.utils._python_dispatch.TorchDispatchMode): every ATen op run during the call "
    "(forward and backward) is intercepted; an output whose storage is neither one of the op's input "
    "storages (views, in-place ops) nor already tracked counts as a new allocation of storage.nbytes(), and a "
    "weakref.finalize on the storage subtracts it when it is freed; peak = maximum of the live sum. Exact for "
    "tensor storages; memory allocated inside native kernels (spikeflow's fused backward: one ~256 KiB scratch "
    "buffer per thread) and allocator overhead are not seen. The inputs x (leaf) and g are allocated before."
)
METHOD_RSS = (
    "rss_peak_delta_bytes: VmHWM (peak RSS, reset via /proc/self/clear_refs just before the call) minus VmRSS "
    "before; ru_maxrss_delta_bytes: resource.getrusage(RUSAGE_SELF).ru_maxrss after minus before (0 when the call "
    "stays below an earlier peak). Fresh subprocess per implementation after a tiny warm-up call; approximate: "
    "includes allocator caching/fragmentation, and freed blocks the allocator kept can be reused without growth."
)
METHOD_CUDA = (
    "torch.cuda.reset_peak_memory_stats(); peak_bytes = torch.cuda.max_memory_allocated() - "
    "torch.cuda.memory_allocated() before the call (synchronized), in-process, cache emptied between "
    "implementations; plus the LiveTensorBytes count"
)


# --------------------------------------------------------------------------- helpers


def _maxrss_bytes() -> int:
    # Linux reports KiB (macOS bytes)
    v = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return v if sys.platform == "darwin" else v * 1024


def _lif():
    """The LIF layer benchmark module (adapters, check, inputs)."""
    from . import lif_layer

    return lif_layer


def _leaf(impl, x: torch.Tensor) -> torch.Tensor:
    """The prepared input as a leaf that requires grad (no copy when there is nothing to prepare)."""
    prepared = impl.prepare(x) if impl.prepare else x
    return prepared.detach().requires_grad_(True)


def _warm(impl, device: str, seed: int) -> None:
    lif = _lif()
    tiny, tiny_g = lif.make_inputs((2, 1, 8), seed, device)
    lif.forward_backward(impl, _leaf(impl, tiny), tiny_g)


def _fwd_bwd_tracked(impl, leaf, g) -> dict:
    lif = _lif()
    with LiveTensorBytes() as m:
        out = lif.forward_backward(impl, leaf, g)
        del out
    return m.summary()


# --------------------------------------------------------------------------- CPU probe (subprocess)


def probe(name: str, size, seed: int, device: str = "cpu") -> dict:
    """Measure one implementation on ``device`` (CPU: meant for a fresh subprocess)."""
    lif = _lif()
    impls = lif.build_impls([name], device)
    impl = next((i for i in impls if i.name == name), None)
    if impl is None:
        return {"status": "unavailable", "reason": f"no implementation named {name!r} here"}
    if not impl.available_for("forward_backward"):
        return {"status": "unavailable", "reason": impl.unavailable or impl.mode_unavailable.get("forward_backward")}
    try:
        _warm(impl, device, seed)  # lazy initialisation / kernel build, outside the measurement
        x, g = lif.make_inputs(size, seed, device)
        leaf = _leaf(impl, x)
        del x
        gc.collect()
        out: dict = {"status": "ok", "input_bytes": leaf.numel() * leaf.element_size()}
        if device == "cpu":
            ru_before = _maxrss_bytes()
            reset = reset_peak_rss()
            rss_before = vm_kib("VmRSS")
            spikes = lif.forward_backward(impl, leaf, g)
            hwm = vm_kib("VmHWM")
            ru_after = _maxrss_bytes()
            out["firing_rate"] = spikes.detach().float().mean().item()
            del spikes
            out["rss_before_call_bytes"] = None if rss_before is None else rss_before * 1024
            out["rss_peak_delta_bytes"] = (
                (hwm - rss_before) * 1024 if (reset and hwm is not None and rss_before is not None) else None
            )
            out["ru_maxrss_before_bytes"] = ru_before
            out["ru_maxrss_delta_bytes"] = ru_after - ru_before
        else:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            before = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            spikes = lif.forward_backward(impl, leaf, g)
            torch.cuda.synchronize()
            out["cuda_peak_delta_bytes"] = torch.cuda.max_memory_allocated() - before
            out["firing_rate"] = spikes.detach().float().mean().item()
            del spikes
        leaf.grad = None
        gc.collect()
        tracked = _fwd_bwd_tracked(impl, leaf, g)
        if device != "cpu":
            torch.cuda.synchronize()
        out["tracked"] = tracked
        out["tracked_peak_bytes"] = tracked["peak_bytes"]
        out["peak_bytes"] = tracked["peak_bytes"] if device == "cpu" else out["cuda_peak_delta_bytes"]
        return out
    except Exception as exc:  # noqa: BLE001
        return {"status": "failed", "reason": f"{type(exc).__name__}: {' '.join(str(exc).split())[:500]}"}
    finally:
        if impl.finalize is not None:
            impl.finalize()


def _probe_subprocess(name: str, size, seed: int, threads: int) -> dict:
    cmd = [
        sys.executable, "-m", "spikeflow.bench.memory", "--_probe", name, "x".join(map(str, size)),
        "--seed", str(seed), "--threads", str(threads),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001
        return {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
    lines = [l for l in proc.stdout.strip().splitlines() if l.startswith("{")]
    if not lines:
        return {"status": "failed", "reason": f"probe exited {proc.returncode}: {(proc.stderr or proc.stdout)[-500:]}"}
    return json.loads(lines[-1])


# --------------------------------------------------------------------------- run


def spikeflow_keeps(size) -> dict:
    """What spikeflow's fused CPU backend saves for the backward of one LIF layer."""
    T, B, N = size
    info = {
        "summary": "spikeflow's fused 'cpu' backend (src/spikeflow/backends/cpu.py) saves for backward only the "
        "input x, the initial state and a checkpoint of the state before every K-th step "
        "([ceil(T/K), B, N] per state field); the backward recomputes each K-step segment from its checkpoint "
        "(bit for bit) into a per-thread cache-sized buffer and walks it in reverse. So besides x, g, the "
        "returned spikes and x.grad (T*B*N each), it keeps O(T/K * B * N), not the O(T * B * N * several) of a "
        "per-step autograd graph (snnTorch, Norse, spikeflow's reference backend)."
    }
    try:
        from ..backends.cpu import _checkpoint_interval

        k = _checkpoint_interval(1, 4)  # LIF: one state field (v), float32
        rows = -(-T // k)
        info.update(
            checkpoint_interval_K=k,
            checkpoint_rows=rows,
            checkpoint_bytes=rows * B * N * 4,
            spikes_bytes=T * B * N * 4,
            grad_x_bytes=T * B * N * 4,
            expected_peak_bytes_approx=(2 * T + rows + 2) * B * N * 4,
            expected_formula="spikes + x.grad + checkpoints + initial/final state = (2T + ceil(T/K) + 2) * B * N * 4 bytes",
        )
    except Exception as exc:  # noqa: BLE001
        info["checkpoint_interval_K"] = None
        info["reason"] = f"could not read the checkpoint interval: {type(exc).__name__}: {exc}"
    return info


def run(opts) -> dict:
    started = time.perf_counter()
    device = str(option(opts, "device", "cpu"))
    quick = bool(option(opts, "quick", False))
    seed = int(option(opts, "seed", 0))
    impls_filter = getattr(opts, "impls", None)
    size = QUICK_SIZE if quick else FULL_SIZE
    threads = int(getattr(opts, "threads", 0) or 0) or torch.get_num_threads()
    report: dict = {
        "name": NAME,
        "schema": SCHEMA,
        "description": (
            f"peak memory of one forward+backward of one LIF layer [T, B, N] = {'x'.join(map(str, size))} float32 "
            f"on {device}, beyond the input x and the upstream gradient g; spikeflow vs snnTorch, Norse, SpikingJelly"
        ),
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "quick": quick,
        "device": device,
    }
    try:
        lif = _lif()
    except Exception as exc:  # noqa: BLE001
        report.update(results=[], ratios={}, markdown=f"unavailable: spikeflow.bench.lif_layer not importable ({exc})")
        return json_safe(report)

    report_progress(opts, NAME, "building and checking implementations")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        impls = lif.build_impls(list(impls_filter) if impls_filter else None, device)
        check_size = size if quick else CHECK_SIZE
        lif.check_correctness(impls, check_size, seed, device)
    for impl in impls:
        if impl.finalize is not None:
            impl.finalize()

    rows: List[dict] = []
    for impl in impls:
        row = {"implementation": impl.name, "library": impl.library, "api": impl.api, "check": impl.check}
        if not impl.available_for("forward_backward"):
            row.update(status="unavailable", reason=impl.unavailable or impl.mode_unavailable.get("forward_backward"))
            rows.append(row)
            continue
        report_progress(opts, NAME, f"{impl.name} {'x'.join(map(str, size))}")
        t0 = time.perf_counter()
        if device == "cpu":
            res = _probe_subprocess(impl.name, size, seed, threads)
        else:
            res = probe(impl.name, size, seed, device)
        res["wall_s"] = round(time.perf_counter() - t0, 2)
        row.update(res)
        if row.get("peak_bytes") is not None:
            row["peak_mib"] = row["peak_bytes"] / MIB
            if row.get("input_bytes"):
                row["peak_over_input"] = row["peak_bytes"] / row["input_bytes"]
        rows.append(row)

    ok = {r["implementation"]: r for r in rows if r.get("status") == "ok" and r.get("peak_bytes") is not None}
    peers = {n: r["peak_bytes"] for n, r in ok.items() if not n.startswith("spikeflow")}
    lowest_peer = min(peers, key=peers.get) if peers else None
    details: dict = {
        "lowest_peer": lowest_peer,
        "lowest_peer_peak_bytes": peers.get(lowest_peer) if lowest_peer else None,
        "target": f"spikeflow peak / lowest peer peak <= {TARGET_RATIO:g}",
        "spikeflow_peak_over_lowest_peer_peak": {},
        "met": {},
    }
    for n, r in ok.items():
        if n.startswith("spikeflow"):
            ratio = (r["peak_bytes"] / peers[lowest_peer]) if lowest_peer and peers[lowest_peer] else None
            details["spikeflow_peak_over_lowest_peer_peak"][n] = ratio
            details["met"][n] = None if ratio is None else ratio <= TARGET_RATIO
            r["ratio_to_lowest_peer"] = ratio
    sf_ok = {n: r["peak_bytes"] for n, r in ok.items() if n.startswith("spikeflow")}
    best_sf = min(sf_ok, key=sf_ok.get) if sf_ok else None
    case = "x".join(map(str, size)) + " forward+backward"
    ratios = []
    for n in sf_ok:
        value = details["spikeflow_peak_over_lowest_peer_peak"][n]
        targeted = n == best_sf
        ratios.append(target_row(
            NAME, case, f"peak_over_lowest_peer_peak ({n})", value,
            "<=" if targeted else None, TARGET_RATIO if targeted else None,
            f"{n} peak bytes / {lowest_peer or 'lowest peer (none ran)'} peak bytes"
            + (" (lowest spikeflow: the issue's target)" if targeted else ""),
        ))
    report.update(
        settings={
            "size": {"T": size[0], "B": size[1], "N": size[2]},
            "layer": "spikeflow.bench.lif_layer adapters: beta 0.9, threshold 1, subtract reset, slope-10 SuperSpike "
            "where the library allows (see the lif_layer configuration's notes for each library's differences)",
            "call": "x = rand(T, B, N) * 0.5 as a leaf with requires_grad (Norse: its prepared input 10 x), "
            "spikes = layer(x); spikes.backward(g), g = randn(T, B, N) fixed",
            "method": METHOD_TRACKED if device == "cpu" else METHOD_CUDA,
            "method_tracked": METHOD_TRACKED,
            "method_rss": METHOD_RSS if device == "cpu" else None,
            "peak_bytes": "CPU: tracked_peak_bytes (exact live tensor bytes); CUDA: max_memory_allocated delta",
            "check": {"input_shape": list(check_size), "what": "spikeflow.bench.lif_layer.check_correctness"},
            "threads": threads,
            "seed": seed,
        },
        implementations={i.name: {"status": "unavailable" if i.unavailable else "ok", "notes": i.notes, **(
            {"reason": i.unavailable} if i.unavailable else {})} for i in impls},
        results=rows,
        ratios=ratios,
        ratio_details=details,
        notes=[
            spikeflow_keeps(size)["summary"],
            "Counted in every implementation: the returned spikes and x.grad (T*B*N*4 bytes each), which any "
            "training step holds; so no implementation can go below about 2x the input size.",
            "spikeflow-reference is a per-step autograd loop like the peers, shown for comparison.",
        ],
        spikeflow_saved_for_backward=spikeflow_keeps(size),
        machine={**machine_info(), "torch_num_threads": torch.get_num_threads(), "load_average_end": load_average()},
        libraries=library_versions(["torch", "spikeflow", "snntorch", "norse", "spikingjelly"]),
        wall_s=round(time.perf_counter() - started, 1),
    )
    report = json_safe(report)
    report["markdown"] = markdown(report)
    return report


def _mib(v) -> str:
    return "–" if v is None else f"{v / MIB:.1f}"


def markdown(report: dict) -> str:
    cpu = report.get("device") == "cpu"
    head = "| implementation | peak MiB (live tensors) | peak / input | RSS growth MiB | ratio to lowest peer |" if cpu else (
        "| implementation | peak MiB (max_memory_allocated) | peak / input | live-tensor count MiB | ratio to lowest peer |")
    lines = [head, "|---|---:|---:|---:|---:|"]
    unavailable = []
    for r in report["results"]:
        if r.get("status") != "ok":
            unavailable.append(f"{r['implementation']} ({r.get('status')}: {r.get('reason')})")
            continue
        third = r.get("rss_peak_delta_bytes") if cpu else r.get("tracked_peak_bytes")
        ratio = r.get("ratio_to_lowest_peer")
        lines.append(
            f"| {r['implementation']} | {_mib(r.get('peak_bytes'))} | "
            f"{'–' if r.get('peak_over_input') is None else format(r['peak_over_input'], '.2f')} | {_mib(third)} | "
            f"{'–' if ratio is None else format(ratio, '.3f')} |"
        )
    rt = report.get("ratio_details", {})
    if rt.get("lowest_peer"):
        lines.append("")
        lines.append(f"Lowest peer: {rt['lowest_peer']}. Target: {rt['target']}.")
    if unavailable:
        lines.append("")
        lines.append("Not measured: " + "; ".join(unavailable))
    return "\n".join(lines)


def _main(argv=None) -> int:
    p = argparse.ArgumentParser(description="memory probe (internal; use spikeflow bench)")
    p.add_argument("--_probe", nargs=2, metavar=("IMPL", "SIZE"), dest="probe", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    name, size_text = args.probe
    size = tuple(int(v) for v in size_text.split("x"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = probe(name, size, args.seed, args.device)
    print(json.dumps(json_safe(res)))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
