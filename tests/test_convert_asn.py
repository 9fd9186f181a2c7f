"""ASN coding (Zambrano et al. 2018, seed 000): the measured transfer function and
the adaptive spiking network that replaces an ANN trained with it."""

from __future__ import annotations

import json
import math

import pytest
import torch
from click.testing import CliRunner

from spikeflow import nn as snn
from spikeflow.cli import main
from spikeflow.convert import ASNActivation, ConversionError, SpikingNetwork, asn_model, convert, simulate
from spikeflow.neurons.asn import ASNParams, ASNState, asn_step


def steady_rate(params: ASNParams, current: torch.Tensor, warmup: int = 1000, steps: int = 4000) -> torch.Tensor:
    """The ASN's mean spikes per step for constant currents, from the reference step
    function run one step at a time (independent of the measured table)."""
    p = ASNParams(**{**params.__dict__, "input": "current"})
    zeros = torch.zeros_like(current, dtype=torch.float64)
    state = ASNState(zeros, zeros, zeros, zeros)
    x = current.to(torch.float64)
    total = torch.zeros_like(x)
    with torch.no_grad():
        for t in range(warmup + steps):
            z, state = asn_step(p, state, x)
            if t >= warmup:
                total += z
    return total / steps


def test_transfer_function_matches_the_neuron_between_grid_points():
    act = ASNActivation(h=1.0)  # f = spikes per step
    # currents off the measured grid, from the firing onset to deep saturation
    s = torch.tensor([0.0523, 0.0871, 0.1337, 0.377, 0.911, 2.71, 13.3, 61.0, 447.0])
    expected = steady_rate(act.params, s)
    assert act(s).double() == pytest.approx(expected, abs=4e-3)


def test_transfer_function_onset_saturation_and_monotonicity():
    p = ASNParams()
    act = ASNActivation(h=1.0)
    # the first spike needs S > theta0 / 2; below it the output is exactly 0
    below = torch.tensor([-3.0, 0.0, 0.049])
    assert act(below).tolist() == [0.0, 0.0, 0.0]
    assert act(torch.tensor([0.06])).item() > 0
    # saturation: firing at rate r, the threshold's mean-field fixed point
    # theta = theta0 / (1 - m_f d_gamma r / (1 - d_gamma)) diverges at
    # r* = (1 - d_gamma) / (m_f d_gamma), so the rate never exceeds about r*
    r_star = (1 - p.d_gamma) / (p.m_f * p.d_gamma)
    top = act(torch.tensor([1e3, 1e6])).tolist()
    assert top[0] == pytest.approx(r_star, abs=0.02)
    assert top[1] == top[0]  # constant beyond the table (1e4 theta0)
    grid = torch.linspace(-1, 2000, 20001)
    assert (torch.diff(act(grid)) >= 0).all()


def test_transfer_function_scales_with_h_and_follows_the_parameters():
    s = torch.tensor([0.2, 1.0, 5.0])
    assert ASNActivation(h=2.5)(s) == pytest.approx(2.5 * ASNActivation(h=1.0)(s), rel=1e-6)
    slow = ASNActivation(m_f=0.2, tau_gamma=30.0, h=1.0)  # stronger adaptation: lower rates
    assert (slow(s) < ASNActivation(h=1.0)(s)).all()
    assert slow(s).double() == pytest.approx(steady_rate(slow.params, s), abs=4e-3)


def test_transfer_function_gradient_is_the_local_slope():
    act = ASNActivation()
    s = torch.tensor([0.03, 0.3023, 3.013, 30.11, 5e6], requires_grad=True)
    act(s).sum().backward()
    eps = 1e-4  # inside one linear piece (the grid spacing is 5e-3 theta0 at the smallest)
    with torch.no_grad():
        d = s.double()
        numeric = ((act(d + eps) - act(d - eps)) / (2 * eps)).float()
    assert s.grad[:4] == pytest.approx(numeric[:4], rel=1e-3, abs=1e-5)
    assert s.grad[0] == 0 and s.grad[4] == 0  # below the onset and beyond the table


def test_spike_input_synapse_equals_filtered_current():
    """The converted form, ASN(spikes) fed (1 - d_beta)(W z + b), is the seed's
    spike-input ASN, and equals an ASN(current) fed W EMA(z) + b with the unit-gain
    filter EMA(z)[t] = d_beta EMA(z)[t-1] + (1 - d_beta) z[t], except that its bias
    ramps in as b (1 - d_beta^t) from a resting synapse."""
    torch.manual_seed(3)
    d = ASNParams().d_beta
    z = (torch.rand(300, 4, 12) < 0.3).double()
    w, b = torch.randn(7, 12, dtype=torch.float64), torch.randn(7, dtype=torch.float64)
    ema, _ = snn.LI(beta=d, normalize=True, backend="reference").double()(z)
    spiking = snn.ASN(input="spikes", backend="reference").double()
    analog = snn.ASN(input="current", backend="reference").double()
    a, state_a = spiking((1 - d) * (z @ w.T))
    c, state_c = analog(ema @ w.T)
    assert torch.equal(a, c) and a.sum() > 100  # identical spikes, and plenty of them
    torch.testing.assert_close(state_a.i, state_c.i)
    # with a bias: the synaptic current is the filtered one less b d^t
    ramp = (1 - d ** torch.arange(1, 301, dtype=torch.float64)).view(-1, 1, 1)
    currents = spiking.record((1 - d) * (z @ w.T + b)).trajectory.i
    # (LI keeps beta as a float32 parameter: d_beta rounded to float32 there)
    torch.testing.assert_close(currents, ema @ w.T + b * ramp, rtol=1e-5, atol=1e-5)


def small_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = asn_model(torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
        torch.nn.Linear(4 * 3 * 3, 16), torch.nn.ReLU(), torch.nn.Linear(16, 5),
    ), h=1.0).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)  # currents well into the ASN's working range
    return model


def test_converted_network_settles_to_the_ann():
    model = small_model()
    x = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ann = model(x)
    net = convert(model, coding="asn")
    assert net.info["readout"] == "last" and net.info["coding"] == "asn"
    kinds = [type(m).__name__ for _, m in net.neurons()]
    assert kinds == ["ASN", "ASN", "LI"]
    modes = [m.neuron_params().input.value for _, m in net.neurons()[:2]]
    assert modes == ["current", "spikes"]  # the image is a current, deeper layers read spikes
    out = simulate(net, x, [50, 200, 800])
    error = {t: (o - ann).abs().mean().item() for t, o in out.items()}
    scale = ann.abs().mean().item()
    assert error[800] < 0.03 * scale and error[800] < error[200] < error[50]
    assert (out[800].argmax(1) == ann.argmax(1)).float().mean().item() >= 0.95


def test_asn_network_saves_and_loads(tmp_path):
    model = small_model(1)
    net = convert(model, coding="asn")
    net.save(tmp_path / "asn.pt")
    loaded = SpikingNetwork.load(tmp_path / "asn.pt")
    x = torch.rand(8, 1, 8, 8)
    assert torch.equal(simulate(net, x, 120)[120], simulate(loaded, x, 120)[120])
    assert loaded.info["readout"] == "last"


def test_asn_coding_errors():
    with pytest.raises(ConversionError, match="needs every activation to be an ASNActivation"):
        convert(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU(), torch.nn.Linear(2, 2)), coding="asn")
    with pytest.raises(ValueError, match="no torch.nn.ReLU modules"):
        asn_model(torch.nn.Sequential(torch.nn.Linear(2, 2)))
    with pytest.raises(ValueError, match="h .* must be > 0"):
        ASNActivation(h=0.0)
    with pytest.raises(ValueError, match="tau_phi"):
        ASNActivation(tau_phi=-1.0)


def test_cli_asn_coding_on_digits(tmp_path):
    summary_path = tmp_path / "s.json"
    result = CliRunner().invoke(main, [
        "convert", "--coding", "asn", "--epochs", "10", "--quiet", "--test-samples", "100", "--no-plot",
        "--timesteps", "100,300", "--out", str(tmp_path / "run"), "--json", str(summary_path),
    ])
    assert result.exit_code == 0, result.output
    summary = json.loads(summary_path.read_text())
    assert summary["snn_info"]["coding"] == "asn" and set(summary["snn_accuracy"]) == {"100", "300"}
    # the SNN follows its ANN: at 300 steps it agrees with the ANN on most digits
    assert summary["agreement"]["300"] >= 0.9
    assert math.isfinite(summary["ann_accuracy"]) and summary["ann_accuracy"] > 0.5
