"""Encoders added to spikeflow.encode: poisson, latency(kind="log"), delta and
multiplicative. Statistics are checked against the exact distributions, values by
hand, against a transcription of seed 001 and against snnTorch where installed."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from spikeflow import encode

# ----------------------------------------------------------------------------- poisson


def test_poisson_shape_dtype_and_values():
    x = torch.rand(4, 2, 3, dtype=torch.float64)
    out = encode.poisson(x, 7, generator=torch.Generator().manual_seed(0))
    assert out.shape == (7, 4, 2, 3)
    assert out.dtype == torch.float64
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    counts = encode.poisson(x, 7, counts=True, f_max=2000.0, generator=torch.Generator().manual_seed(0))
    assert counts.dtype == torch.float64
    assert torch.equal(counts, counts.round()) and counts.min() >= 0 and counts.max() > 1


@pytest.mark.parametrize(
    "x, f_max, dt",
    [
        (1.0, 100.0, 1e-3),  # the defaults: lam = 0.1, p = 0.0952
        (0.5, 100.0, 1e-3),  # lam = 0.05
        (1.0, 1000.0, 1e-3),  # lam = 1: p = 0.632, where the rate*dt rule would give 1
        (0.25, 400.0, 5e-3),  # lam = 0.5
    ],
)
def test_poisson_spike_probability_is_one_minus_exp_minus_lambda(x, f_max, dt):
    # 20 bins x 5000 inputs = 1e5 Bernoulli(p) draws; the mean is within 5 sigma of p.
    lam = x * f_max * dt
    p = 1.0 - math.exp(-lam)
    xs = torch.full((5000,), x)
    out = encode.poisson(xs, 20, f_max=f_max, dt=dt, generator=torch.Generator().manual_seed(1))
    n = out.numel()
    assert abs(out.mean().item() - p) <= 5 * math.sqrt(p * (1 - p) / n)


def test_poisson_defaults_are_100_hz_and_1_ms():
    xs = torch.ones(20000)
    a = encode.poisson(xs, 10, generator=torch.Generator().manual_seed(2))
    b = encode.poisson(xs, 10, f_max=100.0, dt=1e-3, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    p = 1.0 - math.exp(-0.1)
    assert abs(a.mean().item() - p) <= 5 * math.sqrt(p * (1 - p) / a.numel())


@pytest.mark.parametrize("lam", [0.1, 1.0, 3.0])
def test_poisson_counts_have_poisson_mean_variance_and_frequencies(lam):
    # x = 1, f_max * dt = lam. n = 1e5 draws of Poisson(lam).
    out = encode.poisson(
        torch.ones(5000), 20, f_max=lam * 1000.0, dt=1e-3, counts=True,
        generator=torch.Generator().manual_seed(3),
    ).double()
    n = out.numel()
    assert abs(out.mean().item() - lam) <= 5 * math.sqrt(lam / n)
    # Var of the sample variance of a Poisson(lam): (mu4 - sigma^4) / n = (lam + 2 lam^2) / n.
    assert abs(out.var().item() - lam) <= 5 * math.sqrt((lam + 2 * lam**2) / n)
    for k in range(4):
        pk = math.exp(-lam) * lam**k / math.factorial(k)
        freq = (out == k).double().mean().item()
        assert abs(freq - pk) <= 5 * math.sqrt(pk * (1 - pk) / n) + 1e-12


def test_poisson_rate_scales_with_x_per_element():
    x = torch.tensor([0.0, 0.2, 1.0]).expand(4000, 3)
    out = encode.poisson(x, 25, f_max=1000.0, dt=1e-3, counts=True, generator=torch.Generator().manual_seed(4))
    means = out.mean(dim=(0, 1))
    assert means[0] == 0  # x = 0: rate 0, never an event
    assert torch.allclose(means, torch.tensor([0.0, 0.2, 1.0]), atol=0.02)


def test_poisson_is_reproducible_and_keeps_half_precision():
    x = torch.rand(6, 5)
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    assert torch.equal(encode.poisson(x, 9, generator=g()), encode.poisson(x, 9, generator=g()))
    half = encode.poisson(x.half(), 9, generator=g())
    assert half.dtype == torch.float16
    assert torch.equal(half.float(), encode.poisson(x.half().float(), 9, generator=g()))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"f_max": 0.0}, ValueError, r"f_max must be finite and > 0, got 0"),
        ({"f_max": float("inf")}, ValueError, "f_max must be finite"),
        ({"dt": -1e-3}, ValueError, r"dt must be finite and > 0, got -0.001"),
        ({"dt": "1ms"}, TypeError, "dt must be a number"),
    ],
)
def test_poisson_rejects_bad_rates(kwargs, error, match):
    with pytest.raises(error, match=match):
        encode.poisson(torch.rand(2, 3), 4, **kwargs)


def test_poisson_rejects_values_outside_the_unit_interval():
    with pytest.raises(ValueError, match=r"poisson: values must be in \[0, 1\].*max 1.5"):
        encode.poisson(torch.tensor([0.5, 1.5]), 4)


# ----------------------------------------------------------------------- latency (log)


def test_latency_log_times_hand_checked():
    # T = 10, threshold 0.5, tau = 2: t = round(2 ln(x / (x - 0.5))), halves up.
    x = torch.tensor([[1.0, 0.75, 0.6, 0.55, 0.51, 0.505, 0.502, 0.5, 0.2]])
    # 2 ln 2 = 1.386 -> 1; 2 ln 3 = 2.197 -> 2; 2 ln 6 = 3.584 -> 4; 2 ln 11 = 4.796 -> 5;
    # 2 ln 51 = 7.864 -> 8; 2 ln 101 = 9.230 -> 9; 2 ln 251 = 11.05 -> after the window;
    # x <= threshold never charges up to it.
    expected = [1, 2, 4, 5, 8, 9, None, None, None]
    out = encode.latency(x, 10, threshold=0.5, kind="log", tau=2.0)
    assert out.shape == (10, 1, 9)
    for i, t in enumerate(expected):
        column = out[:, 0, i].tolist()
        assert column == [1.0 if s == t else 0.0 for s in range(10)], (i, column)


def test_latency_log_is_the_rc_charging_time():
    # v(t) = x (1 - exp(-t / tau)) reaches threshold exactly at t = tau ln(x / (x - threshold)).
    x = torch.tensor([0.3, 0.45, 0.8, 1.0], dtype=torch.float64)
    tau, theta = 7.0, 0.25
    t = tau * torch.log(x / (x - theta))
    assert torch.allclose(x * (1 - torch.exp(-t / tau)), torch.full_like(x, theta))
    out = encode.latency(x.unsqueeze(0), 40, threshold=theta, kind=encode.LatencyKind.LOG, tau=tau)
    assert out[:, 0].argmax(dim=0).tolist() == torch.floor(t + 0.5).long().tolist()


def test_latency_log_default_tau_is_one_step_and_threshold_zero_fires_at_once():
    x = torch.tensor([[0.02, 0.5, 1.0]])
    # tau = 1, threshold 0.01: ln 2 = 0.69 -> 1; ln(50/49) = 0.02 -> 0; ln(100/99) -> 0.
    out = encode.latency(x, 5, threshold=0.01, kind="log")
    assert out[:, 0].argmax(dim=0).tolist() == [1, 0, 0]
    # threshold 0: ln(x / x) = 0, every x > 0 spikes at t = 0, x = 0 never.
    out = encode.latency(torch.tensor([[0.0, 0.3, 1.0]]), 4, threshold=0.0, kind="log", tau=3.0)
    assert out.sum(dim=0).tolist() == [[0.0, 1.0, 1.0]]
    assert out[0, 0].tolist() == [0.0, 1.0, 1.0]


@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=20), st.floats(0.05, 0.95), st.floats(0.1, 20.0))
def test_latency_log_at_most_one_spike_and_brighter_is_earlier(values, theta, tau):
    x = torch.tensor([values], dtype=torch.float64)
    out = encode.latency(x, 16, threshold=theta, kind="log", tau=tau)
    counts = out.sum(dim=0)[0]
    assert counts.max() <= 1
    assert bool((counts[x[0] <= theta] == 0).all())
    fired = counts == 1
    times = out[:, 0].argmax(dim=0)[fired]
    order = torch.argsort(x[0][fired])
    assert bool((times[order].diff() <= 0).all())


def test_latency_default_kind_is_unchanged():
    x = torch.rand(5, 6, generator=torch.Generator().manual_seed(6))
    assert torch.equal(encode.latency(x, 9), encode.latency(x, 9, kind="linear"))
    assert torch.equal(
        encode.latency(x, 9, threshold=0.3, normalize=True),
        encode.latency(x, 9, threshold=0.3, normalize=True, kind=encode.LatencyKind.LINEAR),
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"kind": "log", "normalize": True}, "normalize applies to kind='linear' only"),
        ({"tau": 2.0}, "tau applies to kind='log' only"),
        ({"kind": "log", "tau": 0.0}, r"tau must be finite and > 0"),
        ({"kind": "log", "tau": -1.0}, r"tau must be finite and > 0"),
        ({"kind": "cubic"}, r"unknown latency kind 'cubic'; expected one of \['linear', 'log'\]"),
    ],
)
def test_latency_kind_options_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        encode.latency(torch.rand(2, 3), 5, **kwargs)


def test_latency_log_matches_snntorch():
    spikegen = pytest.importorskip("snntorch.spikegen")
    # Values chosen away from exact halves (snnTorch rounds halves to even, we round up).
    x = torch.tensor(
        [[0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 0.011, 0.013],
         [0.3, 0.012, 0.9, 0.015, 0.4, 0.6, 0.03, 0.07, 0.8, 0.25, 0.15, 0.0]]
    )
    for tau, theta, T in [(1.0, 0.01, 10), (5.0, 0.1, 20), (3.0, 0.25, 8)]:
        expected = spikegen.latency(x, num_steps=T, threshold=theta, tau=tau, clip=True, bypass=True)
        ours = encode.latency(x, T, threshold=theta, kind="log", tau=tau)
        assert torch.equal(ours, expected), (tau, theta, T)


# ------------------------------------------------------------------------------- delta


@pytest.mark.parametrize(
    "sequence, kwargs, expected",
    [
        # snnTorch's documented examples for spikegen.delta, threshold 1:
        ([1, 2, 2.9, 3, 3.9], {"off_spikes": False}, [1, 1, 0, 0, 0]),
        ([1, 2, 2.9, 3, 3.9], {"off_spikes": False, "start": "repeat"}, [0, 1, 0, 0, 0]),
        ([1, 2, 0, 2, 2.9], {}, [1, 1, -1, 1, 0]),
        ([1, 2, 0, 2, 2.9], {"start": "repeat"}, [0, 1, -1, 1, 0]),
        ([1, 2, 0, 2, 2.9], {"off_spikes": False}, [1, 1, 0, 1, 0]),
        # a fall from the start: -1 at t = 0 against the zero baseline
        ([-1, -1, 0.5, -0.5, -0.5], {}, [-1, 0, 1, -1, 0]),
    ],
)
def test_delta_hand_checked(sequence, kwargs, expected):
    x = torch.tensor(sequence).view(-1, 1)  # [T, B=1]
    out = encode.delta(x, threshold=1.0, **kwargs)
    assert out.view(-1).tolist() == expected


def test_delta_threshold_is_inclusive_and_per_element():
    x = torch.tensor([[0.0, 0.0], [0.25, 0.24], [0.0, 0.0]], dtype=torch.float64)  # [T=3, B=1... as B=2]
    out = encode.delta(x, threshold=0.25)
    assert out.tolist() == [[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0]]
    assert out.dtype == torch.float64


def test_delta_keeps_feature_shape_and_default_threshold():
    x = torch.zeros(4, 2, 3, 3)
    x[2:, 1, 0, 2] = 0.1  # a step of exactly the default threshold 0.1 at t = 2
    out = encode.delta(x)
    assert out.shape == x.shape
    assert out.abs().sum() == 1 and out[2, 1, 0, 2] == 1


def test_delta_matches_snntorch():
    spikegen = pytest.importorskip("snntorch.spikegen")
    x = torch.randn(12, 3, 5, generator=torch.Generator().manual_seed(7))
    for padding, start in [(False, "zero"), (True, "repeat")]:
        for off in (False, True):
            expected = spikegen.delta(x, threshold=0.5, padding=padding, off_spike=off)
            assert torch.equal(encode.delta(x, threshold=0.5, off_spikes=off, start=start), expected)


@pytest.mark.parametrize(
    "x, kwargs, error, match",
    [
        (torch.rand(5), {}, ValueError, r"\[T, B, \*features\].*got \(5,\)"),
        (torch.rand(0, 2), {}, ValueError, r"T >= 1"),
        (torch.rand(3, 2), {"threshold": 0.0}, ValueError, "threshold must be finite and > 0"),
        (torch.rand(3, 2), {"threshold": None}, TypeError, "threshold must be a number"),
        (torch.rand(3, 2), {"start": "first"}, ValueError, r"unknown delta start 'first'"),
        (torch.ones(3, 2, dtype=torch.int64), {}, TypeError, "floating-point"),
    ],
)
def test_delta_rejects_bad_input(x, kwargs, error, match):
    with pytest.raises(error, match=match):
        encode.delta(x, **kwargs)


# ---------------------------------------------------------------------- multiplicative


class _Seed001Input(torch.nn.Module):
    """Transcription of seed 001's ``InputDataToSpikingPerceptronLayer.forward``, with
    the generator made explicit (the seed draws from torch's global generator)."""

    def __init__(self, generator):
        super().__init__()
        self.generator = generator

    def forward(self, x):
        x = x.view(x.size(0), -1)  # Flatten 2D image to 1D for FC
        random_activation_perceptron = torch.rand(x.shape, generator=self.generator)
        return random_activation_perceptron * x


def test_multiplicative_matches_seed_001_step_by_step():
    images = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(8)) - 0.5  # seed 001: x - 0.5
    seed_layer = _Seed001Input(torch.Generator().manual_seed(9))
    expected = torch.stack([seed_layer(images) for _ in range(6)])  # the seed calls it once per step
    ours = encode.multiplicative(images, 6, generator=torch.Generator().manual_seed(9))
    assert ours.shape == (6, 3, 1, 28, 28)
    assert torch.equal(ours.flatten(2), expected)


def test_multiplicative_statistics_and_sign():
    x = torch.tensor([-0.5, 0.0, 0.25, 2.0]).expand(5000, 4)
    out = encode.multiplicative(x, 10, generator=torch.Generator().manual_seed(10))
    n = 5000 * 10
    # u ~ U[0, 1): mean x / 2, standard deviation |x| / sqrt(12).
    std = x[0].abs() / math.sqrt(12)
    assert torch.all((out.mean(dim=(0, 1)) - x[0] / 2).abs() <= 5 * std / math.sqrt(n) + 1e-12)
    assert torch.all(out * x >= 0) and torch.all(out.abs() <= x.abs())
    assert torch.all(out[..., 1] == 0)


def test_multiplicative_gradient_is_the_noise():
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    out = encode.multiplicative(x, 4, generator=torch.Generator().manual_seed(11))
    out.sum().backward()
    u = torch.rand((4, 2, 3), generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    assert torch.allclose(x.grad, u.sum(dim=0))
    assert out.dtype == torch.float64


# ------------------------------------------------------------------------ shared checks

NEW_ENCODERS = [
    encode.poisson,
    encode.multiplicative,
    lambda x, T: encode.latency(x, T, kind="log", tau=2.0),
]


@pytest.mark.parametrize("fn", NEW_ENCODERS)
def test_new_encoders_check_steps_and_input_type(fn):
    with pytest.raises(ValueError, match="T must be >= 1"):
        fn(torch.rand(2, 3), 0)
    with pytest.raises(TypeError, match="T must be an int"):
        fn(torch.rand(2, 3), 2.0)
    with pytest.raises(TypeError, match="floating-point"):
        fn(torch.ones(2, 3, dtype=torch.int64), 3)
    with pytest.raises(TypeError, match="torch.Tensor"):
        fn([0.5, 0.5], 3)


@pytest.mark.parametrize("fn", NEW_ENCODERS)
def test_new_encoders_are_time_major_and_keep_dtype(fn):
    x = torch.rand(3, 2, 5, dtype=torch.float64)
    out = fn(x, 6)
    assert out.shape == (6, 3, 2, 5) and out.dtype == torch.float64 and out.device == x.device
