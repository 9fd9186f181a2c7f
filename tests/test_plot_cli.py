"""``spikeflow plot``: figures of a real (tiny) training run and conversion, checked
against the data they show, and one-line errors for bad inputs."""

from __future__ import annotations

import json
import re
import struct

import numpy as np
import pytest
import torch

pytest.importorskip("matplotlib")
from click.testing import CliRunner  # noqa: E402

from spikeflow import encode, plot  # noqa: E402
from spikeflow.cli import main  # noqa: E402
from spikeflow.train import TrainConfig, build_model, load_checkpoint, load_data, save_checkpoint, train  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"
HIDDEN = 32


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-epoch digits-mlp run: ``(run directory, summary)``; its summary JSON is
    ``summary.json`` in the run directory."""
    out = tmp_path_factory.mktemp("run")
    summary = train(TrainConfig(epochs=2, out=str(out), quiet=True, threads=1, hidden=HIDDEN, steps=4, batch_size=128))
    (out / "summary.json").write_text(json.dumps(summary))
    return out, summary


def _png_size(path) -> tuple[int, int]:
    """(width, height) in pixels from the IHDR chunk of a PNG file (> 1 kB)."""
    data = path.read_bytes()
    assert len(data) > 1000 and data.startswith(PNG) and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def _written(result) -> list:
    assert result.exit_code == 0, result.output
    return [line for line in result.stdout.splitlines() if line.strip()]


def _ydata(line) -> list:
    return np.asarray(line.get_ydata(), dtype=float).tolist()


def _check_curves(fig, history) -> None:
    loss, accuracy, rate = fig.axes
    for ax, keys, scale in ((loss, ("train_loss", "test_loss"), 1), (accuracy, ("train_accuracy", "test_accuracy"), 100),
                            (rate, ("firing_rate", "test_firing_rate"), 1)):
        for line, key in zip(ax.get_lines(), keys, strict=True):
            assert np.asarray(line.get_xdata()).tolist() == [r["epoch"] for r in history]
            assert _ydata(line) == pytest.approx([scale * r[key] for r in history])


def test_curves_from_a_run_a_checkpoint_and_a_summary(trained, tmp_path, figures):
    out, summary = trained
    history = load_checkpoint(out / "last.pt")["history"]
    assert len(history) == 2

    result = run("plot", "curves", out, "--json", tmp_path / "files.json")
    assert _written(result) == [str(out / "curves.png")]
    assert json.loads((tmp_path / "files.json").read_text()) == {"files": [str(out / "curves.png")]}
    assert _png_size(out / "curves.png") == (6 * plot.DPI, int(7.5 * plot.DPI))  # three panels
    _check_curves(figures[-1], history)
    assert figures[-1].get_suptitle() == "digits-mlp: 2 epochs"

    assert _written(run("plot", "curves", out / "best.pt", "--out", tmp_path / "best.png")) == [
        str(tmp_path / "best.png")]
    _check_curves(figures[-1], load_checkpoint(out / "best.pt")["history"])

    target = tmp_path / "from_summary" / "curves.png"
    assert _written(run("plot", "curves", out / "summary.json", "--out", target)) == [str(target)]
    _png_size(target)
    _check_curves(figures[-1], summary["history"])


def test_activity_shows_the_recorded_spikes_of_the_run(trained, tmp_path, figures):
    out, _ = trained
    samples = 20
    result = run("plot", "activity", out, "--samples", samples, "--out", tmp_path / "act",
                 "--json", tmp_path / "files.json")
    names = ["raster.png", "membrane.png", "rates.png", "spike_counts.png"]
    expected = [str(tmp_path / "act" / name) for name in names]
    assert _written(result) == expected
    assert json.loads((tmp_path / "files.json").read_text())["files"] == expected
    for path in expected:
        width, height = _png_size(tmp_path / "act" / path)
        assert 300 <= width <= 2000 and 200 <= height <= 2000
    raster, membrane, rates, counts = figures[-4:]

    # the same network and inputs, recorded independently with Sequential.record
    checkpoint = load_checkpoint(out / "last.pt")
    config = TrainConfig.from_dict(checkpoint["config"])
    assert config.encoding == "direct" and config.steps == 4
    model = build_model(config)
    model.load_state_dict(checkpoint["model"])
    x = load_data(config)[2][:samples]
    with torch.no_grad():
        recording = model.eval().record(encode.direct(x, config.steps))
    spikes = recording.outputs[1]  # the LIF layer "1": [T, samples, HIDDEN]
    v = recording.trajectories[1].v

    # raster: one dot per spike of sample 0, at (step, neuron)
    (dots,) = raster.axes[0].collections
    expected_dots = sorted(map(tuple, torch.nonzero(spikes[:, 0]).tolist()))
    assert len(expected_dots) > 0
    assert sorted(map(tuple, dots.get_offsets().astype(int).tolist())) == expected_dots
    assert raster.axes[0].get_title() == f"layer 1, sample 0: {len(expected_dots)} spikes"

    # membrane: the traces of the neurons named in the title, and the threshold (1.0)
    ax = membrane.axes[0]
    shown = [int(n) for n in re.search(r"neurons ([\d, ]+)$", ax.get_title()).group(1).split(", ")]
    per_neuron = (spikes[:, 0] != 0).sum(dim=0)
    assert len(shown) == 8 and sorted(per_neuron[shown].tolist()) == sorted(per_neuron.tolist())[-8:]
    lines = ax.get_lines()
    assert len(lines) == len(shown) + 1  # the traces and the (layer-wide) threshold
    for line, n in zip(lines, shown):
        assert _ydata(line) == pytest.approx(v[:, 0, n].tolist(), abs=1e-5)
    assert _ydata(lines[-1]) == [1.0, 1.0]

    # rates: the bar is the layer's firing rate; the histogram counts every neuron once
    bars, histogram = rates.axes
    assert [p.get_height() for p in bars.patches] == pytest.approx([float((spikes != 0).float().mean())])
    (container,) = histogram.containers
    assert sum(p.get_height() for p in container) == HIDDEN

    # spike counts: spikes per (sample, neuron), unit bins from 0
    per_sample = (spikes != 0).sum(dim=0).flatten().numpy()
    heights = [p.get_height() for p in counts.axes[0].patches]
    assert heights == np.bincount(per_sample, minlength=len(heights)).tolist()
    assert sum(heights) == samples * HIDDEN


def test_conversion_plots_the_accuracies_of_a_convert_summary(tmp_path, figures):
    summary_path = tmp_path / "convert.json"
    result = run("convert", "--epochs", "1", "--test-samples", "40", "--timesteps", "2,8", "--calibration-samples",
                 "64", "--no-plot", "--quiet", "--threads", "1", "--out", tmp_path / "convert",
                 "--json", summary_path)
    assert result.exit_code == 0, result.output
    summary = json.loads(summary_path.read_text())

    result = run("plot", "conversion", summary_path)
    assert _written(result) == [str(tmp_path / "conversion.png")]
    assert _png_size(tmp_path / "conversion.png") == (6 * plot.DPI, 4 * plot.DPI)
    ax = figures[-1].axes[0]
    snn, ann = ax.get_lines()
    assert np.asarray(snn.get_xdata()).tolist() == [2, 8]
    assert _ydata(snn) == pytest.approx([100 * summary["snn_accuracy"][t] for t in ("2", "8")])
    assert _ydata(ann) == pytest.approx([100 * summary["ann_accuracy"]] * 2)
    assert ax.get_title() == "lenet5 (rate)"


def _one_line_error(result, *fragments: str) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert result.stdout == ""
    return lines[0]


@pytest.mark.parametrize("kind", ["curves", "activity"])
def test_bad_run_inputs_are_one_line_errors(kind, trained, tmp_path):
    out, _ = trained
    missing = tmp_path / "nowhere"
    _one_line_error(run("plot", kind, missing), str(missing), "does not exist")
    empty = tmp_path / "empty_run"
    empty.mkdir()
    _one_line_error(run("plot", kind, empty), str(empty), "holds no last.pt")
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint\n")
    _one_line_error(run("plot", kind, text), str(text), "corrupt or truncated")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((out / "last.pt").read_bytes()[:3000])
    _one_line_error(run("plot", kind, truncated), str(truncated), "corrupt or truncated")
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    _one_line_error(run("plot", kind, other), str(other), "not a spikeflow training checkpoint")
    assert not list(tmp_path.rglob("*.png"))


def test_bad_summaries_and_mismatched_checkpoints_are_one_line_errors(trained, tmp_path):
    out, _ = trained
    broken = tmp_path / "broken.json"
    broken.write_text('{"history": [')
    _one_line_error(run("plot", "curves", broken), str(broken), "not valid JSON")
    _one_line_error(run("plot", "conversion", broken), str(broken), "not valid JSON")
    _one_line_error(run("plot", "conversion", tmp_path / "none.json"), "does not exist")
    # a training summary is not a conversion summary, and the other way round
    _one_line_error(run("plot", "conversion", out / "summary.json"), "no snn_accuracy")
    (tmp_path / "convert.json").write_text(json.dumps({"snn_accuracy": {"4": 0.5}, "ann_accuracy": 0.6}))
    _one_line_error(run("plot", "curves", tmp_path / "convert.json"), "no history")
    # a checkpoint whose config describes another network than its weights
    checkpoint = load_checkpoint(out / "last.pt")
    checkpoint["config"] = {**checkpoint["config"], "hidden": HIDDEN // 2}
    save_checkpoint(tmp_path / "mismatch" / "last.pt", checkpoint)
    _one_line_error(run("plot", "activity", tmp_path / "mismatch"), "does not fit the digits-mlp network")
    checkpoint["config"] = {**checkpoint["config"], "readout": "nonsense"}
    save_checkpoint(tmp_path / "invalid" / "last.pt", checkpoint)
    _one_line_error(run("plot", "activity", tmp_path / "invalid"), "holds an invalid config")
    assert not list(tmp_path.rglob("*.png"))
