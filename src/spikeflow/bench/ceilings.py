"""Measured machine ceilings and the floors they imply.

- **Memory bandwidth**: ``dst.copy_(src)`` of a large float32 buffer (256 MiB on CPU,
  1 GiB on CUDA; 64 MiB with ``quick``), counted as bytes read + bytes written
  (2 x size, the STREAM "copy" convention: a CPU's write-allocate traffic is not
  counted) over the median time. On CPU it uses torch's intra-op thread count as set.
- **GEMM rate**: float32 ``torch.mm`` of two square matrices (2048 on CPU, 4096 on
  CUDA; 512 / 1024 with ``quick``), ``2 n^3`` flops over the median time. On CUDA the
  TF32 setting in force is recorded (torch's default: off).

Both are timed after warm-up, the median of several repeats; on CUDA with
``torch.cuda.Event`` pairs around each call, after ``torch.cuda.synchronize``.

A **floor** is the time a configuration cannot beat on this machine: the minimal bytes
it must move over the measured bandwidth (:func:`bandwidth_floor_ms`), or the minimal
flops over the measured GEMM rate (:func:`gemm_floor_ms`). ``ratio_to_floor =
measured / floor`` (1 would be perfect; the issue's CPU target for one LIF layer is
<= 2). The byte and flop counts of each configuration are defined next to it
(:func:`lif_bytes`, :func:`mlp_flops`).
"""

from __future__ import annotations

import statistics
import time
from typing import Dict, Optional

import torch

from .options import BenchOptions

__all__ = [
    "FLOAT32_BYTES",
    "bandwidth_floor_ms",
    "cached",
    "gemm_floor_ms",
    "lif_bytes",
    "linear_lif_flops",
    "measure",
    "mlp_flops",
    "ratio_to_floor",
    "run",
]

FLOAT32_BYTES = 4
MiB = 2**20

_CACHE: Dict[tuple, dict] = {}


def _sizes(device: str, quick: bool) -> tuple:
    """(copy buffer bytes, GEMM n)."""
    if device == "cuda":
        return (64 * MiB, 1024) if quick else (1024 * MiB, 4096)
    return (64 * MiB, 512) if quick else (256 * MiB, 2048)


def _time_ms(fn, device: str, repeats: int, warmup: int) -> list:
    """Milliseconds of ``repeats`` calls of ``fn`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    samples = []
    if device == "cuda":
        torch.cuda.synchronize()
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end))
        torch.cuda.synchronize()
    else:
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t0) * 1e3)
    return samples


def measure_bandwidth(device: str = "cpu", quick: bool = False, repeats: int = 10, warmup: int = 2) -> dict:
    nbytes, _ = _sizes(device, quick)
    n = nbytes // FLOAT32_BYTES
    src = torch.ones(n, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    samples = _time_ms(lambda: dst.copy_(src), device, repeats, warmup)
    med = statistics.median(samples)
    moved = 2 * nbytes
    del src, dst
    return {
        "method": "dst.copy_(src), float32; bytes = read + written = 2 x buffer (write-allocate not counted); "
        "median over repeats",
        "buffer_mib": nbytes / MiB,
        "bytes_moved": moved,
        "median_ms": med,
        "min_ms": min(samples),
        "samples_ms": [round(s, 4) for s in samples],
        "gb_per_s": moved / (med * 1e-3) / 1e9,
        "gb_per_s_best": moved / (min(samples) * 1e-3) / 1e9,
    }


def measure_gemm(device: str = "cpu", quick: bool = False, repeats: int = 10, warmup: int = 2) -> dict:
    _, n = _sizes(device, quick)
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device)
    b = torch.randn(n, n, generator=gen).to(device)
    out = torch.empty(n, n, device=device)
    samples = _time_ms(lambda: torch.mm(a, b, out=out), device, repeats, warmup)
    med = statistics.median(samples)
    flops = 2 * n**3
    info = {
        "method": f"torch.mm float32 {n}x{n} @ {n}x{n}, 2 n^3 flops; median over repeats",
        "n": n,
        "flops": flops,
        "median_ms": med,
        "min_ms": min(samples),
        "samples_ms": [round(s, 4) for s in samples],
        "gflop_per_s": flops / (med * 1e-3) / 1e9,
        "gflop_per_s_best": flops / (min(samples) * 1e-3) / 1e9,
    }
    if device == "cuda":
        info["tf32_allowed"] = bool(torch.backends.cuda.matmul.allow_tf32)
    return info


def measure(device: str = "cpu", quick: bool = False, repeats: int = 10, warmup: int = 2) -> dict:
    """Bandwidth and GEMM ceilings of ``device`` (see the module docstring)."""
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch.cuda.is_available() is False")
    reps = max(3, repeats)
    info = {
        "device": device,
        "torch_num_threads": torch.get_num_threads(),
        "memory_bandwidth": measure_bandwidth(device, quick, reps, max(1, warmup)),
        "gemm": measure_gemm(device, quick, reps, max(1, warmup)),
    }
    if device == "cuda":
        info["cuda_device"] = torch.cuda.get_device_name()
    info["bandwidth_gb_per_s"] = info["memory_bandwidth"]["gb_per_s"]
    info["gemm_gflop_per_s"] = info["gemm"]["gflop_per_s"]
    return info


def cached(opts: BenchOptions) -> dict:
    """:func:`measure` once per (device, quick, threads) in this process: every
    configuration of a suite run computes its floors from the same ceilings."""
    key = (opts.device, opts.quick, torch.get_num_threads())
    if key not in _CACHE:
        _CACHE[key] = measure(opts.device, opts.quick, opts.repeats, opts.warmup)
    return _CACHE[key]


# --------------------------------------------------------------------------- floors


def lif_bytes(T: int, B: int, N: int, mode: str, dtype_bytes: int = FLOAT32_BYTES) -> int:
    """Minimal bytes one LIF layer over ``[T, B, N]`` must move to or from memory.

    - ``forward``: read the input ``x``, write the spikes: 2 arrays of ``T*B*N``.
    - ``forward_backward``: the forward's 2, then the backward reads the upstream
      gradient and ``x`` again (or one saved state of the same size) and writes
      ``grad_x``: 5 arrays. Spikes are counted as float32 (what every library returns);
      the state ``[B, N]`` stays in cache and is not counted.
    """
    arrays = {"forward": 2, "forward_backward": 5}
    if mode not in arrays:
        raise ValueError(f"unknown mode {mode!r}; known: {', '.join(arrays)}")
    return arrays[mode] * T * B * N * dtype_bytes


def linear_lif_flops(T: int, B: int, n_in: int, n_out: int, backward: bool = True,
                     grad_input: bool = True) -> int:
    """GEMM flops of one ``Linear(n_in -> n_out)`` over ``T*B`` rows: ``2*T*B*n_in*n_out``
    per GEMM; the forward is one, the backward adds the weight gradient and, when the
    layer's input needs one (not for data), the input gradient."""
    gemms = 1 + (1 + int(grad_input) if backward else 0)
    return gemms * 2 * T * B * n_in * n_out


def mlp_flops(T: int, B: int, sizes, backward: bool = True) -> int:
    """GEMM flops of a stack of Linear layers ``sizes = (784, H, 10)`` fed with data:
    with backward ``4*T*B*784*H`` for the first (no input gradient) plus
    ``6*T*B*n_in*n_out`` for each later one (the LIF and elementwise work is not counted)."""
    return sum(
        linear_lif_flops(T, B, a, b, backward, grad_input=k > 0)
        for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))
    )


def bandwidth_floor_ms(nbytes: float, ceilings: dict) -> Optional[float]:
    """``nbytes / bandwidth`` in ms (None without a measured bandwidth)."""
    bw = (ceilings or {}).get("bandwidth_gb_per_s")
    return nbytes / (bw * 1e9) * 1e3 if bw else None


def gemm_floor_ms(flops: float, ceilings: dict) -> Optional[float]:
    """``flops / GEMM rate`` in ms (None without a measured GEMM rate)."""
    rate = (ceilings or {}).get("gemm_gflop_per_s")
    return flops / (rate * 1e9) * 1e3 if rate else None


def ratio_to_floor(measured_ms: Optional[float], floor_ms: Optional[float]) -> Optional[float]:
    """``measured / floor`` (None when either is missing)."""
    if not measured_ms or not floor_ms:
        return None
    return measured_ms / floor_ms


# --------------------------------------------------------------------------- suite entry


def run(opts: BenchOptions) -> dict:
    """The suite's "ceilings" configuration: the measurements as a table."""
    c = cached(opts)
    bw, gm = c["memory_bandwidth"], c["gemm"]
    rows = [
        {"ceiling": "memory_bandwidth", "value": bw["gb_per_s"], "unit": "GB/s", "median_ms": bw["median_ms"],
         "what": f"copy of {bw['buffer_mib']:g} MiB"},
        {"ceiling": "gemm", "value": gm["gflop_per_s"], "unit": "GFLOP/s", "median_ms": gm["median_ms"],
         "what": f"torch.mm {gm['n']}^3 float32"},
    ]
    md = ["| ceiling | value | unit | median ms | what |", "|---|---:|---|---:|---|"]
    md += [f"| {r['ceiling']} | {r['value']:.1f} | {r['unit']} | {r['median_ms']:.3f} | {r['what']} |" for r in rows]
    return {
        "name": "ceilings",
        "description": f"measured ceilings of {opts.device} with {c['torch_num_threads']} torch threads",
        "ceilings": c,
        "results": rows,
        "markdown": "\n".join(md),
        "ratios": [],
    }
