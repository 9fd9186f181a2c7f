"""Run atheris targets one after another and record time, executions and findings.

Usage::

    python fuzz/run_all.py [--seconds 180] [--out fuzz/work/runs.jsonl] [TARGET ...]

Each target runs ``python fuzz/parsers.py TARGET -max_total_time=SECONDS
-rss_limit_mb=2048 -timeout=20`` on ``fuzz/corpus/TARGET`` (make it first with
``python fuzz/make_corpus.py``), from ``fuzz/work/`` so that libFuzzer's
``crash-*`` / ``oom-*`` / ``timeout-*`` files land in ``fuzz/work/crashes/TARGET/``.
A run that stops on a finding is restarted for the time left (up to five
findings per target), so one finding does not end the search. One JSON line per
run is appended to ``--out``: target, seconds, executions, findings (artifact
file and the first line of the error).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def run_target(target: str, seconds: int, work: Path, known: str) -> dict:
    crashes = work / "crashes" / target
    crashes.mkdir(parents=True, exist_ok=True)
    corpus = HERE / "corpus" / target
    total_runs, spent, findings, left = 0, 0.0, [], seconds
    log_path = work / f"{target}.log"
    with open(log_path, "w") as log:
        while left > 10 and len(findings) < 5:
            before = set(crashes.iterdir())
            start = time.monotonic()
            env = dict(os.environ, SPIKEFLOW_FUZZ_KNOWN=known) if known else dict(os.environ)
            proc = subprocess.run(
                [sys.executable, str(HERE / "parsers.py"), target, f"-max_total_time={left}", "-rss_limit_mb=2048",
                 "-timeout=20", "-print_final_stats=1", f"-artifact_prefix={crashes}/", str(corpus)],
                cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )
            elapsed = time.monotonic() - start
            log.write(proc.stdout)
            match = re.search(r"stat::number_of_executed_units:\s*(\d+)", proc.stdout)
            runs = int(match.group(1)) if match else 0
            total_runs += runs
            spent += elapsed  # wall time, the instrumented import (~15 s) included
            new = sorted(set(crashes.iterdir()) - before)
            if not new:
                break
            error = next((line for line in proc.stdout.splitlines() if line.startswith(("Finding:", "=="))), "")
            findings.extend({"artifact": str(p.relative_to(HERE.parent)), "error": error} for p in new)
            left = seconds - int(spent)
    result = {"target": target, "seconds": round(spent, 1), "executions": total_runs, "findings": findings,
              "log": str(log_path.relative_to(HERE.parent))}
    if known:
        result["known"] = known
    return result


def main() -> None:
    from parsers import TARGETS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", default=list(TARGETS))
    parser.add_argument("--seconds", type=int, default=180)
    parser.add_argument("--out", type=Path, default=HERE / "work" / "runs.jsonl")
    parser.add_argument("--known", default="", help="SPIKEFLOW_FUZZ_KNOWN for the runs (see parsers.py)")
    args = parser.parse_args()
    work = HERE / "work"
    work.mkdir(exist_ok=True)
    for target in args.targets:
        result = run_target(target, args.seconds, work, args.known)
        print(json.dumps(result), flush=True)
        with open(args.out, "a") as out:
            out.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
