"""The command line (spikeflow.cli): CliRunner for behaviour, one real subprocess
run of the installed console script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from spikeflow.cli import main
from spikeflow.train import CheckpointError, TrainConfig

FAST = ["--epochs", "1", "--hidden", "16", "--steps", "4", "--quiet"]


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_help_lists_train_and_defaults():
    result = run("--help")
    assert result.exit_code == 0 and "train" in result.output and "--debug" in result.output
    result = run("train", "--help")
    assert result.exit_code == 0
    defaults = TrainConfig()
    for option in ("--epochs", "--batch-size", "--lr", "--steps", "--hidden", "--seed", "--out", "--resume",
                   "--quiet", "--json", "--backend"):
        assert option in result.output
    flat = " ".join(result.output.split())
    assert f"[default: the preset's ({defaults.epochs} for digits-mlp)]" in flat
    assert "runs/PRESET" in flat


def test_version():
    result = run("--version")
    assert result.exit_code == 0 and "spikeflow" in result.output


def test_train_writes_checkpoints_and_json(tmp_path):
    out, summary_path = tmp_path / "run", tmp_path / "reports" / "summary.json"
    result = run("train", *FAST, "--out", str(out), "--json", str(summary_path), "--seed", "3")
    assert result.exit_code == 0, result.output
    assert "test accuracy" in result.stdout
    assert (out / "last.pt").is_file() and (out / "best.pt").is_file()
    summary = json.loads(summary_path.read_text())
    for key in ("test_accuracy", "train_time_s", "epochs", "mean_firing_rate", "preset", "seed"):
        assert key in summary
    assert summary["epochs"] == 1 and summary["seed"] == 3 and summary["preset"] == "digits-mlp"
    assert summary["config"]["hidden"] == 16
    assert f"{summary['test_accuracy']:.2%}" in result.stdout


def test_progress_bar_goes_to_stderr(tmp_path):
    result = run("train", "--epochs", "1", "--hidden", "16", "--steps", "4", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "epoch 1/1" in result.stderr and "test accuracy" in result.stdout


def test_resume_continues(tmp_path):
    assert run("train", *FAST, "--out", str(tmp_path)).exit_code == 0
    result = run("train", *FAST[2:], "--epochs", "2", "--out", str(tmp_path), "--resume",
                 "--json", str(tmp_path / "s.json"))
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["epochs"] == 2 and summary["resumed_from_epoch"] == 1


def _assert_one_line_error(result, code: int, *fragments: str) -> None:
    assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr
    last = lines[-1]
    assert last.startswith("Error: ")
    for fragment in fragments:
        assert fragment in last, last


def test_resume_without_checkpoint_is_a_one_line_error(tmp_path):
    result = run("train", *FAST, "--out", str(tmp_path / "empty"), "--resume")
    _assert_one_line_error(result, 1, "nothing to resume", "last.pt")
    assert len(result.stderr.strip().splitlines()) == 1


def test_corrupt_checkpoint_is_a_one_line_error_naming_the_file(tmp_path):
    (tmp_path / "last.pt").write_bytes(b"\x00" * 64)
    result = run("train", *FAST, "--out", str(tmp_path), "--resume")
    _assert_one_line_error(result, 1, str(tmp_path / "last.pt"), "corrupt or truncated")
    assert len(result.stderr.strip().splitlines()) == 1


def test_debug_shows_the_exception(tmp_path):
    (tmp_path / "last.pt").write_bytes(b"\x00" * 64)
    result = run("--debug", "train", *FAST, "--out", str(tmp_path), "--resume")
    assert result.exit_code == 1
    assert isinstance(result.exception, CheckpointError)


def test_bad_option_values_are_usage_errors(tmp_path):
    _assert_one_line_error(run("train", "--epochs", "0"), 2, "--epochs")
    _assert_one_line_error(run("train", "--optimizer", "rmsprop"), 2, "--optimizer")
    _assert_one_line_error(run("train", "--surrogate", "nope", "--out", str(tmp_path)), 2, "unknown surrogate")
    _assert_one_line_error(run("train", "--backend", "magic", "--out", str(tmp_path)), 2, "unknown backend")
    _assert_one_line_error(run("train", "--config", str(tmp_path / "missing.json")), 2, "missing.json")


def test_config_file_and_overrides(tmp_path):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"epochs": 1, "hidden": 16, "steps": 4, "quiet": True, "seed": 5}))
    result = run("train", "--config", str(config), "--seed", "7", "--out", str(tmp_path / "r"),
                 "--json", str(tmp_path / "s.json"))
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["seed"] == 7 and summary["config"]["hidden"] == 16

    config.write_text(json.dumps({"epoch": 1}))
    _assert_one_line_error(run("train", "--config", str(config)), 2, "unknown training config key", "epoch")


def test_unexpected_errors_name_their_type_and_debug(monkeypatch, tmp_path):
    import spikeflow.train as train_module

    def broken(config):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(train_module, "train", broken)
    result = run("train", *FAST, "--out", str(tmp_path))
    _assert_one_line_error(result, 1, "ZeroDivisionError: boom", "--debug")


def _console_script() -> str:
    candidate = Path(sys.executable).with_name("spikeflow" + (".exe" if os.name == "nt" else ""))
    if candidate.is_file():
        return str(candidate)
    found = shutil.which("spikeflow")
    if found is None:
        pytest.skip("the spikeflow console script is not installed (pip install -e .[cli])")
    return found


def test_console_script_end_to_end(tmp_path):
    """A real process: the installed `spikeflow` entry point, one short epoch."""
    summary_path = tmp_path / "summary.json"
    completed = subprocess.run(
        [_console_script(), "train", *FAST, "--out", str(tmp_path / "run"), "--json", str(summary_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stderr
    assert "test accuracy" in completed.stdout
    summary = json.loads(summary_path.read_text())
    assert summary["epochs"] == 1 and summary["preset"] == "digits-mlp" and summary["seed"] == 0
    assert 0.0 <= summary["test_accuracy"] <= 1.0 and summary["train_time_s"] > 0
    assert 0.0 < summary["mean_firing_rate"] < 1.0
    assert (tmp_path / "run" / "last.pt").is_file()

    # and an error in a real process: one line on stderr, status 1, no traceback
    failed = subprocess.run(
        [_console_script(), "train", *FAST, "--out", str(tmp_path / "nothing"), "--resume"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert failed.returncode == 1
    assert "Traceback" not in failed.stderr
    assert failed.stderr.strip().count("\n") == 0 and "nothing to resume" in failed.stderr


def test_warnings_are_one_line(tmp_path):
    out = tmp_path / "run"
    common = ["--hidden", "16", "--steps", "4", "--quiet", "--out", str(out), "--threads", "1"]
    assert run("train", "--epochs", "2", *common).exit_code == 0
    last = out / "last.pt"
    last.write_bytes(last.read_bytes()[:200])  # corrupt: resume falls back to last.prev.pt
    result = CliRunner().invoke(main, ["train", "--epochs", "3", "--resume", *common])
    assert result.exit_code == 0, result.output
    warned = [line for line in result.stderr.splitlines() if line.startswith("Warning:")]
    assert len(warned) == 1 and "last.pt" in warned[0] and "last.prev.pt" in warned[0], result.stderr
    assert "UserWarning" not in result.stderr and "warnings.warn" not in result.stderr
