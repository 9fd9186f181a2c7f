"""Properties that hold for every parameter value (hypothesis, modest example counts).

Inputs are drawn from a seeded torch generator (the seed is the hypothesis draw), so
a failing example is reproducible from its printed arguments.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from spikeflow import nn as snn
from spikeflow import RecurrentState

F64 = torch.float64

decays = st.floats(0.0, 1.0)
thresholds = st.floats(0.05, 3.0)
seeds = st.integers(0, 2**31 - 1)
sizes = st.tuples(st.integers(1, 12), st.integers(1, 4), st.integers(1, 5))  # T, B, N


def _randn(seed, *shape, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=F64) * scale


def _flat_state(state):
    if isinstance(state, RecurrentState):
        return list(state.neuron) + [state.output]
    if isinstance(state, list):
        return [t for s in state if s is not None for t in _flat_state(s)]
    return list(state)


SPIKING = ["lif", "if", "cuba", "cuba_membrane_first", "asn", "graded", "li", "lif_recurrent"]


def make(kind, beta, threshold, reset="subtract", n=None):
    alpha = min(max(1.0 - beta, 0.0), 1.0)
    if kind == "lif":
        return snn.LIF(beta=beta, threshold=threshold, reset=reset)
    if kind == "lif_recurrent":
        return snn.LIF(beta=beta, threshold=threshold, reset=reset, recurrent=n)
    if kind == "if":
        return snn.IF(threshold=threshold, reset=reset)
    if kind == "cuba":
        return snn.CubaLIF(alpha=alpha, beta=beta, threshold=threshold, reset=reset)
    if kind == "cuba_membrane_first":
        return snn.CubaLIF(alpha=alpha, beta=beta, threshold=threshold, reset=reset, order="membrane_first", normalize=True)
    if kind == "asn":
        return snn.ASN(m_f=threshold)
    if kind == "graded":
        return snn.GradedLIF(beta=beta, threshold=threshold)
    if kind == "li":
        return snn.LI(beta=beta)
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", SPIKING)
@given(beta=decays, threshold=thresholds, size=sizes)
def test_zero_input_from_rest_stays_at_rest(kind, beta, threshold, size):
    T, B, N = size
    module = make(kind, beta, threshold, n=N).double()
    out, state = module(torch.zeros(T, B, N, dtype=F64))
    assert torch.count_nonzero(out) == 0
    for field in _flat_state(state):
        assert torch.count_nonzero(field) == 0


@pytest.mark.parametrize("kind", ["lif", "if", "cuba", "cuba_membrane_first", "lif_recurrent"])
@given(beta=decays, threshold=thresholds, size=sizes, seed=seeds, scale=st.floats(0.1, 5.0))
def test_hard_reset_keeps_v_at_or_below_threshold(kind, beta, threshold, size, seed, scale):
    T, B, N = size
    module = make(kind, beta, threshold, reset="zero", n=N).double()
    x = _randn(seed, T, B, N, scale=scale) + 0.5 * scale
    res = module.record(x)
    assert (res.trajectory.v <= threshold).all()
    # and it is 0 exactly where the neuron spiked
    assert (res.trajectory.v[res.output > 0] == 0).all()


@pytest.mark.parametrize("kind", ["lif", "if", "cuba", "cuba_membrane_first"])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
@given(beta=decays, threshold=thresholds, T=st.integers(1, 40), currents=st.lists(st.floats(0.0, 3.0), min_size=2, max_size=6))
def test_spike_count_never_decreases_with_constant_input(kind, reset, beta, threshold, T, currents):
    """A constant input c for T steps; the spike count of each step prefix is monotone in c."""
    c = torch.tensor(sorted(currents), dtype=F64)  # one neuron per input level
    module = make(kind, beta, threshold, reset=reset).double()
    out, _ = module(c.expand(T, 1, -1).contiguous())
    counts = out.cumsum(0)  # [T, 1, levels]: counts up to every step
    assert (counts[..., 1:] >= counts[..., :-1]).all(), counts[-1]


@pytest.mark.parametrize("kind", ["lif", "cuba", "cuba_membrane_first", "li"])
@given(beta=decays, threshold=thresholds, size=sizes, seed=seeds, a=st.floats(-3, 3), b=st.floats(-3, 3))
def test_reset_free_membrane_is_linear_in_the_input(kind, beta, threshold, size, seed, a, b):
    T, B, N = size
    module = make(kind, beta, threshold, reset="none").double()
    x1, x2 = _randn(seed, T, B, N), _randn(seed + 1, T, B, N)
    v1, v2, v12 = (module.record(x).trajectory.v for x in (x1, x2, a * x1 + b * x2))
    torch.testing.assert_close(v12, a * v1 + b * v2, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("kind", SPIKING + ["sequential"])
@given(beta=st.floats(0.05, 0.95), threshold=thresholds, size=sizes, seed=seeds)
def test_permuting_the_batch_permutes_the_outputs(kind, beta, threshold, size, seed):
    T, B, N = size
    torch.manual_seed(seed % 1000)
    if kind == "sequential":
        module = snn.Sequential(
            snn.Linear(N, 4), snn.LIF(beta=beta, threshold=threshold, recurrent=4), snn.Linear(4, 2), snn.LI()
        ).double()
    else:
        module = make(kind, beta, threshold, n=N).double()
    x = _randn(seed, T, B, N, scale=2.0).abs()
    perm = torch.randperm(B, generator=torch.Generator().manual_seed(seed))
    out, state = module(x)
    out_p, state_p = module(x[:, perm])
    torch.testing.assert_close(out_p, out[:, perm], rtol=1e-12, atol=1e-12)
    for f, fp in zip(_flat_state(state), _flat_state(state_p)):
        torch.testing.assert_close(fp, f[perm], rtol=1e-12, atol=1e-12)
