"""spikeflow.train.tensorboard.TensorBoardLogger: the event files read back with
TensorBoard's EventAccumulator hold exactly the values logged."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

pytest.importorskip("tensorboard")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData  # noqa: E402

from spikeflow import ScanResult  # noqa: E402
from spikeflow import nn as snn  # noqa: E402
from spikeflow.train.activity import LayerActivity  # noqa: E402
from spikeflow.train.tensorboard import TensorBoardLogger  # noqa: E402


def _read(log_dir) -> EventAccumulator:
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
    acc.Reload()
    return acc


def _scalars(acc: EventAccumulator, tag: str) -> list[tuple[int, float]]:
    return [(event.step, event.value) for event in acc.Scalars(tag)]


def test_metrics_are_written_as_exact_scalars_and_non_numbers_skipped(tmp_path):
    with TensorBoardLogger(tmp_path) as board:
        written = board.log_metrics(
            1,
            {"loss": 0.25, "count": 7, "t": torch.tensor(1.5), "np": np.float64(-2.0),
             "flag": True, "name": "x", "none": None, "vec": torch.ones(2), "list": [1.0]},
            prefix="train",
        )
        assert written == ["train/loss", "train/count", "train/t", "train/np"]
        board.log_metrics(2, {"loss": 0.125}, "train")
        board.log_metrics(2, {"epoch_time_s": 3.0})  # no prefix
    acc = _read(tmp_path)
    assert sorted(acc.Tags()["scalars"]) == ["epoch_time_s", "train/count", "train/loss", "train/np", "train/t"]
    assert _scalars(acc, "train/loss") == [(1, 0.25), (2, 0.125)]
    assert _scalars(acc, "train/count") == [(1, 7.0)]
    assert _scalars(acc, "train/t") == [(1, 1.5)]
    assert _scalars(acc, "train/np") == [(1, -2.0)]
    assert _scalars(acc, "epoch_time_s") == [(2, 3.0)]


class Relay(snn.Neuron):
    """A 'neuron' layer whose spikes are its input."""

    def forward(self, x, state=None):
        return x, state

    def record(self, x, state=None):
        return ScanResult(x, state, None)


def test_activity_rates_and_spike_count_histograms(tmp_path):
    net = snn.Sequential(Relay(), snn.Linear(4, 3), snn.LIF(beta=0.5, threshold=0.25), snn.Linear(3, 2), snn.LI())
    generator = torch.Generator().manual_seed(3)
    spikes = (torch.rand(8, 4, 4, generator=generator) < 0.4).float()
    with torch.no_grad():
        net[1].module.weight.copy_(torch.linspace(-0.3, 0.6, 12).reshape(3, 4))
        net[1].module.bias.zero_()
    activity = LayerActivity(net)
    net(spikes)
    lif = net.record(spikes).outputs[2].detach()
    assert 0 < lif.sum() < lif.numel()
    with TensorBoardLogger(tmp_path) as board:
        board.log_activity(5, activity)
    activity.close()

    acc = _read(tmp_path)
    # Rates: spikes / (T * B * neurons), stored as float32.
    for name, s in (("0", spikes), ("2", lif)):
        expected = np.float32(int(s.sum()) / s.numel())
        assert _scalars(acc, f"firing_rate/{name}") == [(5, float(expected))]
    overall = np.float32(int(spikes.sum() + lif.sum()) / (spikes.numel() + lif.numel()))
    assert _scalars(acc, "firing_rate/all") == [(5, float(overall))]
    # Histograms: one value per neuron, its spike count over steps and samples.
    for name, s in (("0", spikes), ("2", lif)):
        counts = s.sum(dim=(0, 1)).double()
        (event,) = acc.Histograms(f"spike_counts/{name}")
        h = event.histogram_value
        assert event.step == 5
        assert h.num == counts.numel()
        assert h.sum == float(counts.sum())
        assert h.sum_squares == float((counts**2).sum())
        assert (h.min, h.max) == (float(counts.min()), float(counts.max()))
        assert sum(h.bucket) == counts.numel()
    assert "spike_counts/4" not in acc.Tags()["histograms"]  # LI is not spiking


def test_log_config_text_and_hparams(tmp_path):
    config = {"lr": 0.001, "epochs": 3, "preset": "digits|mlp", "amp": False, "out": None, "layers": [1, 2]}
    with TensorBoardLogger(tmp_path) as board:
        board.log_config(config)
    acc = _read(tmp_path)
    (text,) = acc.Tensors("config/text_summary")
    table = text.tensor_proto.string_val[0].decode()
    assert table.splitlines()[:2] == ["| setting | value |", "|---|---|"]
    assert "| lr | 0.001 |" in table and "| preset | digits\\|mlp |" in table and "| amp | False |" in table
    assert len(table.splitlines()) == 2 + len(config)

    content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["lr"].number_value == 0.001
    assert hparams["epochs"].number_value == 3
    assert hparams["preset"].string_value == "digits|mlp"
    assert hparams["amp"].string_value == "False"
    assert hparams["out"].string_value == "None"
    assert hparams["layers"].string_value == "[1, 2]"


def test_closed_logger_and_bad_arguments(tmp_path):
    board = TensorBoardLogger(tmp_path)
    with pytest.raises(TypeError, match="LayerActivity"):
        board.log_activity(0, {"1": 0.5})
    with pytest.raises(TypeError, match="dict"):
        board.log_metrics(0, [0.5])
    board.close()
    board.close()  # harmless twice
    with pytest.raises(RuntimeError, match="closed"):
        board.log_metrics(0, {"loss": 1.0})


def test_missing_tensorboard_is_a_clear_import_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import now fails
    with pytest.raises(ImportError, match=r"pip install spikeflow\[tensorboard\]"):
        TensorBoardLogger(tmp_path)
