"""Accuracy against a device non-ideality, for an ordinarily trained and a
hardware-aware-trained network (what ``spikeflow crossbar`` runs).

:func:`sweep` reprograms a model's crossbar layers with one setting changed, over
a list of values and several device seeds (each seed is a different chip: other
faults, other programming variation, other read noise), and measures the accuracy
each time. :func:`crossbar_experiment` trains a preset twice (the same seed, the
device seen or not seen in training), measures both on the ideal layers and on the
device, sweeps the requested settings, and plots the sweeps.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch

from .crossbar import crossbar_layers, ideal_crossbars
from .device import CrossbarConfig
from .placement import HardwareSpec, set_crossbar_config

__all__ = ["SWEEPABLE", "SweepResult", "sweep", "parse_sweep", "crossbar_experiment"]

#: Settings a sweep can vary, and how a value is read from the command line.
SWEEPABLE: dict[str, Callable[[str], Any]] = {
    "levels": int,
    "program_noise": float,
    "read_noise": float,
    "stuck_off": float,
    "stuck_on": float,
    "drift_nu": float,
    "drift_time": float,
    "dac_bits": int,
    "adc_bits": int,
    "r_wire": float,
}


@dataclass
class SweepResult:
    """Accuracies ``[value][seed]`` of one sweep, with their mean and std per value."""

    parameter: str
    values: list
    accuracy: list[list[float]]
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.mean:
            self.mean = [sum(a) / len(a) for a in self.accuracy]
            self.std = [
                math.sqrt(sum((x - m) ** 2 for x in a) / max(len(a) - 1, 1)) for a, m in zip(self.accuracy, self.mean)
            ]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_sweep(text: str) -> tuple[str, list]:
    """``"program_noise=0,0.05,0.1"`` -> ``("program_noise", [0.0, 0.05, 0.1])``; ``none``
    stands for None (an ideal converter or continuous levels)."""
    name, sep, values = text.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or name not in SWEEPABLE:
        raise ValueError(f"a sweep is NAME=v1,v2,... with NAME one of {sorted(SWEEPABLE)}; got {text!r}")
    parsed = []
    for item in values.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            parsed.append(None if item.lower() == "none" else SWEEPABLE[name](item))
        except ValueError:
            raise ValueError(f"sweep {name}: {item!r} is not a valid {SWEEPABLE[name].__name__}") from None
    if not parsed:
        raise ValueError(f"sweep {name} has no values")
    CrossbarConfig().replace(**{name: parsed[0]})  # a clear error for values out of range
    return name, parsed


def sweep(
    model: torch.nn.Module,
    accuracy: Callable[[torch.nn.Module], float],
    config: CrossbarConfig,
    parameter: str,
    values: Sequence,
    repeats: int = 5,
) -> SweepResult:
    """Accuracy of ``model`` with its crossbar layers reprogrammed to ``config`` with
    ``parameter`` set to each of ``values``, on ``repeats`` devices (seeds
    ``config.seed .. config.seed + repeats - 1``). The layers keep the last setting."""
    if not crossbar_layers(model):
        raise ValueError("the model has no crossbar layer to sweep (use spikeflow.hardware.to_crossbar first)")
    if parameter not in SWEEPABLE:
        raise ValueError(f"cannot sweep {parameter!r}; sweepable: {sorted(SWEEPABLE)}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    model.eval()
    table = []
    for value in values:
        row = []
        for r in range(repeats):
            set_crossbar_config(model, config.replace(**{parameter: value, "seed": config.seed + r}))
            row.append(float(accuracy(model)))
        table.append(row)
    return SweepResult(parameter, list(values), table)


def _device_accuracy(model: torch.nn.Module, accuracy: Callable, config: CrossbarConfig, repeats: int) -> list[float]:
    model.eval()
    results = []
    for r in range(repeats):
        set_crossbar_config(model, config.replace(seed=config.seed + r))
        results.append(float(accuracy(model)))
    set_crossbar_config(model, config)
    return results


def crossbar_experiment(
    preset: str,
    spec: HardwareSpec,
    sweeps: dict[str, list],
    *,
    repeats: int = 5,
    epochs: Optional[int] = None,
    seed: int = 0,
    out: str = "runs/crossbar",
    plot: bool = True,
    quiet: bool = False,
    data_dir: Optional[str] = None,
) -> dict[str, Any]:
    """Train ``preset`` ordinarily and hardware-aware (``spec``'s device on its
    layers), then measure both: ideal, on the device (``repeats`` chips), and along
    each sweep. Returns the summary (the ``--json`` output)."""
    from ..train import TrainConfig, train
    from ..train.checkpoint import load_checkpoint
    from ..train.presets import get_preset
    from ..train.trainer import evaluate
    from .placement import to_crossbar

    started = time.perf_counter()
    out_dir = Path(out)
    summary: dict[str, Any] = {"preset": preset, "hardware": spec.to_dict(), "repeats": repeats, "networks": {}}
    for name, aware in (("ordinary", False), ("hardware_aware", True)):
        hardware = HardwareSpec(spec.crossbar, spec.layers, aware).to_dict()
        options = dict(preset=preset, hardware=hardware, seed=seed, out=str(out_dir / name), quiet=quiet)
        if epochs is not None:
            options["epochs"] = epochs
        if data_dir is not None:
            options["data_dir"] = data_dir
        config = TrainConfig(**options)
        trained = train(config)
        model = get_preset(preset).build(config)
        to_crossbar(model, HardwareSpec.from_dict(hardware))
        model.load_state_dict(load_checkpoint(config.out_dir / "last.pt")["model"])
        data = get_preset(preset).load_data(config)
        x_test, y_test = data[2], data[3]

        def accuracy(m: torch.nn.Module) -> float:
            return evaluate(m, x_test, y_test, config)["accuracy"]

        with ideal_crossbars(model):
            ideal = accuracy(model)
        device = _device_accuracy(model, accuracy, spec.crossbar, repeats)
        results = {p: sweep(model, accuracy, spec.crossbar, p, v, repeats).to_dict() for p, v in sweeps.items()}
        summary["networks"][name] = {
            "ideal_accuracy": ideal,
            "device_accuracy": device,
            "device_accuracy_mean": sum(device) / len(device),
            "train_time_s": trained["train_time_s"],
            "epochs": trained["epochs"],
            "sweeps": results,
        }
        if not quiet:
            print(f"{name}: ideal {ideal:.2%}, on the device {sum(device) / len(device):.2%} "
                  f"(mean of {repeats} devices)", flush=True)
    ordinary, aware = summary["networks"]["ordinary"], summary["networks"]["hardware_aware"]
    summary["aware_gap_pp"] = 100 * (ordinary["ideal_accuracy"] - aware["device_accuracy_mean"])
    summary["ordinary_gap_pp"] = 100 * (ordinary["ideal_accuracy"] - ordinary["device_accuracy_mean"])
    if plot and sweeps:
        try:
            from ..plot import accuracy_vs_nonideality

            summary["plots"] = {
                p: str(accuracy_vs_nonideality(
                    {n: SweepResult(**r["sweeps"][p]) for n, r in summary["networks"].items()},
                    out_dir / f"sweep_{p}.png",
                ))
                for p in sweeps
            }
        except ImportError as error:  # matplotlib is an optional extra
            summary["plots"] = {"error": str(error)}
    summary["total_time_s"] = time.perf_counter() - started
    return summary
