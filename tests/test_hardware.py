"""Memristive crossbar simulation: the device model, the layers, placement, and
hardware-aware training (spikeflow.hardware)."""

from __future__ import annotations

import math

import pytest
import torch

from spikeflow import nn as snn
from spikeflow.hardware import (
    CrossbarConfig,
    CrossbarConv2d,
    CrossbarLinear,
    HardwareSpec,
    ideal_crossbars,
    load_hardware,
    program_conductances,
    quantize_uniform,
    read_conductances,
    to_crossbar,
)

G_MIN, G_MAX = 1e-6, 1e-4
WINDOW = G_MAX - G_MIN


def linear(config: CrossbarConfig, n_in: int = 20, n_out: int = 7, seed: int = 0) -> tuple[torch.nn.Linear, CrossbarLinear]:
    torch.manual_seed(seed)
    ideal = torch.nn.Linear(n_in, n_out)
    return ideal, CrossbarLinear.from_linear(ideal, config).eval()


# -- an ideal device is the ideal layer -----------------------------------------------------
def test_ideal_crossbar_equals_its_layer_to_float_precision():
    ideal, layer = linear(CrossbarConfig())
    x = torch.randn(32, 20)
    torch.testing.assert_close(layer(x), ideal(x), rtol=1e-6, atol=1e-6)
    torch.manual_seed(1)
    conv = torch.nn.Conv2d(3, 5, 3, padding=1, stride=2)
    bar = CrossbarConv2d.from_conv(conv, CrossbarConfig()).eval()
    image = torch.randn(4, 3, 9, 9)
    torch.testing.assert_close(bar(image), conv(image), rtol=1e-6, atol=1e-6)
    # hardware-aware training on an ideal device is ordinary training too
    aware = CrossbarLinear.from_linear(ideal, CrossbarConfig(), hardware_aware=True).train()
    torch.testing.assert_close(aware(x), ideal(x), rtol=1e-6, atol=1e-6)


def test_weight_mapping_by_hand():
    """w_max = 2: w = 1 -> G+ = g_min + 0.5 window, G- = g_min; w = -2 -> G- = g_max."""
    w = torch.tensor([[1.0, -2.0, 0.0]])
    g_plus, g_minus, w_max = program_conductances(w, CrossbarConfig(g_min=G_MIN, g_max=G_MAX))
    assert w_max.item() == 2.0
    torch.testing.assert_close(g_plus, torch.tensor([[G_MIN + 0.5 * WINDOW, G_MIN, G_MIN]]))
    torch.testing.assert_close(g_minus, torch.tensor([[G_MIN, G_MAX, G_MIN]]))


# -- levels, noise, faults, drift, IR drop ---------------------------------------------------
@pytest.mark.parametrize("levels", [2, 3, 16])
def test_k_levels_give_at_most_k_conductances_per_device(levels):
    w = torch.rand(50, 60, generator=torch.Generator().manual_seed(0)) * 2 - 1
    g_plus, g_minus, _ = program_conductances(w, CrossbarConfig(levels=levels))
    allowed = G_MIN + torch.arange(levels, dtype=torch.float64) * WINDOW / (levels - 1)
    for g in (g_plus, g_minus):
        values = torch.unique(g).double()
        assert len(values) <= levels
        assert torch.isclose(values.view(-1, 1), allowed.view(1, -1), rtol=1e-6, atol=0).any(1).all()
    assert len(torch.unique(g_plus)) == levels  # and all of them are used by random weights


def test_programming_variation_has_the_configured_std():
    w = torch.full((400, 500), 0.5)
    w[0, 0] = 1.0  # w_max = 1: every other device targets the middle of the window
    g_plus, g_minus, _ = program_conductances(w, CrossbarConfig(program_noise=0.05), torch.Generator().manual_seed(0))
    relative = (g_plus.flatten()[1:].double() - (G_MIN + 0.5 * WINDOW)) / WINDOW
    # 2e5 draws: the sample std is within 1 % of sigma with overwhelming probability
    assert relative.std().item() == pytest.approx(0.05, rel=0.01)
    assert abs(relative.mean().item()) < 4 * 0.05 / math.sqrt(relative.numel())
    # devices at g_min are clipped into the window: never below it
    assert g_minus.min().item() >= torch.tensor(G_MIN).item()  # (g_min in float32)


def test_read_noise_has_the_configured_std_and_keeps_the_programmed_state():
    ideal, layer = linear(CrossbarConfig(read_noise=0.03, seed=5), n_in=300, n_out=200)
    layer.program()
    g_plus = layer.g_plus.clone()
    read, _ = read_conductances(layer.g_plus, layer.g_minus, layer.config, torch.Generator().manual_seed(1))
    ratio = (read / layer.g_plus).flatten().double() - 1
    assert ratio.std().item() == pytest.approx(0.03, rel=0.02)
    x = torch.randn(4, 300)
    first, second = layer(x), layer(x)
    assert not torch.equal(first, second)  # fresh read noise at every read
    assert torch.equal(layer.g_plus, g_plus)  # ... of the same programmed device


@pytest.mark.parametrize("stuck_off, stuck_on", [(0.02, 0.0), (0.0, 0.05), (0.1, 0.03)])
def test_fault_rates_match_within_sampling_error(stuck_off, stuck_on):
    w = torch.full((300, 400), 0.5)
    w[0, 0] = 1.0
    config = CrossbarConfig(stuck_off=stuck_off, stuck_on=stuck_on)
    g_plus, g_minus, _ = program_conductances(w, config, torch.Generator().manual_seed(2))
    g_plus, g_minus = g_plus.flatten()[1:], g_minus.flatten()[1:]  # the first pair holds w_max
    n = g_plus.numel()

    def within(observed: float, p: float) -> bool:
        return abs(observed - p) <= 4 * math.sqrt(p * (1 - p) / n) + 1 / n

    # G+ targets the middle: g_min means stuck off, g_max stuck on; G- targets g_min
    assert within((g_plus == G_MIN).float().mean().item(), stuck_off)
    assert within((g_plus == G_MAX).float().mean().item(), stuck_on)
    assert within((g_minus == G_MAX).float().mean().item(), stuck_on)


def test_drift_follows_the_power_law():
    config = CrossbarConfig(drift_nu=0.05, drift_t0=1.0, drift_time=3600.0)
    g = torch.tensor([[5e-5, 1e-6]])
    read, _ = read_conductances(g, g, config)
    torch.testing.assert_close(read, g * 3600.0 ** -0.05)


def test_ir_drop_by_hand():
    """2 inputs x 2 outputs, r_wire = 1000 ohm: the device on row i, column j sits
    behind r (j + 1 + 2 - i)."""
    config = CrossbarConfig(r_wire=1000.0)
    g = torch.full((2, 2), 1e-4)  # [out j, in i]
    read, _ = read_conductances(g, g, config)
    wire = torch.tensor([[3.0, 2.0], [4.0, 3.0]]) * 1000.0
    torch.testing.assert_close(read, 1e-4 / (1 + 1e-4 * wire))


def test_converters_by_hand():
    x = torch.tensor([0.0, 0.1, 0.49, 0.51, 1.0, 2.0])
    # 2 bits unsigned over [0, 1]: levels 0, 1/3, 2/3, 1 (2.0 clips)
    assert quantize_uniform(x, 2, 1.0).tolist() == pytest.approx([0, 0, 1 / 3, 2 / 3, 1, 1])
    # 3 bits signed over [-1, 1]: steps of 1/3
    signed = torch.tensor([-1.2, -0.5, 0.1, 0.2, 0.9])
    assert quantize_uniform(signed, 3, 1.0).tolist() == pytest.approx([-1, -2 / 3, 0, 1 / 3, 1])
    # dynamic range: the tensor's largest magnitude is full scale
    assert quantize_uniform(torch.tensor([0.0, 1.0, 4.0]), 2, None).tolist() == pytest.approx([0, 4 / 3, 4])
    spikes = (torch.rand(100) < 0.3).float()
    assert torch.equal(quantize_uniform(spikes, 1, None), spikes)  # spikes pass any DAC


def test_adc_and_dac_in_the_layer():
    ideal, layer = linear(CrossbarConfig(adc_bits=4, output_range=2.0))
    x = torch.randn(16, 20)
    y = layer(x) - ideal.bias  # the ADC sees the crossbar's output, the bias is digital
    step = 2.0 / (2 ** 3 - 1)
    codes = y / step
    torch.testing.assert_close(codes, torch.round(codes), atol=1e-4, rtol=0)
    assert y.abs().max().item() <= 2.0 + 1e-6


# -- device state, determinism --------------------------------------------------------------
def test_programming_is_deterministic_and_follows_weight_changes():
    config = CrossbarConfig(levels=8, program_noise=0.05, stuck_off=0.01, seed=3)
    _, a = linear(config)
    _, b = linear(config)
    x = torch.randn(5, 20)
    assert torch.equal(a(x), b(x))  # same seed, same weights: the same device
    other = CrossbarLinear.from_linear(a, config.replace(seed=4)).eval()
    assert not torch.equal(other(x), a(x))
    before = a.g_plus.clone()
    assert a.programmed
    with torch.no_grad():
        a.weight.add_(0.1 * torch.randn_like(a.weight))  # (a uniform scaling would map to the same conductances)
    assert not a.programmed  # the weights changed: the next read reprograms
    a(x)
    assert a.programmed and not torch.equal(a.g_plus, before)


def test_hardware_aware_training_injects_noise_with_straight_through_gradients():
    config = CrossbarConfig(levels=4, program_noise=0.1)
    ideal, layer = linear(config)
    layer = CrossbarLinear.from_linear(ideal, config, hardware_aware=True).train()
    x = torch.randn(8, 20)
    torch.manual_seed(0)
    first = layer(x)
    second = layer(x)
    assert not torch.equal(first, second)  # a fresh device every forward
    assert (first - ideal(x)).abs().max() > 1e-3
    # straight through: for a linear layer dL/dW = dL/dy^T x, whatever the noisy weights
    y = layer(x)
    grad_y = torch.randn_like(y)
    y.backward(grad_y)
    torch.testing.assert_close(layer.weight.grad, grad_y.T @ x)
    torch.testing.assert_close(layer.bias.grad, grad_y.sum(0))
    # ordinary training of the same layer sees no device
    plain = CrossbarLinear.from_linear(ideal, config, hardware_aware=False).train()
    torch.testing.assert_close(plain(x), ideal(x))
    with ideal_crossbars(layer):
        layer.eval()
        torch.testing.assert_close(layer(x), ideal(x))


# -- placement and files ---------------------------------------------------------------------
def test_to_crossbar_places_the_last_all_or_named_layers():
    def net():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten(), torch.nn.Linear(18, 4),
                                   torch.nn.ReLU(), torch.nn.Linear(4, 2))

    model = net()
    state = model.state_dict()
    assert to_crossbar(model, CrossbarConfig()) == ["4"]
    assert isinstance(model[4], CrossbarLinear) and type(model[2]) is torch.nn.Linear
    assert model.state_dict().keys() == state.keys()  # plain checkpoints still load
    model.load_state_dict(state)
    model = net()
    assert to_crossbar(model, HardwareSpec(CrossbarConfig(), "all")) == ["0", "2", "4"]
    assert isinstance(model[0], CrossbarConv2d)
    assert [m.device_index for m in (model[0], model[2], model[4])] == [0, 1, 2]
    model = net()
    assert to_crossbar(model, HardwareSpec(CrossbarConfig(), ["2"])) == ["2"]
    with pytest.raises(ValueError, match=r"no Linear or Conv2d layer named \['9'\].*\['0', '2', '4'\]"):
        to_crossbar(net(), HardwareSpec(CrossbarConfig(), ["9"]))
    with pytest.raises(ValueError, match="no Linear or Conv2d layer"):
        to_crossbar(torch.nn.Sequential(torch.nn.ReLU()))


def test_seed003_readout_on_the_crossbar():
    """Seed 003 puts its last weights on the crossbar: inside spikeflow's
    TimeDistributed layers, the last Linear is the one replaced."""
    from spikeflow.train import TrainConfig
    from spikeflow.train.models import build_seed003

    model = build_seed003(TrainConfig(preset="seed003"))
    placed = to_crossbar(model, CrossbarConfig(levels=16, program_noise=0.05))
    assert placed == ["layers.2.module"]
    x = (torch.rand(100, 3, 16) < 0.05).float()
    model.eval()
    out, _ = model(x)
    assert out.shape == (100, 3, 2)


def test_hardware_files(tmp_path):
    path = tmp_path / "xbar.yaml"
    path.write_text("layers: all\nhardware_aware: true\nlevels: 16\nprogram_noise: 0.05\n")
    spec = load_hardware(path)
    assert spec.layers == "all" and spec.hardware_aware and spec.crossbar.levels == 16
    assert HardwareSpec.from_dict(spec.to_dict()) == spec
    (tmp_path / "bad.yaml").write_text("levels: 16\nnoise: 0.05\n")
    with pytest.raises(ValueError, match=r"bad.yaml.*unknown crossbar setting\(s\) \['noise'\]"):
        load_hardware(tmp_path / "bad.yaml")
    (tmp_path / "range.json").write_text('{"stuck_off": 1.5}')
    with pytest.raises(ValueError, match=r"range.json.*stuck_off must be <= 1"):
        load_hardware(tmp_path / "range.json")
    with pytest.raises(FileNotFoundError):
        load_hardware(tmp_path / "missing.yaml")


@pytest.mark.parametrize("changes, message", [
    (dict(g_min=1e-4, g_max=1e-6), "g_min must be below g_max"),
    (dict(levels=1), "levels must be an integer >= 2"),
    (dict(program_noise=-0.1), "program_noise must be >= 0"),
    (dict(stuck_off=0.6, stuck_on=0.6), "stuck_off \\+ stuck_on must be <= 1"),
    (dict(adc_bits=0), "adc_bits must be an integer from 1 to 24"),
    (dict(drift_time=0.0), "drift_time must be > 0"),
    (dict(read_noise=float("nan")), "read_noise must be finite"),
])
def test_bad_device_settings_are_named(changes, message):
    with pytest.raises(ValueError, match=message):
        CrossbarConfig(**changes)
