"""Encoders (spikeflow.encode) and losses (spikeflow.loss): shapes, statistics,
hand-checked values and input errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from spikeflow import encode, loss

# --------------------------------------------------------------------------- encode


def test_direct_repeats_the_input_at_every_step():
    x = torch.randn(3, 2, 4)
    out = encode.direct(x, 5)
    assert out.shape == (5, 3, 2, 4)
    assert out.dtype == x.dtype
    for t in range(5):
        assert torch.equal(out[t], x)


def test_direct_passes_gradients_to_the_input():
    x = torch.randn(2, 3, requires_grad=True)
    encode.direct(x, 4).sum().backward()
    assert torch.equal(x.grad, torch.full((2, 3), 4.0))


def test_rate_shape_values_and_dtype():
    x = torch.rand(4, 7, dtype=torch.float64)
    out = encode.rate(x, 6, generator=torch.Generator().manual_seed(0))
    assert out.shape == (6, 4, 7)
    assert out.dtype == torch.float64
    assert set(out.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("p", [0.0, 0.05, 0.3, 0.5, 0.9, 1.0])
def test_rate_firing_probability_matches_x(p):
    # 20 steps x 5000 inputs = 1e5 Bernoulli(p) draws: the mean is within 5 sigma of p.
    x = torch.full((5000,), p)
    out = encode.rate(x, 20, generator=torch.Generator().manual_seed(1))
    n = out.numel()
    sigma = math.sqrt(p * (1 - p) / n)
    assert abs(out.mean().item() - p) <= 5 * sigma + 1e-12


def test_rate_draws_independently_per_element():
    # Different probabilities per feature: each feature's rate tracks its own x.
    x = torch.tensor([0.1, 0.5, 0.8]).expand(4000, 3)
    rates = encode.rate(x, 10, generator=torch.Generator().manual_seed(2)).mean(dim=(0, 1))
    assert torch.allclose(rates, torch.tensor([0.1, 0.5, 0.8]), atol=0.02)


def test_rate_is_reproducible_with_a_generator():
    x = torch.rand(8, 5)
    a = encode.rate(x, 10, generator=torch.Generator().manual_seed(3))
    b = encode.rate(x, 10, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.tensor([0.5, 1.5]), r"\[0, 1\].*max 1.5"),
        (torch.tensor([-0.1, 0.5]), r"\[0, 1\].*min -0.1"),
        (torch.tensor([0.5, float("nan")]), "NaN"),
    ],
)
def test_rate_rejects_values_outside_the_unit_interval(bad, match):
    with pytest.raises(ValueError, match=match):
        encode.rate(bad, 4)


def test_latency_times_hand_checked():
    # T = 5 (steps 0..4), threshold 0.25: t = round((1 - x) * 4), halves up.
    x = torch.tensor([[1.0, 0.5, 0.2, 0.25, 0.875, 0.0]])
    out = encode.latency(x, 5)
    assert out.shape == (5, 1, 6)
    expected_times = [0, 2, None, 3, 1, None]  # 0.875 -> 0.5 -> rounds up to 1
    for i, t in enumerate(expected_times):
        column = out[:, 0, i]
        if t is None:
            assert column.sum() == 0
        else:
            assert column.tolist() == [1.0 if s == t else 0.0 for s in range(5)]


def test_latency_normalize_uses_the_whole_window():
    # [threshold, 1] = [0.5, 1] maps onto steps 4..0 (T = 5): t = round((1 - x) / 0.5 * 4).
    x = torch.tensor([[1.0, 0.75, 0.5, 0.6, 0.4]])
    out = encode.latency(x, 5, threshold=0.5, normalize=True)
    times = [int(out[:, 0, i].argmax()) if out[:, 0, i].any() else None for i in range(5)]
    assert times == [0, 2, 4, 3, None]  # 0.6 -> 3.2 -> 3


def test_latency_one_spike_per_input_and_brighter_is_earlier():
    x = torch.rand(16, 10, generator=torch.Generator().manual_seed(4))
    out = encode.latency(x, 12, threshold=0.25)
    counts = out.sum(dim=0)
    assert torch.equal(counts, (x >= 0.25).float())
    t = out.argmax(dim=0).float()  # first (only) spike step
    fired = x >= 0.25
    xs, ts = x[fired], t[fired]
    order = torch.argsort(xs)
    assert (ts[order].diff() <= 0).all()  # non-increasing time as x grows


def test_latency_threshold_zero_fires_everything_and_t1_is_all_at_step_zero():
    x = torch.rand(3, 4)
    assert torch.equal(encode.latency(x, 7, threshold=0.0).sum(dim=0), torch.ones(3, 4))
    assert torch.equal(encode.latency(x, 1, threshold=0.0), torch.ones(1, 3, 4))


def test_latency_keeps_dtype_and_rejects_bad_input():
    x = torch.rand(2, 3, dtype=torch.float64)
    assert encode.latency(x, 4).dtype == torch.float64
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        encode.latency(torch.tensor([2.0]), 4)
    with pytest.raises(ValueError, match="threshold"):
        encode.latency(torch.tensor([0.5]), 4, threshold=1.5)
    with pytest.raises(ValueError, match="normalize"):
        encode.latency(torch.tensor([0.5]), 4, threshold=1.0, normalize=True)


@pytest.mark.parametrize("fn", [encode.direct, encode.rate, encode.latency])
def test_encoders_check_steps_and_input_type(fn):
    with pytest.raises(ValueError, match="T must be >= 1"):
        fn(torch.rand(2, 3), 0)
    with pytest.raises(TypeError, match="T must be an int"):
        fn(torch.rand(2, 3), 2.0)
    with pytest.raises(TypeError, match="floating-point"):
        fn(torch.ones(2, 3, dtype=torch.int64), 3)
    with pytest.raises(TypeError, match="torch.Tensor"):
        fn([0.5, 0.5], 3)


# ----------------------------------------------------------------------------- loss


def test_spike_count_cross_entropy_hand_computed():
    # T=2, B=1, C=2: counts [2, 0], label 0 -> -log(e^2 / (e^2 + 1)) = log(1 + e^-2).
    spikes = torch.tensor([[[1.0, 0.0]], [[1.0, 0.0]]])
    value = loss.spike_count_cross_entropy(spikes, torch.tensor([0]))
    assert value.item() == pytest.approx(math.log1p(math.exp(-2.0)), rel=1e-6)
    # label 1: -log(1 / (e^2 + 1)) = log(1 + e^2)
    value = loss.spike_count_cross_entropy(spikes, torch.tensor([1]))
    assert value.item() == pytest.approx(math.log1p(math.exp(2.0)), rel=1e-6)


def test_spike_count_cross_entropy_averages_over_the_batch():
    spikes = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])  # T=1, B=2, C=2; counts [1,0], [0,0]
    value = loss.spike_count_cross_entropy(spikes, torch.tensor([0, 1]))
    expected = (math.log1p(math.exp(-1.0)) + math.log(2.0)) / 2
    assert value.item() == pytest.approx(expected, rel=1e-6)


def test_spike_count_mse_hand_computed():
    # T=4, B=1, C=3; counts [4, 1, 0]; label 0; on=4, off=0.4 (defaults T and 0.1 T).
    spikes = torch.zeros(4, 1, 3)
    spikes[:, 0, 0] = 1.0
    spikes[2, 0, 1] = 1.0
    value = loss.spike_count_mse(spikes, torch.tensor([0]))
    expected = ((4 - 4) ** 2 + (1 - 0.4) ** 2 + (0 - 0.4) ** 2) / 3
    assert value.item() == pytest.approx(expected, rel=1e-6)
    value = loss.spike_count_mse(spikes, torch.tensor([2]), on=3.0, off=1.0)
    expected = ((4 - 1) ** 2 + (1 - 1) ** 2 + (0 - 3) ** 2) / 3
    assert value.item() == pytest.approx(expected, rel=1e-6)


def test_spike_count_mse_seed_004_targets():
    # Seed 004: 100 steps, 10 spikes for a wrong label and 100 for the true one.
    spikes = torch.zeros(100, 2, 10)
    value = loss.spike_count_mse(spikes, torch.tensor([3, 7]))
    assert value.item() == pytest.approx((100**2 + 9 * 10**2) / 10, rel=1e-6)


@pytest.mark.parametrize(
    "reduce, logits",
    [
        ("max", [3.0, 1.0]),
        ("mean", [2.0, 0.0]),
        ("sum", [4.0, 0.0]),
        ("last", [1.0, -1.0]),
    ],
)
def test_membrane_cross_entropy_reductions(reduce, logits):
    v = torch.tensor([[[3.0, 1.0]], [[1.0, -1.0]]])  # T=2, B=1, C=2
    target = torch.tensor([1])
    expected = F.cross_entropy(torch.tensor([logits]), target).item()
    # by hand: -log softmax(z)[1] = log(1 + exp(z0 - z1))
    assert expected == pytest.approx(math.log1p(math.exp(logits[0] - logits[1])), rel=1e-6)
    assert loss.membrane_cross_entropy(v, target, reduce=reduce).item() == pytest.approx(expected, rel=1e-6)
    assert loss.membrane_cross_entropy(v, target, reduce=loss.TimeReduce(reduce)).item() == pytest.approx(
        expected, rel=1e-6
    )


def test_membrane_cross_entropy_max_gradient_goes_to_the_peak_step():
    v = torch.tensor([[[0.0, 2.0]], [[1.0, 0.0]]], requires_grad=True)
    loss.membrane_cross_entropy(v, torch.tensor([0]), reduce="max").backward()
    assert v.grad[0, 0, 0] == 0 and v.grad[1, 0, 1] == 0
    assert v.grad[1, 0, 0] < 0 and v.grad[0, 0, 1] > 0


def test_losses_are_differentiable_through_spike_counts():
    spikes = torch.rand(3, 4, 5, requires_grad=True)
    y = torch.tensor([0, 1, 2, 4])
    for fn in (loss.spike_count_cross_entropy, loss.spike_count_mse):
        spikes.grad = None
        fn(spikes, y).backward()
        assert spikes.grad is not None and torch.isfinite(spikes.grad).all()


ALL_LOSSES = [
    loss.spike_count_cross_entropy,
    loss.spike_count_mse,
    loss.membrane_cross_entropy,
]


@pytest.mark.parametrize("fn", ALL_LOSSES)
def test_losses_reject_non_time_major_output(fn):
    with pytest.raises(ValueError, match=r"\[T, B, C\].*unsqueeze"):
        fn(torch.rand(4, 10), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[T, B, C\]"):
        fn(torch.rand(2, 4, 10, 1), torch.zeros(4, dtype=torch.long))
    with pytest.raises(TypeError, match="torch.Tensor"):
        fn([[0.0]], torch.zeros(1, dtype=torch.long))


@pytest.mark.parametrize("fn", ALL_LOSSES)
def test_losses_reject_bad_targets(fn):
    out = torch.rand(3, 4, 10)
    with pytest.raises(ValueError, match=r"target must have shape \[B\] = \(4,\)"):
        fn(out, torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 10\).*max 10"):
        fn(out, torch.tensor([0, 1, 2, 10]))
    with pytest.raises(ValueError, match=r"\[0, 10\).*min -1"):
        fn(out, torch.tensor([0, -1, 2, 3]))
    with pytest.raises(TypeError, match="integer class labels"):
        fn(out, torch.zeros(4))


def test_unknown_time_reduction():
    with pytest.raises(ValueError, match="unknown time reduction 'median'"):
        loss.membrane_cross_entropy(torch.rand(2, 1, 3), torch.tensor([0]), reduce="median")
