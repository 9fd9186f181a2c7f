"""The benchmark suite behind ``spikeflow bench``: a registry of configurations, each
``run(opts: BenchOptions) -> dict``, run one after the other into one JSON report.

Every configuration returns a JSON-safe dict with at least ``name``, ``description``,
``results`` (rows), ``markdown`` (a short table) and ``ratios`` (rows made by
:func:`target_row`: ``config, case, metric, value, target, op, met, what``). The
suite gathers every configuration's ``ratios`` into one ``summary`` table.

Configurations are imported lazily by module name, so a configuration whose module
does not exist (yet) is recorded as unavailable and the others still run.

Report (``schema = "spikeflow-bench/suite/1"``): ``created_utc``, ``command``,
``options``, ``machine`` (with threads and load averages), ``libraries``,
``ceilings``, ``configurations`` (name -> the configuration's dict, or ``{status:
"unavailable" | "failed", reason}``), ``summary`` (rows), ``markdown``, ``wall_s``.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import os
import sys
import time
import traceback
from dataclasses import asdict
from typing import Callable, Dict, List, Optional, Sequence

from .options import BenchOptions
from .timing import json_safe, library_versions, load_average, machine_info, write_report

__all__ = [
    "CONFIGURATIONS",
    "SCHEMA",
    "TARGETS",
    "default_out",
    "main",
    "resolve_names",
    "run_suite",
    "summary_markdown",
    "target_row",
    "write_suite",
]

SCHEMA = "spikeflow-bench/suite/1"

# name -> (module under spikeflow.bench, one-line description)
CONFIGURATIONS: Dict[str, tuple] = {
    "ceilings": ("ceilings", "measured memory bandwidth (large copy) and float32 GEMM rate of the device"),
    "lif_layer": ("lif_layer", "one LIF layer, 100x32x{1024,4096,16384} and 300x32x4096, forward and forward+backward"),
    "mlp": ("mlp", "Linear(784->H)+LIF+Linear(H->10)+LIF, T=100, B=64, H in {512, 2048}, forward+backward"),
    "open_neuromorphic": ("open_neuromorphic", "Open Neuromorphic setup: Linear(N->N)+LIF, B=16, T=500, forward+backward"),
    "asn_seed": ("asn_seed", "ASN conversion seed run (another module)"),
    "memory": ("memory", "memory use (another module)"),
    "resnet18": ("resnet", "spiking ResNet-18 (another module)"),
}

# The issue's targets, for the record (each configuration computes its rows).
TARGETS = {
    "lif_layer/cpu": "fastest spikeflow >= 3x faster than the fastest peer, and <= 2x its bandwidth floor",
    "lif_layer/cuda": "fastest spikeflow >= 1.5x faster than SpikingJelly's fastest, and >= 70 % of the bandwidth",
    "mlp/cpu": "spikeflow >= 2x faster than the fastest peer, and <= 1.5x its GEMM floor",
}


def target_row(config: str, case: str, metric: str, value: Optional[float], op: Optional[str] = None,
               target: Optional[float] = None, what: str = "") -> dict:
    """One summary row. ``met`` is ``value >= target`` (op ">=") or ``value <= target``
    (op "<="); None when there is no value or no target."""
    met = None
    if value is not None and target is not None and op is not None:
        if op == ">=":
            met = bool(value >= target)
        elif op == "<=":
            met = bool(value <= target)
        else:
            raise ValueError(f"unknown comparison {op!r}")
    return {"config": config, "case": case, "metric": metric, "value": value, "op": op, "target": target,
            "met": met, "what": what}


def _load(name: str) -> Callable[[BenchOptions], dict]:
    module_name, _ = CONFIGURATIONS[name]
    module = importlib.import_module(f"{__package__}.{module_name}")
    fn = getattr(module, "run", None)
    if not callable(fn):
        raise AttributeError(f"spikeflow.bench.{module_name} has no run(opts) function")
    return fn


def resolve_names(only: Optional[Sequence[str]]) -> List[str]:
    """The configurations to run (all when ``only`` is empty); unknown names raise
    ValueError listing the known ones."""
    if not only:
        return list(CONFIGURATIONS)
    unknown = [n for n in only if n not in CONFIGURATIONS]
    if unknown:
        raise ValueError(
            f"unknown configuration {', '.join(repr(n) for n in unknown)}; known: {', '.join(CONFIGURATIONS)}"
        )
    return [n for n in CONFIGURATIONS if n in only]  # registry order, no duplicates


def _ratio_rows(name: str, result: dict) -> List[dict]:
    """A configuration's ``ratios`` as summary rows (a dict of name -> number is accepted too)."""
    ratios = result.get("ratios")
    rows: List[dict] = []
    if isinstance(ratios, list):
        for r in ratios:
            if isinstance(r, dict):
                row = dict(r)
                row.setdefault("config", name)
                row.setdefault("met", None)
                rows.append(row)
    elif isinstance(ratios, dict):
        def walk(prefix, value):
            if isinstance(value, dict):
                for k, v in value.items():
                    walk(f"{prefix}.{k}" if prefix else str(k), v)
            elif isinstance(value, (int, float)) or value is None:
                rows.append(target_row(name, "", prefix, value))
        walk("", ratios)
    return rows


def _say(opts: BenchOptions, text: str, echo: Optional[Callable[[str], None]] = None) -> None:
    if opts.progress:
        (echo or (lambda t: print(t, file=sys.stderr, flush=True)))(f"[bench] {text}")


def run_suite(opts: BenchOptions, only: Optional[Sequence[str]] = None, out: Optional[str] = None,
              echo: Optional[Callable[[str], None]] = None, extra: Optional[Dict[str, dict]] = None,
              command: Optional[List[str]] = None) -> dict:
    """Run the configurations (``only``: names; default all), return the report and,
    with ``out``, write it (JSON, and the markdown beside it with ``.md``) after every
    configuration, so an interrupted run keeps what it measured. ``extra``: keyword
    arguments per configuration name (e.g. ``{"open_neuromorphic": {"neurons": 2048}}``)."""
    from . import ceilings as _ceilings

    names = resolve_names(only)
    import torch

    if opts.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: torch.cuda.is_available() is False on this machine")
    if opts.device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {opts.device!r}")
    threads_before = torch.get_num_threads()
    if opts.threads and opts.threads > 0:
        torch.set_num_threads(opts.threads)
    try:
        return _run(opts, names, out, echo, extra, command)
    finally:
        torch.set_num_threads(threads_before)


def _run(opts: BenchOptions, names: List[str], out: Optional[str], echo, extra, command) -> dict:
    import torch

    from . import ceilings as _ceilings

    torch.manual_seed(opts.seed)
    started = time.perf_counter()
    report: dict = {
        "schema": SCHEMA,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command or [os.path.basename(sys.executable)] + sys.argv[1:],
        "python_executable": sys.executable,
        "options": {**asdict(opts), "impls": list(opts.impls) if opts.impls else None, "only": names},
        "machine": {
            **machine_info(),
            "torch_num_threads": torch.get_num_threads(),
            "torch_num_interop_threads": torch.get_num_interop_threads(),
            "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
            "load_average_start": load_average(),
            "cuda_device": torch.cuda.get_device_name() if opts.device == "cuda" else None,
        },
        "libraries": library_versions(["torch", "spikeflow", "snntorch", "norse", "spikingjelly", "triton", "numpy"]),
        "targets": TARGETS,
        "ceilings": None,
        "configurations": {},
        "summary": [],
    }
    _say(opts, f"ceilings on {opts.device} ...", echo)
    report["ceilings"] = _ceilings.cached(opts)
    c = report["ceilings"]
    _say(opts, f"ceilings: {c['bandwidth_gb_per_s']:.1f} GB/s copy, {c['gemm_gflop_per_s']:.1f} GFLOP/s GEMM", echo)
    for name in names:
        t0 = time.perf_counter()
        _say(opts, f"{name} ...", echo)
        try:
            fn = _load(name)
        except ModuleNotFoundError as exc:
            result = {"name": name, "status": "unavailable", "reason": f"module not found ({exc})"}
        except Exception as exc:  # noqa: BLE001
            result = {"name": name, "status": "unavailable", "reason": f"{type(exc).__name__}: {exc}"}
        else:
            try:
                result = fn(opts, **(extra or {}).get(name, {}))
                if not isinstance(result, dict):
                    raise TypeError(f"run() returned {type(result).__name__}, not a dict")
                result = json_safe(result)
                result.setdefault("name", name)
                result.setdefault("status", "ok")
            except Exception as exc:  # noqa: BLE001
                result = {
                    "name": name,
                    "status": "failed",
                    "reason": f"{type(exc).__name__}: {' '.join(str(exc).split())}",
                    "traceback": traceback.format_exc(limit=8),
                }
        result["wall_s"] = round(time.perf_counter() - t0, 2)
        report["configurations"][name] = result
        report["summary"].extend(_ratio_rows(name, result))
        _say(opts, f"{name}: {result.get('status', 'ok')} ({result['wall_s']} s)"
             + (f": {result['reason']}" if result.get("reason") else ""), echo)
        report["wall_s"] = round(time.perf_counter() - started, 1)
        if out:
            write_suite(report, out)
    report["machine"]["load_average_end"] = load_average()
    report["wall_s"] = round(time.perf_counter() - started, 1)
    report = json_safe(report)
    report["markdown"] = suite_markdown(report)
    if out:
        write_suite(report, out)
    return report


def _fmt(v, spec=".2f") -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, float)):
        return format(v, spec)
    return str(v)


def summary_markdown(rows: List[dict]) -> str:
    """The summary table: one line per ratio, with its target and whether it is met."""
    lines = ["| configuration | case | metric | value | target | met |", "|---|---|---|---:|---|---|"]
    for r in rows:
        target = f"{r.get('op') or ''} {_fmt(r.get('target'), 'g')}" if r.get("target") is not None else "–"
        lines.append(
            f"| {r.get('config', '')} | {r.get('case', '')} | {r.get('metric', '')} | {_fmt(r.get('value'))} "
            f"| {target} | {_fmt(r.get('met'))} |"
        )
    return "\n".join(lines)


def suite_markdown(report: dict) -> str:
    c = report.get("ceilings") or {}
    parts = [
        f"# spikeflow bench ({report['options']['device']}, {report['machine'].get('torch_num_threads')} threads"
        f"{', quick' if report['options'].get('quick') else ''})",
        "",
        f"Machine: {report['machine'].get('cuda_device') or report['machine'].get('cpu_model')}; "
        f"ceilings: {_fmt(c.get('bandwidth_gb_per_s'), '.1f')} GB/s copy, {_fmt(c.get('gemm_gflop_per_s'), '.1f')} GFLOP/s GEMM.",
        "",
        "## Summary",
        "",
        summary_markdown(report.get("summary", [])),
    ]
    for name, cfg in report.get("configurations", {}).items():
        parts += ["", f"## {name}", ""]
        if cfg.get("status") in ("unavailable", "failed"):
            parts.append(f"{cfg['status']}: {cfg.get('reason')}")
            continue
        if cfg.get("description"):
            parts += [str(cfg["description"]), ""]
        parts.append(str(cfg.get("markdown") or ""))
    return "\n".join(parts) + "\n"


def write_suite(report: dict, out: str) -> tuple:
    """Write ``out`` (JSON) and ``out`` with ``.md`` (markdown); returns both paths."""
    report = json_safe(report)
    if "markdown" not in report:
        report = {**report, "markdown": suite_markdown(report)}
    write_report(report, out)
    md_path = os.path.splitext(out)[0] + ".md"
    with open(md_path + ".tmp", "w", encoding="utf-8") as f:
        f.write(report["markdown"])
    os.replace(md_path + ".tmp", md_path)
    return out, md_path


def default_out(device: str) -> str:
    return os.path.join("bench-results", f"bench_{device}.json")


def default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def main(argv=None) -> dict:
    """``python -m spikeflow.bench``: the suite without click (same options as
    ``spikeflow bench``), for environments that lack the CLI's dependencies."""
    import argparse

    import torch

    p = argparse.ArgumentParser(prog="python -m spikeflow.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available, else cpu")
    p.add_argument("--only", action="append", default=[], metavar="NAME",
                   help=f"configuration to run (repeatable; default all): {', '.join(CONFIGURATIONS)}")
    p.add_argument("--impls", action="append", default=[], metavar="PREFIX", help="implementation name prefix (repeatable)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: the cores available to the process)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--on-neurons", type=int, default=None, help="open_neuromorphic: N (default 16384 on cuda, 4096 on cpu)")
    p.add_argument("--out", default=None)
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: torch.cuda.is_available() is False on this machine")
    try:
        resolve_names(a.only)
    except ValueError as exc:
        p.error(str(exc))
    opts = make_options(device, a.threads, a.quick, a.repeats, a.warmup, a.seed, a.impls, not a.quiet)
    out = a.out or default_out(device)
    extra = {"open_neuromorphic": {"neurons": a.on_neurons}} if a.on_neurons else None
    report = run_suite(opts, a.only, out, extra=extra, command=["python", "-m", "spikeflow.bench"] + list(sys.argv[1:] if argv is None else argv))
    print(summary_markdown(report["summary"]))
    print(f"wrote {out} and {os.path.splitext(out)[0]}.md ({report['wall_s']} s)")
    return report


def make_options(device: str, threads: int, quick: bool, repeats: Optional[int], warmup: Optional[int], seed: int,
                 impls: Sequence[str], progress: bool) -> BenchOptions:
    """BenchOptions with the command line's defaults: threads 0 -> the cores available;
    repeats 10 (quick 2), warm-up 2 (quick 1)."""
    if repeats is not None and repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {repeats}")
    if warmup is not None and warmup < 0:
        raise ValueError(f"--warmup must be >= 0, got {warmup}")
    return BenchOptions(
        device=device,
        threads=threads if threads and threads > 0 else default_threads(),
        quick=quick,
        repeats=repeats if repeats is not None else (2 if quick else 10),
        warmup=warmup if warmup is not None else (1 if quick else 2),
        seed=seed,
        impls=tuple(impls) if impls else None,
        progress=progress,
    )
