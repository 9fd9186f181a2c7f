"""Accuracy of converted networks against their ANNs on the project's fixed MNIST
split (train = t10k images 0..7999, test = 8000..9999), the targets of the
conversion issue.

Each run is ``spikeflow.convert.experiment.run_experiment`` (what ``spikeflow
convert`` does); a later run can reuse an earlier run's ANN (``model``). Results
are merged by run name into ``results/convert_presets.json`` and a table into
``results/convert_presets.md``.

    python benchmarks/convert_presets.py --data-dir ../shared/data/mnist             # all
    python benchmarks/convert_presets.py --data-dir ../shared/data/mnist lenet5-rate
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _timing import json_safe, machine_info  # noqa: E402

WORK = HERE / "results" / "convert_runs"

#: name -> (ConvertConfig fields, ANN of an earlier run to reuse or None, target text)
RUNS = {
    "lenet5-rate": (dict(preset="lenet5", coding="rate", timesteps=(8, 16, 24, 32, 64)), None,
                    "ANN >= 98.0 %, SNN within 0.1 pp at T <= 32"),
    "lenet5-ttfs": (dict(preset="lenet5", coding="ttfs", timesteps=(16, 32, 64)), "lenet5-rate",
                    "plain TTFS (baseline)"),
    "lenet5-ttfs-dynamic": (dict(preset="lenet5", coding="ttfs-dynamic", timesteps=(4, 8, 16, 32)), "lenet5-rate",
                            "TTFS: at most one spike per neuron, within 0.5 pp"),
    "lenet5-qcfs": (dict(preset="lenet5", coding="qcfs", levels=4, timesteps=(2, 4, 8, 16)), None,
                    "low latency: SNN within 0.5 pp of its ANN at T = 4"),
    "lenet5-asn": (dict(preset="lenet5", coding="asn", timesteps=(50, 100, 200, 300, 500)), None,
                   "ASN coding (seed 000): ANN trained with the ASN transfer function"),
    "vgg-rate": (dict(preset="vgg", coding="rate", timesteps=(16, 32, 48, 64)), None,
                 "SNN within 0.3 pp at T <= 64, spiking max pooling"),
    "resnet18-rate": (dict(preset="resnet18", coding="rate", timesteps=(32, 64, 128), test_samples=200), None,
                      "argmax agreement >= 99 %"),
}


def run(name: str, data_dir: str) -> dict:
    from spikeflow.convert.experiment import ConvertConfig, run_experiment

    fields, reuse, target = RUNS[name]
    model = str(WORK / reuse / "ann.pt") if reuse else None
    config = ConvertConfig(
        **fields, model=model, dataset="mnist", data_dir=data_dir, out=str(WORK / name), quiet=True, plot=False,
    )
    summary = run_experiment(config)
    summary["target"] = target
    return summary


def table(runs: dict) -> str:
    lines = [
        "| run | ANN | T | SNN | SNN - ANN | agreement | max spikes/neuron | synops/sample | target |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, r in sorted(runs.items()):
        max_spikes = max((n.get("max_spikes") or 0 for n in r.get("neurons", [])), default=None)
        for t in r["timesteps"]:
            acc, agree = r["snn_accuracy"][str(t)], r["agreement"][str(t)]
            lines.append(
                f"| {name} | {100 * r['ann_accuracy']:.2f} % | {t} | {100 * acc:.2f} % | "
                f"{100 * (acc - r['ann_accuracy']):+.2f} | {100 * agree:.2f} % | {max_spikes} | "
                f"{r['synops'][str(t)]:.3g} | {r['target']} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", choices=[[], *RUNS], help="runs to do (default: all, in order)")
    parser.add_argument("--data-dir", default=os.environ.get("SPIKEFLOW_DATA"), help="MNIST folder")
    parser.add_argument("--results", default=str(HERE / "results" / "convert_presets.json"))
    args = parser.parse_args()
    path = Path(args.results)
    saved = json.loads(path.read_text()) if path.exists() else {"runs": {}}
    for name in args.runs or list(RUNS):
        saved["runs"][name] = json_safe(run(name, args.data_dir))
        saved["machine"] = machine_info()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)
        path.with_suffix(".md").write_text(table(saved["runs"]))
        print(table({name: saved["runs"][name]}), flush=True)


if __name__ == "__main__":
    main()
