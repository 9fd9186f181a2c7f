"""Losses added to spikeflow.loss: first-spike times and their cross-entropy, and
the Zenke & Vogels (2021) firing-rate regularizer. Values and gradients by hand,
gradient steps on a tiny network, and snnTorch's ce_temporal_loss where
installed."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from spikeflow import loss, surrogate

# ------------------------------------------------------------------ first_spike_times

# T = 4, B = 1, C = 3. Neuron 0 spikes at 1 and 3, neuron 1 at 2, neuron 2 never.
SPIKES = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]).unsqueeze(1)


def test_first_spike_times_hand_checked():
    t = loss.first_spike_times(SPIKES)
    assert t.shape == (1, 3) and t.dtype == SPIKES.dtype
    assert t.tolist() == [[1.0, 2.0, 4.0]]  # a silent neuron gets T = 4


def test_first_spike_times_gradient_is_the_exact_change_of_one_flip():
    # d t / d s[k] = -(f - k) before the first spike f, -(g - f) at it (g: second spike or T),
    # 0 after it.
    s = SPIKES.clone().requires_grad_()
    loss.first_spike_times(s).sum().backward()
    expected = torch.tensor(
        [
            [-1.0, -2.0, -4.0],  # k = 0
            [-2.0, -1.0, -3.0],  # k = 1: neuron 0 loses its spike at 1 -> next at 3
            [0.0, -2.0, -2.0],  # k = 2: neuron 1 loses its only spike at 2 -> T = 4
            [0.0, 0.0, -1.0],  # k = 3
        ]
    )
    assert torch.equal(s.grad[:, 0], expected)
    # each entry is the change of t when that single spike bit flips
    base = loss.first_spike_times(SPIKES)[0]
    for k in range(4):
        for c in range(3):
            flipped = SPIKES.clone()
            flipped[k, 0, c] = 1.0 - flipped[k, 0, c]
            change = loss.first_spike_times(flipped)[0, c] - base[c]
            sign = 1.0 if SPIKES[k, 0, c] == 0 else -1.0  # d/ds times the step +1 or -1
            assert change.item() == sign * expected[k, c].item()


@given(st.integers(1, 8), st.integers(1, 3), st.integers(1, 4), st.integers(0, 2**31 - 1))
def test_first_spike_times_match_argmax_definition(T, B, C, seed):
    s = (torch.rand(T, B, C, generator=torch.Generator().manual_seed(seed)) < 0.3).float()
    t = loss.first_spike_times(s)
    fired = s.any(dim=0)
    expected = torch.where(fired, s.argmax(dim=0).float(), torch.full((B, C), float(T)))
    assert torch.equal(t, expected)


def test_first_spike_times_counts_any_positive_value_as_a_spike():
    s = torch.tensor([[0.0, -1.0], [0.3, 0.0], [2.0, 1.0]]).unsqueeze(1)  # [T=3, 1, 2]
    assert loss.first_spike_times(s).tolist() == [[1.0, 2.0]]


# -------------------------------------------------------------- first_spike_time_loss


def test_first_spike_time_loss_hand_computed():
    # times [1, 2, 4] -> logits [-1, -2, -4]
    value = loss.first_spike_time_loss(SPIKES, torch.tensor([0]))
    assert value.item() == pytest.approx(math.log(1 + math.exp(-1) + math.exp(-3)), rel=1e-6)
    value = loss.first_spike_time_loss(SPIKES, torch.tensor([2]))
    assert value.item() == pytest.approx(math.log(1 + math.exp(3) + math.exp(2)), rel=1e-6)
    # tau = 2: logits [-0.5, -1, -2]
    value = loss.first_spike_time_loss(SPIKES, torch.tensor([1]), tau=2.0)
    assert value.item() == pytest.approx(math.log(math.exp(0.5) + 1 + math.exp(-1)), rel=1e-6)


def test_first_spike_time_loss_gradient_hand_computed():
    # dL/ds[k, c] = dL/dz_c * dz_c/dt_c * dt_c/ds[k] = (p_c - y_c) * (-1 / tau) * dt_c/ds[k].
    tau = 2.0
    s = SPIKES.clone().requires_grad_()
    loss.first_spike_time_loss(s, torch.tensor([1]), tau=tau).backward()
    p = torch.softmax(torch.tensor([-1.0, -2.0, -4.0]) / tau, dim=0)
    y = torch.tensor([0.0, 1.0, 0.0])
    dt_ds = torch.tensor([[-1.0, -2.0, -4.0], [-2.0, -1.0, -3.0], [0.0, -2.0, -2.0], [0.0, 0.0, -1.0]])
    expected = (p - y) * (-1.0 / tau) * dt_ds
    assert torch.allclose(s.grad[:, 0], expected, atol=1e-7)
    # true class: negative gradient (more spike -> lower loss) before its first spike
    assert (s.grad[:2, 0, 1] < 0).all()
    # wrong classes: positive gradient before their first spike
    assert s.grad[0, 0, 0] > 0 and (s.grad[:, 0, 2] > 0).all()


def _ramp_spikes(w, T=10):
    """A tiny differentiable 'network': membrane v[t, c] = w_c (t + 1), spikes by the
    SuperSpike surrogate at threshold 1. Class c first spikes at ceil(1 / w_c) - 1."""
    t = torch.arange(1, T + 1, dtype=w.dtype).view(T, 1, 1)
    v = t * w.view(1, 1, -1)
    return surrogate.superspike(10.0)(v - 1.0)


@pytest.mark.parametrize("w0", [0.3, 0.05])  # 0.05: the true class never spikes in 10 steps
def test_a_gradient_step_makes_the_true_class_spike_earlier(w0):
    w = torch.tensor([w0, 0.3, 0.3], dtype=torch.float64, requires_grad=True)
    target = torch.tensor([0])
    before = loss.first_spike_times(_ramp_spikes(w))[0, 0].item()
    value = loss.first_spike_time_loss(_ramp_spikes(w), target, tau=2.0)
    value.backward()
    assert w.grad[0] < 0 and w.grad[1] > 0 and w.grad[2] > 0
    with torch.no_grad():
        w_new = w - 2.0 * w.grad
    after = loss.first_spike_times(_ramp_spikes(w_new))[0, 0].item()
    new_value = loss.first_spike_time_loss(_ramp_spikes(w_new), target, tau=2.0)
    assert after < before
    assert new_value.item() < value.item()


def test_first_spike_time_loss_matches_snntorch_when_every_neuron_spikes():
    sf = pytest.importorskip("snntorch.functional")
    g = torch.Generator().manual_seed(12)
    spikes = (torch.rand(9, 5, 4, generator=g) < 0.2).float()
    spikes[-1] = 1.0  # every neuron spikes at least once (at the last step at the latest)
    target = torch.tensor([0, 3, 1, 1, 2])
    expected = sf.ce_temporal_loss()(spikes.clone(), target.clone())
    assert loss.first_spike_time_loss(spikes, target).item() == pytest.approx(expected.item(), rel=1e-6)


def test_first_spike_time_loss_differs_from_snntorch_only_by_silent_neurons():
    sf = pytest.importorskip("snntorch.functional")
    g = torch.Generator().manual_seed(13)
    spikes = (torch.rand(6, 4, 3, generator=g) < 0.15).float()
    spikes[:, 0, 1] = 0.0  # a silent neuron: time T here, T - 1 in snnTorch
    target = torch.tensor([1, 0, 2, 1])
    expected = sf.ce_temporal_loss()(spikes.clone(), target.clone())
    # snnTorch's convention is ours with a spike added at T - 1 to every silent neuron.
    shadow = spikes.clone()
    shadow[-1] = torch.where(spikes.any(dim=0), spikes[-1], torch.ones_like(spikes[-1]))
    assert loss.first_spike_time_loss(shadow, target).item() == pytest.approx(expected.item(), rel=1e-6)
    assert loss.first_spike_time_loss(spikes, target).item() != pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("tau, error", [(0.0, ValueError), (-1.0, ValueError), (float("nan"), ValueError), ("1", TypeError)])
def test_first_spike_time_loss_rejects_bad_tau(tau, error):
    with pytest.raises(error, match="tau must be"):
        loss.first_spike_time_loss(SPIKES, torch.tensor([0]), tau=tau)


@pytest.mark.parametrize("fn", [loss.first_spike_time_loss, lambda s, y: loss.first_spike_times(s)])
def test_first_spike_losses_reject_non_time_major_output(fn):
    with pytest.raises(ValueError, match=r"\[T, B, C\].*unsqueeze"):
        fn(torch.rand(4, 10), torch.zeros(4, dtype=torch.long))
    with pytest.raises(TypeError, match="floating-point"):
        fn(torch.ones(2, 4, 10, dtype=torch.int64), torch.zeros(4, dtype=torch.long))


def test_first_spike_time_loss_rejects_bad_targets():
    with pytest.raises(ValueError, match=r"\[0, 3\).*max 3"):
        loss.first_spike_time_loss(SPIKES, torch.tensor([3]))
    with pytest.raises(ValueError, match=r"target must have shape \[B\] = \(1,\)"):
        loss.first_spike_time_loss(SPIKES, torch.tensor([0, 1]))


# ------------------------------------------------------------------- rate_regularizer


def _counts_case():
    # T = 3, B = 2, N = 2; counts n = [[0, 3], [1, 2]].
    s = torch.zeros(3, 2, 2)
    s[:, 0, 1] = 1.0
    s[1, 1, 0] = 1.0
    s[0, 1, 1] = s[2, 1, 1] = 1.0
    assert s.sum(dim=0).tolist() == [[0.0, 3.0], [1.0, 2.0]]
    return s


def test_rate_regularizer_hand_computed():
    s = _counts_case()
    # lower 2: max(0, 2 - n) = [[2, 0], [1, 0]] -> mean of squares (4 + 0 + 1 + 0) / 4 = 1.25
    assert loss.rate_regularizer(s, lower=2.0).item() == pytest.approx(1.25)
    # upper 1: population means [1.5, 1.5] -> mean of 0.5^2 = 0.25
    assert loss.rate_regularizer(s, upper=1.0).item() == pytest.approx(0.25)
    # both, weighted: 2 * 1.25 + 4 * 0.25
    value = loss.rate_regularizer(s, lower=2.0, upper=2.0, lower_strength=2.0, upper_strength=4.0)
    assert value.item() == pytest.approx(2.0 * 1.25 + 0.0)
    value = loss.rate_regularizer(s, lower=1.0, upper=1.0, lower_strength=2.0, upper_strength=4.0)
    # lower 1: [[1, 0], [0, 0]] -> 1 / 4; upper: 0.25
    assert value.item() == pytest.approx(2.0 * 0.25 + 4.0 * 0.25)
    # within bounds: zero
    assert loss.rate_regularizer(s, lower=0.0, upper=1.5).item() == 0.0


def test_rate_regularizer_gradients_hand_computed():
    s = _counts_case().requires_grad_()
    loss.rate_regularizer(s, lower=2.0, lower_strength=3.0).backward()
    # d/ds[t, b, i] = -3 * 2 * max(0, 2 - n[b, i]) / (B N), the same at every step
    expected = -6.0 * torch.tensor([[2.0, 0.0], [1.0, 0.0]]) / 4
    assert torch.allclose(s.grad, expected.expand(3, 2, 2))
    s.grad = None
    loss.rate_regularizer(s, upper=1.0, upper_strength=2.0).backward()
    # d/ds[t, b, i] = 2 * 2 * max(0, mean_i n[b] - 1) / (B N) = 4 * 0.5 / 4 = 0.5
    assert torch.allclose(s.grad, torch.full((3, 2, 2), 0.5))


def test_rate_regularizer_lower_bound_is_per_neuron_upper_is_per_population():
    # Population mean 1.0 but neuron 1 silent: only the per-neuron floor notices.
    s = torch.zeros(4, 1, 2)
    s[:2, 0, 0] = 1.0
    assert loss.rate_regularizer(s, upper=1.0).item() == 0.0
    assert loss.rate_regularizer(s, lower=1.0).item() == pytest.approx(0.5)  # (0 + 1) / 2
    # One neuron far above the ceiling but the mean below it: no upper penalty.
    s = torch.zeros(10, 1, 5)
    s[:, 0, 0] = 1.0  # counts [10, 0, 0, 0, 0], mean 2
    assert loss.rate_regularizer(s, upper=2.0).item() == 0.0
    assert loss.rate_regularizer(s, upper=1.0).item() == pytest.approx(1.0)


def test_rate_regularizer_flattens_feature_dimensions():
    s = (torch.rand(5, 3, 2, 4, generator=torch.Generator().manual_seed(14)) < 0.3).float()
    a = loss.rate_regularizer(s, lower=1.5, upper=1.5)
    b = loss.rate_regularizer(s.flatten(2), lower=1.5, upper=1.5)
    assert a.item() > 0
    assert a.item() == pytest.approx(b.item())


def test_rate_regularizer_gradient_step_moves_counts_into_bounds():
    # Rates in (0, 1) as differentiable stand-ins for spike probabilities; over T = 10
    # steps the counts are 10 sigmoid(z) = [0.47, 9.53, 9.53, 9.53], mean 7.24.
    logits = torch.tensor([[-3.0, 3.0, 3.0, 3.0]], requires_grad=True)  # [B=1, N=4]
    T = 10

    def value(z):
        return loss.rate_regularizer(torch.sigmoid(z).expand(T, 1, 4), lower=1.0, upper=7.0)

    v = value(logits)
    v.backward()
    # neuron 0: floor pull 2 (1 - 0.47) / 4 outweighs the ceiling push 2 (7.24 - 7) / 4
    assert logits.grad[0, 0] < 0  # the near-silent neuron is pushed up
    assert (logits.grad[0, 1:] > 0).all()  # the others carry the population mean down
    assert value(logits.detach() - 0.1 * logits.grad).item() < v.item()


@pytest.mark.parametrize(
    "spikes, kwargs, error, match",
    [
        (torch.rand(3, 2, 4), {}, ValueError, "give lower, upper or both"),
        (torch.rand(3, 2, 4), {"lower": 3.0, "upper": 2.0}, ValueError, r"lower \(3\) must not exceed upper \(2\)"),
        (torch.rand(3, 2, 4), {"lower": -1.0}, ValueError, "lower must be finite and >= 0"),
        (torch.rand(3, 2, 4), {"upper": float("inf")}, ValueError, "upper must be finite"),
        (torch.rand(3, 2, 4), {"lower": 1.0, "lower_strength": -2.0}, ValueError, "lower_strength must be"),
        (torch.rand(3, 2, 4), {"upper": True}, TypeError, "upper must be a number"),
        (torch.rand(3, 2), {"lower": 1.0}, ValueError, r"\[T, B, \*features\].*unsqueeze"),
        (torch.ones(3, 2, 4, dtype=torch.int64), {"lower": 1.0}, TypeError, "floating-point"),
        (torch.rand(0, 2, 4), {"lower": 1.0}, ValueError, r"T, B and features >= 1"),
        ([[0.0]], {"lower": 1.0}, TypeError, "torch.Tensor"),
    ],
)
def test_rate_regularizer_rejects_bad_input(spikes, kwargs, error, match):
    with pytest.raises(error, match=match):
        loss.rate_regularizer(spikes, **kwargs)


def test_spike_count_mse_is_unchanged():
    # Seed 004's targets, as in test_encode_loss: defaults on = T, off = 0.1 T.
    spikes = torch.zeros(100, 2, 10)
    spikes[:, 0, 3] = 1.0
    value = loss.spike_count_mse(spikes, torch.tensor([3, 7]))
    wanted = torch.full((2, 10), 10.0)
    wanted[0, 3] = wanted[1, 7] = 100.0
    assert value.item() == pytest.approx(F.mse_loss(spikes.sum(0), wanted).item())
