"""Sum the atheris runs recorded by ``run_all.py`` per target into a JSON file.

Usage::

    python fuzz/summarize.py [--runs fuzz/work/runs.jsonl] [--out benchmarks/results/fuzz.json]

Per target: total seconds, executions, the number of runs, every finding
(artifact, error line, and its status where a run line says so) and the last run
(with the ``SPIKEFLOW_FUZZ_KNOWN`` list it ran with); the machine and library versions
are added so that the numbers can be compared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def summarize(lines: list[dict]) -> dict:
    targets: dict[str, dict] = {}
    for run in lines:
        entry = targets.setdefault(run["target"], {"seconds": 0.0, "executions": 0, "runs": 0, "findings": []})
        entry["seconds"] = round(entry["seconds"] + run["seconds"], 1)
        entry["executions"] += run["executions"]
        entry["runs"] += 1
        entry["findings"] += run["findings"]
        entry["last_run"] = {k: run[k] for k in ("seconds", "executions", "findings") if k in run}
        entry["last_run"]["known"] = run.get("known", "")
        if run.get("note"):
            entry.setdefault("notes", []).append(run["note"])
    return targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=HERE / "work" / "runs.jsonl")
    parser.add_argument("--out", type=Path, default=HERE.parent / "benchmarks" / "results" / "fuzz.json")
    args = parser.parse_args()
    lines = [json.loads(line) for line in args.runs.read_text().splitlines() if line.strip()]
    import atheris  # noqa: F401  (the version is recorded)
    import torch

    from importlib.metadata import version

    result = {
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cores": os.cpu_count(),
                    "torch": torch.__version__, "atheris": version("atheris")},
        "command": "python fuzz/run_all.py --seconds 180 TARGET (python fuzz/parsers.py TARGET -max_total_time=... "
                   "-rss_limit_mb=2048 -timeout=20 fuzz/corpus/TARGET)",
        "targets": summarize(lines),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
