"""One conversion experiment end to end (what ``spikeflow convert`` runs).

Seed 002's ``Experiment``: get an ANN (train a preset's, or load a saved one),
measure it, convert it with the chosen coding, simulate the SNN for a list of time
steps, and compare the two, with spike statistics, synaptic operations, a plot and
TensorBoard logs. :func:`run_experiment` returns a plain summary dict (the
``--json`` output).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

__all__ = ["ConvertConfig", "run_experiment", "activation_for"]

#: Codings and the activation their ANN is trained with.
_CODING_ACTIVATIONS = {
    "rate": "relu",
    "ttfs": "relu",
    "ttfs-dynamic": "relu",
    "ttfs-clamped": "clamped",
    "qcfs": "qcfs",
    "asn": "asn",
}


#: Codings whose network answers after ``(depth + 1)`` windows of ``K`` steps.
WINDOWED = ("ttfs-dynamic", "ttfs-clamped")
#: Window lengths evaluated by default for them.
DEFAULT_WINDOWS = (4, 8, 16)
#: Time steps evaluated by default for the asn coding (its synaptic filters settle
#: in a few ``tau_beta`` = 50 steps per layer).
ASN_TIMESTEPS = (50, 100, 200, 300, 500)


def merge_reports(reports: list) -> Any:
    """One :class:`ConversionReport` from reports of single, distinct ``T`` (the runs of a
    windowed coding with different windows); the neuron and synapse statistics are
    those of the longest run."""
    from .evaluate import ConversionReport

    reports = sorted(reports, key=lambda r: r.timesteps[-1])
    last = reports[-1]
    merged = last.to_dict()
    for key in ConversionReport._PER_T:
        merged[key] = {str(t): v for r in reports for t, v in r.to_dict()[key].items()}
    merged["timesteps"] = [t for r in reports for t in r.timesteps]
    return ConversionReport.from_dict(merged)


@dataclass(frozen=True)
class ConvertConfig:
    """Settings of :func:`run_experiment` (the ``spikeflow convert`` options).

    Attributes:
        model: a saved ANN (``.pt`` from ``--save-ann`` / a previous run, or ``.onnx``);
            None trains the preset's ANN.
        preset: the architecture and training set-up (:data:`PRESETS`).
        coding: the coding scheme (a key of :data:`spikeflow.convert.CODINGS`).
        timesteps: simulation lengths to evaluate (one run of the longest); for the
            windowed TTFS codings, the window lengths ``K`` (each network answers
            after ``(depth + 1) K`` steps).
        dataset: ``digits`` (built in) or ``mnist`` (``data_dir`` / ``$SPIKEFLOW_DATA``).
        epochs, lr, batch_size: ANN training (None: the preset's).
        normalization, percentile, per_channel, calibration_samples: calibration.
        levels: QCFS quantization levels (coding ``qcfs``).
        test_samples: evaluate on the first N test images (0: all).
        out: directory for ``ann.pt``, ``snn.pt``, ``accuracy.png`` and TensorBoard logs.
        tensorboard: write TensorBoard statistics under ``out/tensorboard``.
        plot: save the accuracy-against-time-steps plot.
        seed, threads, quiet: as for ``spikeflow train``.
        hardware: a crossbar device file (:mod:`spikeflow.hardware.placement`): the
            spiking network is evaluated with those layers on the simulated device
            (the saved network keeps the ideal weights, ``info["hardware"]`` the device).
    """

    model: Optional[str] = None
    preset: str = "lenet5"
    coding: str = "rate"
    timesteps: tuple[int, ...] = ()
    dataset: str = "digits"
    data_dir: Optional[str] = None
    epochs: Optional[int] = None
    lr: Optional[float] = None
    batch_size: Optional[int] = None
    normalization: str = "percentile"
    percentile: float = 99.99
    per_channel: bool = True
    calibration_samples: int = 2000
    levels: int = 8
    test_samples: int = 0
    out: str = "runs/convert"
    tensorboard: bool = False
    plot: bool = True
    seed: int = 0
    threads: int = 0
    quiet: bool = False
    hardware: Optional[str] = None

    def __post_init__(self) -> None:
        from . import CODINGS
        from .presets import DATASETS, get_preset

        get_preset(self.preset)
        if self.coding not in CODINGS:
            raise ValueError(f"unknown coding {self.coding!r}; expected one of {sorted(CODINGS)}")
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown data set {self.dataset!r}; expected one of {list(DATASETS)}")
        if self.model is not None and not Path(self.model).is_file():
            raise FileNotFoundError(f"model file {self.model} does not exist")
        for name in ("calibration_samples", "levels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.test_samples < 0:
            raise ValueError(f"test_samples must be >= 0, got {self.test_samples!r}")
        if self.hardware is not None:
            from ..hardware import load_hardware

            if load_hardware(self.hardware).hardware_aware:
                raise ValueError(
                    f"hardware file {self.hardware}: hardware_aware training is for spikeflow train; convert "
                    f"evaluates the converted network on the device (set hardware_aware: false)"
                )


def activation_for(coding: str, levels: int = 8):
    """The activation factory an ANN for ``coding`` is trained with."""
    kind = _CODING_ACTIVATIONS.get(coding, "relu")
    if kind == "clamped":
        return lambda: torch.nn.Hardtanh(0.0, 1.0)
    if kind == "qcfs":
        from .qcfs import QCFS

        return lambda: QCFS(levels=levels)
    if kind == "asn":
        from .asn import ASNActivation

        return ASNActivation
    return torch.nn.ReLU


def _seed(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def run_experiment(config: ConvertConfig) -> dict[str, Any]:
    """Train or load the ANN, convert it, evaluate both; returns the summary."""
    from . import convert
    from .ann import ann_accuracy, fit_ann, load_ann, save_ann
    from .evaluate import evaluate_conversion, log_to_tensorboard
    from .presets import build_ann, get_preset, load_images, training_settings

    preset = get_preset(config.preset)
    if config.threads:
        torch.set_num_threads(config.threads)
    _seed(config.seed)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    x_train, y_train, x_test, y_test = load_images(config.dataset, config.data_dir, preset.cifar_shape)
    if config.test_samples:
        x_test, y_test = x_test[: config.test_samples], y_test[: config.test_samples]
    input_shape, classes = tuple(x_train.shape[1:]), int(max(y_train.max(), y_test.max())) + 1
    say = (lambda *a: None) if config.quiet else (lambda *a: print(*a, flush=True))

    trained = False
    if config.model is not None and str(config.model).endswith(".onnx"):
        from .onnx import load_onnx

        ann = load_onnx(config.model)
    elif config.model is not None:
        def rebuild(preset: str, input_shape, classes: int, coding: str = "rate", levels: int = 8, **_: Any):
            return build_ann(preset, input_shape, classes, activation_for(coding, levels))

        ann, settings = load_ann(config.model, rebuild)
        if tuple(settings["input_shape"]) != input_shape:
            raise ValueError(
                f"{config.model} takes inputs of shape {tuple(settings['input_shape'])}, but the "
                f"{config.dataset} data has {input_shape}"
            )
    else:
        ann = build_ann(config.preset, input_shape, classes, activation_for(config.coding, config.levels))
        default_epochs, default_lr = training_settings(preset, config.dataset)
        say(f"training {config.preset} on {config.dataset} ({len(x_train)} images)")
        fit_ann(
            ann, x_train, y_train,
            epochs=config.epochs or default_epochs, lr=config.lr or default_lr,
            batch_size=config.batch_size or preset.batch_size, shift=preset.shift,
            weight_decay=preset.weight_decay, seed=config.seed, progress=not config.quiet,
        )
        save_ann(out / "ann.pt", ann, preset=config.preset, input_shape=list(input_shape), classes=classes,
                 coding=config.coding, levels=config.levels)
        trained = True
    train_time = time.perf_counter() - started

    convert_options = dict(
        coding=config.coding, normalization=config.normalization, percentile=config.percentile,
        per_channel=config.per_channel, max_samples=config.calibration_samples,
    )
    calibration_images = x_train[: config.calibration_samples]
    spec = None
    if config.hardware is not None:
        from ..hardware import load_hardware

        spec = load_hardware(config.hardware)

    def on_device(net: Any) -> Any:
        if spec is not None:
            from ..hardware import to_crossbar

            net.info["hardware"] = {**spec.to_dict(), "placed": to_crossbar(net, spec)}
        return net

    timesteps = tuple(config.timesteps) or (ASN_TIMESTEPS if config.coding == "asn" else preset.timesteps)
    if config.coding in WINDOWED:
        # the network answers after (depth + 1) windows: every T is a window length
        windows = tuple(config.timesteps) or DEFAULT_WINDOWS
        reports = []
        for window in windows:
            snn = on_device(convert(ann, calibration_images, window=window, **convert_options))
            report = evaluate_conversion(ann, snn, x_test, y_test, [snn.info["total_steps"]], progress=not config.quiet)
            reports.append((window, report))
            say(f"window {window}: {snn.info['total_steps']} steps in all")
            say(report.table())
        report = merge_reports([r for _, r in reports])
        summary_extra: dict[str, Any] = {"windows": {str(w): r.timesteps[0] for w, r in reports}}
    else:
        snn = on_device(convert(ann, calibration_images, **convert_options))
        report = evaluate_conversion(ann, snn, x_test, y_test, list(timesteps), progress=not config.quiet)
        summary_extra = {}
    snn.save(out / "snn.pt")
    summary: dict[str, Any] = {
        "config": asdict(config),
        "ann_trained": trained,
        "train_time_s": train_time,
        "total_time_s": time.perf_counter() - started,
        "snn_path": str(out / "snn.pt"),
        "snn_info": snn.info,
        **summary_extra,
        **report.to_dict(),
    }
    if config.plot:
        try:
            from ..plot import accuracy_vs_timesteps

            summary["plot"] = str(accuracy_vs_timesteps(report, out / "accuracy.png"))
        except ImportError as exc:  # matplotlib is an optional extra
            say(f"no plot: {exc}")
    if config.tensorboard:
        log_to_tensorboard(report, out / "tensorboard", ann=ann, snn=snn)  # ann: a Module, or an ONNX LayerGraph
    say(report.table())
    return summary
