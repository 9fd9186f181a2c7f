"""spikeflow.plot: every function writes a PNG, and the figure shows the data given
(read back from the matplotlib figure before it is saved)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

pytest.importorskip("matplotlib")

from spikeflow import plot  # noqa: E402
from spikeflow.convert.evaluate import ConversionReport, NeuronStats  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def _is_png(path) -> bool:
    data = path.read_bytes()
    return len(data) > 1000 and data.startswith(PNG)


def _report() -> ConversionReport:
    layer = dict(samples=2, steps=4, total_spikes=5, spikes_mean=1.25, spikes_var=0.6875, firing_rate=0.3125,
                 silent_fraction=0.25, dead_fraction=0.0, max_spikes=2, spike_time_mean=1.4, spike_time_var=1.0)
    return ConversionReport(
        timesteps=[4, 16, 64], samples=2, ann_accuracy=0.9,
        snn_accuracy={4: 0.5, 16: 0.75, 64: 0.85}, agreement={4: 0.5, 16: 0.8, 64: 0.95},
        ann_macs=100, input_macs=40, synops={4: 10.0, 16: 40.0, 64: 160.0}, ann_energy_j=4.6e-10,
        snn_energy_j={4: 1.9e-10, 16: 2.2e-10, 64: 3.3e-10}, energy_ratio={4: 0.41, 16: 0.47, 64: 0.72},
        coding="ttfs",
        neurons=[
            NeuronStats(name="a", neurons=2, count_histogram=[1, 1, 2], spikes_per_step=[1, 2, 1, 1],
                        first_spike_histogram=[1, 2, 0, 0], **layer),
            NeuronStats(name="b", neurons=2, count_histogram=[0, 3, 1], spikes_per_step=[0, 1, 3, 1], **layer),
        ],
    )


def test_accuracy_vs_timesteps_from_a_report_and_a_mapping(tmp_path, figures):
    report = _report()
    path = plot.accuracy_vs_timesteps(report, tmp_path / "sub" / "acc.png")
    assert path == tmp_path / "sub" / "acc.png" and _is_png(path)
    ax = figures[-1].axes[0]
    snn_line, ann_line = ax.get_lines()
    assert snn_line.get_xdata().tolist() == [4, 16, 64]
    assert snn_line.get_ydata().tolist() == pytest.approx([50, 75, 85])
    assert np.asarray(ann_line.get_ydata(), dtype=float).tolist() == pytest.approx([90, 90])
    assert ax.get_xscale() == "log"  # 64 / 4 >= 10

    # its dict form gives the same curve; a plain {T: accuracy} with a narrow range is linear
    plot.accuracy_vs_timesteps(report.to_dict(), tmp_path / "acc2.png")
    assert figures[-1].axes[0].get_lines()[0].get_ydata().tolist() == pytest.approx([50, 75, 85])
    plot.accuracy_vs_timesteps({8: 0.25, 4: 0.125}, tmp_path / "acc3.png")
    ax = figures[-1].axes[0]
    assert len(ax.get_lines()) == 1 and ax.get_xscale() == "linear"
    assert ax.get_lines()[0].get_xdata().tolist() == [4, 8]  # sorted by T
    with pytest.raises(ValueError, match="no accuracies"):
        plot.accuracy_vs_timesteps({}, tmp_path / "empty.png")


def test_spike_raster_marks_every_spike(tmp_path, figures):
    spikes = torch.zeros(6, 2, 3, 2)  # [T, B, C, W]: 6 neurons per sample
    spikes[0, 1, 0, 1] = spikes[4, 1, 2, 0] = spikes[5, 1, 2, 1] = 1.0
    spikes[3, 0, 0, 0] = 1.0  # sample 0, not shown
    path = plot.spike_raster(spikes, tmp_path / "raster.png", sample=1)
    assert _is_png(path)
    (points,) = figures[-1].axes[0].collections
    assert sorted(map(tuple, points.get_offsets().tolist())) == [(0, 1), (4, 4), (5, 5)]
    plot.spike_raster(np.eye(4), tmp_path / "eye.png", max_neurons=2)  # [T, N]
    (points,) = figures[-1].axes[0].collections
    assert sorted(map(tuple, points.get_offsets().tolist())) == [(0, 0), (1, 1)]
    with pytest.raises(IndexError, match="sample 2"):
        plot.spike_raster(spikes, tmp_path / "bad.png", sample=2)


def test_membrane_traces_and_thresholds(tmp_path, figures):
    v = torch.linspace(0, 1, 12).view(4, 3)  # [T, N]
    path = plot.membrane_traces(v, tmp_path / "v.png", threshold=0.8)
    assert _is_png(path)
    lines = figures[-1].axes[0].get_lines()
    assert len(lines) == 4  # three traces and the threshold
    for n in range(3):
        assert lines[n].get_ydata().tolist() == pytest.approx(v[:, n].tolist())
    assert np.asarray(lines[3].get_ydata(), dtype=float).tolist() == pytest.approx([0.8, 0.8])
    plot.membrane_traces(v, tmp_path / "v2.png", threshold=torch.tensor([0.5, 0.6, 0.7]), max_traces=2)
    lines = figures[-1].axes[0].get_lines()
    assert [line.get_ydata()[0] for line in lines[2:]] == pytest.approx([0.5, 0.6])  # one per shown neuron
    assert lines[2].get_color() == lines[0].get_color()
    with pytest.raises(ValueError, match="one per neuron"):
        plot.membrane_traces(v, tmp_path / "bad.png", threshold=[1.0, 2.0])


def _bar_heights(ax) -> list[float]:
    return [patch.get_height() for patch in ax.patches]


def test_spike_count_histogram_from_counts_and_from_a_report(tmp_path, figures):
    counts = {"conv1": torch.tensor([0, 2, 2, 3, 0, 0]), "fc": np.array([[1, 1], [4, 1]])}
    path = plot.spike_count_histogram(counts, tmp_path / "counts.png")
    assert _is_png(path)
    first, second = figures[-1].axes
    assert first.get_title() == "conv1" and second.get_title() == "fc"
    assert _bar_heights(first) == [3, 0, 2, 1]  # unit bins over 0..3
    assert _bar_heights(second) == [3, 0, 0, 1]  # 1..4
    plot.spike_count_histogram(_report(), tmp_path / "report.png")
    first, second = figures[-1].axes
    assert _bar_heights(first) == [1, 1, 2] and _bar_heights(second) == [0, 3, 1]


def test_spike_time_histogram_uses_first_spikes_of_a_ttfs_report(tmp_path, figures):
    path = plot.spike_time_histogram(_report(), tmp_path / "times.png")
    assert _is_png(path)
    first, second = figures[-1].axes
    assert _bar_heights(first) == [1, 2, 0, 0]  # layer a: its first-spike times
    assert _bar_heights(second) == [0, 1, 3, 1]  # layer b has none: all spike times
    plot.spike_time_histogram({"x": [2.5, 0.5, 1.0]}, tmp_path / "float.png")  # non-integer times
    assert sum(_bar_heights(figures[-1].axes[0])) == 3


def test_missing_matplotlib_is_a_clear_import_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"pip install spikeflow\[plot\]"):
        plot.spike_raster(torch.zeros(3, 2), tmp_path / "r.png")


def _png_size(path) -> tuple[int, int]:
    """(width, height) in pixels from a PNG's IHDR chunk."""
    import struct

    data = path.read_bytes()
    assert data.startswith(PNG) and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


_HISTORY = [
    {"epoch": 1, "train_loss": 1.5, "train_accuracy": 0.40, "firing_rate": 0.20, "test_loss": 1.2,
     "test_accuracy": 0.55, "test_firing_rate": 0.15, "lr": 0.01},
    {"epoch": 2, "train_loss": 0.9, "train_accuracy": 0.70, "firing_rate": 0.12, "test_loss": 0.8,
     "test_accuracy": 0.75, "test_firing_rate": 0.11, "lr": 0.01},
    {"epoch": 3, "train_loss": 0.6, "train_accuracy": 0.85, "firing_rate": 0.10, "test_loss": 0.7,
     "test_accuracy": 0.80, "test_firing_rate": 0.09, "lr": 0.01},
]


def test_training_curves_draw_the_history(tmp_path, figures):
    path = plot.training_curves(_HISTORY, tmp_path / "curves.png", figsize=(5, 6), title="run")
    assert path == tmp_path / "curves.png" and _is_png(path)
    assert _png_size(path) == (5 * plot.DPI, 6 * plot.DPI)
    loss, accuracy, rate = figures[-1].axes
    assert [ax.get_ylabel() for ax in (loss, accuracy, rate)] == [
        "loss", "accuracy (%)", "firing rate (spikes/step)"]
    for ax, keys, scale in ((loss, ("train_loss", "test_loss"), 1), (accuracy, ("train_accuracy", "test_accuracy"), 100),
                            (rate, ("firing_rate", "test_firing_rate"), 1)):
        lines = ax.get_lines()
        assert [line.get_label() for line in lines] == ["train", "test"]
        for line, key in zip(lines, keys):
            assert np.asarray(line.get_xdata()).tolist() == [1, 2, 3]
            assert np.asarray(line.get_ydata()).tolist() == pytest.approx([scale * r[key] for r in _HISTORY])
    assert figures[-1].get_suptitle() == "run"


def test_training_curves_without_rates_have_two_panels_and_gaps(tmp_path, figures):
    history = [{"train_loss": 2.0, "train_accuracy": 0.1}, {"train_loss": 1.0, "train_accuracy": 0.3,
                                                           "test_loss": 1.1, "test_accuracy": 0.25}]
    path = plot.training_curves(history, tmp_path / "two.png")
    assert _png_size(path) == (6 * plot.DPI, 5 * plot.DPI)  # 2.5 inches per panel
    loss, accuracy = figures[-1].axes
    train, test = loss.get_lines()
    assert np.asarray(train.get_xdata()).tolist() == [1.0, 2.0]  # no "epoch" keys: numbered from 1
    assert np.asarray(train.get_ydata()).tolist() == [2.0, 1.0]
    assert np.isnan(test.get_ydata()[0]) and test.get_ydata()[1] == 1.1  # epoch 1 had no test loss
    assert np.asarray(accuracy.get_lines()[0].get_ydata()).tolist() == pytest.approx([10, 30])
    with pytest.raises(ValueError, match="empty"):
        plot.training_curves([], tmp_path / "empty.png")
    with pytest.raises(ValueError, match="no train_loss"):
        plot.training_curves([{"epoch": 1, "firing_rate": 0.1}], tmp_path / "rates_only.png")
    with pytest.raises(TypeError, match="history\\[1\\]"):
        plot.training_curves([{"train_loss": 1.0}, 3], tmp_path / "bad.png")
    with pytest.raises(TypeError, match="must be a number"):
        plot.training_curves([{"train_loss": "high"}], tmp_path / "bad.png")


def test_firing_rates_bars_are_means_and_histograms_count_every_neuron(tmp_path, figures):
    generator = np.random.default_rng(0)
    rates = {"1": torch.rand(40, generator=torch.Generator().manual_seed(1)) * 0.3,
             "conv": generator.random((2, 3, 3)) * 0.8,  # flattened: 18 neurons
             "out": [0.5, 0.5, 0.25]}
    path = plot.firing_rates(rates, tmp_path / "rates.png", figsize=(8, 3), bins=10, title="rates")
    assert _is_png(path) and _png_size(path) == (8 * plot.DPI, 3 * plot.DPI)
    bars, histogram = figures[-1].axes
    assert _bar_heights(bars) == pytest.approx([float(rates["1"].mean()), rates["conv"].mean(), 5 / 12])
    assert [label.get_text() for label in bars.get_xticklabels()] == ["1", "conv", "out"]
    containers = histogram.containers
    assert len(containers) == 3
    assert [sum(patch.get_height() for patch in c) for c in containers] == [40, 18, 3]
    assert all(len(c) == 10 for c in containers)
    # a single layer with equal rates: one bin holds all of them
    plot.firing_rates({"silent": np.zeros(7)}, tmp_path / "silent.png")
    bars, histogram = figures[-1].axes
    assert _bar_heights(bars) == [0.0]
    assert sorted(_bar_heights(histogram))[-1] == 7 and sum(_bar_heights(histogram)) == 7
    with pytest.raises(ValueError, match="non-empty mapping"):
        plot.firing_rates({}, tmp_path / "none.png")
    with pytest.raises(ValueError, match="no neurons"):
        plot.firing_rates({"a": []}, tmp_path / "none.png")
    with pytest.raises(ValueError, match="non-finite"):
        plot.firing_rates({"a": [0.1, float("nan")]}, tmp_path / "nan.png")
