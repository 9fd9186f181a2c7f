"""Hyper-parameter search (spikeflow.tune, ``spikeflow tune``): space validation,
sampled ranges, the best trial, resuming, several workers on one SQLite study,
killed workers, pruning, conversion trials and the command line.

Trials train the digits-mlp preset for a few epochs at hidden sizes of 16-64 on one
thread: about 0.05 s per epoch after the data is loaded once per process.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")
from click.testing import CliRunner  # noqa: E402

import sqlalchemy.exc  # noqa: E402  (an optuna dependency)

from spikeflow.cli import main  # noqa: E402
from spikeflow.train import load_checkpoint  # noqa: E402
from spikeflow.tune import load_space, parse_space, tune  # noqa: E402

BASE = {"preset": "digits-mlp", "epochs": 2, "threads": 1, "steps": 4}
FINISHED = ("COMPLETE", "PRUNED")


def space(**changes) -> dict:
    """A small training search space over lr and hidden, with ``changes``."""
    data = {
        "task": "train",
        "base": dict(BASE),
        "params": {
            "lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True},
            "hidden": {"type": "int", "low": 16, "high": 64, "step": 16},
        },
        "pruner": "none",
        "sampler": {"type": "random", "seed": 0},
    }
    data.update(changes)
    return data


def storage_trials(out: Path, study_name: str) -> list:
    study = optuna.load_study(study_name=study_name, storage=f"sqlite:///{(out / 'study.db').resolve()}")
    return study.get_trials(deepcopy=False)


# --- the search-space file -------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, fragments",
    [
        ({"task": "fit"}, ["task", "train, convert", "'fit'"]),
        ({"colour": 1}, ["colour"]),
        ({"params": {}}, ["params", "non-empty"]),
        ({"params": {"lrr": {"type": "float", "low": 0.1, "high": 1}}}, ["params.lrr", "not a train setting"]),
        ({"params": {"out": {"type": "categorical", "choices": ["a"]}}}, ["params.out", "cannot be searched"]),
        ({"params": {"lr": {"type": "float", "low": 0.1, "high": 0.01}}}, ["params.lr", "low must be < high", "0.1", "0.01"]),
        ({"params": {"lr": {"type": "float", "low": 0.0, "high": 0.1, "log": True}}}, ["params.lr", "log", "low > 0", "0.0"]),
        ({"params": {"lr": {"type": "float", "low": "a", "high": 0.1}}}, ["params.lr.low", "a number", "'a'"]),
        ({"params": {"lr": {"type": "float", "high": 0.1}}}, ["params.lr.low", "missing"]),
        ({"params": {"lr": {"type": "gaussian"}}}, ["params.lr.type", "float, int, categorical", "gaussian"]),
        ({"params": {"lr": {"type": "float", "low": 0.01, "high": 0.1, "logg": True}}}, ["params.lr", "logg"]),
        ({"params": {"hidden": {"type": "int", "low": 16.5, "high": 64}}}, ["params.hidden.low", "an integer", "16.5"]),
        ({"params": {"hidden": {"type": "int", "low": 16, "high": 64, "step": 0}}}, ["params.hidden.step", "> 0"]),
        ({"params": {"hidden": {"type": "int", "low": 0, "high": 64}}}, ["params.hidden.low", "hidden must be >= 1"]),
        ({"params": {"surrogate": {"type": "categorical", "choices": []}}}, ["params.surrogate.choices", "non-empty", "[]"]),
        ({"params": {"surrogate": {"type": "categorical", "choices": ["atan", "nope"]}}},
         ["params.surrogate.choices", "nope"]),
        ({"params": {"surrogate": {"type": "categorical", "choices": [[1, 2]]}}}, ["params.surrogate.choices", "[1, 2]"]),
        ({"base": {"preset": "digits-mlp", "epoch": 2}}, ["base", "epoch"]),
        ({"base": {"preset": "digits-mlp", "lr": 0.01}}, ["params.lr", "also fixed in base", "0.01"]),
        ({"base": {"preset": "digits-mlp", "out": "x"}}, ["base.out", "'x'"]),
        ({"base": {"preset": "no-such-preset"}}, ["base", "no-such-preset"]),
        ({"metric": "accuracy"}, ["metric", "test_accuracy", "'accuracy'"]),
        ({"direction": "up"}, ["direction", "maximize or minimize", "'up'"]),
        ({"pruner": "asha"}, ["pruner.type", "median", "'asha'"]),
        ({"pruner": {"type": "median", "n_startup": 2}}, ["pruner", "n_startup", "n_startup_trials"]),
        ({"pruner": {"type": "median", "n_warmup_steps": -1}}, ["pruner.n_warmup_steps", "-1"]),
        ({"sampler": "grid"}, ["sampler.type", "tpe, random", "'grid'"]),
        ({"task": "convert", "base": {"dataset": "digits"}, "params": {"hidden": {"type": "int", "low": 1, "high": 4}}},
         ["params.hidden", "not a convert setting"]),
    ],
)
def test_bad_spaces_name_the_key(changes, fragments):
    with pytest.raises(ValueError) as info:
        parse_space(space(**changes))
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message


def test_space_defaults_and_files(tmp_path):
    parsed = parse_space({"base": BASE, "params": {"lr": {"type": "float", "low": 0.001, "high": 0.1}}})
    assert (parsed.task, parsed.metric, parsed.direction) == ("train", "test_accuracy", "maximize")
    assert parsed.pruner == {"type": "median"} and parsed.sampler == {"type": "tpe"}
    assert parse_space(space(metric="test_loss")).direction == "minimize"
    assert parse_space(space(task="convert", base={}, params={"percentile": {"type": "float", "low": 99, "high": 100}})
                       ).metric == "snn_accuracy"

    path = tmp_path / "space.json"
    path.write_text(json.dumps(space()))
    assert load_space(path) == parse_space(space())
    path.write_text(json.dumps(space(params={"lr": {"type": "float", "low": 1, "high": 1}})))
    with pytest.raises(ValueError, match=r"space\.json: params\.lr: low must be < high"):
        load_space(path)
    pytest.importorskip("yaml")
    path = tmp_path / "space.yaml"
    path.write_text("base: {preset: digits-mlp, epochs: 1}\nparams:\n  lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}\n")
    assert load_space(path).params == {"lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True}}


def test_trial_config_is_base_plus_params(tmp_path):
    parsed = parse_space(space())
    config = parsed.config({"lr": 0.02, "hidden": 48}, tmp_path / "trial_3")
    assert (config.lr, config.hidden, config.epochs, config.steps, config.threads, config.seed) == (0.02, 48, 2, 4, 1, 0)
    assert config.quiet and config.out == str(tmp_path / "trial_3")

    convert = parse_space({"task": "convert", "base": {"preset": "seed002", "dataset": "digits", "epochs": 1},
                           "params": {"timesteps": {"type": "int", "low": 4, "high": 32}}})
    config = convert.config({"timesteps": 16}, tmp_path / "c")
    assert config.timesteps == (16,) and config.plot is False and config.quiet and config.epochs == 1


def test_missing_optuna_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(ImportError, match=r"pip install spikeflow\[tune\]"):
        tune(space(), trials=1, out=tmp_path)


# --- studies ----------------------------------------------------------------------------


def test_study_samples_in_range_and_reports_the_best(tmp_path):
    data = space(params={
        "lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True},
        "hidden": {"type": "int", "low": 16, "high": 64, "step": 16},
        "surrogate": {"type": "categorical", "choices": ["superspike", "atan"]},
        "beta": {"type": "float", "low": 0.5, "high": 0.9, "step": 0.1},
    })
    summary = tune(data, trials=5, out=tmp_path, study_name="s", quiet=True)

    assert summary["complete"] == 5 and summary["pruned"] == summary["failed"] == 0
    assert summary["storage"] == f"sqlite:///{(tmp_path / 'study.db').resolve()}" and summary["study_name"] == "s"
    stored = storage_trials(tmp_path, "s")
    assert [t.number for t in stored] == [0, 1, 2, 3, 4]
    for trial in stored:
        p = trial.params
        assert 1e-3 <= p["lr"] <= 3e-2 and isinstance(p["lr"], float)
        assert p["hidden"] in (16, 32, 48, 64) and isinstance(p["hidden"], int)
        assert p["surrogate"] in ("superspike", "atan")
        assert any(math.isclose(p["beta"], b) for b in (0.5, 0.6, 0.7, 0.8, 0.9))
        assert trial.distributions["lr"].log and trial.distributions["hidden"].step == 16
        # each trial trained with its own settings in its own directory
        saved = load_checkpoint(tmp_path / f"trial_{trial.number}" / "last.pt")["config"]
        assert (saved["lr"], saved["hidden"], saved["surrogate"], saved["epochs"]) == (
            p["lr"], p["hidden"], p["surrogate"], 2)
        assert len(trial.intermediate_values) == 2  # one report per epoch
    assert len({t.params["lr"] for t in stored}) == 5

    values = {t.number: t.value for t in stored}
    assert summary["best_value"] == max(values.values())
    assert summary["best_params"] == stored[summary["best_trial"]].params
    assert values[summary["best_trial"]] == summary["best_value"]
    on_disk = json.loads((tmp_path / "tune.json").read_text())
    assert on_disk["best_value"] == summary["best_value"] and len(on_disk["trials"]) == 5
    assert [t["value"] for t in on_disk["trials"]] == [values[n] for n in range(5)]


def test_resume_runs_only_the_missing_trials(tmp_path):
    first = tune(space(), trials=2, out=tmp_path, study_name="r", quiet=True)
    assert [t["state"] for t in first["trials"]] == ["COMPLETE", "COMPLETE"]
    again = tune(space(), trials=2, out=tmp_path, study_name="r", quiet=True)  # nothing left to do
    assert again["trials"] == first["trials"]

    second = tune(space(), trials=4, out=tmp_path, study_name="r", quiet=True)
    assert [t["number"] for t in second["trials"]] == [0, 1, 2, 3]
    assert all(t["state"] == "COMPLETE" for t in second["trials"])
    for before, after in zip(first["trials"], second["trials"][:2]):
        assert (after["params"], after["value"], after["state"]) == (before["params"], before["value"], before["state"])
    assert second["best_value"] == max(t["value"] for t in second["trials"])


def test_study_direction_must_match(tmp_path):
    tune(space(), trials=1, out=tmp_path, study_name="d", quiet=True)
    with pytest.raises(ValueError, match="created to maximize.*direction minimize"):
        tune(space(direction="minimize"), trials=2, out=tmp_path, study_name="d", quiet=True)


def test_continuing_a_study_with_other_choices_is_refused(tmp_path):
    choices = lambda *c: space(params={"surrogate": {"type": "categorical", "choices": list(c)}})  # noqa: E731
    tune(choices("atan", "superspike"), trials=1, out=tmp_path, study_name="c", quiet=True)
    with pytest.raises(ValueError, match="params.surrogate: study 'c' searched it as"):
        tune(choices("atan", "sigmoid"), trials=2, out=tmp_path, study_name="c", quiet=True)
    assert len(storage_trials(tmp_path, "c")) == 1  # nothing was run or failed


def _worker(space_file: Path, out: Path, trials: int, study: str, **options) -> subprocess.Popen:
    """A separate process running tune() on the study in OUT/study.db."""
    code = (
        "import sys; from spikeflow.tune import tune; "
        f"tune(sys.argv[1], trials={trials}, out=sys.argv[2], study_name={study!r}, quiet=True, **{options!r})"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"),
                                                         os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", code, str(space_file), str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_workers_share_one_study(tmp_path):
    space_file = tmp_path / "space.json"
    space_file.write_text(json.dumps(space(base={**BASE, "epochs": 10}, sampler="random")))
    workers = [_worker(space_file, tmp_path, 4, "w") for _ in range(2)]
    for worker in workers:
        _, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err

    trials = storage_trials(tmp_path, "w")
    states = [t.state.name for t in trials]
    finished = sum(s in FINISHED for s in states)
    # Each worker counts finished and running trials before starting one, so the
    # study overshoots only if both start a trial between one's count and its trial's
    # creation (a window of milliseconds): at most trials + workers - 1.
    assert 4 <= finished <= 5, states
    assert "FAIL" not in states and "RUNNING" not in states
    numbers = [t.number for t in trials]
    assert sorted(numbers) == list(range(len(trials)))  # unique, no gaps
    assert all(t.user_attrs["worker"] for t in trials)


def test_killed_worker_trial_is_retried(tmp_path):
    space_file = tmp_path / "space.json"
    # about 2 s per trial: long enough to catch trial 1 running
    space_file.write_text(json.dumps(space(base={**BASE, "epochs": 60, "hidden": 64, "steps": 8}, params={
        "lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True}})))
    worker = _worker(space_file, tmp_path, 2, "k", heartbeat_interval=1, grace_period=2)
    try:
        deadline, killed = time.monotonic() + 60, None
        while time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.2)
            if not (tmp_path / "study.db").exists():
                continue
            try:
                # trial 1 running with its parameters sampled: it is training
                running = [t for t in storage_trials(tmp_path, "k")
                           if t.state.name == "RUNNING" and t.number == 1 and t.params]
            except (KeyError, sqlalchemy.exc.SQLAlchemyError):  # the study or its tables are still being created
                continue
            if running:
                time.sleep(0.5)  # let its heartbeat thread record a beat
                killed = running[0]
                worker.send_signal(signal.SIGKILL)
                break
        assert killed is not None, "the worker never showed trial 1 running"
    finally:
        worker.kill()
        worker.communicate()
    assert worker.returncode == -signal.SIGKILL
    before = {t.number: t for t in storage_trials(tmp_path, "k")}
    assert before[1].state.name == "RUNNING" and before[0].state.name == "COMPLETE"

    summary = tune(space_file, trials=2, out=tmp_path, study_name="k", quiet=True, heartbeat_interval=1, grace_period=2)
    trials = {t["number"]: t for t in summary["trials"]}
    assert trials[1]["state"] == "FAIL"  # the killed trial, failed once its heartbeat went stale
    retried = [t for t in trials.values() if t["retry_of"] == 1]
    assert len(retried) == 1 and retried[0]["state"] == "COMPLETE"
    assert retried[0]["params"] == killed.params  # the same parameters again
    assert trials[0]["value"] == before[0].value  # the finished trial is kept as it was
    assert summary["complete"] == 2 and summary["running"] == summary["waiting"] == 0
    assert sorted(trials) == [0, 1, 2]


def test_median_pruner_stops_a_bad_trial(tmp_path):
    pruner = {"type": "median", "n_startup_trials": 2, "n_warmup_steps": 0}
    # two good trials, then the same study continued over learning rates too small to learn
    good = space(base={**BASE, "hidden": 32}, pruner=pruner, params={"lr": {"type": "float", "low": 0.01, "high": 0.02}})
    bad = space(base={**BASE, "hidden": 32}, pruner=pruner, params={"lr": {"type": "float", "low": 1e-7, "high": 1e-6}})
    first = tune(good, trials=2, out=tmp_path, study_name="p", quiet=True)
    assert first["complete"] == 2
    summary = tune(bad, trials=3, out=tmp_path, study_name="p", quiet=True)
    last = summary["trials"][-1]
    assert (last["number"], last["state"]) == (2, "PRUNED") and last["params"]["lr"] <= 1e-6
    assert list(last["intermediate"]) == ["1"]  # stopped after its first epoch
    assert summary["pruned"] == 1 and summary["best_value"] == first["best_value"]


def test_convert_trial_optimises_the_best_snn_accuracy(tmp_path):
    from spikeflow.convert.experiment import run_experiment

    data = {
        "task": "convert",
        "base": {"preset": "seed002", "dataset": "digits", "epochs": 1, "timesteps": [8, 16], "test_samples": 100,
                 "calibration_samples": 200, "threads": 1},
        "params": {"percentile": {"type": "float", "low": 99.0, "high": 100.0}},
        "sampler": {"type": "random", "seed": 0},
    }
    summary = tune(data, trials=1, out=tmp_path, study_name="c", quiet=True)
    (trial,) = summary["trials"]
    assert trial["state"] == "COMPLETE" and 99.0 <= trial["params"]["percentile"] <= 100.0
    assert (tmp_path / "trial_0" / "snn.pt").is_file()
    config = parse_space(data).config(trial["params"], tmp_path / "again")
    expected = run_experiment(config)
    assert summary["best_value"] == max(expected["snn_accuracy"].values())


# --- the command line -------------------------------------------------------------------


def test_cli_bad_space_is_a_one_line_usage_error(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(space(params={"lr": {"type": "float", "low": 0, "high": 1, "log": True}})))
    result = CliRunner().invoke(main, ["tune", str(path), "--trials", "2", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "Traceback" not in result.stderr
    last = [line for line in result.stderr.splitlines() if line.strip()][-1]
    assert last.startswith("Error: ") and "params.lr" in last and "low > 0" in last
    assert not (tmp_path / "o").exists()


def test_cli_runs_a_study_and_writes_json(tmp_path):
    path = tmp_path / "space.json"
    path.write_text(json.dumps(space()))
    args = ["tune", str(path), "--trials", "2", "--out", str(tmp_path / "o"), "--json", str(tmp_path / "s.json")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["study_name"] == "space" and summary["complete"] == 2
    assert (tmp_path / "o" / "tune.json").is_file()
    assert "trial 0:" in result.stdout and "trial 1:" in result.stdout
    assert f"best test_accuracy {summary['best_value']:.4f} at trial {summary['best_trial']}" in result.stdout


# --- interrupted studies end as uninterrupted ones ---------------------------------------

SEEDED = dict(base=dict(BASE), sampler={"type": "tpe", "seed": 3}, pruner="median")


def _finished(summary: dict) -> list:
    """The finished trials in order, as (params, value, intermediate values): what a
    study's result is made of (a re-run of a killed trial takes its place)."""
    return [(t["params"], t["value"], t["intermediate"]) for t in summary["trials"] if t["state"] in FINISHED]


def test_a_continued_seeded_study_samples_what_an_uninterrupted_one_does(tmp_path):
    straight = tune(space(**SEEDED), trials=4, out=tmp_path / "a", study_name="s", quiet=True)
    tune(space(**SEEDED), trials=1, out=tmp_path / "b", study_name="s", quiet=True)
    tune(space(**SEEDED), trials=3, out=tmp_path / "b", study_name="s", quiet=True)
    continued = tune(space(**SEEDED), trials=4, out=tmp_path / "b", study_name="s", quiet=True)
    assert _finished(continued) == _finished(straight) and len(_finished(straight)) == 4
    assert len({t["params"]["lr"] for t in straight["trials"]}) == 4
    other = tune(space(**{**SEEDED, "sampler": {"type": "tpe", "seed": 4}}), trials=1, out=tmp_path / "c",
                 study_name="s", quiet=True)
    assert _finished(other)[0][0] != _finished(straight)[0][0]  # the seed matters


def _faulty_worker(space_file: Path, out: Path, study: str, fault: str) -> subprocess.Popen:
    """A worker that kills itself with SIGKILL at the SPIKEFLOW_FAULT point ``fault``."""
    code = (
        "import sys; from spikeflow.tune import tune; "
        f"tune(sys.argv[1], trials=4, out=sys.argv[2], study_name={study!r}, quiet=True, heartbeat_interval=1)"
    )
    env = {**os.environ, "SPIKEFLOW_FAULT": fault,
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", code, str(space_file), str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    return tune(space(**SEEDED), trials=4, out=tmp_path_factory.mktemp("uninterrupted"), study_name="k", quiet=True)


@pytest.mark.parametrize(
    "faults, killed",
    [
        (["mid-trial:0:1"], [0]),  # the first trial, after its first epoch
        (["mid-trial:2:2"], [2]),  # trial 2 after its last epoch's report, before it is recorded
        (["after-trial:2"], []),  # between trials 1 and 2
        (["mid-epoch:2:30"], [1]),  # in the second epoch of trial 1 (the 30th epoch-2 batch of the process)
        (["mid-trial:1:1", "after-trial:1", "mid-trial:4:1"], [1, 4]),  # three kills in a row
    ],
    ids=["first-trial", "before-recorded", "between-trials", "mid-epoch", "three-kills"],
)
def test_a_killed_study_ends_as_an_uninterrupted_one(tmp_path, uninterrupted, faults, killed):
    """Workers killed with SIGKILL at fault points (SPIKEFLOW_FAULT), then the study
    continued: the same finished trials, parameters, values and intermediate values,
    in the same order, as the uninterrupted study. The killed trials are re-run at
    once (their worker's process is gone), not after the heartbeat's grace period."""
    space_file = tmp_path / "space.json"
    space_file.write_text(json.dumps(space(**SEEDED)))
    for fault in faults:
        worker = _faulty_worker(space_file, tmp_path, "k", fault)
        _, err = worker.communicate(timeout=300)
        assert worker.returncode == -signal.SIGKILL, f"{fault} did not kill the worker: {err}"
    # a grace period far beyond the timeout: only the dead-process check can re-queue
    summary = tune(space_file, trials=4, out=tmp_path, study_name="k", quiet=True, heartbeat_interval=1,
                   grace_period=3600, timeout=120)
    assert _finished(summary) == _finished(uninterrupted)
    failed = [t["number"] for t in summary["trials"] if t["state"] == "FAIL"]
    assert failed == killed and summary["running"] == summary["waiting"] == 0
    for number in killed:  # each re-run right after the trial it replaces, with its parameters
        retry = summary["trials"][number + 1]
        assert retry["retry_of"] == number
        if summary["trials"][number]["params"]:
            assert retry["params"] == summary["trials"][number]["params"]


def test_a_running_trial_of_a_live_worker_is_left_alone(tmp_path, monkeypatch):
    """The dead-process check fails only trials whose process is gone."""
    import spikeflow.tune as tune_module

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'db.sqlite'}", study_name="l")
    alive, dead = study.ask(), study.ask()
    here = tune_module._pid_namespace()
    dead_pid = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_pid.wait()
    alive.set_user_attr("worker", f"{tune_module.socket.gethostname()}:{os.getppid()}")
    dead.set_user_attr("worker", f"{tune_module.socket.gethostname()}:{dead_pid.pid}")
    for trial in (alive, dead):
        trial.set_user_attr("pid_namespace", here)
    elsewhere = study.ask()
    elsewhere.set_user_attr("worker", f"another-host:{dead_pid.pid}")
    elsewhere.set_user_attr("pid_namespace", here)
    tune_module._fail_dead_local_trials(optuna, study)
    states = {t.number: t.state.name for t in study.get_trials()}
    assert states == {0: "RUNNING", 1: "FAIL", 2: "RUNNING"}


# --- a damaged or locked study database ----------------------------------------------------


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_study_database_is_a_clear_error(tmp_path, damage):
    from spikeflow.tune import StudyStorageError

    db = tmp_path / "study.db"
    if damage == "garbage":
        db.write_bytes(b"not an sqlite database\n" * 200)
    else:
        tune(space(), trials=1, out=tmp_path, study_name="d", quiet=True)
        db.write_bytes(db.read_bytes()[: db.stat().st_size // 3])
    before = db.read_bytes()
    with pytest.raises(StudyStorageError, match=rf"the study database {db} is damaged or not a database: "):
        tune(space(), trials=2, out=tmp_path, study_name="d", quiet=True)
    assert db.read_bytes() == before  # left as it was, for a look or a restore

    result = CliRunner().invoke(main, ["tune", str(_space_file(tmp_path)), "--trials", "2", "--out", str(tmp_path)])
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(db) in lines[0] and "damaged or not a database" in lines[0], result.stderr


def _space_file(tmp_path: Path) -> Path:
    path = tmp_path / "space.json"
    path.write_text(json.dumps(space()))
    return path


def test_a_locked_study_database_is_a_clear_error(tmp_path, monkeypatch):
    import sqlite3

    import spikeflow.tune as tune_module

    tune(space(), trials=1, out=tmp_path, study_name="l", quiet=True)
    monkeypatch.setattr(tune_module, "_SQLITE_TIMEOUT_S", 1)
    holder = sqlite3.connect(tmp_path / "study.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(tune_module.StudyStorageError,
                           match=rf"the study database {tmp_path / 'study.db'} is locked by another process \(waited 1 s\)"):
            tune(space(), trials=2, out=tmp_path, study_name="l", quiet=True)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert tune(space(), trials=2, out=tmp_path, study_name="l", quiet=True)["complete"] == 2
