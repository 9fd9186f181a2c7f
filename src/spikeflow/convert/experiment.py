"""One conversion experiment end to end (what ``spikeflow convert`` runs).

Seed 002's ``Experiment``: get an ANN (train a preset's, or load a saved one),
measure it, convert it with the chosen coding, simulate the SNN for a list of time
steps, and compare the two, with spike statistics, synaptic operations, a plot and
TensorBoard logs. :func:`run_experiment` returns a plain summary dict (the
``--json`` output).

An interrupted run (killed, out of power) continues with ``resume=True``
(``spikeflow convert --resume``) from what ``out`` holds, and ends with the same
weights, scales and accuracies as an uninterrupted run with the same settings:

- ``run.json``: the settings the run was started with; a resume with other
  settings (other than :data:`RESUMABLE_CHANGES`) is refused, naming them;
- ``ann.last.pt`` (and ``ann.last.prev.pt``): the ANN training checkpoint of the
  last completed epoch (:func:`~spikeflow.convert.ann.fit_ann`); training goes on
  from there, and a finished ANN (``ann.pt``, recorded in ``run.json``) is reused;
- ``calibration.pt``: the measured activation scales with a fingerprint of the ANN's
  weights, the calibration settings and data; reused when the fingerprint matches,
  measured again (with a warning) when not;
- ``evaluation.pt``: the report of every evaluation completed (one per window for the
  windowed TTFS codings, one for all time steps otherwise), with a fingerprint of
  what they evaluated; the completed ones are not run again.

Every file is written atomically, the replaced one kept as ``<name>.prev.pt``: a
corrupt latest file falls back to the previous one (or is recomputed) with a
warning, and a write that fails (disk full) leaves the previous file intact. A run
without ``resume`` starts from scratch and removes these files first.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

import torch

from ..train import _faults
from ..train.checkpoint import (
    CheckpointError,
    atomic_write_bytes,
    load_latest,
    previous_path,
    read_payload,
    save_weights_only,
)

__all__ = ["ConvertConfig", "RESUMABLE_CHANGES", "run_experiment", "activation_for"]

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
#: Codings whose activations fix their own range: no calibration data is measured.
UNCALIBRATED = ("ttfs-clamped", "asn")

#: Files in ``out`` that a resumed run continues from (see the module docstring).
RUN_FILE = "run.json"
ANN_CHECKPOINT = "ann.last.pt"
CALIBRATION_FILE = "calibration.pt"
EVALUATION_FILE = "evaluation.pt"
RUN_FORMAT = "spikeflow.convert-run/1"
CALIBRATION_FORMAT = "spikeflow.calibration/1"
EVALUATION_FORMAT = "spikeflow.convert-evaluation/1"
#: :class:`ConvertConfig` fields a resumed run may change (they do not change what is computed).
RESUMABLE_CHANGES = frozenset({"resume", "quiet", "out", "threads", "data_dir", "tensorboard", "plot"})


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
        resume: continue an interrupted run from what ``out`` holds (the ANN training
            checkpoint, the trained ANN, the calibration, the completed evaluations;
            see the module docstring) instead of starting from scratch. The other
            settings must be those the run was started with, except
            :data:`RESUMABLE_CHANGES`.
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
    resume: bool = False

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


#: The most outputs a saved ANN may declare (a bound before building it from a file).
MAX_CLASSES = 100_000


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


def _plain(value: Any) -> Any:
    """``value`` as JSON reads it back (tuples as lists)."""
    return json.loads(json.dumps(value))


def _digest(hasher: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous().reshape(-1)
        hasher.update(f"tensor {t.dtype} {tuple(value.shape)}:".encode())
        hasher.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(value, dict):
        hasher.update(b"{")
        for key in value:  # in order: a state_dict's order is part of the model
            hasher.update(f"{key!r}:".encode())
            _digest(hasher, value[key])
        hasher.update(b"}")
    elif isinstance(value, (list, tuple)):
        hasher.update(b"[")
        for item in value:
            _digest(hasher, item)
        hasher.update(b"]")
    else:
        hasher.update(f"{type(value).__name__} {value!r};".encode())


def fingerprint(*parts: Any) -> str:
    """A SHA-256 of tensors (dtype, shape and bytes) and plain values, nested in dicts
    and lists."""
    hasher = hashlib.sha256()
    for part in parts:
        _digest(hasher, part)
    return hasher.hexdigest()


def _model_fingerprint(model: Any) -> str:
    """Of a module's ``state_dict``, or of a ``LayerGraph``'s layers (kind, weights, settings)."""
    if isinstance(model, torch.nn.Module):
        return fingerprint(model.state_dict())
    def setting(value: Any) -> Any:  # objects without a stable repr count by their type only
        if isinstance(value, (torch.Tensor, int, float, str, bool, type(None))):
            return value
        if isinstance(value, (list, tuple)):
            return [setting(v) for v in value]
        return type(value).__name__

    return fingerprint({
        node.name: [str(node.kind), None if node.module is None else node.module.state_dict(),
                    {key: setting(value) for key, value in node.attrs.items()}]
        for node in model.nodes
    })


_STATE_FILES = (RUN_FILE, ANN_CHECKPOINT, CALIBRATION_FILE, EVALUATION_FILE)


def _clear_state(out: Path) -> None:
    """Remove what a resume would read (a fresh run must not resume an older one's)."""
    for name in _STATE_FILES:
        for path in (out / name, previous_path(out / name)):
            path.unlink(missing_ok=True)


def _clear_partial_writes(out: Path) -> None:
    """Remove the temporary files of writes a killed run left unfinished."""
    names = [*_STATE_FILES, *(previous_path(n).name for n in _STATE_FILES), "ann.pt", "snn.pt"]
    for path in out.glob(".*.tmp"):
        if any(path.name.startswith(f".{name}.") for name in names):
            path.unlink(missing_ok=True)


def _write_run(out: Path, state: dict[str, Any]) -> None:
    atomic_write_bytes(out / RUN_FILE, (json.dumps(state, indent=1) + "\n").encode())


def _read_run(out: Path) -> dict[str, Any]:
    path = out / RUN_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"nothing to resume: {path} does not exist (the run was not started, or was stopped before it "
            f"wrote anything); run without --resume to start it"
        )
    try:
        state = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(
            f"{path} is corrupt and cannot be read ({error}); start the run again without --resume"
        ) from None
    if not isinstance(state, dict) or state.get("format") != RUN_FORMAT or not isinstance(state.get("config"), dict):
        raise CheckpointError(f"{path} is not the record of a spikeflow convert run (expected format {RUN_FORMAT!r})")
    return state


def _check_resumable(saved: dict[str, Any], config: "ConvertConfig", path: Path) -> None:
    """Refuse to resume with settings other than those ``saved`` in ``path``."""
    current = _plain(asdict(config))
    missing = object()
    changed = [
        f"{f.name}={getattr(config, f.name)!r} (run: {saved.get(f.name, 'missing')!r})"
        for f in fields(config)
        if f.name not in RESUMABLE_CHANGES and saved.get(f.name, missing) != current[f.name]
    ]
    if changed:
        raise ValueError(
            f"cannot resume from {path}: the run was started with different settings: {'; '.join(changed)}. "
            f"Use the original settings, or start a new run without --resume (or in another --out)"
        )


def _warn(message: str) -> None:
    warnings.warn(message, UserWarning, stacklevel=3)


def _differences(saved: Any, current: dict[str, Any], what: str) -> str:
    saved = saved if isinstance(saved, dict) else {}
    found = [f"{k}={v!r} ({what}: {saved.get(k)!r})" for k, v in current.items() if saved.get(k) != v]
    return "; ".join(found) or "the same settings but other data"


def _load_saved(path: Path, what: str, form: str, keys: tuple[str, ...]) -> Optional[dict[str, Any]]:
    """The newest readable ``path`` (or its previous file, with a warning), None where
    there is none or none can be read (with a warning)."""
    try:
        payload, _ = load_latest(path, load=lambda p: read_payload(p, form, keys, what=what, kind=f"spikeflow {what}"))
    except FileNotFoundError:
        return None
    except CheckpointError as error:
        _warn(f"{error}; computing it again")
        return None
    return payload


def _measure_calibration(ann: Any, images: torch.Tensor, config: "ConvertConfig") -> Any:
    """The activation scales, as :func:`spikeflow.convert.convert` measures them."""
    from . import prepare
    from .calibrate import calibrate

    return calibrate(
        prepare(ann), images, method=config.normalization, percentile=config.percentile,
        per_channel=config.per_channel, max_samples=config.calibration_samples,
    )


def _calibration(
    ann: Any, ann_print: str, images: torch.Tensor, config: "ConvertConfig", out: Path, notes: dict[str, Any]
) -> tuple[Any, str]:
    """``(calibration, fingerprint)``: reused from ``calibration.pt`` on resume where it
    was measured on this ANN with these settings and data, else measured and saved."""
    from .calibrate import Calibration

    settings = {
        "normalization": config.normalization, "percentile": float(config.percentile),
        "per_channel": bool(config.per_channel), "calibration_samples": int(config.calibration_samples),
        "images": len(images), "dataset": config.dataset,
    }
    print_ = fingerprint(ann_print, settings, images)
    path = out / CALIBRATION_FILE
    if config.resume:
        saved = _load_saved(path, "calibration", CALIBRATION_FORMAT, ("fingerprint", "settings", "ann", "calibration"))
        if saved is not None and saved["fingerprint"] != print_:
            what = "another ANN" if saved["ann"] != ann_print else _differences(saved["settings"], settings, "calibration.pt")
            _warn(f"calibration {path} was measured for {what}, not for this run; measuring it again")
        elif saved is not None:
            try:
                calibration = Calibration.from_payload(saved["calibration"])
            except ValueError as error:
                _warn(f"calibration {path} is unusable ({error}); measuring it again")
            else:
                notes["calibration_reused"] = True
                return calibration, print_
    calibration = _measure_calibration(ann, images, config)
    save_weights_only(
        path,
        {"format": CALIBRATION_FORMAT, "fingerprint": print_, "settings": settings, "ann": ann_print,
         "calibration": calibration.to_payload()},
        keep_previous=True,
    )
    return calibration, print_


def _build_snn(ann: Any, calibration: Any, config: "ConvertConfig", **options: Any) -> Any:
    """The spiking network :func:`spikeflow.convert.convert` builds, from a measured
    (or saved) ``calibration`` (None for the codings that need none)."""
    from . import convert

    return convert(
        ann, coding=config.coding, normalization=config.normalization, percentile=config.percentile,
        per_channel=config.per_channel, max_samples=config.calibration_samples, calibration=calibration, **options,
    )


class _Evaluations:
    """The reports of the completed evaluations, saved to ``evaluation.pt`` as each
    completes; on resume, those of a matching fingerprint are read back."""

    def __init__(self, path: Path, print_: str, settings: dict[str, Any], resume: bool) -> None:
        self.path, self.print_, self.settings = path, print_, settings
        self.reports: dict[str, dict[str, Any]] = {}
        saved = _load_saved(path, "evaluation", EVALUATION_FORMAT, ("fingerprint", "settings", "reports")) if resume else None
        if saved is not None and saved["fingerprint"] != print_:
            _warn(
                f"evaluation {path} holds results for {_differences(saved['settings'], settings, 'evaluation.pt')}, "
                f"not for this run; evaluating again"
            )
        elif saved is not None and isinstance(saved["reports"], dict):
            self.reports = dict(saved["reports"])

    def add(self, key: str, report: dict[str, Any]) -> None:
        self.reports[key] = report
        save_weights_only(
            self.path,
            {"format": EVALUATION_FORMAT, "fingerprint": self.print_, "settings": self.settings, "reports": self.reports},
            keep_previous=True,
        )


def run_experiment(config: ConvertConfig) -> dict[str, Any]:
    """Train or load the ANN, convert it, evaluate both; returns the summary.

    With ``config.resume``, continues the run in ``config.out`` (see the module
    docstring for what it reuses); the summary then has ``resumed``: the ANN epochs
    trained by this call, whether the trained ANN and the calibration were reused,
    and the evaluations read back.

    Raises:
        FileNotFoundError: ``resume`` but ``out`` holds no run (``run.json``).
        ValueError: ``resume`` with other settings than the run was started with.
        OSError: a result could not be written (a full disk: the previous file is
            intact, and a resume goes on from it).
    """
    from .ann import fit_ann, load_ann, save_ann
    from .evaluate import ConversionReport, evaluate_conversion, log_to_tensorboard
    from .presets import build_ann, get_preset, load_images, training_settings

    preset = get_preset(config.preset)
    if config.threads:
        torch.set_num_threads(config.threads)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    if config.resume:
        run_state = _read_run(out)
        _check_resumable(run_state["config"], config, out / RUN_FILE)
    else:
        _clear_state(out)  # before run.json: a resume never mixes two runs' files
        run_state = {"format": RUN_FORMAT, "config": _plain(asdict(config)), "ann": None}
        _write_run(out, run_state)
    _clear_partial_writes(out)
    _seed(config.seed)
    started = time.perf_counter()
    x_train, y_train, x_test, y_test = load_images(config.dataset, config.data_dir, preset.cifar_shape)
    if config.test_samples > len(x_test):
        raise ValueError(
            f"test_samples={config.test_samples} exceeds the {len(x_test)} test images of {config.dataset}; "
            f"give at most {len(x_test)} (or 0 for all)"
        )
    if config.test_samples:
        x_test, y_test = x_test[: config.test_samples], y_test[: config.test_samples]
    input_shape, classes = tuple(x_train.shape[1:]), int(max(y_train.max(), y_test.max())) + 1
    say = (lambda *a: None) if config.quiet else (lambda *a: print(*a, flush=True))
    notes: dict[str, Any] = {"ann_epochs_trained": [], "ann_reused": False, "calibration_reused": False,
                             "evaluations_reused": []}

    trained = False
    if config.model is not None and str(config.model).endswith(".onnx"):
        from .onnx import load_onnx

        ann = load_onnx(config.model)
    elif config.model is not None:
        def rebuild(preset: str, input_shape, classes: int, coding: str = "rate", levels: int = 8, **_: Any):
            # checked before anything is built: the file may ask for an enormous network
            if tuple(input_shape) != input_shape_of_data:
                raise ValueError(
                    f"it takes inputs of shape {tuple(input_shape)}, but the {config.dataset} data has "
                    f"{input_shape_of_data}"
                )
            if not isinstance(classes, int) or not classes_of_data <= classes <= MAX_CLASSES:
                raise ValueError(f"it has {classes!r} outputs; the {config.dataset} data has {classes_of_data} classes")
            return build_ann(preset, input_shape, classes, activation_for(coding, levels))

        input_shape_of_data, classes_of_data = input_shape, classes
        ann, settings = load_ann(config.model, rebuild)
    else:
        ann = build_ann(config.preset, input_shape, classes, activation_for(config.coding, config.levels))
        ann_path = out / "ann.pt"
        if config.resume and run_state.get("ann") is not None:
            reused = _reuse_ann(ann, ann_path, run_state["ann"], load_ann)
            if reused is not None:
                ann, notes["ann_reused"] = reused, True
                say(f"reusing the trained ANN {ann_path}")
        if not notes["ann_reused"]:
            default_epochs, default_lr = training_settings(preset, config.dataset)
            say(f"training {config.preset} on {config.dataset} ({len(x_train)} images)")
            fit_ann(
                ann, x_train, y_train,
                epochs=config.epochs or default_epochs, lr=config.lr or default_lr,
                batch_size=config.batch_size or preset.batch_size, shift=preset.shift,
                weight_decay=preset.weight_decay, seed=config.seed, progress=not config.quiet,
                on_epoch=lambda epoch, _loss: notes["ann_epochs_trained"].append(epoch),
                checkpoint=out / ANN_CHECKPOINT, resume=config.resume,
            )
            save_ann(ann_path, ann, preset=config.preset, input_shape=list(input_shape), classes=classes,
                     coding=config.coding, levels=config.levels)
            run_state["ann"] = _model_fingerprint(ann)
            _write_run(out, run_state)
        trained = True
    train_time = time.perf_counter() - started
    ann_print = _model_fingerprint(ann)

    calibration_images = x_train[: config.calibration_samples]
    calibration, calibration_print = None, ann_print
    if config.coding not in UNCALIBRATED:
        calibration, calibration_print = _calibration(ann, ann_print, calibration_images, config, out, notes)
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
    windowed = config.coding in WINDOWED
    # the windowed codings answer after (depth + 1) windows: every T is a window length
    units = (tuple(config.timesteps) or DEFAULT_WINDOWS) if windowed else (None,)
    eval_settings = {
        "coding": config.coding, "levels": config.levels, "units": list(units) if windowed else list(timesteps),
        "test_samples": len(x_test), "dataset": config.dataset, "hardware": _plain(spec.to_dict()) if spec else None,
    }
    evaluations = _Evaluations(
        out / EVALUATION_FILE, fingerprint(calibration_print, eval_settings, x_test, y_test), eval_settings, config.resume
    )
    reports: list[tuple[Any, Any]] = []
    snn = None
    for i, window in enumerate(units):
        key = "all" if window is None else f"window {window}"
        options = {} if window is None else {"window": window}
        report = _saved_report(evaluations, key, ConversionReport)
        if report is not None:
            notes["evaluations_reused"].append(key)
            snn = None
        else:
            snn = on_device(_build_snn(ann, calibration, config, **options))
            _faults.point("mid-evaluation", "all" if window is None else window)
            steps = [snn.info["total_steps"]] if windowed else list(timesteps)
            result = evaluate_conversion(ann, snn, x_test, y_test, steps, progress=not config.quiet)
            evaluations.add(key, result.to_dict())
            report = ConversionReport.from_dict(result.to_dict())  # as a resumed run reads it back
        reports.append((window, report))
        if windowed:
            say(f"window {window}: {report.timesteps[0]} steps in all")
            say(report.table())
    if snn is None:  # the last evaluation was read back: rebuild the network it evaluated
        last = units[-1]
        snn = on_device(_build_snn(ann, calibration, config, **({} if last is None else {"window": last})))
    if windowed:
        report = merge_reports([r for _, r in reports])
        summary_extra: dict[str, Any] = {"windows": {str(w): r.timesteps[0] for w, r in reports}}
    else:
        report = reports[0][1]
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
    if config.resume:
        summary["resumed"] = notes
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


def _saved_report(evaluations: _Evaluations, key: str, report_class: Any) -> Any:
    """The saved report of evaluation ``key``, None where there is none or it is unusable
    (with a warning)."""
    if key not in evaluations.reports:
        return None
    try:
        return report_class.from_dict(evaluations.reports[key])
    except (TypeError, KeyError, ValueError, AttributeError) as error:
        _warn(f"evaluation {evaluations.path}: the saved result of {key} is unusable ({error}); evaluating it again")
        return None


def _reuse_ann(ann: torch.nn.Module, path: Path, expected: str, load_ann: Any) -> Optional[torch.nn.Module]:
    """The trained ANN of ``path`` (a copy of ``ann``'s architecture) where its weights
    are those the run recorded; else None, with a warning (it is then restored from
    the training checkpoint)."""
    import copy

    try:
        loaded, _ = load_ann(path, lambda **_: copy.deepcopy(ann))
    except CheckpointError as error:
        _warn(f"{error}; restoring the ANN from its training checkpoint {path.with_name(ANN_CHECKPOINT)}")
        return None
    if _model_fingerprint(loaded) != expected:
        _warn(
            f"ANN file {path} does not hold the weights this run trained (changed since); restoring the ANN "
            f"from its training checkpoint {path.with_name(ANN_CHECKPOINT)}"
        )
        return None
    return loaded
