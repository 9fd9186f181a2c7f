"""The Open Neuromorphic benchmark setup: one ``Linear(N -> N) + LIF`` layer, batch 16,
500 time steps, forward + backward
(https://open-neuromorphic.org/blog/spiking-neural-network-framework-benchmarking/).

- ``N`` = 16,384 neurons as published on CUDA; on CPU the default is 4,096 (the
  16,384 x 16,384 weight alone is 1 GiB float32 and one forward+backward is ~26 TFLOP),
  ``neurons=`` (``spikeflow bench --on-neurons N``) overrides it; ``--quick``: N 256, T 50, B 4.
  The JSON says which N ran.
- Input: random spikes ``Bernoulli(0.5)`` of shape ``[T, B, N]``; loss = ``output.sum()``.
- Every library gets the same weights and is built as in :mod:`.mlp` (spikeflow
  ``nn.Sequential``, snnTorch ``Leaky`` loop, Norse ``SequentialState`` loop,
  SpikingJelly multi-step ``layer.Linear + LIFNode``).
- Floor: GEMM work, ``4*T*B*N^2`` flops (forward and weight gradient; the input is data)
  / measured GEMM rate.

The published numbers (RTX 4090, N = 16,384) are included as reference values, marked
"published, other machine": not comparable with this run unless it ran on that GPU.
"""

from __future__ import annotations

import gc
import sys
import time
from typing import Optional

import torch

from .mlp import build, make_weights, markdown, rows_and_targets, time_networks
from .options import BenchOptions
from .timing import json_safe, load_average

T_STEPS, BATCH = 500, 16
NEURONS = {"cuda": 16384, "cpu": 4096}
QUICK = dict(T=50, B=4, N=256)
INPUT_RATE = 0.5
MAX_REPEATS = 5  # each call is seconds on CPU

PUBLISHED = {
    "source": "https://open-neuromorphic.org/blog/spiking-neural-network-framework-benchmarking/",
    "machine": "NVIDIA RTX 4090",
    "setting": "Linear(16384 -> 16384) + LIF, batch 16, 500 steps, forward + backward",
    "note": "published, other machine",
    "values_ms": {
        "Spyx (JAX, float16)": 47.0,
        "Norse (torch.compile)": 110.0,
        "SpikingJelly (CuPy backend)": 118.0,
        "snnTorch": 3078.0,
    },
}


def run(opts: BenchOptions, neurons: Optional[int] = None) -> dict:
    """The suite's "open_neuromorphic" configuration (see the module docstring)."""
    from . import ceilings as _ceilings

    if opts.quick:
        T, B, N = QUICK["T"], QUICK["B"], neurons or QUICK["N"]
        n_source = "quick" if neurons is None else "option"
    else:
        T, B = T_STEPS, BATCH
        N = neurons or NEURONS.get(opts.device, NEURONS["cpu"])
        n_source = "option" if neurons else f"default for {opts.device}"
    if N < 1:
        raise ValueError(f"neurons must be >= 1, got {N}")
    case = f"T{T} B{B} N{N}"
    if opts.progress:
        print(f"[bench] open_neuromorphic: {case}", file=sys.stderr, flush=True)
    ceil = _ceilings.cached(opts)
    gen = torch.Generator().manual_seed(opts.seed)
    x = (torch.rand(T, B, N, generator=gen) < INPUT_RATE).float().to(opts.device)
    impls = build(make_weights((N, N), opts.seed), opts.device, opts.impls)
    repeats = min(opts.repeats, MAX_REPEATS) if not opts.quick else opts.repeats
    warmup = min(opts.warmup, 1)
    started = time.perf_counter()
    load_before = load_average()
    entries = time_networks(impls, x, None, opts, repeats=repeats, warmup=warmup)
    flops = _ceilings.mlp_flops(T, B, (N, N))
    floor = _ceilings.gemm_floor_ms(flops, ceil)
    rows, targets = rows_and_targets("open_neuromorphic", case, entries, floor, opts.device, None, None)
    for row in rows:
        row.update(T=T, B=B, N=N, flops=flops, wall_s=round(time.perf_counter() - started, 2), load_average_before=load_before)
    published_rows = [
        {"case": "published RTX 4090, T500 B16 N16384", "implementation": name, "median_ms": ms, "status": "published",
         "note": "published, other machine"}
        for name, ms in PUBLISHED["values_ms"].items()
    ]
    md = markdown(rows)
    md += "\n\nPublished (RTX 4090, N = 16384; other machine, for reference): " + ", ".join(
        f"{k} {v:g} ms" for k, v in PUBLISHED["values_ms"].items())
    del impls, x
    gc.collect()
    return json_safe({
        "name": "open_neuromorphic",
        "description": f"Open Neuromorphic setup: Linear({N}->{N}) + LIF, B={B}, T={T}, forward+backward, "
        f"loss output.sum(), on {opts.device} (N: {n_source}; published setting: N=16384); "
        "GEMM floor = 4*T*B*N^2 flops (forward and weight gradient; the input is data) / measured GEMM rate",
        "settings": {"T": T, "B": B, "neurons": N, "neurons_source": n_source, "published_neurons": 16384,
                     "input": f"Bernoulli({INPUT_RATE}) spikes [T, B, N]", "loss": "output.sum()",
                     "repeats": repeats, "warmup": warmup, "threads": torch.get_num_threads()},
        "results": rows,
        "published": PUBLISHED,
        "published_rows": published_rows,
        "markdown": md,
        "ratios": targets,
    })
