"""The typed training configuration: one frozen dataclass, validated once.

A :class:`TrainConfig` is built from keyword arguments, from a plain dict
(:meth:`TrainConfig.from_dict`, what a checkpoint stores) or from a JSON or TOML
file (:func:`load_config`). Every field has a default, so ``TrainConfig()`` is the
configuration of ``spikeflow train`` without arguments.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

__all__ = ["ENCODINGS", "OPTIMIZERS", "READOUTS", "TrainConfig", "load_config"]

OPTIMIZERS = ("adam", "adamw", "sgd")
ENCODINGS = ("direct", "rate", "latency")
READOUTS = ("max", "mean", "last", "sum", "count")
"""Readouts: ``max``/``mean``/``last``/``sum`` read a non-spiking LI output layer through
:func:`spikeflow.loss.membrane_cross_entropy` with that time reduction; ``count``
reads a spiking LIF output layer through :func:`spikeflow.loss.spike_count_cross_entropy`."""

# Fields that may differ between a run and the run it resumes (they do not change
# what is computed, or, for ``epochs``, only how far the run goes).
RESUMABLE_CHANGES = frozenset({"epochs", "resume", "quiet", "out", "device", "backend", "threads"})


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


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on.

    Attributes:
        preset: model and data set (see :data:`spikeflow.train.PRESETS`).
        epochs: total number of epochs (a resumed run trains up to this many).
        batch_size: training mini-batch size.
        lr: learning rate.
        optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"`` (SGD with momentum 0.9).
        weight_decay: L2 weight decay (decoupled for AdamW).
        steps: number of time steps ``T`` each input is presented for.
        hidden: hidden layer width.
        encoding: input encoding, ``"direct"``, ``"rate"`` or ``"latency"``
            (:mod:`spikeflow.encode`).
        readout: how the output layer becomes logits (see :data:`READOUTS`).
        beta: membrane decay of the hidden LIF neurons.
        readout_beta: decay of the output layer.
        surrogate: surrogate gradient name (:func:`spikeflow.surrogate.by_name`).
        surrogate_alpha: its sharpness.
        seed: seed of everything random (initialisation, shuffling, rate encoding).
        out: directory for ``last.pt`` and ``best.pt``.
        device: torch device, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        backend: scan backend of the neuron layers (``"auto"``, ``"reference"``, ...).
        threads: torch intra-op threads during the run (restored afterwards); None
            takes the preset's choice (``digits-mlp``: 1, its layers are too small to
            gain from more, and extra threads stall when other processes share the
            cores), 0 leaves torch's setting alone.
        resume: continue from ``out/last.pt``.
        quiet: no progress bar.
    """

    preset: str = "digits-mlp"
    epochs: int = 30
    batch_size: int = 64
    lr: float = 5e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    steps: int = 8
    hidden: int = 128
    encoding: str = "direct"
    readout: str = "max"
    beta: float = 0.9
    readout_beta: float = 0.9
    surrogate: str = "superspike"
    surrogate_alpha: float = 10.0
    seed: int = 0
    out: str = field(default=os.path.join("runs", "digits-mlp"))
    device: str = "cpu"
    backend: str = "auto"
    threads: Optional[int] = None
    resume: bool = False
    quiet: bool = False

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        if not isinstance(self.preset, str) or not self.preset:
            raise ValueError(f"preset must be a non-empty string, got {self.preset!r}")
        _check_int("epochs", self.epochs, 1)
        _check_int("batch_size", self.batch_size, 1)
        _check_int("steps", self.steps, 1)
        _check_int("hidden", self.hidden, 1)
        _check_int("seed", self.seed, 0)
        if self.threads is not None:
            _check_int("threads", self.threads, 0)
        set_("lr", _check_float("lr", self.lr, positive=True))
        set_("weight_decay", _check_float("weight_decay", self.weight_decay, nonnegative=True))
        set_("surrogate_alpha", _check_float("surrogate_alpha", self.surrogate_alpha, positive=True))
        for name in ("beta", "readout_beta"):
            value = _check_float(name, getattr(self, name))
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value:g}")
            set_(name, value)
        set_("optimizer", _check_choice("optimizer", self.optimizer, OPTIMIZERS))
        set_("encoding", _check_choice("encoding", self.encoding, ENCODINGS))
        set_("readout", _check_choice("readout", self.readout, READOUTS))
        for name in ("surrogate", "device", "backend"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise TypeError(f"{name} must be a non-empty string, got {getattr(self, name)!r}")
        if isinstance(self.out, os.PathLike):
            set_("out", os.fspath(self.out))
        if not isinstance(self.out, str) or not self.out:
            raise TypeError(f"out must be a directory path, got {self.out!r}")
        for name in ("resume", "quiet"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        from .. import surrogate as _sg  # validates the name with the surrogate module's message
        from ..backends import backend_names

        _sg.by_name(self.surrogate, self.surrogate_alpha)
        if self.backend not in backend_names():
            raise ValueError(f"unknown backend {self.backend!r}; available: {', '.join(backend_names())}")

    @property
    def out_dir(self) -> Path:
        return Path(self.out)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as a plain dict of str, int, float and bool."""
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
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def load_config(path: str | os.PathLike) -> TrainConfig:
    """Read a :class:`TrainConfig` from a ``.json`` or ``.toml`` file.

    A TOML file may hold the keys at the top level or under a ``[train]`` table;
    a JSON file holds one object (optionally under a ``"train"`` key).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"config file {path} does not exist") from None
    if path.suffix.lower() == ".toml":
        try:
            import tomllib
        except ImportError:  # pragma: no cover - Python 3.10
            raise ImportError(f"reading {path} needs Python 3.11 or newer (tomllib); use a .json config") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"config file {path} is not valid TOML: {error}") from None
    elif path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"config file {path} is not valid JSON: {error}") from None
    else:
        raise ValueError(f"config file {path} must end in .json or .toml")
    if isinstance(data, dict) and isinstance(data.get("train"), dict) and len(data) == 1:
        data = data["train"]
    try:
        return TrainConfig.from_dict(data)
    except (TypeError, ValueError) as error:
        raise type(error)(f"config file {path}: {error}") from None
