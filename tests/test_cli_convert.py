"""``spikeflow convert``: the conversion experiment from the command line."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from spikeflow.cli import main
from spikeflow.convert import SpikingNetwork, simulate
from spikeflow.convert.ann import load_ann
from spikeflow.convert.experiment import ConvertConfig
from spikeflow.convert.presets import build_ann, load_images

FAST = ["--epochs", "2", "--quiet", "--test-samples", "60", "--calibration-samples", "200", "--no-plot"]


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_convert_with_no_model_trains_converts_and_reports(tmp_path):
    out, summary_path = tmp_path / "run", tmp_path / "summary.json"
    result = run("convert", *FAST, "--timesteps", "4,16", "--out", str(out), "--json", str(summary_path))
    assert result.exit_code == 0, result.output
    assert "lenet5 (rate): ANN" in result.output
    summary = json.loads(summary_path.read_text())
    assert summary["samples"] == 60 and summary["timesteps"] == [4, 16]
    assert set(summary["snn_accuracy"]) == {"4", "16"}
    assert summary["ann_trained"] is True and summary["config"]["dataset"] == "digits"
    # the saved spiking network reproduces the reported accuracy
    net = SpikingNetwork.load(out / "snn.pt")
    x_test, y_test = load_images("digits")[2:]
    out16 = simulate(net, x_test[:60], 16)[16]
    assert (out16.argmax(1) == y_test[:60]).float().mean().item() == pytest.approx(summary["snn_accuracy"]["16"])
    # the saved ANN reproduces the reported ANN accuracy
    ann, settings = load_ann(out / "ann.pt", lambda preset, input_shape, classes, **_: build_ann(preset, input_shape, classes))
    assert settings["preset"] == "lenet5" and settings["input_shape"] == [1, 8, 8]
    with torch.no_grad():
        accuracy = (ann(x_test[:60]).argmax(1) == y_test[:60]).float().mean().item()
    assert accuracy == pytest.approx(summary["ann_accuracy"])
    # --resume of a finished run reuses the ANN, the calibration and the evaluation
    again = run("convert", *FAST, "--timesteps", "4,16", "--out", str(out), "--json", str(summary_path), "--resume")
    assert again.exit_code == 0, again.output
    resumed = json.loads(summary_path.read_text())
    assert resumed["resumed"] == {"ann_epochs_trained": [], "ann_reused": True, "calibration_reused": True,
                                  "evaluations_reused": ["all"]}
    assert resumed["snn_accuracy"] == summary["snn_accuracy"] and resumed["ann_accuracy"] == summary["ann_accuracy"]


def test_convert_a_saved_model_with_windowed_ttfs(tmp_path):
    first = run("convert", *FAST, "--out", str(tmp_path / "a"))
    assert first.exit_code == 0, first.output
    summary_path = tmp_path / "s.json"
    result = run("convert", str(tmp_path / "a" / "ann.pt"), "--coding", "ttfs-dynamic", "--timesteps", "2,4",
                 *FAST[2:], "--out", str(tmp_path / "b"), "--json", str(summary_path))
    assert result.exit_code == 0, result.output
    summary = json.loads(summary_path.read_text())
    assert summary["ann_trained"] is False
    depth = summary["snn_info"]["depth"]
    assert summary["windows"] == {"2": 2 * (depth + 1), "4": 4 * (depth + 1)}
    assert summary["timesteps"] == [2 * (depth + 1), 4 * (depth + 1)]


def test_convert_bad_options_are_one_line_errors(tmp_path):
    result = run("convert", "--timesteps", "4,x")
    assert result.exit_code == 2 and "comma-separated positive integers" in result.output
    result = run("convert", str(tmp_path / "missing.pt"))
    assert result.exit_code == 1 and "does not exist" in result.output  # a missing file: the run failed
    with pytest.raises(ValueError, match="unknown coding"):
        ConvertConfig(coding="morse")
    result = run("convert", "--resume", "--out", str(tmp_path / "empty"))
    assert result.exit_code == 1 and "nothing to resume" in result.output and "run.json" in result.output
