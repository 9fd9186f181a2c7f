"""spikeflow.init: LSUV for spiking layers and fluctuation-driven initialisation.

The statistics are re-measured here independently of the implementation: the free
membrane is computed by the neuron's step equation written out in the test, from the
layer inputs that the network's own ``record`` returns.
"""

from __future__ import annotations

import math

import pytest
import torch

import spikeflow.nn as snn
from spikeflow import scan
from spikeflow.init import fluctuation_init_, lsuv_, psp_integrals
from spikeflow.neurons import CubaLIFParams, CubaLIFState, LIFParams, LIParams, cuba_lif_step


def spikes(shape, rate, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g) < rate).float()


def free_lif(z, beta):
    """h[t] = beta h[t-1] + z[t], from rest (LIF without reset)."""
    h, out = torch.zeros_like(z[0]), []
    for z_t in z:
        h = beta * h + z_t
        out.append(h)
    return torch.stack(out)


def free_cuba(z, alpha, beta):
    """i[t] = alpha i[t-1] + z[t]; h[t] = beta h[t-1] + i[t] (current_first, gain 1)."""
    i, h, out = torch.zeros_like(z[0]), torch.zeros_like(z[0]), []
    for z_t in z:
        i = alpha * i + z_t
        h = beta * h + i
        out.append(h)
    return torch.stack(out)


# ---- PSP kernel integrals --------------------------------------------------------


def impulse_response(params, steps=600):
    """The free membrane after a unit input at step 0, through spikeflow's own scan."""
    x = torch.zeros(steps, 1, 1, dtype=torch.float64)
    x[0] = 1.0
    if isinstance(params, LIParams):
        return scan(params, x, backend="reference").output[:, 0, 0]
    params = type(params)(**{**params.__dict__, "reset": "none", "threshold": 1e9})
    return scan(params, x, backend="reference", record=True).trajectory.v[:, 0, 0]


@pytest.mark.parametrize(
    "params",
    [
        LIFParams(beta=0.9),
        LIFParams(beta=0.5),
        LIParams(beta=0.8, normalize=True),
        CubaLIFParams(alpha=0.8, beta=0.9),
        CubaLIFParams(alpha=0.9, beta=0.9, gain=3.0, normalize=True),
        CubaLIFParams(alpha=0.6, beta=0.95, order="membrane_first"),
    ],
)
def test_psp_integrals_match_the_step_equations(params):
    eps = impulse_response(params)
    bar, hat = psp_integrals(params)
    assert bar == pytest.approx(float(eps.sum()), rel=1e-9)
    assert hat == pytest.approx(float((eps**2).sum()), rel=1e-9)


def test_psp_integrals_by_hand():
    # LIF beta = 1/2: eps = 2^-k -> bar = 2, hat = 4/3
    assert psp_integrals(LIFParams(beta=0.5)) == pytest.approx((2.0, 4.0 / 3.0))
    # CubaLIF alpha = beta = 1/2: eps[k] = (k+1) 2^-k -> bar = 4, hat = sum (k+1)^2 4^-k = 80/27
    assert psp_integrals(CubaLIFParams(alpha=0.5, beta=0.5)) == pytest.approx((4.0, 80.0 / 27.0))
    # per-neuron decays give per-neuron sums
    bar, hat = psp_integrals(snn.LIF(beta=torch.tensor([0.5, 0.75]), shape=(2,)))
    assert torch.allclose(bar, torch.tensor([2.0, 4.0], dtype=torch.float64))


def test_psp_integrals_of_the_separate_recurrent_current():
    # i_rec[t] = 0.7 i_rec[t-1] + r[t]; h[t] = 0.9 h[t-1] + i_rec[t] (no gain)
    p = CubaLIFParams(alpha=0.8, beta=0.9, gain=5.0, alpha_rec=0.7)
    state = CubaLIFState(*(torch.zeros(1, 1, dtype=torch.float64) for _ in range(3)))
    p = CubaLIFParams(**{**p.__dict__, "threshold": 1e9, "reset": "none"})
    eps = []
    for k in range(600):
        drive = torch.full((1, 1), 1.0 if k == 0 else 0.0, dtype=torch.float64)
        _, state = cuba_lif_step(p, state, torch.zeros(1, 1, dtype=torch.float64), recurrent=drive)
        eps.append(float(state.v))
    eps = torch.tensor(eps, dtype=torch.float64)
    bar, hat = psp_integrals(p, recurrent=True)
    assert bar == pytest.approx(float(eps.sum()), rel=1e-9)
    assert hat == pytest.approx(float((eps**2).sum()), rel=1e-9)


def test_psp_integrals_errors():
    with pytest.raises(ValueError, match="decay of 1"):
        psp_integrals(snn.IF())
    with pytest.raises(ValueError, match="gain"):
        psp_integrals(CubaLIFParams(gain=0.0))
    with pytest.raises(TypeError, match="supports"):
        psp_integrals(snn.ASN())


# ---- LSUV --------------------------------------------------------------------------


def test_lsuv_reaches_the_targets_in_every_layer():
    torch.manual_seed(1)
    net = snn.Sequential(
        snn.Linear(20, 64), snn.LIF(beta=0.9),
        snn.Linear(64, 32, bias=False), snn.CubaLIF(alpha=0.8, beta=0.9, threshold=0.5),
        snn.Linear(32, 5), snn.LI(beta=0.9),
    )
    x = spikes((40, 16, 20), 0.1)
    report = lsuv_(net, x, target_mean=0.1, target_std=0.4, tol=0.01)
    assert [e.name for e in report.layers] == ["layers.0", "layers.2", "layers.4"]
    assert [e.shifted for e in report.layers] == ["bias", "weight", "bias"]
    assert report.converged and report.skipped == []
    with torch.no_grad():
        rec = net.record(x)
    z = rec.outputs  # outputs[0] is layer 0's output: the input of neuron 1
    measured = [
        free_lif(z[0], 0.9) / 1.0,
        free_cuba(z[2], 0.8, 0.9) / 0.5,
        free_lif(z[4], 0.9),  # LI: v[t] = beta v[t-1] + x[t], threshold units of 1
    ]
    for entry, u in zip(report.layers, measured):
        assert abs(float(u.mean()) - 0.1) <= 0.01 + 1e-6
        assert abs(float(u.std(unbiased=False)) - 0.4) <= 0.01 + 1e-6
        assert entry.mean == pytest.approx(float(u.mean()), abs=1e-5)
        assert entry.std == pytest.approx(float(u.std(unbiased=False)), abs=1e-5)
    # the reported firing rates are those of the real (resetting) neurons
    assert report.layers[0].rate == pytest.approx(float(rec.outputs[1].mean()))
    assert report.layers[2].rate is None


def test_lsuv_weights_are_scaled_orthonormal_matrices():
    net = snn.Sequential(snn.Linear(20, 48), snn.LIF())
    report = lsuv_(net, spikes((30, 8, 20), 0.2), generator=torch.Generator().manual_seed(0))
    w = net[0].module.weight.detach().double()  # [48, 20]: orthonormal columns, times the scale
    scale = report.layers[0].scale
    assert torch.allclose(w.T @ w, scale**2 * torch.eye(20, dtype=torch.float64), atol=1e-5 * scale**2)
    assert torch.allclose(net[0].module.bias, torch.full((48,), report.layers[0].shift))


def test_lsuv_wakes_a_silent_hidden_layer():
    torch.manual_seed(2)
    net = snn.Sequential(snn.Linear(30, 40), snn.LIF(beta=0.9, threshold=5.0), snn.Linear(40, 4), snn.LI())
    x = spikes((60, 8, 30), 0.05)
    assert net.record(x).outputs[1].sum() == 0  # silent at the default initialisation
    report = lsuv_(net, x)
    with torch.no_grad():
        hidden = net.record(x).outputs[1]
    assert hidden.sum() > 0
    assert 0.001 < float(hidden.mean()) < 0.2
    assert (hidden.sum(dim=(0, 1)) > 0).float().mean() > 0.2  # not just a few neurons
    assert report.layers[0].rate == pytest.approx(float(hidden.mean()))


def test_lsuv_conv_with_pooling_between_and_a_skipped_readout():
    torch.manual_seed(3)
    net = snn.Sequential(
        snn.Conv2d(2, 6, 3, padding=1), snn.MaxPool2d(2), snn.LIF(),
        snn.Flatten(), snn.Linear(6 * 4 * 4, 10), snn.IF(),
        snn.Linear(10, 3),
    )
    x = spikes((25, 6, 2, 8, 8), 0.2)
    report = lsuv_(net, x, tol=0.02)
    assert [e.name for e in report.layers] == ["layers.0", "layers.4"]
    assert report.skipped == [("layers.6", "no neuron layer follows it")]
    assert report.converged
    for entry in report.layers:
        assert abs(entry.mean) <= 0.02 and abs(entry.std - 0.5) <= 0.02


def test_lsuv_std_only_burn_in_and_nested_sequential():
    torch.manual_seed(4)
    inner = snn.Sequential(snn.Linear(16, 24), snn.LIF(beta=0.8))
    net = snn.Sequential(inner, snn.Linear(24, 6), snn.LIF(beta=0.8))
    x = spikes((50, 8, 16), 0.3)
    before = inner[0].module.bias.clone()
    report = lsuv_(net, x, target_mean=None, target_std=0.3, burn_in=10, orthogonal=False)
    assert [e.name for e in report.layers] == ["layers.0.layers.0", "layers.1"]
    assert report.layers[0].shifted is None and report.layers[0].shift == 0.0
    assert torch.allclose(inner[0].module.bias, before * report.layers[0].scale)  # only rescaled
    with torch.no_grad():
        u = free_lif(inner[0](x), 0.8)[10:]
    assert abs(float(u.std(unbiased=False)) - 0.3) <= 0.02


def test_lsuv_restores_modes_and_leaves_no_gradient():
    net = snn.Sequential(snn.Linear(10, 12), snn.Dropout(0.5), snn.LIF(), snn.Linear(12, 3), snn.LI())
    net.train()
    net[3].eval()
    x = spikes((20, 4, 10), 0.3)
    with torch.enable_grad():
        lsuv_(net, x)
    assert [m.training for m in net.modules()] == [True, True, True, True, True, True, True, False, False, True]
    assert all(p.grad is None and p.requires_grad and p.is_leaf for p in net.parameters())
    assert torch.is_grad_enabled()


def test_lsuv_errors():
    x = spikes((10, 4, 8), 0.3)
    with pytest.raises(ValueError, match="no weight layers"):
        lsuv_(snn.Sequential(snn.LIF(), snn.LI()), x)
    with pytest.raises(ValueError, match="no weight layer is followed"):
        lsuv_(snn.Sequential(snn.Linear(8, 4), snn.GradedLIF()), x)
    net = snn.Sequential(snn.Linear(8, 4), snn.LIF())
    with pytest.raises(ValueError, match=r"\[T, B, \*features\]"):
        lsuv_(net, x[0])  # [B, features]: no time axis
    with pytest.raises(ValueError, match="does not fit layer layers.0"):
        lsuv_(net, spikes((10, 4, 9), 0.3))
    with pytest.raises(TypeError, match="floating"):
        lsuv_(net, x.long())
    with pytest.raises(TypeError, match="Sequential"):
        lsuv_(torch.nn.Sequential(torch.nn.Linear(8, 4)), x)
    with pytest.raises(ValueError, match="target_std"):
        lsuv_(net, x, target_std=0.0)
    with pytest.raises(ValueError, match="max_iter"):
        lsuv_(net, x, max_iter=0)
    with pytest.raises(ValueError, match="burn_in"):
        lsuv_(net, x, burn_in=10)
    with pytest.raises(ValueError, match="does not vary"):
        lsuv_(snn.Sequential(snn.Linear(8, 4, bias=False), snn.LIF()), torch.zeros(10, 4, 8))


def test_lsuv_warns_when_it_runs_out_of_iterations():
    # without a bias the mean is moved by shifting every weight, which a max-pool
    # does not pass through linearly: one update cannot land within 1e-9
    torch.manual_seed(5)
    net = snn.Sequential(snn.Conv2d(1, 4, 3, bias=False), snn.MaxPool2d(2), snn.LIF())
    x = spikes((12, 4, 1, 8, 8), 0.5)
    with pytest.warns(RuntimeWarning, match="layers.0 did not reach the targets"):
        report = lsuv_(net, x, tol=1e-9, max_iter=1)
    assert not report.converged and report.layers[0].iterations == 1
    assert not report.layers[0].converged


# ---- fluctuation-driven initialisation -----------------------------------------------


@pytest.mark.parametrize(
    "neuron",
    [
        snn.LIF(beta=0.9, reset="none"),
        snn.CubaLIF(alpha=0.8, beta=0.9, threshold=2.0, reset="none"),
        snn.CubaLIF(alpha=0.9, beta=0.9, gain=5.0, normalize=True, order="membrane_first", reset="none"),
    ],
)
def test_fluctuation_init_predicts_the_membrane_statistics(neuron):
    """Monte Carlo: Poisson inputs of the assumed rate into the initialised layer."""
    n, neurons, rate = 400, 4000, 0.05
    g = torch.Generator().manual_seed(7)
    net = snn.Sequential(snn.Linear(n, neurons), neuron)
    report = fluctuation_init_(net, rate=rate, xi=1.5, mu_u=0.3, generator=g)
    layer = report.layers[0]
    theta = float(neuron.threshold)
    assert layer.mu_u == pytest.approx(0.3 * theta)
    assert layer.sigma_u == pytest.approx(0.7 * theta / 1.5)
    x = torch.poisson(torch.full((1200, 2, n), rate), generator=g)
    with torch.no_grad():
        u = scan(neuron.neuron_params(), net[0](x), record=True).trajectory.v[300:]
    mean = float(u.mean())
    sigma = float(u.var(dim=(0, 1)).mean().sqrt())  # one neuron's fluctuation, averaged over neurons
    assert sigma == pytest.approx(layer.sigma_u, rel=0.03)
    assert abs(mean - layer.mu_u) <= 0.06 * layer.sigma_u  # 4 standard errors of the weight draw
    # and the weights have the prescribed distribution
    w = net[0].module.weight.detach().double()
    assert float(w.mean()) == pytest.approx(layer.mu_w, abs=4 * layer.sigma_w / math.sqrt(w.numel()))
    assert float(w.std()) == pytest.approx(layer.sigma_w, rel=0.01)
    assert torch.equal(net[0].module.bias, torch.zeros(neurons))


def test_fluctuation_init_formulas_by_hand():
    # LIF beta = 0.5 (bar 2, hat 4/3), n = 50, rate 0.1, threshold 2, mu_u 0.25, xi 2:
    # mu_U = 0.5, sigma_U = (2 - 0.5) / 2 = 0.75
    # mu_w = 0.5 / (50 * 0.1 * 2) = 0.05; sigma_w^2 = 0.5625 / (50 * 0.1 * 4/3) - 0.0025 = 0.081875
    net = snn.Sequential(snn.Linear(50, 8), snn.LIF(beta=0.5, threshold=2.0))
    layer = fluctuation_init_(net, rate=0.1, xi=2.0, mu_u=0.25).layers[0]
    assert layer.fan_in == 50 and layer.eps_bar == pytest.approx(2.0) and layer.eps_hat == pytest.approx(4 / 3)
    assert layer.mu_u == pytest.approx(0.5) and layer.sigma_u == pytest.approx(0.75)
    assert layer.mu_w == pytest.approx(0.05)
    assert layer.sigma_w == pytest.approx(math.sqrt(0.081875))


def test_fluctuation_init_conv_recurrent_per_channel_and_skips():
    g = torch.Generator().manual_seed(0)
    net = snn.Sequential(
        snn.Conv2d(3, 8, 5), snn.LIF(beta=torch.linspace(0.5, 0.9, 8).reshape(8, 1, 1), shape=(8, 1, 1)),
        snn.Flatten(), snn.Linear(8 * 4 * 4, 64), snn.LIF(recurrent=64),
        snn.Linear(64, 10), snn.MaxPool2d(1), snn.LI(),
    )
    report = fluctuation_init_(net, rate=[0.1, 0.02], xi=1.0, ff_share=0.75, generator=g)
    conv, rec = report.layers
    assert conv.fan_in == 3 * 5 * 5
    assert isinstance(conv.sigma_w, torch.Tensor) and conv.sigma_w.shape == (8,)
    beta = torch.linspace(0.5, 0.9, 8, dtype=torch.float64)
    expected = torch.sqrt(1.0 / (75 * 0.1 / (1 - beta.float().double() ** 2)))
    assert torch.allclose(conv.sigma_w, expected, rtol=1e-5)
    w = net[0].module.weight.detach().double().flatten(1)
    assert torch.allclose(w.std(dim=1), expected, rtol=0.25)
    # recurrent: 3/4 of the variance from the feed-forward weights, 1/4 from the lateral ones
    hat = 1 / (1 - 0.9**2)
    assert rec.sigma_w == pytest.approx(math.sqrt(0.75 / (128 * 0.02 * hat)), rel=1e-5)
    assert rec.recurrent_sigma == pytest.approx(math.sqrt(0.25 / (64 * 0.02 * hat)), rel=1e-5)
    assert float(net[4].recurrent_weight.detach().std()) == pytest.approx(rec.recurrent_sigma, rel=0.05)
    assert report.skipped[0][0] == "layers.5" and "layers.6" in report.skipped[0][1]


def test_fluctuation_init_errors_leave_the_model_unchanged():
    net = snn.Sequential(snn.Linear(10, 4), snn.LIF(), snn.Linear(4, 2), snn.IF())
    before = [p.clone() for p in net.parameters()]
    with pytest.raises(ValueError, match="decay of 1"):
        fluctuation_init_(net, rate=0.1)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
    net = snn.Sequential(snn.Linear(10, 4), snn.LIF())
    with pytest.raises(ValueError, match="negative"):
        fluctuation_init_(snn.Sequential(snn.Linear(1, 4), snn.LIF()), rate=0.01, mu_u=0.9, xi=20.0)
    with pytest.raises(ValueError, match="mu_u"):
        fluctuation_init_(net, rate=0.1, mu_u=1.0)
    with pytest.raises(ValueError, match="rate"):
        fluctuation_init_(net, rate=0.0)
    with pytest.raises(ValueError, match="one rate per"):
        fluctuation_init_(net, rate=[0.1, 0.2])
    with pytest.raises(ValueError, match="xi"):
        fluctuation_init_(net, rate=0.1, xi=-1.0)
    with pytest.raises(ValueError, match="ff_share"):
        fluctuation_init_(net, rate=0.1, ff_share=0.0)
    with pytest.raises(ValueError, match="no weight layers"):
        fluctuation_init_(snn.Sequential(snn.LIF()), rate=0.1)
    with pytest.raises(ValueError, match="no weight layer is followed"):
        fluctuation_init_(snn.Sequential(snn.Linear(4, 4), snn.ASN()), rate=0.1)
    with pytest.raises(ValueError, match="varies within an output channel"):
        per_pixel = snn.LIF(beta=torch.full((6, 6), 0.9), shape=(6, 6))
        fluctuation_init_(snn.Sequential(snn.Conv2d(1, 2, 3), per_pixel), rate=0.1)
