"""The typed training configuration: one frozen dataclass, validated once.

Every field a preset may choose (epochs, learning rate, encoding, ...) defaults to
``None``, which means "the preset's value": ``TrainConfig(preset="seed004")`` is seed
004's setup, and any field given explicitly overrides it. The values are resolved
when the config is built, so a config (and the ``to_dict()`` a checkpoint stores)
always holds concrete values.

A :class:`TrainConfig` is built from keyword arguments, from a plain dict
(:meth:`TrainConfig.from_dict`) or from a YAML, JSON or TOML file
(:func:`load_config`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Optional

__all__ = [
    "DEFAULTS",
    "ENCODINGS",
    "INITS",
    "OPTIMIZERS",
    "READOUTS",
    "SCHEDULERS",
    "TrainConfig",
    "load_config",
    "read_config_file",
]

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "cosine", "step", "onecycle")
"""Learning-rate schedules, stepped once per epoch (``onecycle``: once per batch):
``cosine`` anneals to 0 over the run, ``step`` multiplies the rate by 0.1 at 50 %
and 75 % of the epochs, ``onecycle`` is :class:`torch.optim.lr_scheduler.OneCycleLR`
with ``lr`` as its peak."""
ENCODINGS = ("direct", "rate", "poisson", "latency", "multiplicative", "none")
"""Input encodings (:mod:`spikeflow.encode`); ``none`` is for data sets that already
are spike trains (``randman``, ``seed003``) and only for them."""
READOUTS = ("max", "mean", "last", "sum", "count", "count-mse", "first-spike")
"""How the output layer becomes a loss and a prediction: ``max``/``mean``/``last``/
``sum`` reduce the membrane of a non-spiking output layer over time into logits
(:func:`spikeflow.loss.membrane_cross_entropy`); ``count`` takes the cross-entropy of
the spike counts of a spiking output layer
(:func:`spikeflow.loss.spike_count_cross_entropy`); ``count-mse`` the squared error of
the spike counts to ``count_on`` for the true class and ``count_off`` for the others
(:func:`spikeflow.loss.spike_count_mse`, seed 004); ``first-spike`` the cross-entropy of
the negative first-spike times (:func:`spikeflow.loss.first_spike_time_loss`). The
prediction is the class with the largest logit or count, or the earliest spike."""
INITS = ("default", "lsuv", "fluctuation")
"""Weight initialisation: the layers' own (``default``), data-driven LSUV for spiking
layers (:func:`spikeflow.init.lsuv_`, seed 003) or fluctuation-driven
(:func:`spikeflow.init.fluctuation_init_`)."""

DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        "epochs": 30,
        "batch_size": 64,
        "lr": 5e-3,
        "optimizer": "adam",
        "momentum": 0.9,
        "amsgrad": False,
        "weight_decay": 0.0,
        "scheduler": "none",
        "grad_clip": 0.0,
        "steps": 8,
        "hidden": 128,
        "encoding": "direct",
        "latency_threshold": 0.25,
        "readout": "max",
        "count_on": None,
        "count_off": None,
        "beta": 0.9,
        "readout_beta": 0.9,
        "surrogate": "superspike",
        "surrogate_alpha": None,
        "rate_reg": 0.0,
        "init": "default",
        "augment": 0,
    }
)
"""The value of every preset-tunable field when the preset does not choose it."""

# Fields that may differ between a run and the run it resumes (they do not change
# what is computed, or, for ``epochs``, only how far the run goes).
RESUMABLE_CHANGES = frozenset(
    {"epochs", "resume", "quiet", "out", "device", "backend", "threads", "data_dir", "tensorboard",
     "checkpoint_every"}
)


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _check_float(name: str, value: Any, *, positive: bool = False, nonnegative: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value:g}")
    if nonnegative and value < 0:
        raise ValueError(f"{name} must be >= 0, got {value:g}")
    return value


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value.lower() not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value.lower()


def _check_flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on.

    Fields marked *(preset)* default to the preset's choice (see
    :data:`spikeflow.train.PRESETS`), or to :data:`DEFAULTS` where the preset makes
    none.

    Attributes:
        preset: model and data set.
        epochs: total number of epochs (a resumed run trains up to this many). *(preset)*
        batch_size: training mini-batch size (per process under torchrun). *(preset)*
        lr: learning rate (the peak for ``onecycle``). *(preset)*
        optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"``. *(preset)*
        momentum: SGD momentum. *(preset)*
        amsgrad: the AMSGrad variant of Adam/AdamW (seed 004). *(preset)*
        weight_decay: L2 weight decay (decoupled for AdamW). *(preset)*
        scheduler: learning-rate schedule (:data:`SCHEDULERS`). *(preset)*
        grad_clip: clip the global gradient norm to this value; 0 turns it off. *(preset)*
        steps: number of time steps ``T`` each input is presented for (ignored by
            ``ann`` runs, which take one step). *(preset)*
        hidden: hidden layer width (MLPs) or base channel count (CNNs). *(preset)*
        encoding: input encoding (:data:`ENCODINGS`). *(preset)*
        latency_threshold: inputs below it never spike under ``latency``. *(preset)*
        readout: output layer, loss and prediction (:data:`READOUTS`). *(preset)*
        count_on, count_off: target spike counts of ``count-mse`` (None:
            :func:`spikeflow.loss.spike_count_mse`'s ``T`` and ``0.1 T``). *(preset)*
        beta: membrane decay of the hidden spiking neurons, in [0, 1]. *(preset)*
        readout_beta: decay of the output layer, in [0, 1]. *(preset)*
        surrogate: surrogate gradient name (:func:`spikeflow.surrogate.by_name`). *(preset)*
        surrogate_alpha: its sharpness (None: the surrogate's own default, for
            ``superspike`` 10). *(preset)*
        rate_reg: weight of the firing-rate regulariser on the hidden spiking
            layers (:func:`spikeflow.loss.rate_regularizer`); 0 turns it off. *(preset)*
        init: weight initialisation (:data:`INITS`). *(preset)*
        augment: random translations of image inputs by up to this many pixels
            during training (0: none). *(preset)*
        ann: train the preset's architecture as an ordinary ANN instead (spiking
            neurons replaced by ReLU, one time step, direct input), the baseline an
            SNN is compared with.
        amp: mixed precision (bfloat16 autocast on the CPU, float16 with loss scaling
            on CUDA).
        seed: seed of everything random (initialisation, shuffling, encoding).
        data_dir: folder of MNIST-format files for the MNIST presets (None:
            ``$SPIKEFLOW_DATA``).
        out: directory for ``last.pt``, ``best.pt`` and TensorBoard logs (None:
            ``runs/<preset>``, with ``-ann`` appended for ``ann`` runs).
        tensorboard: write TensorBoard logs to ``out/tensorboard``.
        device: torch device, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        backend: scan backend of the neuron layers (``"auto"``, ``"reference"``, ...).
        threads: torch intra-op threads during the run (restored afterwards); None
            takes the preset's choice, 0 leaves torch's setting alone.
        resume: continue from ``out/last.pt``.
        checkpoint_every: also write ``last.pt`` after every this many training batches,
            so that a crash in a long epoch loses at most that many (0: only at the end
            of each epoch). A resume continues inside the epoch, with the same result.
        quiet: no progress bar.
        hardware: layers on a simulated memristive crossbar: a hardware file's path
            (``.yaml``/``.json``/``.toml``, see :mod:`spikeflow.hardware.placement`) or
            its settings as a dict; stored as the dict. Training sees the device
            when it says ``hardware_aware``; evaluation always runs on it.
    """

    preset: str = "digits-mlp"
    epochs: Optional[int] = None
    batch_size: Optional[int] = None
    lr: Optional[float] = None
    optimizer: Optional[str] = None
    momentum: Optional[float] = None
    amsgrad: Optional[bool] = None
    weight_decay: Optional[float] = None
    scheduler: Optional[str] = None
    grad_clip: Optional[float] = None
    steps: Optional[int] = None
    hidden: Optional[int] = None
    encoding: Optional[str] = None
    latency_threshold: Optional[float] = None
    readout: Optional[str] = None
    count_on: Optional[float] = None
    count_off: Optional[float] = None
    beta: Optional[float] = None
    readout_beta: Optional[float] = None
    surrogate: Optional[str] = None
    surrogate_alpha: Optional[float] = None
    rate_reg: Optional[float] = None
    init: Optional[str] = None
    augment: Optional[int] = None
    ann: bool = False
    amp: bool = False
    seed: int = 0
    data_dir: Optional[str] = None
    out: Optional[str] = None
    tensorboard: bool = False
    device: str = "cpu"
    backend: str = "auto"
    threads: Optional[int] = None
    resume: bool = False
    checkpoint_every: int = 0
    quiet: bool = False
    hardware: Optional[dict] = None

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        if not isinstance(self.preset, str) or not self.preset:
            raise ValueError(f"preset must be a non-empty string, got {self.preset!r}")
        from .presets import get_preset  # the presets import this module

        preset = get_preset(self.preset)
        if self.ann and self.encoding not in (None, "direct"):
            raise ValueError(
                f"encoding {self.encoding!r} is for spiking runs: an ANN twin (ann=True) takes the static input "
                f"in one step; leave encoding unset or 'direct'"
            )
        chosen = {**DEFAULTS, **preset.defaults}
        for name in DEFAULTS:
            if getattr(self, name) is None:
                set_(name, chosen[name])
        if self.threads is None:
            set_("threads", preset.threads if preset.threads is not None else 0)
        if self.out is None:
            set_("out", os.path.join("runs", self.preset + ("-ann" if self.ann else "")))

        for name, minimum in (("epochs", 1), ("batch_size", 1), ("steps", 1), ("hidden", 1), ("seed", 0),
                              ("threads", 0), ("augment", 0), ("checkpoint_every", 0)):
            _check_int(name, getattr(self, name), minimum)
        set_("lr", _check_float("lr", self.lr, positive=True))
        if self.surrogate_alpha is not None:
            set_("surrogate_alpha", _check_float("surrogate_alpha", self.surrogate_alpha, positive=True))
        for name in ("weight_decay", "grad_clip", "rate_reg", "momentum"):
            set_(name, _check_float(name, getattr(self, name), nonnegative=True))
        for name in ("count_on", "count_off"):
            if getattr(self, name) is not None:
                set_(name, _check_float(name, getattr(self, name), nonnegative=True))
        for name in ("beta", "readout_beta", "latency_threshold"):
            value = _check_float(name, getattr(self, name))
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value:g}")
            set_(name, value)
        set_("optimizer", _check_choice("optimizer", self.optimizer, OPTIMIZERS))
        set_("scheduler", _check_choice("scheduler", self.scheduler, SCHEDULERS))
        set_("encoding", _check_choice("encoding", self.encoding, ENCODINGS))
        set_("readout", _check_choice("readout", self.readout, READOUTS))
        set_("init", _check_choice("init", self.init, INITS))
        for name in ("amsgrad", "ann", "amp", "tensorboard", "resume", "quiet"):
            _check_flag(name, getattr(self, name))
        for name in ("surrogate", "device", "backend"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise TypeError(f"{name} must be a non-empty string, got {getattr(self, name)!r}")
        for name in ("out", "data_dir"):
            value = getattr(self, name)
            if isinstance(value, os.PathLike):
                set_(name, value := os.fspath(value))
            if value is not None and (not isinstance(value, str) or not value):
                raise TypeError(f"{name} must be a directory path, got {value!r}")

        if self.hardware is not None:
            from ..hardware import HardwareSpec, load_hardware

            if isinstance(self.hardware, (str, os.PathLike)):
                spec = load_hardware(self.hardware)
            elif isinstance(self.hardware, Mapping):
                spec = HardwareSpec.from_dict(self.hardware)
            else:
                raise TypeError(f"hardware must be a hardware file path or a dict of settings, got {self.hardware!r}")
            set_("hardware", spec.to_dict())

        sequence = preset.input == "sequence"
        if sequence != (self.encoding == "none"):
            raise ValueError(
                f"preset {self.preset!r} takes {'spike trains' if sequence else 'static inputs'}: "
                + ("use encoding 'none'" if sequence else f"encoding 'none' is only for spike-train data sets")
            )
        if self.readout not in preset.readouts:
            raise ValueError(
                f"preset {self.preset!r} supports the readouts {', '.join(preset.readouts)}; got {self.readout!r}"
            )
        if self.ann and not preset.has_ann:
            raise ValueError(f"preset {self.preset!r} has no ANN twin (ann=True is for the MLP and CNN presets)")
        if self.ann and self.readout in ("count", "count-mse", "first-spike"):
            raise ValueError("an ANN twin reads its output as logits: use a membrane readout (max, mean, last, sum)")
        from .. import surrogate as _sg  # validates the name with the surrogate module's message
        from ..backends import backend_names

        _sg.by_name(self.surrogate, self.surrogate_alpha)
        if self.backend not in backend_names():
            raise ValueError(f"unknown backend {self.backend!r}; available: {', '.join(backend_names())}")

    @property
    def out_dir(self) -> Path:
        return Path(self.out)

    @property
    def time_steps(self) -> int:
        """The number of steps actually simulated: 1 for an ANN twin, else ``steps``."""
        return 1 if self.ann else self.steps

    def to_dict(self) -> dict[str, Any]:
        """The configuration as a plain dict of str, int, float, bool and None."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrainConfig":
        """Build from a dict; unknown keys raise (they are usually typos)."""
        if not isinstance(data, Mapping):
            raise TypeError(f"a training config must be a mapping, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(
                f"unknown training config key(s): {', '.join(unknown)}; known: {', '.join(sorted(names))}"
            )
        return cls(**dict(data))

    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with some fields changed (validated again). The other fields keep
        their resolved values, even when ``preset`` changes: to switch presets, build
        a new config."""
        return dataclasses.replace(self, **changes)


#: The largest settings file :func:`read_config_file` reads (settings files are tiny).
MAX_CONFIG_BYTES = 1 << 24

#: The deepest nesting of tables and lists a settings file may have.
MAX_CONFIG_DEPTH = 32

#: The most values (tables, lists and scalars, a YAML alias counted at every use) a
#: settings file may hold: YAML aliases can make a small file expand to billions.
MAX_CONFIG_VALUES = 100_000


def _check_structure(path: Path, data: Any) -> None:
    """ValueError unless ``data`` nests at most :data:`MAX_CONFIG_DEPTH` deep and holds
    at most :data:`MAX_CONFIG_VALUES` values, counting each use of a YAML alias (so
    that printing or copying the settings later cannot explode); non-finite floats
    are left to the settings' own checks."""
    stack = [(data, 0)]
    count = 0
    while stack:
        value, depth = stack.pop()
        count += 1
        if count > MAX_CONFIG_VALUES:
            raise ValueError(
                f"config file {path} holds more than {MAX_CONFIG_VALUES} values (counting every use of a YAML "
                f"alias); a settings file holds a few dozen"
            )
        if depth > MAX_CONFIG_DEPTH:
            raise ValueError(f"config file {path} nests tables or lists more than {MAX_CONFIG_DEPTH} deep")
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
            stack.extend((k, depth + 1) for k in value if not isinstance(k, (str, int, float, bool)))
        elif isinstance(value, (list, tuple, set)):
            stack.extend((v, depth + 1) for v in value)


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """The training settings in a ``.yaml``/``.yml``, ``.json`` or ``.toml`` file, as a
    dict (not yet validated).

    The keys may sit at the top level or under one ``train`` table (TOML
    ``[train]``, YAML/JSON ``train:``). Dashes in keys are read as underscores, so a
    file may use the command line's spelling (``batch-size: 128``).

    The file is data only: YAML is read with ``yaml.safe_load`` (a tag such as
    ``!!python/object`` is refused, nothing is imported or called), and whatever the
    file holds, the only errors are ``FileNotFoundError`` (no such file) and
    ``ValueError`` naming the file and the problem: not a regular file, not UTF-8,
    bad syntax, not a mapping, larger than :data:`MAX_CONFIG_BYTES`, nested deeper than
    :data:`MAX_CONFIG_DEPTH`, more than :data:`MAX_CONFIG_VALUES` values (a YAML alias
    bomb), integers of more digits than Python converts.
    """
    path = Path(path)
    if path.exists() and not path.is_file():  # a folder, or a pipe that would block the read
        raise ValueError(f"config file {path} is not a regular file")
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ValueError(
                f"config file {path} is {path.stat().st_size} bytes, more than the {MAX_CONFIG_BYTES} a settings "
                f"file may have"
            )
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"config file {path} does not exist") from None
    except UnicodeDecodeError as error:
        raise ValueError(f"config file {path} is not UTF-8 text: {error}") from None
    suffix = path.suffix.lower()
    if suffix == ".toml":
        try:
            import tomllib
        except ImportError:  # pragma: no cover - Python 3.10
            raise ImportError(f"reading {path} needs Python 3.11 or newer (tomllib); use .yaml or .json") from None
        try:
            data = tomllib.loads(text)
        except (tomllib.TOMLDecodeError, ValueError, RecursionError) as error:
            raise ValueError(f"config file {path} is not valid TOML: {_first_line(error)}") from None
    elif suffix == ".json":
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as error:  # JSONDecodeError, or an integer of too many digits
            raise ValueError(f"config file {path} is not valid JSON: {_first_line(error)}") from None
    elif suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ImportError(f"reading {path} needs PyYAML: pip install spikeflow[cli]") from None
        try:
            data = yaml.safe_load(text)
        except (yaml.YAMLError, ValueError, TypeError, ArithmeticError, RecursionError) as error:
            raise ValueError(f"config file {path} is not valid YAML: {_first_line(error)}") from None
    else:
        raise ValueError(f"config file {path} must end in .yaml, .yml, .json or .toml")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a mapping of settings, got {type(data).__name__}")
    _check_structure(path, data)
    if isinstance(data.get("train"), dict) and len(data) == 1:
        data = data["train"]
    return {str(key).replace("-", "_"): value for key, value in data.items()}


def _first_line(error: BaseException) -> str:
    """An error message on one line, at most 300 characters."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def load_config(path: str | os.PathLike, **overrides: Any) -> TrainConfig:
    """A :class:`TrainConfig` from a settings file (:func:`read_config_file`), with
    ``overrides`` (for example command-line options) taking precedence."""
    data = {**read_config_file(path), **overrides}
    try:
        return TrainConfig.from_dict(data)
    except (TypeError, ValueError) as error:
        raise type(error)(f"config file {path}: {error}") from None
