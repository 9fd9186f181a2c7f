#!/usr/bin/env python
"""Memory of long runs: a 10^6-step streaming simulation and many training epochs.

1. **Streaming.** A network ``LIF(beta=0.95) -> Linear(N->10) -> LI(beta=0.9)`` fed
   one time step per call (``state`` carried between calls, ``torch.no_grad``), as a
   closed-loop or real-time user runs it, for ``--steps`` steps (default 10^6). The
   resident memory (RSS, from /proc/self/statm) and the number of live tensors are
   sampled every ``--every`` steps; the slope of RSS against steps is fitted by least
   squares over the samples after the first 10 %. The same input is then run in one
   multi-step call: the hidden spikes must be identical and the outputs equal up to
   float rounding (the Linear sums T*B rows at once there).
2. **Training.** ``spikeflow.train`` on the digits preset for ``--epochs`` epochs;
   RSS and live tensors sampled after every epoch; slope over the epochs after the
   first two (optimizer state and caches are created in epoch 1).

    PYTHONPATH=src python benchmarks/long_runs.py                   # 10^6 steps, 30 epochs
    PYTHONPATH=src python benchmarks/long_runs.py --steps 20000 --epochs 5   # quick

Writes benchmarks/results/long_runs.json.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import torch  # noqa: E402

from _timing import machine_info, write_report  # noqa: E402

SCHEMA = "spikeflow-bench/long_runs/1"
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * PAGE


def live_tensors() -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if issubclass(type(obj), torch.Tensor))


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys against xs."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0


def streaming(steps: int, every: int, neurons: int, seed: int) -> dict:
    import spikeflow

    torch.manual_seed(seed)
    net = spikeflow.nn.Sequential(
        spikeflow.nn.LIF(beta=0.95), torch.nn.Linear(neurons, 10), spikeflow.nn.LI(beta=0.9)
    )
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.rand(steps, 1, neurons, generator=g) * 0.3
    # the records of the run, preallocated and touched now (fill_ writes every page), so
    # filling them in does not show up as growth of the resident memory
    hidden = torch.empty(steps, 1, neurons, dtype=torch.uint8).fill_(1)
    out = torch.empty(steps, 1, 10).fill_(1.0)
    samples = []
    state = None
    started = time.perf_counter()
    with torch.no_grad():
        for t in range(steps):
            recording = net.record(x[t : t + 1], state)
            state = recording.states
            hidden[t] = recording.outputs[0][0].to(torch.uint8)
            out[t] = recording.output[0]
            if (t + 1) % every == 0:
                samples.append((t + 1, rss_bytes(), live_tensors() if (t + 1) % (every * 10) == 0 else None))
                if (t + 1) % (every * 10) == 0:
                    print(f"  step {t + 1:>8}: RSS {samples[-1][1] / 2**20:.1f} MiB", flush=True)
        stream_s = time.perf_counter() - started
        full = net.record(x)
    mismatched = int((hidden != full.outputs[0].to(torch.uint8)).sum())
    start = max(1, len(samples) // 10)
    xs = [s[0] for s in samples[start:]]
    ys = [s[1] for s in samples[start:]]
    counts = [s[2] for s in samples if s[2] is not None]
    return {
        "network": f"LIF(beta=0.95) -> Linear({neurons}->10) -> LI(beta=0.9), batch 1, one step per call",
        "steps": steps,
        "stream_time_s": stream_s,
        "us_per_step": stream_s / steps * 1e6,
        "rss_first_mib": samples[0][1] / 2**20,
        "rss_last_mib": samples[-1][1] / 2**20,
        "rss_slope_bytes_per_100k_steps": slope(xs, ys) * 1e5,
        "live_tensors": {"first": counts[0], "last": counts[-1]} if counts else None,
        "hidden_spikes": int(hidden.sum()),
        "hidden_spikes_mismatched": mismatched,
        "output_max_abs_diff": float((out - full.output).abs().max()),
        "rss_samples": [[s[0], s[1]] for s in samples],
    }


def training(epochs: int, seed: int) -> dict:
    from spikeflow.train import TrainConfig, train

    samples = []

    def on_epoch(record: dict) -> None:
        samples.append((int(record["epoch"]), rss_bytes(), live_tensors()))
        print(f"  epoch {samples[-1][0]:>3}: RSS {samples[-1][1] / 2**20:.1f} MiB, "
              f"{samples[-1][2]} tensors, test accuracy {record['test_accuracy']:.4f}", flush=True)

    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(epochs=epochs, seed=seed, quiet=True, out=out)
        summary = train(config, on_epoch=on_epoch)
    tail = samples[2:] if len(samples) > 3 else samples
    return {
        "preset": config.preset,
        "epochs": epochs,
        "test_accuracy": summary["test_accuracy"],
        "rss_first_mib": samples[0][1] / 2**20,
        "rss_last_mib": samples[-1][1] / 2**20,
        "rss_slope_bytes_per_epoch": slope([s[0] for s in tail], [s[1] for s in tail]),
        "live_tensors_per_epoch": [s[2] for s in samples],
        "rss_per_epoch_mib": [s[1] / 2**20 for s in samples],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--every", type=int, default=10_000, help="RSS sample interval in steps")
    parser.add_argument("--neurons", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "long_runs.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    every = min(args.every, max(1, args.steps // 20))
    print(f"streaming {args.steps} steps", flush=True)
    stream = streaming(args.steps, every, args.neurons, args.seed)
    print(f"  {stream['us_per_step']:.0f} us/step, RSS slope {stream['rss_slope_bytes_per_100k_steps']:.0f} "
          f"bytes per 10^5 steps, mismatched hidden spikes {stream['hidden_spikes_mismatched']}", flush=True)
    print(f"training {args.epochs} epochs", flush=True)
    train_result = training(args.epochs, args.seed)
    print(f"  RSS slope {train_result['rss_slope_bytes_per_epoch']:.0f} bytes per epoch", flush=True)
    report = {
        "schema": SCHEMA,
        "machine": machine_info(),
        "threads": args.threads,
        "streaming": stream,
        "training": train_result,
    }
    write_report(report, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
