"""Small timing helpers shared by the benchmarks (no other spikeflow imports here).

- :func:`round_robin` times several implementations interleaved, so that machine
  noise (other processes, frequency changes) hits all of them alike.
- :func:`summarize` turns samples into median / IQR statistics.
- :func:`machine_info` collects what is needed to interpret the numbers later.
"""

from __future__ import annotations

import gc
import json
import math
import os
import platform
import statistics
import sys
import time
from importlib import metadata
from typing import Callable, Dict, List, Optional, Sequence

__all__ = [
    "Timed",
    "json_safe",
    "library_versions",
    "load_average",
    "machine_info",
    "quantile",
    "round_robin",
    "summarize",
    "synchronizer",
    "write_report",
]


class Timed:
    """One implementation to time: ``setup()`` runs untimed before every call,
    ``call()`` is the measured work. Any exception marks it as failed and it is
    dropped from the remaining rounds (the reason is kept in ``error``)."""

    def __init__(self, name: str, call: Callable[[], object], setup: Optional[Callable[[], object]] = None):
        self.name = name
        self.call = call
        self.setup = setup
        self.samples_s: List[float] = []
        self.error: Optional[str] = None

    def once(self) -> float:
        if self.setup is not None:
            self.setup()
        enabled = gc.isenabled()
        gc.disable()
        try:
            start = time.perf_counter()
            self.call()
            return time.perf_counter() - start
        finally:
            if enabled:
                gc.enable()


def round_robin(items: Sequence[Timed], repeats: int, warmup: int) -> None:
    """Warm every item up ``warmup`` times, then run ``repeats`` rounds; in round ``r``
    the items run in an order rotated by ``r`` so no item always goes first or last.
    Fills ``item.samples_s`` (seconds) or ``item.error``."""
    live = list(items)
    for _ in range(warmup):
        for item in list(live):
            try:
                item.once()
            except Exception as exc:  # noqa: BLE001 - recorded, not fatal
                item.error = f"{type(exc).__name__}: {exc}"
                live.remove(item)
    for r in range(repeats):
        if not live:
            return
        gc.collect()
        k = r % len(live)
        order = live[k:] + live[:k]
        for item in order:
            try:
                item.samples_s.append(item.once())
            except Exception as exc:  # noqa: BLE001
                item.error = f"{type(exc).__name__}: {exc}"
                live.remove(item)


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default) of already sorted values."""
    n = len(sorted_values)
    if n == 1:
        return float(sorted_values[0])
    pos = q * (n - 1)
    lo = int(pos)
    hi = min(lo + 1, n - 1)
    return float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo))


def summarize(samples_s: Sequence[float]) -> Dict[str, object]:
    """Median, quartiles and IQR in milliseconds of samples given in seconds."""
    ms = sorted(s * 1e3 for s in samples_s)
    q1, q3 = quantile(ms, 0.25), quantile(ms, 0.75)
    return {
        "median_ms": statistics.median(ms),
        "iqr_ms": q3 - q1,
        "q1_ms": q1,
        "q3_ms": q3,
        "min_ms": ms[0],
        "max_ms": ms[-1],
        "repeats": len(ms),
        "samples_ms": [round(v, 4) for v in ms],
    }


def library_versions(names: Sequence[str]) -> Dict[str, Optional[str]]:
    """Installed distribution versions (None when not installed)."""
    out: Dict[str, Optional[str]] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def load_average() -> Optional[List[float]]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _physical_cores() -> Optional[int]:
    try:
        cores = set()
        phys = core = None
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("physical id"):
                    phys = line.split(":", 1)[1].strip()
                elif line.startswith("core id"):
                    core = line.split(":", 1)[1].strip()
                elif not line.strip():
                    if core is not None:
                        cores.add((phys, core))
                    phys = core = None
        if core is not None:
            cores.add((phys, core))
        return len(cores) or None
    except OSError:
        return None


def _mem_total_gib() -> Optional[float]:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def machine_info() -> Dict[str, object]:
    """CPU model, core counts, memory, OS, Python and torch build facts."""
    import torch

    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    parallel = ""
    try:
        parallel = torch.__config__.parallel_info()
    except Exception:  # noqa: BLE001
        pass
    backend_line = next((l.strip() for l in parallel.splitlines() if "parallel backend" in l.lower()), None)
    return {
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": _physical_cores(),
        "cores_available_to_process": affinity,
        "mem_total_gib": _mem_total_gib(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torch_parallel_backend": backend_line,
        "torch_cuda_available": torch.cuda.is_available(),
        "torch_mkldnn": bool(torch.backends.mkldnn.is_available()),
    }


def json_safe(value):
    """``value`` with NaN/inf floats (also inside dicts and lists) replaced by None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def write_report(report: dict, path: str) -> None:
    """Write ``report`` as indented JSON to ``path`` atomically (temporary file, rename)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2, allow_nan=False, default=str)
        f.write("\n")
    os.replace(tmp, path)


def synchronizer(device) -> Callable[[], None]:
    """A function that waits for the work queued on ``device`` (``torch.cuda.synchronize``
    on CUDA, nothing on CPU): call it before reading the clock around GPU work."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        return lambda: torch.cuda.synchronize(dev)
    return lambda: None
