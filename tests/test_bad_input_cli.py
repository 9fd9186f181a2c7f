"""Bad input on the command line: every command exits non-zero with ONE line on
stderr ("Error: ...") that names the option or file, what was expected and what
came, and no traceback; ``spikeflow --debug`` shows the traceback (issue 8).

Status 2 is bad usage (an option value, a missing or invalid config file, an
unknown name, conflicting options), status 1 a run that failed (a corrupt or
missing data file). CliRunner for the table; a few real runs of the installed
console script at the end.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from spikeflow.cli import main


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bad_cli")
    (root / "broken.json").write_text('{"epochs": ')
    (root / "list.json").write_text("[1, 2]\n")
    (root / "badval.json").write_text('{"epochs": "many"}')
    (root / "unknownkey.json").write_text('{"epochz": 3}')
    (root / "badtask.json").write_text('{"task": "sing"}')
    (root / "noparams.json").write_text('{"task": "train", "metric": "test_accuracy", "params": {}}')
    (root / "badlayers.json").write_text('{"layers": {"fc2": {"levels": 16}}}')
    (root / "notmodel.pt").write_bytes(b"x")
    (root / "adir").mkdir()
    return root


def run(*args: str, env: dict | None = None):
    return CliRunner().invoke(main, list(args), env=env)


def _one_line_error(result, code: int) -> str:
    """The single stderr line of a failed command (checked: status, one line, no traceback)."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: "), lines[0]
    return lines[0]


# (id, argv with {d} for the files' folder, exit status, regex the one line must match)
CASES = [
    # -- train
    ("train-epochs-0", "train --epochs 0", 2, r"Invalid value for '--epochs': 0 is not in the range x>=1"),
    ("train-epochs-text", "train --epochs abc", 2, r"'--epochs': 'abc' is not a valid integer"),
    ("train-lr-negative", "train --lr -1", 2, r"'--lr': -1.0 is not in the range x>0"),
    ("train-threads-negative", "train --threads -1", 2, r"'--threads': -1 is not in the range x>=0"),
    ("train-preset-unknown", "train --preset nope", 2, r"'--preset': 'nope' is not one of 'digits-mlp', 'mnist-cnn'"),
    ("train-readout-unknown", "train --readout nope", 2, r"'--readout': 'nope' is not one of 'max'"),
    ("train-option-unknown", "train --bogus", 2, r"No such option '--bogus'.*\(see '.* train --help'\)"),
    ("train-config-missing", "train --config {d}/missing.yaml", 2, r"'--config': File '{d}/missing.yaml' does not exist"),
    ("train-config-not-json", "train --config {d}/broken.json", 2, r"config file {d}/broken.json is not valid JSON"),
    ("train-config-not-a-mapping", "train --config {d}/list.json", 2,
     r"config file {d}/list.json must hold a mapping of settings, got list"),
    ("train-config-bad-value", "train --config {d}/badval.json", 2,
     r"config file {d}/badval.json: epochs must be an integer, got 'many'"),
    ("train-config-unknown-key", "train --config {d}/unknownkey.json", 2,
     r"config file {d}/unknownkey.json: unknown training config key\(s\): epochz; known: "),
    ("train-surrogate-unknown", "train --surrogate nope --out {d}/t", 2, r"unknown surrogate 'nope'; known: .*superspike"),
    ("train-data-dir-is-a-file", "train --data-dir {d}/notmodel.pt", 2,
     r"'--data-dir': Directory '{d}/notmodel.pt' is a file"),
    ("train-json-is-a-folder", "train --json {d}/adir", 2, r"'--json': File '{d}/adir' is a directory"),
    ("train-hardware-invalid", "train --hardware {d}/badlayers.json --out {d}/t", 2,
     r"hardware file {d}/badlayers.json: layers must be 'last', 'all' or a non-empty list of module names"),
    ("train-mnist-without-folder", "train --preset mnist-mlp --epochs 1 --quiet --out {d}/t", 1,
     r"no MNIST folder given: point spikeflow at the folder with --data-dir DIR .* or the SPIKEFLOW_DATA environment variable"),
    ("train-mnist-folder-without-files", "train --preset mnist-mlp --data-dir {d}/adir --epochs 1 --quiet --out {d}/t", 1,
     r"no MNIST files in {d}/adir \(nor in {d}/adir/mnist\): expected train-images-idx3-ubyte"),
    ("train-resume-nothing", "train --resume --quiet --out {d}/fresh", 1, r"nothing to resume: {d}/fresh/last.pt does not exist"),
    ("train-device-unknown", "train --device nope --quiet --out {d}/t", 1, r"unknown device 'nope'; use 'cpu', 'cuda' or 'cuda:N'"),
    # -- presets
    ("presets-extra-argument", "presets extra", 2, r"Got unexpected extra argument \(extra\)"),
    # -- convert
    ("convert-timesteps-zero", "convert --timesteps 0,8", 2,
     r"'--timesteps': expected comma-separated positive integers, got '0,8'"),
    ("convert-coding-unknown", "convert --coding morse", 2, r"'--coding': 'morse' is not one of 'asn', 'qcfs', 'rate'"),
    ("convert-preset-unknown", "convert --preset alexnet", 2, r"'--preset': 'alexnet' is not one of 'lenet5'"),
    ("convert-dataset-unknown", "convert --dataset cifar", 2, r"'--dataset': 'cifar' is not one of 'digits', 'mnist'"),
    ("convert-percentile-0", "convert --percentile 0", 2, r"'--percentile': 0.0 is not in the range 0<x<=100"),
    ("convert-levels-0", "convert --levels 0", 2, r"'--levels': 0 is not in the range x>=1"),
    ("convert-test-samples-negative", "convert --test-samples -1", 2, r"'--test-samples': -1 is not in the range x>=0"),
    ("convert-test-samples-too-many", "convert --test-samples 100000 --quiet --out {d}/c", 1,
     r"test_samples=100000 exceeds the \d+ test images of digits; give at most \d+ \(or 0 for all\)"),
    ("convert-digits-with-data-dir", "convert --dataset digits --data-dir {d}/adir", 2,
     r"--data-dir {d}/adir is for --dataset mnist, got --dataset digits"),
    ("convert-levels-without-qcfs", "convert --coding rate --levels 4", 2, r"--levels is for --coding qcfs, got --coding rate"),
    ("convert-hardware-not-json", "convert --hardware {d}/broken.json --quiet --out {d}/c", 2,
     r"config file {d}/broken.json is not valid JSON"),
    ("convert-model-missing", "convert {d}/missing.pt --quiet --out {d}/c", 1, r"{d}/missing.pt does not exist"),
    ("convert-model-corrupt", "convert {d}/notmodel.pt --quiet --out {d}/c", 1, r"{d}/notmodel.pt is corrupt or truncated"),
    ("convert-mnist-missing-folder", "convert --dataset mnist --data-dir {d}/gone --quiet --out {d}/c", 1,
     r"MNIST folder {d}/gone does not exist or is not a folder; .*SPIKEFLOW_DATA"),
    # -- crossbar
    ("crossbar-sweep-unknown", "crossbar --sweep nope", 2, r"'--sweep': a sweep is NAME=v1,v2,... with NAME one of \["),
    ("crossbar-sweep-value", "crossbar --sweep program_noise=a", 2, r"'--sweep': sweep program_noise: 'a' is not a valid float"),
    ("crossbar-repeats-0", "crossbar --repeats 0", 2, r"'--repeats': 0 is not in the range x>=1"),
    ("crossbar-hardware-missing", "crossbar --hardware {d}/missing.yaml", 2, r"'--hardware': File '{d}/missing.yaml' does not exist"),
    ("crossbar-hardware-not-json", "crossbar --hardware {d}/broken.json", 2, r"config file {d}/broken.json is not valid JSON"),
    # -- plot
    ("plot-command-unknown", "plot nope", 2, r"No such command 'nope'"),
    ("plot-curves-missing", "plot curves {d}/missing", 1,
     r"{d}/missing does not exist; expected a training run folder \(with last.pt\) or a checkpoint file"),
    ("plot-curves-empty-folder", "plot curves {d}/adir", 1, r"{d}/adir is not a training run: it holds no last.pt"),
    ("plot-curves-corrupt-checkpoint", "plot curves {d}/notmodel.pt", 1, r"{d}/notmodel.pt is corrupt or truncated"),
    ("plot-curves-json-list", "plot curves {d}/list.json", 1, r"training summary {d}/list.json is not a JSON object"),
    ("plot-curves-not-a-summary", "plot curves {d}/badval.json", 1,
     r"{d}/badval.json is not a `spikeflow train --json` summary: it has no history"),
    ("plot-activity-samples-0", "plot activity {d}/adir --samples 0", 2, r"'--samples': 0 is not in the range x>=1"),
    ("plot-activity-missing", "plot activity {d}/missing", 1, r"{d}/missing does not exist; expected a training run folder"),
    ("plot-conversion-folder", "plot conversion {d}/adir", 1, r"conversion summary {d}/adir is a folder; expected a JSON file"),
    ("plot-conversion-missing", "plot conversion {d}/missing.json", 1, r"conversion summary {d}/missing.json does not exist"),
    ("plot-conversion-not-json", "plot conversion {d}/notmodel.pt", 1, r"conversion summary {d}/notmodel.pt is not valid JSON"),
    ("plot-conversion-not-a-summary", "plot conversion {d}/badval.json", 1,
     r"{d}/badval.json is not a `spikeflow convert --json` summary: it has no snn_accuracy per T"),
    # -- tune
    ("tune-trials-missing", "tune {d}/noparams.json", 2, r"Missing option '--trials'"),
    ("tune-trials-0", "tune {d}/noparams.json --trials 0", 2, r"'--trials': 0 is not in the range x>=1"),
    ("tune-timeout-0", "tune {d}/noparams.json --trials 1 --timeout 0", 2, r"'--timeout': 0.0 is not in the range x>0"),
    ("tune-space-missing", "tune {d}/missing.yaml --trials 1", 2, r"'SPACE_FILE': File '{d}/missing.yaml' does not exist"),
    ("tune-space-not-json", "tune {d}/broken.json --trials 1", 2, r"config file {d}/broken.json is not valid JSON"),
    ("tune-space-task-unknown", "tune {d}/badtask.json --trials 1 --out {d}/tu", 2,
     r"search space {d}/badtask.json: task must be one of train, convert; got 'sing'"),
    ("tune-space-no-params", "tune {d}/noparams.json --trials 1 --out {d}/tu", 2,
     r"search space {d}/noparams.json: params must be a non-empty table of parameters to search, got \{\}"),
    # -- nir
    ("nir-export-model-missing", "nir export {d}/missing.pt --input-shape 4 -o {d}/x.nir", 2,
     r"'MODEL': File '{d}/missing.pt' does not exist"),
    ("nir-export-model-corrupt", "nir export {d}/notmodel.pt --input-shape 4 -o {d}/x.nir", 1, r"{d}/notmodel.pt is not a"),
    ("nir-export-input-shape-text", "nir export {d}/notmodel.pt --input-shape a -o {d}/x.nir", 2,
     r"'--input-shape': expected positive sizes such as 784 or 1,28,28, got 'a'"),
    ("nir-export-input-shape-0", "nir export {d}/notmodel.pt --input-shape 0 -o {d}/x.nir", 2,
     r"'--input-shape': expected positive sizes .* got '0'"),
    ("nir-export-out-missing", "nir export {d}/notmodel.pt --input-shape 4", 2, r"Missing option '--out' / '-o'"),
    ("nir-import-graph-missing", "nir import {d}/missing.nir -o {d}/y.pt", 2, r"'GRAPH': File '{d}/missing.nir' does not exist"),
    ("nir-import-graph-corrupt", "nir import {d}/notmodel.pt -o {d}/y.pt", 1, r"{d}/notmodel.pt is not a readable NIR file"),
    ("nir-import-dt-0", "nir import {d}/notmodel.pt -o {d}/y.pt --dt 0", 2, r"'--dt': 0.0 is not in the range x>0"),
    # -- the group itself
    ("command-unknown", "nope", 2, r"No such command 'nope'.*\(see '.*--help'\)"),
    ("global-option-unknown", "--bogus", 2, r"No such option '--bogus'"),
]


@pytest.mark.parametrize("argv,code,pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_error(files, monkeypatch, argv, code, pattern):
    monkeypatch.delenv("SPIKEFLOW_DATA", raising=False)
    monkeypatch.delenv("SPIKEFLOW_DEBUG", raising=False)
    args = [a.replace("{d}", str(files)) for a in argv.split()]
    line = _one_line_error(run(*args), code)
    assert re.search(pattern.replace("{d}", re.escape(str(files))), line), line


# ----------------------------------------------------------------------------- --debug
DEBUG_CASES = [
    # (id, argv, the exception --debug lets through)
    ("config-value", "train --config {d}/badval.json", TypeError),
    ("unknown-surrogate", "train --surrogate nope --out {d}/t", ValueError),
    ("mnist-folder", "train --preset mnist-mlp --data-dir {d}/adir --epochs 1 --quiet --out {d}/t", FileNotFoundError),
    ("plot-missing", "plot curves {d}/missing", FileNotFoundError),
    ("tune-space", "tune {d}/badtask.json --trials 1 --out {d}/tu", ValueError),
]


@pytest.mark.parametrize("argv,error", [c[1:] for c in DEBUG_CASES], ids=[c[0] for c in DEBUG_CASES])
def test_debug_lets_the_exception_through(files, monkeypatch, argv, error):
    monkeypatch.delenv("SPIKEFLOW_DATA", raising=False)
    args = [a.replace("{d}", str(files)) for a in argv.split()]
    result = run("--debug", *args)
    assert result.exit_code == 1
    assert isinstance(result.exception, error), repr(result.exception)
    # the same with SPIKEFLOW_DEBUG=1
    result = run(*args, env={"SPIKEFLOW_DEBUG": "1"})
    assert isinstance(result.exception, error), repr(result.exception)


# ----------------------------------------------------------------------------- the real console script
def _script() -> str:
    found = Path(sys.executable).with_name("spikeflow")
    return str(found) if found.exists() else shutil.which("spikeflow") or pytest.skip("no spikeflow console script")


SUBPROCESS_CASES = [
    ("usage-error", ["train", "--epochs", "0"], 2, r"^Error: Invalid value for '--epochs': 0 is not in the range x>=1\. "
                                                    r"\(see 'spikeflow train --help'\)$"),
    ("unknown-command", ["nope"], 2, r"^Error: No such command 'nope'\. \(see 'spikeflow --help'\)$"),
    ("missing-file", ["plot", "conversion", "{d}/missing.json"], 1, r"^Error: conversion summary {d}/missing.json does not exist$"),
    ("bad-config", ["train", "--config", "{d}/list.json"], 2, r"^Error: config file {d}/list.json must hold a mapping"),
]


@pytest.mark.parametrize("argv,code,pattern", [c[1:] for c in SUBPROCESS_CASES], ids=[c[0] for c in SUBPROCESS_CASES])
def test_console_script_prints_one_line(files, argv, code, pattern):
    env = {k: v for k, v in os.environ.items() if k not in ("SPIKEFLOW_DEBUG", "SPIKEFLOW_DATA")}
    args = [a.replace("{d}", str(files)) for a in argv]
    done = subprocess.run([_script(), *args], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert re.search(pattern.replace("{d}", re.escape(str(files))), done.stderr.strip()), done.stderr


def test_console_script_debug_shows_the_traceback(files):
    env = {k: v for k, v in os.environ.items() if k != "SPIKEFLOW_DEBUG"}
    done = subprocess.run([_script(), "--debug", "plot", "conversion", str(files / "missing.json")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr
    assert f"FileNotFoundError: conversion summary {files / 'missing.json'} does not exist" in done.stderr


def test_a_config_problem_under_debug_shows_the_traceback(files):
    env = {k: v for k, v in os.environ.items() if k != "SPIKEFLOW_DEBUG"}
    done = subprocess.run([_script(), "--debug", "train", "--config", str(files / "badval.json")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr and "epochs must be an integer, got 'many'" in done.stderr


def test_one_line_even_for_a_multi_line_message(files):
    """YAML's parse errors span several lines (the text quoted, a caret): joined into one."""
    (files / "bad.yaml").write_text("epochs: [1, 2\nlr: 3\n")
    line = _one_line_error(run("train", "--config", str(files / "bad.yaml")), 2)
    assert re.search(r"config file .*bad.yaml is not valid YAML: .*line 1, column 9: epochs: \[1, 2 \^ expected", line), line


def test_an_encoding_for_an_ann_twin_is_refused(files):
    line = _one_line_error(run("train", "--ann", "--encoding", "latency", "--out", str(files / "t")), 2)
    assert "encoding 'latency' is for spiking runs: an ANN twin (ann=True) takes the static input" in line
