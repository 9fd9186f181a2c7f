"""Hyper-parameter search with Optuna for training and conversion runs (``spikeflow tune``).

A *search space* is a ``.yaml``/``.yml``, ``.json`` or ``.toml`` file (or the same
data as a dict)::

    task: train            # train (spikeflow.train.train) or convert (run_experiment)
    base: {preset: digits-mlp, epochs: 3, threads: 1}   # fixed settings of every trial
    metric: test_accuracy  # the summary value optimised (see METRICS)
    direction: maximize    # maximize | minimize  [default: minimize for losses, else maximize]
    params:                # the searched settings: TrainConfig / ConvertConfig fields
      lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
      hidden: {type: int, low: 32, high: 256, step: 32}
      surrogate: {type: categorical, choices: [superspike, atan, sigmoid]}
    pruner: median         # median | none | hyperband, or a table of its settings:
                           # {type: median, n_startup_trials: 5, n_warmup_steps: 0, interval_steps: 1}
                           # {type: hyperband, min_resource: 1, max_resource: auto, reduction_factor: 3}
    sampler: tpe           # tpe | random, or {type: tpe, seed: 0}  [default: tpe, unseeded]

Parameter types: ``float`` (``low``, ``high``, optional ``log: true`` or ``step``),
``int`` (``low``, ``high``, optional ``step`` or ``log``) and ``categorical``
(``choices``: a non-empty list of strings, numbers, booleans or null). Ranges are
inclusive. For ``task: convert`` an int or categorical ``timesteps`` parameter is one
simulation length ``T``.

Every trial runs with the ``base`` settings plus its sampled parameters, quietly,
with the seed from ``base`` (default 0), in its own directory ``OUT/trial_<number>``.
Training trials report the metric after every epoch, so the pruner can stop bad
trials early; conversion trials report only their final value.

The study lives in an Optuna storage (default ``sqlite:///OUT/study.db``; any
SQLAlchemy URL such as ``postgresql://...`` works): a second call with the same
storage and study name continues the study, and several workers (processes or
machines) can share one. ``trials`` is the number of finished (complete or pruned)
trials the study should hold. Trials left running by a killed worker are noticed
through Optuna's heartbeat once ``grace_period`` seconds have passed, marked failed
and re-queued with the same parameters (at once, when the dead worker ran on this
machine). The summary is written to ``OUT/tune.json``.

With a seeded sampler (``sampler: {type: tpe, seed: 0}``) a study is reproducible
however often it is interrupted: each trial's sampler is seeded from the seed and
the trial's position among the trials that did not fail, so a study killed at any
moment and continued ends with the same parameters and values, trial for trial, as
one that ran through (the re-run of a killed trial takes its place; its number is a
new one). This holds for the ``none`` and ``median`` pruners; ``hyperband`` assigns
trials to brackets by their number. A corrupt or locked SQLite database is a
:class:`StudyStorageError` naming the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import math
import os
import random
import socket
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from .train import _faults

__all__ = ["METRICS", "SearchSpace", "StudyStorageError", "load_space", "parse_space", "tune"]


class StudyStorageError(OSError):
    """The study's database cannot be used: damaged, not a database, or locked."""


#: Seconds to wait for a lock on an SQLite study database before giving up.
_SQLITE_TIMEOUT_S = 60

#: The metrics each task can optimise, with their default direction.
METRICS: dict[str, dict[str, str]] = {
    "train": {
        "test_accuracy": "maximize",
        "best_test_accuracy": "maximize",
        "train_accuracy": "maximize",
        "test_loss": "minimize",
        "train_loss": "minimize",
        "mean_firing_rate": "minimize",
    },
    "convert": {
        "snn_accuracy": "maximize",  # the best over the evaluated T
        "final_snn_accuracy": "maximize",  # at the longest T
        "ann_accuracy": "maximize",
    },
}
_DEFAULT_METRIC = {"train": "test_accuracy", "convert": "snn_accuracy"}
# The per-epoch record key behind each training metric (reported for pruning).
_EPOCH_KEYS = {
    "test_accuracy": "test_accuracy",
    "best_test_accuracy": "test_accuracy",
    "train_accuracy": "train_accuracy",
    "test_loss": "test_loss",
    "train_loss": "train_loss",
    "mean_firing_rate": "test_firing_rate",
}
# Settings a trial fixes itself or that do not change the result: never searched.
_NOT_SEARCHED = {
    "train": {"out", "quiet", "resume", "threads", "device", "data_dir", "tensorboard", "hardware", "checkpoint_every"},
    "convert": {"out", "quiet", "model", "threads", "data_dir", "tensorboard", "plot", "hardware"},
}
_SPACE_KEYS = ("task", "base", "metric", "direction", "params", "pruner", "sampler")
_PRUNERS = {
    "none": (),
    "median": ("n_startup_trials", "n_warmup_steps", "interval_steps"),
    "hyperband": ("min_resource", "max_resource", "reduction_factor"),
}
_SAMPLERS = ("tpe", "random")


def _optuna():
    """Import optuna, or explain how to install it."""
    try:
        import optuna
    except ImportError:
        raise ImportError("spikeflow tune needs optuna: pip install spikeflow[tune]") from None
    return optuna


def _config_class(task: str) -> type:
    if task == "train":
        from .train import TrainConfig

        return TrainConfig
    from .convert.experiment import ConvertConfig

    return ConvertConfig


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """A validated search space (see the module docstring for the file format).

    Attributes:
        task: ``"train"`` or ``"convert"``.
        base: the fixed settings of every trial.
        metric: the summary value optimised (a key of ``METRICS[task]``).
        direction: ``"maximize"`` or ``"minimize"``.
        params: parameter name -> its distribution as a dict with ``type`` and the
            type's keys (``low``, ``high``, ``log``, ``step`` / ``choices``).
        pruner: ``{"type": "median" | "hyperband" | "none", ...its settings}``.
        sampler: ``{"type": "tpe" | "random", "seed": int or None}``.
    """

    task: str
    base: dict
    metric: str
    direction: str
    params: dict
    pruner: dict
    sampler: dict

    def config(self, values: Mapping[str, Any], out: str | os.PathLike) -> Any:
        """The trial's TrainConfig / ConvertConfig: ``base`` with ``values``, quiet,
        writing to ``out``."""
        settings = {**self.base, **values, "out": os.fspath(out), "quiet": True}
        if self.task == "convert":
            settings.setdefault("plot", False)
            if isinstance(settings.get("timesteps"), int):
                settings["timesteps"] = (settings["timesteps"],)
            if isinstance(settings.get("timesteps"), list):
                settings["timesteps"] = tuple(settings["timesteps"])
        return _config_class(self.task)(**settings)


def _check_number(where: str, key: str, value: Any, integer: bool) -> None:
    kind = "an integer" if integer else "a number"
    ok = not isinstance(value, bool) and isinstance(value, int if integer else (int, float))
    if not ok or (not integer and not math.isfinite(value)):
        raise ValueError(f"{where}.{key} must be {kind}, got {value!r}")


#: The keys each parameter type takes besides ``type``.
_PARAM_KEYS: dict[str, tuple[str, ...]] = {
    "float": ("low", "high", "log", "step"), "int": ("low", "high", "log", "step"), "categorical": ("choices",),
}


def _table_kind(where: str, table: Mapping, kinds: Mapping[str, tuple]) -> str:
    """The ``type`` of a table ``{type: kind, ...}``, checked against ``kinds`` (kind ->
    the other keys it takes), with no unknown key."""
    kind = table.get("type")
    if kind not in kinds:
        raise ValueError(f"{where}.type must be one of {', '.join(kinds)}; got {kind!r}")
    unknown = sorted(set(table) - {"type", *kinds[kind]})
    if unknown:
        raise ValueError(
            f"{where}: unknown key(s) {', '.join(unknown)} for {kind}; expected "
            f"{', '.join(kinds[kind]) or 'no other keys'}"
        )
    return kind


def _parse_param(task: str, name: str, spec: Any, check: Callable[[str, Any], None]) -> dict:
    """One validated parameter distribution; ``check(where, value)`` builds a config
    with the value to reject values the config refuses."""
    where = f"params.{name}"
    if not isinstance(spec, Mapping):
        raise ValueError(f"{where} must be a table with a type, got {spec!r}")
    kind = _table_kind(where, spec, _PARAM_KEYS)
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ValueError(f"{where}.choices must be a non-empty list, got {choices!r}")
        for choice in choices:
            if choice is not None and not isinstance(choice, (str, int, float, bool)):
                raise ValueError(f"{where}.choices: each choice must be a string, number, boolean or null; got {choice!r}")
            check(f"{where}.choices", choice)
        if len(set(map(repr, choices))) != len(choices):
            raise ValueError(f"{where}.choices must not repeat a value, got {choices!r}")
        return {"type": kind, "choices": list(choices)}

    integer = kind == "int"
    for key in ("low", "high"):
        if key not in spec:
            raise ValueError(f"{where}.{key} is missing (a {kind} parameter needs low and high)")
        _check_number(where, key, spec[key], integer)
    low, high = spec["low"], spec["high"]
    if low >= high:
        raise ValueError(f"{where}: low must be < high, got low={low!r}, high={high!r}")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ValueError(f"{where}.log must be true or false, got {log!r}")
    if log and low <= 0:
        raise ValueError(f"{where}: log: true needs low > 0, got low={low!r}")
    step = spec.get("step")
    result: dict[str, Any] = {"type": kind, "low": low, "high": high, "log": log}
    if step is not None:
        if log:
            raise ValueError(f"{where}: step {step!r} cannot be combined with log: true")
        _check_number(where, "step", step, integer)
        if step <= 0:
            raise ValueError(f"{where}.step must be > 0, got {step!r}")
        if step > high - low:
            raise ValueError(f"{where}.step must be <= high - low = {high - low!r}, got {step!r}")
        result["step"] = step
    for key in ("low", "high"):
        check(f"{where}.{key}", spec[key])
    return result


def _parse_named(where: str, value: Any, kinds: Mapping[str, tuple], default: str) -> dict:
    """A pruner or sampler: a name or a table ``{type: name, ...settings}``."""
    if value is None:
        value = default
    if isinstance(value, str):
        value = {"type": value}
    if not isinstance(value, Mapping):
        raise ValueError(f"{where} must be a name or a table with a type, got {value!r}")
    kind = _table_kind(where, value, kinds)
    for key, setting in value.items():
        if key == "type" or (key == "max_resource" and setting == "auto") or (key == "seed" and setting is None):
            continue
        if isinstance(setting, bool) or not isinstance(setting, int) or setting < 0:
            raise ValueError(f"{where}.{key} must be an integer >= 0, got {setting!r}")
    return dict(value)


def parse_space(data: Mapping[str, Any]) -> SearchSpace:
    """Validate a search space given as a dict (the contents of a space file).

    Raises:
        ValueError: a bad key or value; the message names the key, what was expected
            and what was found.
    """
    if not isinstance(data, Mapping):
        raise ValueError(f"a search space must be a table of settings, got {type(data).__name__}")
    unknown = sorted(set(data) - set(_SPACE_KEYS))
    if unknown:
        raise ValueError(f"unknown search-space key(s) {', '.join(map(str, unknown))}; expected {', '.join(_SPACE_KEYS)}")
    task = data.get("task", "train")
    if task not in METRICS:
        raise ValueError(f"task must be one of {', '.join(METRICS)}; got {task!r}")
    cls = _config_class(task)
    fields = {f.name for f in dataclasses.fields(cls)}

    base = data.get("base") or {}
    if not isinstance(base, Mapping):
        raise ValueError(f"base must be a table of {task} settings, got {base!r}")
    base = {str(key).replace("-", "_"): value for key, value in base.items()}
    unknown = sorted(set(base) - fields)
    if unknown:
        raise ValueError(f"base: unknown {task} setting(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}")
    for key in ("out", "quiet", "resume"):
        if key in base:
            raise ValueError(f"base.{key} is set by tune for every trial; remove it (found {base[key]!r})")

    def check(where: str, values: Mapping[str, Any]) -> None:
        try:
            SearchSpace(task, base, "", "", {}, {}, {}).config(values, "unused")
        except (ValueError, TypeError, FileNotFoundError) as error:
            raise ValueError(f"{where}: {' '.join(str(error).split())}") from None

    check("base", {})

    params = data.get("params")
    if not isinstance(params, Mapping) or not params:
        raise ValueError(f"params must be a non-empty table of parameters to search, got {params!r}")
    parsed = {}
    for raw_name, spec in params.items():
        name = str(raw_name).replace("-", "_")
        if name not in fields:
            raise ValueError(
                f"params.{raw_name}: not a {task} setting; known: {', '.join(sorted(fields - _NOT_SEARCHED[task]))}"
            )
        if name in _NOT_SEARCHED[task]:
            raise ValueError(f"params.{raw_name}: {name} cannot be searched (tune sets it, or it does not change the result)")
        if name in base:
            raise ValueError(f"params.{raw_name}: {name} is also fixed in base (found {base[name]!r}); keep it in one place")
        parsed[name] = _parse_param(task, name, spec, lambda where, value, name=name: check(where, {name: value}))

    metric = data.get("metric", _DEFAULT_METRIC[task])
    if metric not in METRICS[task]:
        raise ValueError(f"metric must be one of {', '.join(METRICS[task])} for task {task}; got {metric!r}")
    direction = data.get("direction", METRICS[task][metric])
    if direction not in ("maximize", "minimize"):
        raise ValueError(f"direction must be maximize or minimize; got {direction!r}")
    pruner = _parse_named("pruner", data.get("pruner"), _PRUNERS, "median")
    sampler = _parse_named("sampler", data.get("sampler"), {name: ("seed",) for name in _SAMPLERS}, "tpe")
    return SearchSpace(task, dict(base), metric, direction, parsed, pruner, sampler)


def load_space(path: str | os.PathLike) -> SearchSpace:
    """Read and validate a search-space file (``.yaml``/``.yml``, ``.json``, ``.toml``).

    The file is read as data only (:func:`spikeflow.train.config.read_config_file`:
    YAML with ``safe_load``, sizes and nesting bounded).

    Raises:
        FileNotFoundError: no such file.
        ValueError: bad syntax or a bad key or value; the message names the file and
            the key, what was expected and what was found.
    """
    from .train.config import read_config_file

    data = read_config_file(path)
    try:
        return parse_space(data)
    except (ValueError, TypeError) as error:
        raise ValueError(f"search space {path}: {' '.join(str(error).split())}") from None


def _suggest(trial: Any, name: str, spec: Mapping[str, Any]) -> Any:
    if spec["type"] == "categorical":
        return trial.suggest_categorical(name, spec["choices"])
    if spec["type"] == "int":
        return trial.suggest_int(name, spec["low"], spec["high"], step=spec.get("step", 1), log=spec["log"])
    return trial.suggest_float(name, spec["low"], spec["high"], step=spec.get("step"), log=spec["log"])


def _distribution(optuna: Any, spec: Mapping[str, Any]) -> Any:
    """The Optuna distribution a parameter's spec samples from."""
    d = optuna.distributions
    if spec["type"] == "categorical":
        return d.CategoricalDistribution(spec["choices"])
    cls = d.IntDistribution if spec["type"] == "int" else d.FloatDistribution
    default_step = 1 if spec["type"] == "int" else None
    return cls(spec["low"], spec["high"], log=spec["log"], step=spec.get("step", default_step))


def _check_compatible(optuna: Any, study: Any, space: SearchSpace) -> None:
    """Refuse a space whose parameters the study's earlier trials sampled in an
    incompatible way (other categorical choices, log or step changed): Optuna would
    fail every new trial."""
    seen: dict[str, Any] = {}
    for trial in study.get_trials(deepcopy=False):
        for name, distribution in trial.distributions.items():
            seen.setdefault(name, distribution)
    for name, spec in space.params.items():
        if name in seen:
            try:
                optuna.distributions.check_distribution_compatibility(seen[name], _distribution(optuna, spec))
            except ValueError as error:
                raise ValueError(
                    f"params.{name}: study {study.study_name!r} searched it as {seen[name]}, which this space "
                    f"cannot continue ({error}); use another study name"
                ) from None


def _make_pruner(optuna: Any, spec: Mapping[str, Any]) -> Any:
    settings = {k: v for k, v in spec.items() if k != "type"}
    if spec["type"] == "median":
        return optuna.pruners.MedianPruner(**settings)
    if spec["type"] == "hyperband":
        return optuna.pruners.HyperbandPruner(**settings)
    return optuna.pruners.NopPruner()


def _make_sampler(optuna: Any, spec: Mapping[str, Any]) -> Any:
    """The space's sampler; a seeded one draws each trial's parameters from its own
    seed (see :func:`_replayable_sampler`)."""
    seed = spec.get("seed")
    make = optuna.samplers.RandomSampler if spec["type"] == "random" else optuna.samplers.TPESampler
    if seed is None:
        return make()
    return _replayable_sampler(optuna, make, seed)


def _trial_seed(seed: int, position: int) -> int:
    """The sampler seed of the trial at ``position`` of a study seeded with ``seed``."""
    digest = hashlib.sha256(f"spikeflow.tune:{seed}:{position}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def _replayable_sampler(optuna: Any, make: Callable[..., Any], seed: int) -> Any:
    """A sampler whose draws depend only on the study's history, never on the process.

    Optuna's seeded samplers keep one random generator per process: a study stopped
    and continued (a killed worker, a second ``spikeflow tune`` call) restarts it and
    samples other parameters than an uninterrupted study would. Here every trial gets
    a fresh ``make(seed=...)`` seeded from ``(seed, position)``, its position being
    the number of earlier trials that did not fail (a trial failed by a dead worker
    is re-run in its place). So trial k's parameters depend only on ``seed`` and the
    k finished trials before it, as TPE's model of them does: an interrupted study
    continues exactly as an uninterrupted one, and workers sharing a seeded study
    never draw the same sequence.
    """
    Fail = optuna.trial.TrialState.FAIL

    class _Replayable(optuna.samplers.BaseSampler):
        def __init__(self) -> None:
            self._inner = make(seed=_trial_seed(seed, 0))

        def __str__(self) -> str:
            return f"{type(self._inner).__name__}(seed={seed}, reseeded per trial)"

        def before_trial(self, study: Any, trial: Any) -> None:
            earlier = study.get_trials(deepcopy=False)
            position = sum(t.number < trial.number and t.state != Fail for t in earlier)
            self._inner = make(seed=_trial_seed(seed, position))
            self._inner.before_trial(study, trial)

        def infer_relative_search_space(self, study: Any, trial: Any) -> Any:
            return self._inner.infer_relative_search_space(study, trial)

        def sample_relative(self, study: Any, trial: Any, search_space: Any) -> Any:
            return self._inner.sample_relative(study, trial, search_space)

        def sample_independent(self, study: Any, trial: Any, name: str, distribution: Any) -> Any:
            return self._inner.sample_independent(study, trial, name, distribution)

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            self._inner.after_trial(study, trial, state, values)

        def reseed_rng(self) -> None:  # the seed comes from the trial's position
            pass

    return _Replayable()


def _make_storage(optuna: Any, url: str, heartbeat_interval: int, grace_period: int) -> Any:
    """An RDBStorage with a heartbeat whose stale trials are re-queued with their
    parameters (the callback's name changed in Optuna 4.9)."""
    if "://" not in url:
        raise ValueError(f"storage must be a database URL such as sqlite:///study.db or postgresql://..., got {url!r}")
    storages = optuna.storages
    retry = getattr(storages, "RetryHeartbeatStaleTrialCallback", None) or storages.RetryFailedTrialCallback
    accepted = inspect.signature(storages.RDBStorage).parameters
    callback_arg = "heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in accepted else "failed_trial_callback"
    engine_kwargs = {"connect_args": {"timeout": _SQLITE_TIMEOUT_S}} if url.startswith("sqlite") else {}
    with warnings.catch_warnings():  # the heartbeat is marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return storages.RDBStorage(
            url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval, grace_period=grace_period,
            **{callback_arg: retry(max_retry=3)},
        )


def _open_study(
    optuna: Any, space: SearchSpace, url: str, name: str, heartbeat_interval: int, grace_period: int
) -> Any:
    """Create the study, or load it if it exists. Workers that start together on a new
    database race to create its tables and the study: the loser retries."""
    import sqlalchemy.exc

    for attempt in range(5):
        try:
            storage = _make_storage(optuna, url, heartbeat_interval, grace_period)
            return optuna.create_study(
                storage=storage, study_name=name, direction=space.direction, load_if_exists=True,
                sampler=_make_sampler(optuna, space.sampler), pruner=_make_pruner(optuna, space.pruner),
            )
        except sqlalchemy.exc.DatabaseError as error:
            problem = _storage_problem(url, error)
            if problem is not None:
                raise StudyStorageError(problem) from error
            if attempt == 4 or not isinstance(error, (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError)):
                raise
            time.sleep(0.2 * (attempt + 1) + 0.1 * random.random())
    raise AssertionError("unreachable")  # pragma: no cover


def _storage_problem(url: str, error: Exception) -> Optional[str]:
    """A message for a study database that is damaged or locked (None: another error)."""
    reason = " ".join(str(getattr(error, "orig", None) or error).split())
    where = f"the study database {url[len('sqlite:///'):]}" if url.startswith("sqlite:///") else f"the study storage {url}"
    if "locked" in reason:
        waited = f" (waited {_SQLITE_TIMEOUT_S} s)" if url.startswith("sqlite") else ""
        return (f"{where} is locked by another process{waited}: {reason}; stop the process holding it "
                "(a tune worker still running, a database browser) and try again")
    if any(text in reason for text in ("not a database", "malformed", "file is encrypted", "disk I/O error")):
        return (f"{where} is damaged or not a database: {reason}; move it away (or restore a copy) to start "
                "the study afresh")
    return None


def _fail_dead_local_trials(optuna: Any, study: Any) -> None:
    """Fail and re-queue (like a stale heartbeat) the running trials of workers on this
    machine whose process no longer exists: a worker restarted after a crash re-runs
    its trial at once instead of waiting out the heartbeat's grace period, so the
    study goes on in the order an uninterrupted one would."""
    storage = study._storage
    callback = getattr(storage, "get_heartbeat_stale_trial_callback", None) or getattr(
        storage, "get_failed_trial_callback", None)
    here = (socket.gethostname(), _pid_namespace())
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        host, _, pid = str(trial.user_attrs.get("worker", "")).rpartition(":")
        if (host, trial.user_attrs.get("pid_namespace")) != here or not pid.isdigit() or _alive(int(pid)):
            continue
        try:
            if not storage.set_trial_state_values(trial._trial_id, state=optuna.trial.TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:  # it finished, or another worker failed it
            continue
        retry = callback() if callback is not None else None
        if retry is not None:
            retry(study, storage.get_trial(trial._trial_id))


def _pid_namespace() -> Optional[str]:
    """This process's PID namespace (containers on one host share its name, not this)."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process, or no way to ask: assume it runs
        return True
    return True


def _run_trial(space: SearchSpace, trial: Any, out: Path) -> float:
    """Run one trial: sample, build the config, train or convert, return the metric."""
    optuna = _optuna()
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    trial.set_user_attr("pid_namespace", _pid_namespace())
    values = {name: _suggest(trial, name, spec) for name, spec in space.params.items()}
    config = space.config(values, out / f"trial_{trial.number}")
    if space.task == "convert":
        from .convert.experiment import run_experiment

        summary = run_experiment(config)
        if space.metric == "ann_accuracy":
            return float(summary["ann_accuracy"])
        accuracy = {int(t): float(a) for t, a in summary["snn_accuracy"].items()}
        return accuracy[max(accuracy)] if space.metric == "final_snn_accuracy" else max(accuracy.values())

    from .train import train

    key, best = _EPOCH_KEYS[space.metric], [-math.inf]

    def on_epoch(record: dict) -> None:
        value = float(record[key])
        if space.metric == "best_test_accuracy":
            best[0] = value = max(best[0], value)
        trial.report(value, int(record["epoch"]))
        _faults.point("mid-trial", trial.number)  # crash tests only (SPIKEFLOW_FAULT)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {record['epoch']} at {space.metric} {value:.4f}")

    summary = train(config, on_epoch=on_epoch)
    return float(summary[space.metric])


def _summary(study: Any, space: SearchSpace, storage_url: str, out: Path) -> dict[str, Any]:
    optuna = _optuna()
    State = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    count = lambda state: sum(t.state == state for t in trials)  # noqa: E731
    complete = [t for t in trials if t.state == State.COMPLETE]
    best = None
    if complete:
        pick = max if space.direction == "maximize" else min
        best = pick(complete, key=lambda t: t.value)
    return {
        "study_name": study.study_name,
        "storage": storage_url,
        "task": space.task,
        "metric": space.metric,
        "direction": space.direction,
        "best_value": None if best is None else best.value,
        "best_params": None if best is None else dict(best.params),
        "best_trial": None if best is None else best.number,
        "complete": count(State.COMPLETE),
        "pruned": count(State.PRUNED),
        "failed": count(State.FAIL),
        "running": count(State.RUNNING),
        "waiting": count(State.WAITING),
        "space": dataclasses.asdict(space),
        "out": os.fspath(out),
        "trials": [
            {
                "number": t.number,
                "state": t.state.name,
                "params": dict(t.params),
                "value": t.value,
                "intermediate": {str(step): v for step, v in sorted(t.intermediate_values.items())},
                "retry_of": t.system_attrs.get("failed_trial"),
                "worker": t.user_attrs.get("worker"),
                "duration_s": None if t.duration is None else t.duration.total_seconds(),
            }
            for t in trials
        ],
    }


def _write_summary(summary: Mapping[str, Any], out: Path) -> None:
    from .train.checkpoint import atomic_write_bytes

    text = json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n"
    atomic_write_bytes(out / "tune.json", text.encode("utf-8"))


def _describe(trial: Any) -> str:
    params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())
    state = trial.state.name.lower()
    if trial.state.name == "COMPLETE":
        state = f"{trial.value:.4f}"
    elif trial.state.name == "PRUNED" and trial.intermediate_values:
        state = f"pruned at step {max(trial.intermediate_values)}"
    seconds = "" if trial.duration is None else f", {trial.duration.total_seconds():.1f} s"
    return f"trial {trial.number}: {state} ({params}{seconds})"


def tune(
    space: SearchSpace | Mapping[str, Any] | str | os.PathLike,
    *,
    trials: int,
    storage: Optional[str] = None,
    study_name: Optional[str] = None,
    out: str | os.PathLike = "runs/tune",
    quiet: bool = False,
    timeout: Optional[float] = None,
    heartbeat_interval: int = 30,
    grace_period: Optional[int] = None,
) -> dict[str, Any]:
    """Run (or continue) a hyper-parameter search until the study holds ``trials``
    finished trials; return its summary, also written to ``OUT/tune.json``.

    Args:
        space: a :class:`SearchSpace`, a dict (:func:`parse_space`) or a space file.
        trials: finished (complete + pruned) trials the study should hold in the end,
            counting those of earlier runs and of other workers sharing the study.
        storage: an Optuna database URL (default ``sqlite:///OUT/study.db``).
        study_name: the study's name (default: the space file's stem, else ``"tune"``).
        out: directory for the trials' runs (``OUT/trial_<number>``), the default
            storage and ``tune.json``.
        quiet: print nothing (else one line per finished trial).
        timeout: start no new trial after this many seconds.
        heartbeat_interval: seconds between a running trial's heartbeats.
        grace_period: seconds without a heartbeat after which a running trial counts
            as dead, is failed and re-queued (default: twice ``heartbeat_interval``).

    Returns:
        ``study_name``, ``storage``, ``best_value``, ``best_params``, ``best_trial``,
        the counts ``complete``, ``pruned``, ``failed``, ``running``, ``waiting``, and
        ``trials``: each trial's ``number``, ``state``, ``params``, ``value``,
        ``intermediate`` values and ``retry_of`` (the trial it re-runs, if any).

    With several workers, each checks the count before starting a trial and running
    trials of other workers count towards it, so a study overshoots ``trials`` only
    when workers start trials within the same moment (at most by workers - 1). A
    worker whose count is reached only with others' running trials waits for them:
    they finish, or their heartbeat goes stale and they are re-queued (up to 3 times
    per trial) and run here. Running trials without a heartbeat (from a storage
    opened without one) are waited for until ``timeout``.
    """
    optuna = _optuna()
    if isinstance(space, (str, os.PathLike)):
        study_name = study_name or Path(space).stem
        space = load_space(space)
    elif not isinstance(space, SearchSpace):
        space = parse_space(space)
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 0:
        raise ValueError(f"trials must be an integer >= 0, got {trials!r}")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    if isinstance(heartbeat_interval, bool) or not isinstance(heartbeat_interval, int) or heartbeat_interval < 1:
        raise ValueError(f"heartbeat_interval must be an integer >= 1 (seconds), got {heartbeat_interval!r}")
    if grace_period is not None and (isinstance(grace_period, bool) or not isinstance(grace_period, int) or grace_period < 1):
        raise ValueError(f"grace_period must be an integer >= 1 (seconds), got {grace_period!r}")
    study_name = study_name or "tune"
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    storage_url = storage or f"sqlite:///{(out / 'study.db').resolve()}"
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))

    previous_verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial comes from here instead
    try:
        study = _open_study(optuna, space, storage_url, study_name, heartbeat_interval,
                            grace_period or 2 * heartbeat_interval)
        if study.direction.name.lower() != space.direction:
            raise ValueError(
                f"study {study_name!r} in {storage_url} was created to {study.direction.name.lower()}, "
                f"but the space says direction {space.direction}"
            )
        _check_compatible(optuna, study, space)
        State = optuna.trial.TrialState
        started = time.monotonic()

        def report(study: Any, trial: Any) -> None:
            say(_describe(trial))
            _write_summary(_summary(study, space, storage_url, out), out)
            _faults.point("after-trial")  # crash tests only (SPIKEFLOW_FAULT)

        while timeout is None or time.monotonic() - started < timeout:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                _fail_dead_local_trials(optuna, study)  # re-queues the trials of dead workers here
                optuna.storages.fail_stale_trials(study)  # and those of silent workers anywhere
            states = [t.state for t in study.get_trials(deepcopy=False)]
            finished = sum(s in (State.COMPLETE, State.PRUNED) for s in states)
            running = sum(s == State.RUNNING for s in states)
            if finished >= trials:
                break
            if finished + running >= trials:  # others are finishing the last trials: wait for them or their death
                time.sleep(min(1.0, heartbeat_interval))
                continue
            study.optimize(lambda trial: _run_trial(space, trial, out), n_trials=1, callbacks=[report])
        summary = _summary(study, space, storage_url, out)
    finally:
        optuna.logging.set_verbosity(previous_verbosity)
    _write_summary(summary, out)
    return summary
