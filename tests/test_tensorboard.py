"""spikeflow.train.tensorboard.TensorBoardLogger: the event files read back with
TensorBoard's EventAccumulator hold exactly the values logged."""

from __future__ import annotations

import os
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
    # Spike times: one bucket per step t, holding the spikes at t over samples and neurons.
    for name, s in (("0", spikes), ("2", lif)):
        per_step = s.sum(dim=(1, 2))  # [T]
        assert torch.equal(activity.step_counts()[name], per_step.to(torch.int64))
        (event,) = acc.Histograms(f"spike_times/{name}")
        h = event.histogram_value
        assert event.step == 5
        assert list(h.bucket) == per_step.tolist() and list(h.bucket_limit) == [t + 0.5 for t in range(8)]
        assert h.num == int(s.sum())  # every spike once
        steps = torch.arange(8, dtype=torch.float64)
        assert h.sum == float((steps * per_step).sum()) and h.sum_squares == float((steps**2 * per_step).sum())
        nonzero = per_step.nonzero().flatten()
        assert (h.min, h.max) == (float(nonzero.min()), float(nonzero.max()))
    assert "spike_counts/4" not in acc.Tags()["histograms"]  # LI is not spiking
    assert "spike_times/4" not in acc.Tags()["histograms"]


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


def test_step_counts_accumulate_reset_and_update():
    net = snn.Sequential(Relay(), snn.Linear(3, 2), snn.LI())
    activity = LayerActivity(net)
    a = torch.tensor([[[1.0, 0, 1]], [[0, 0, 0]], [[1, 1, 1]]])  # T=3, B=1: 2, 0, 3 spikes per step
    b = torch.tensor([[[0, 2.0, 0], [1, 0, 0]], [[0.5, 0, 0], [0, 0, 0]]])  # T=2, B=2: 2, 1 (graded counts once)
    net(a)
    assert activity.step_counts() == {"0": activity.step_counts()["0"]}
    assert activity.step_counts()["0"].tolist() == [2, 0, 3]
    net(b)  # a shorter run adds up step by step
    assert activity.step_counts()["0"].tolist() == [4, 1, 3]
    assert int(activity.step_counts()["0"].sum()) == activity.spikes()["0"] == 8
    activity.update({}, {}, {"0": torch.tensor([1.0, 0, 0, 2])})  # a longer one (floats rounded)
    assert activity.step_counts()["0"].tolist() == [5, 1, 3, 2]
    assert activity.step_counts()["0"].dtype == torch.int64
    with pytest.raises(ValueError, match=r"one count per step \[T\]"):
        activity.update({}, {}, {"0": torch.zeros(2, 2)})
    activity.reset()
    assert activity.step_counts() == {}
    activity.close()


def test_integer_histogram_and_weights(tmp_path):
    net = snn.Sequential(snn.Linear(4, 3), snn.LIF(beta=0.5), snn.Linear(3, 2, bias=False), snn.LI())
    plain = torch.nn.Sequential(torch.nn.Linear(2, 5))
    with TensorBoardLogger(tmp_path) as board:
        assert board.log_integer_histogram("h", [0, 3, 0, 1], 2) is True
        assert board.log_integer_histogram("empty", [0, 0], 2) is False
        assert board.log_weights(1, net) == ["weights/0.weight", "weights/0.bias", "weights/2.weight"]
        assert board.log_weights(3, plain, prefix="ann") == ["ann/0.weight", "ann/0.bias"]
        with pytest.raises(TypeError, match="torch.nn.Module"):
            board.log_weights(0, {"w": torch.ones(2)})
    acc = _read(tmp_path)
    (event,) = acc.Histograms("h")
    h = event.histogram_value
    assert (event.step, h.num, h.min, h.max, h.sum, h.sum_squares) == (2, 4, 1.0, 3.0, 6.0, 12.0)
    assert list(h.bucket) == [0, 3, 0, 1]
    assert "empty" not in acc.Tags()["histograms"]
    for tag, weight, step in (
        ("weights/0.weight", net[0].module.weight, 1), ("weights/0.bias", net[0].module.bias, 1),
        ("weights/2.weight", net[2].module.weight, 1), ("ann/0.weight", plain[0].weight, 3),
    ):
        _check_weight_histogram(acc, tag, weight, [step])


def _check_weight_histogram(acc: EventAccumulator, tag: str, weight: torch.Tensor, steps: list[int]) -> None:
    """The histograms of ``tag`` are at ``steps``; the last one describes ``weight``."""
    events = acc.Histograms(tag)
    assert [e.step for e in events] == steps, tag
    h = events[-1].histogram_value
    w = weight.detach().double()
    assert h.num == w.numel() and sum(h.bucket) == w.numel(), tag
    assert (h.min, h.max) == (float(w.min()), float(w.max())), tag
    assert h.sum == pytest.approx(float(w.sum()), abs=1e-5), tag
    assert h.sum_squares == pytest.approx(float((w**2).sum()), rel=1e-6), tag


def _f32(value: float) -> float:
    return float(np.float32(value))


# -------------------------------------------------------------------- whole runs, read back


def _cli(*args: str) -> None:
    from click.testing import CliRunner

    from spikeflow.cli import main

    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output


def test_training_run_logs_rates_histograms_weights_and_accuracy(tmp_path):
    import json

    from spikeflow.train import TrainConfig, build_model, load_checkpoint

    out, summary_path = tmp_path / "run", tmp_path / "summary.json"
    _cli("train", "--preset", "digits-mlp", "--epochs", "2", "--hidden", "32", "-T", "6", "--threads", "1",
         "-q", "--tensorboard", "--out", str(out), "--json", str(summary_path))
    summary = json.loads(summary_path.read_text())
    history = summary["history"]
    acc = _read(out / "tensorboard")
    tags = acc.Tags()

    # accuracies: the SNN's on the test set, and the training accuracy, every epoch
    assert _scalars(acc, "accuracy/snn") == [(r["epoch"], _f32(r["test_accuracy"])) for r in history]
    assert _scalars(acc, "train/train_accuracy") == [(r["epoch"], _f32(r["train_accuracy"])) for r in history]
    assert "accuracy/ann" not in tags["scalars"]
    # layer "1" (the LIF of Linear, LIF, Linear, LI): 32 neurons, 6 steps, 1438 training samples
    entries = 6 * 1438 * 32
    assert [s for s in tags["histograms"] if s.startswith("spike_")] == ["spike_counts/1", "spike_times/1"]
    counts, times, rates = acc.Histograms("spike_counts/1"), acc.Histograms("spike_times/1"), acc.Scalars("firing_rate/1")
    assert [e.step for e in counts] == [e.step for e in times] == [e.step for e in rates] == [1, 2]
    for record, count, time_, rate in zip(history, counts, times, rates):
        c, t = count.histogram_value, time_.histogram_value
        assert c.num == 32  # one value per hidden neuron
        assert 0 < c.sum < entries and c.sum == int(c.sum)  # integer spike counts
        assert t.num == c.sum  # every spike of the epoch has one time
        assert len(t.bucket) == 6 and 0 <= t.min <= t.max <= 5
        assert rate.value == _f32(record["firing_rate"])
        assert rate.value == pytest.approx(c.sum / entries, rel=1e-6)
    # weights: every parameter, every epoch; the last epoch's are the saved model's
    config = TrainConfig(**summary["config"])
    model = build_model(config)
    model.load_state_dict(load_checkpoint(out / "last.pt")["model"])
    weights = {f"weights/{i}.{p}": getattr(model[i].module, p) for i in (0, 2) for p in ("weight", "bias")}
    assert sorted(t for t in tags["histograms"] if t.startswith("weights/")) == sorted(weights)
    for tag, weight in weights.items():
        _check_weight_histogram(acc, tag, weight, [1, 2])


def test_ann_training_run_logs_the_ann_accuracy_and_weights(tmp_path):
    from spikeflow.train import TrainConfig, train

    summary = train(TrainConfig(preset="digits-mlp", ann=True, epochs=1, hidden=32, threads=1, quiet=True,
                                tensorboard=True, out=str(tmp_path / "ann")))
    acc = _read(tmp_path / "ann" / "tensorboard")
    tags = acc.Tags()
    assert _scalars(acc, "accuracy/ann") == [(1, _f32(summary["test_accuracy"]))]
    assert "accuracy/snn" not in tags["scalars"]
    assert not [t for t in tags["scalars"] + tags["histograms"] if t.startswith(("firing_rate/", "spike_"))]
    assert sorted(tags["histograms"]) == ["weights/0.bias", "weights/0.weight", "weights/2.bias", "weights/2.weight"]


def test_two_process_training_logs_the_spike_times_of_both_ranks(tmp_path):
    """Under torchrun the counts are summed over the ranks (all_reduce_activity
    resets the monitor); the spike times must be summed too, not lost."""
    import socket
    import subprocess

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
        "--master_port", str(port), "-m", "spikeflow.cli", "train", "--hidden", "16", "-T", "4",
        "--epochs", "1", "--batch-size", "32", "--threads", "1", "-q", "--tensorboard", "--out", str(tmp_path / "ddp"),
    ]
    result = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    acc = _read(tmp_path / "ddp" / "tensorboard")
    (count,), (time_,) = acc.Histograms("spike_counts/1"), acc.Histograms("spike_times/1")
    entries = 4 * 1438 * 16  # both ranks' samples
    (rate,) = acc.Scalars("firing_rate/1")
    assert count.histogram_value.num == 16
    assert time_.histogram_value.num == count.histogram_value.sum > 0
    assert rate.value == pytest.approx(count.histogram_value.sum / entries, rel=1e-6)


def test_conversion_run_logs_rates_histograms_weights_and_accuracies(tmp_path):
    import json

    from spikeflow.convert import SpikingNetwork
    from spikeflow.convert.ann import load_ann
    from spikeflow.convert.presets import build_ann

    out, summary_path = tmp_path / "run", tmp_path / "summary.json"
    _cli("convert", "--preset", "seed002", "--epochs", "1", "--timesteps", "4,8", "--test-samples", "100",
         "--calibration-samples", "200", "--threads", "1", "--quiet", "--no-plot", "--tensorboard",
         "--out", str(out), "--json", str(summary_path))
    summary = json.loads(summary_path.read_text())
    acc = _read(out / "tensorboard")
    tags = acc.Tags()

    assert _scalars(acc, "accuracy/snn") == [(t, _f32(summary["snn_accuracy"][str(t)])) for t in (4, 8)]
    assert _scalars(acc, "accuracy/ann") == [(t, _f32(summary["ann_accuracy"])) for t in (4, 8)]
    layers = summary["neurons"]
    assert [layer["name"] for layer in layers] == ["1", "5", "7", "9"]  # seed 002's four spiking layers
    assert sum(layer["total_spikes"] for layer in layers) > 0
    for layer in layers:
        name, total = layer["name"], layer["total_spikes"]
        assert _scalars(acc, f"firing_rate/{name}") == [(8, _f32(layer["firing_rate"]))]
        assert layer["firing_rate"] == pytest.approx(total / (100 * layer["neurons"] * 8))
        (event,) = acc.Histograms(f"spike_counts/{name}")
        c = event.histogram_value  # one value per (sample, neuron)
        assert (event.step, c.num, c.sum) == (8, 100 * layer["neurons"], total)
        assert list(c.bucket) == layer["count_histogram"] and c.max == layer["max_spikes"]
        if total == 0:
            assert f"spike_times/{name}" not in tags["histograms"]
            continue
        (event,) = acc.Histograms(f"spike_times/{name}")
        t = event.histogram_value  # one value per spike: its step
        assert (event.step, t.num) == (8, total)
        assert list(t.bucket) == layer["spikes_per_step"] and len(t.bucket) == 8
        assert t.sum == sum(k * n for k, n in enumerate(layer["spikes_per_step"]))

    ann, _ = load_ann(out / "ann.pt", lambda preset, input_shape, classes, **_: build_ann(preset, input_shape, classes))
    snn_net = SpikingNetwork.load(out / "snn.pt")
    ann_weights = {f"weights/ann/{n}": p for n, p in ann.named_parameters()}
    snn_weights = {
        f"weights/snn/{n}.{p}": getattr(m.module, p)
        for n, m in snn_net.named_layers() if hasattr(m, "module") for p in ("weight", "bias")
        if getattr(m.module, p, None) is not None
    }
    assert len([t for t in snn_weights if t.endswith(".weight")]) == 5  # the conv and the four linear layers
    assert set(ann_weights) | set(snn_weights) <= set(tags["histograms"])
    assert {t.replace("/snn/", "/ann/") for t in snn_weights} == set(ann_weights)
    for tag, weight in {**ann_weights, **snn_weights}.items():
        _check_weight_histogram(acc, tag, weight, [0])


def test_conversion_of_an_onnx_model_logs_its_weights(tmp_path):
    """An ONNX ANN is a LayerGraph, not a torch module: its weights are logged too."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    generator = torch.Generator().manual_seed(0)
    w1, b1 = torch.randn(16, 64, generator=generator) * 0.2, torch.randn(16, generator=generator) * 0.1
    w2, b2 = torch.randn(10, 16, generator=generator) * 0.3, torch.zeros(10)
    inits = [numpy_helper.from_array(t.numpy(), name) for name, t in (("w1", w1), ("b1", b1), ("w2", w2), ("b2", b2))]
    nodes = [
        helper.make_node("Flatten", ["x"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "w1", "b1"], ["h"], name="fc1", transB=1),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], name="fc2", transB=1),
    ]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], initializer=inits)
    path = tmp_path / "mlp.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))

    _cli("convert", str(path), "--timesteps", "4", "--test-samples", "20", "--calibration-samples", "50",
         "--threads", "1", "--quiet", "--no-plot", "--tensorboard", "--out", str(tmp_path / "run"))
    acc = _read(tmp_path / "run" / "tensorboard")
    ann_tags = sorted(t for t in acc.Tags()["histograms"] if t.startswith("weights/ann/"))
    assert ann_tags == ["weights/ann/fc1.bias", "weights/ann/fc1.weight", "weights/ann/fc2.bias", "weights/ann/fc2.weight"]
    for tag, weight in (("fc1.weight", w1), ("fc1.bias", b1), ("fc2.weight", w2), ("fc2.bias", b2)):
        _check_weight_histogram(acc, f"weights/ann/{tag}", weight, [0])


def test_a_resumed_run_hides_the_epochs_the_stopped_run_logged_after_its_checkpoint(tmp_path):
    import json
    import shutil
    import time

    out = tmp_path / "run"
    common = ["--preset", "digits-mlp", "--hidden", "16", "-T", "4", "--threads", "1", "-q", "--tensorboard",
              "--out", str(out)]
    _cli("train", "--epochs", "3", *common)
    # as if the process died after logging epoch 3 but before its last.pt landed:
    # last.pt is epoch 2's checkpoint again, the events of epoch 3 are already written
    shutil.copyfile(out / "last.prev.pt", out / "last.pt")
    # TensorBoard reads event files in name order: time (in seconds), host, pid, a per-process
    # counter. Two runs in one process within a second could sort by that counter as text
    # ("10" < "9"); a real resume is a new process, seconds later.
    time.sleep(1.1)
    _cli("train", "--epochs", "3", "--resume", "--json", str(tmp_path / "s.json"), *common)
    history = json.loads((tmp_path / "s.json").read_text())["history"]
    acc = _read(out / "tensorboard")
    assert _scalars(acc, "accuracy/snn") == [(r["epoch"], _f32(r["test_accuracy"])) for r in history]
    assert [e.step for e in acc.Histograms("spike_counts/1")] == [1, 2, 3]
