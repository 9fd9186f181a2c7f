"""Crossbars in training, conversion and sweeps, from the API and the command line."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from spikeflow.cli import main
from spikeflow.hardware import CrossbarConfig, CrossbarLinear, HardwareSpec, to_crossbar
from spikeflow.hardware.sweep import SweepResult, parse_sweep, sweep
from spikeflow.train import TrainConfig


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_train_config_takes_a_hardware_file_or_dict(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("levels: 8\nhardware_aware: true\n")
    config = TrainConfig(hardware=str(path))
    assert config.hardware["levels"] == 8 and config.hardware["hardware_aware"] is True
    assert config.hardware["layers"] == "last"
    assert TrainConfig.from_dict(config.to_dict()) == config  # stored whole (checkpoints, resume)
    with pytest.raises(ValueError, match="unknown crossbar setting"):
        TrainConfig(hardware={"levls": 8})


def test_train_on_the_crossbar_reports_device_and_ideal_accuracy(tmp_path):
    hardware = tmp_path / "x.yaml"
    hardware.write_text("levels: 2\nprogram_noise: 0.3\nlayers: all\n")
    summary_path = tmp_path / "s.json"
    result = run("train", "--epochs", "2", "--quiet", "--out", str(tmp_path / "run"), "--hardware", str(hardware),
                 "--json", str(summary_path))
    assert result.exit_code == 0, result.output
    assert "on the crossbar:" in result.output
    summary = json.loads(summary_path.read_text())
    # two levels and 30 % variation on every layer cost accuracy against the ideal layers
    assert summary["ideal_test_accuracy"] > 0.5
    assert summary["test_accuracy"] < summary["ideal_test_accuracy"]
    assert summary["config"]["hardware"]["levels"] == 2


def small_classifier():
    torch.manual_seed(0)
    x = torch.randn(400, 10)
    y = (x[:, :3].sum(1) > 0).long()
    model = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(200):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model, x, y


def test_sweep_measures_accuracy_against_a_setting():
    model, x, y = small_classifier()
    with torch.no_grad():
        ideal = (model(x).argmax(1) == y).float().mean().item()
    to_crossbar(model, HardwareSpec(CrossbarConfig(), "all"))

    def accuracy(m):
        with torch.no_grad():
            return (m(x).argmax(1) == y).float().mean().item()

    result = sweep(model, accuracy, CrossbarConfig(), "program_noise", [0.0, 0.5], repeats=3)
    assert result.parameter == "program_noise" and len(result.accuracy) == 2 and len(result.accuracy[0]) == 3
    assert result.accuracy[0] == [pytest.approx(ideal)] * 3  # no noise: the ideal network on every device
    assert result.std[0] == pytest.approx(0.0)
    assert result.mean[1] < result.mean[0] - 0.05  # 50 % variation hurts
    assert len(set(result.accuracy[1])) > 1  # and differs from device to device
    assert SweepResult(**result.to_dict()).to_dict() == result.to_dict()


def test_parse_sweep():
    assert parse_sweep("program_noise=0,0.05") == ("program_noise", [0.0, 0.05])
    assert parse_sweep("levels=4,16,none") == ("levels", [4, 16, None])
    assert parse_sweep("adc-bits=4") == ("adc_bits", [4])
    with pytest.raises(ValueError, match="NAME one of"):
        parse_sweep("noise=0.1")
    with pytest.raises(ValueError, match="not a valid int"):
        parse_sweep("levels=4.5")
    with pytest.raises(ValueError, match="levels must be an integer >= 2"):
        parse_sweep("levels=1")


def test_crossbar_command_trains_both_networks_and_sweeps(tmp_path):
    summary_path = tmp_path / "s.json"
    result = run("crossbar", "--epochs", "1", "--repeats", "2", "--sweep", "levels=2,none", "--quiet",
                 "--out", str(tmp_path / "run"), "--json", str(summary_path))
    assert result.exit_code == 0, result.output
    summary = json.loads(summary_path.read_text())
    assert summary["preset"] == "randman" and summary["hardware"]["levels"] == 16
    for name in ("ordinary", "hardware_aware"):
        net = summary["networks"][name]
        assert len(net["device_accuracy"]) == 2
        assert net["sweeps"]["levels"]["values"] == [2, None]
    assert (tmp_path / "run" / "sweep_levels.png").stat().st_size > 1000
    assert (tmp_path / "run" / "hardware_aware" / "last.pt").exists()
    bad = run("crossbar", "--sweep", "nosuch=1", "--quiet")
    assert bad.exit_code != 0 and "NAME one of" in bad.output


def test_convert_on_an_ideal_device_matches_the_plain_conversion(tmp_path):
    hardware = tmp_path / "ideal.yaml"
    hardware.write_text("layers: all\n")
    fast = ["--epochs", "2", "--quiet", "--test-samples", "60", "--no-plot", "--timesteps", "8,16"]
    plain, device = tmp_path / "plain.json", tmp_path / "device.json"
    assert run("convert", *fast, "--out", str(tmp_path / "a"), "--json", str(plain)).exit_code == 0
    result = run("convert", *fast, "--out", str(tmp_path / "b"), "--json", str(device), "--hardware", str(hardware))
    assert result.exit_code == 0, result.output
    a, b = json.loads(plain.read_text()), json.loads(device.read_text())
    assert b["snn_accuracy"] == a["snn_accuracy"]
    assert b["snn_info"]["hardware"]["placed"][0].startswith("layers.")
    # the saved network keeps the ideal layers and loads as usual
    from spikeflow.convert import SpikingNetwork

    net = SpikingNetwork.load(tmp_path / "b" / "snn.pt")
    assert not any(isinstance(m, CrossbarLinear) for m in net.modules())
    aware = tmp_path / "aware.yaml"
    aware.write_text("hardware_aware: true\n")
    refused = run("convert", *fast, "--hardware", str(aware))
    assert refused.exit_code != 0 and "hardware_aware training is for spikeflow train" in refused.output


def test_accuracy_vs_nonideality_plot(tmp_path):
    pytest.importorskip("matplotlib")
    from spikeflow.plot import accuracy_vs_nonideality

    curves = {
        "ordinary": SweepResult("levels", [2, 8, None], [[0.6, 0.7], [0.9, 0.92], [0.95, 0.95]]),
        "hardware_aware": SweepResult("levels", [2, 8, None], [[0.8, 0.85], [0.94, 0.94], [0.95, 0.95]]),
    }
    path = accuracy_vs_nonideality(curves, tmp_path / "sweep.png")
    import matplotlib.image

    image = matplotlib.image.imread(path)
    assert image.shape[:2] == (480, 720)  # 6 x 4 inches at 120 dpi
    with pytest.raises(ValueError, match="different settings"):
        accuracy_vs_nonideality({"a": curves["ordinary"], "b": SweepResult("read_noise", [0.1], [[0.5]])},
                                tmp_path / "x.png")
