"""Accuracy and training time of the training presets, and of the ANN twins of the
MNIST presets, on the project's fixed MNIST split.

Each run is ``spikeflow.train.train(TrainConfig(preset=NAME, ...))`` with the
preset's own defaults, exactly what ``spikeflow train --preset NAME`` does; the
summary (test accuracy, per-epoch history, time per epoch, firing rate) goes into
``results/train_presets.json`` (merged by run name, so runs can be done one at a
time) and a table into ``results/train_presets.md``, next to the issue's targets.

    python benchmarks/train_presets.py --data-dir ../shared/data/mnist            # all
    python benchmarks/train_presets.py --data-dir ../shared/data/mnist mnist-cnn mnist-cnn-ann
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _timing import machine_info  # noqa: E402

# name -> (preset, extra settings, target test accuracy or None, what the target is)
RUNS = {
    "digits-mlp": ("digits-mlp", {}, None, "the default preset (scikit-learn digits, not MNIST)"),
    "mnist-mlp": ("mnist-mlp", {}, 0.965, ">= 96.5 % and within 0.5 pp of mnist-mlp-ann"),
    "mnist-mlp-ann": ("mnist-mlp", {"ann": True}, None, "the ANN twin of mnist-mlp"),
    "mnist-cnn": ("mnist-cnn", {}, 0.990, ">= 99.0 % and within 0.5 pp of mnist-cnn-ann"),
    "mnist-cnn-ann": ("mnist-cnn", {"ann": True}, None, "the ANN twin of mnist-cnn"),
    "randman": ("randman", {}, 0.997, ">= 99.7 % (seed 003's network on its task)"),
    "seed001": ("seed001", {}, 0.896, ">= 89.6 % after 8 epochs (the seed's network, rebuilt)"),
    "seed003": ("seed003", {}, 0.997, "seed 003 itself: 99.7 % on Randman"),
    "seed004": ("seed004", {}, 0.887, ">= 88.7 % after 20 epochs (the seed's network, rebuilt)"),
}


def run(name: str, data_dir: str | None) -> dict:
    from spikeflow.train import TrainConfig, train

    preset, extra, target, what = RUNS[name]
    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(preset=preset, data_dir=data_dir, out=out, quiet=True, **extra)
        print(f"{name}: {config.epochs} epochs ...", flush=True)
        summary = train(config, on_epoch=lambda r: print(
            f"  epoch {r['epoch']}: test {r['test_accuracy']:.4f}, {r['time_s']:.1f} s", flush=True))
    summary.pop("checkpoints")
    summary["config"].pop("out")
    summary.update(run=name, target=target, target_description=what,
                   meets_target=None if target is None else summary["test_accuracy"] >= target)
    return summary


IGNORED = {"out", "threads", "quiet", "data_dir", "device", "backend", "resume", "tensorboard"}


def imported(name: str, path: str) -> dict:
    """A summary that ``spikeflow train --preset ... --json PATH`` wrote, checked to be
    the run this script would do (the preset's defaults apart from ``IGNORED``)."""
    from spikeflow.train import TrainConfig

    preset, extra, target, what = RUNS[name]
    summary = json.loads(Path(path).read_text())
    expected = TrainConfig(preset=preset, **extra).to_dict()
    ran = summary["config"]
    differs = {k: (ran.get(k), v) for k, v in expected.items() if k not in IGNORED and ran.get(k) != v}
    if differs:
        raise SystemExit(f"{path} is not the {name} run: (ran, expected) differ in {differs}")
    summary.pop("checkpoints", None)
    summary["config"].pop("out", None)
    summary.update(run=name, target=target, target_description=what, imported_from_cli=True,
                   meets_target=None if target is None else summary["test_accuracy"] >= target)
    return summary


def table(results: dict) -> str:
    lines = [
        "| run | epochs | test accuracy | target | s / epoch | firing rate |",
        "|---|---|---|---|---|---|",
    ]
    for name in RUNS:
        if name not in results:
            continue
        r = results[name]
        target = "" if r["target"] is None else f"{r['target']:.1%} ({'met' if r['meets_target'] else 'MISSED'})"
        lines.append(
            f"| {name} | {r['epochs']} | {r['test_accuracy']:.2%} | {target} | {r['epoch_time_s']:.1f} | "
            f"{r['mean_firing_rate']:.3f} |"
        )
    for snn_name in ("mnist-mlp", "mnist-cnn"):
        if snn_name in results and f"{snn_name}-ann" in results:
            gap = results[f"{snn_name}-ann"]["test_accuracy"] - results[snn_name]["test_accuracy"]
            lines.append(f"\n{snn_name}: ANN twin minus SNN = {gap * 100:+.2f} percentage points")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", choices=[[], *RUNS], help="runs to do (default: all)")
    parser.add_argument("--data-dir", default=os.environ.get("SPIKEFLOW_DATA"), help="MNIST folder")
    parser.add_argument("--results", default=str(HERE / "results" / "train_presets.json"))
    parser.add_argument("--import", dest="imports", action="append", default=[], metavar="RUN=SUMMARY.json",
                        help="take a run from a `spikeflow train --json` summary instead of training it")
    args = parser.parse_args()
    path = Path(args.results)
    saved = json.loads(path.read_text()) if path.exists() else {"runs": {}}
    todo = [(name, None) for name in args.runs] + [tuple(item.split("=", 1)) for item in args.imports]
    for name, summary_path in todo or [(name, None) for name in RUNS]:
        saved["runs"][name] = run(name, args.data_dir) if summary_path is None else imported(name, summary_path)
        saved["machine"] = machine_info()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)
        path.with_suffix(".md").write_text(table(saved["runs"]))
    print(table(saved["runs"]))


if __name__ == "__main__":
    main()
