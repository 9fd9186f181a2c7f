"""Golden trajectories computed by hand, and transcriptions of the seed programs.

The hand-computed cases use decays and inputs that are exact in binary (0.5, 0.25,
...), so every backend must reproduce them to rounding. Each golden runs on every
backend that can run it (the reference loop, and the fused ones once registered).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spikeflow import surrogate as sg
from spikeflow.neurons import (
    ASNParams,
    ASNState,
    CubaLIFParams,
    CubaLIFState,
    GradedLIFParams,
    LIFParams,
    LIFState,
    LIParams,
    if_params,
    model_of,
)
from spikeflow import RecurrentState, scan
from spikeflow.backends import backends_for

F64 = torch.float64
LN2 = math.log(2.0)
HALF_TAU = 1.0 / LN2  # a time constant in steps with exp(-1 / tau) = 0.5


def backends(params, x, recurrent=False):
    """Names of the registered backends that can run this call."""
    names = [b.name for b in backends_for(model_of(params)) if b.why_not(params, x, recurrent) is None]
    assert "reference" in names
    return names


def seq(values, dtype=F64):
    """A [T, B=1, N=1] input from a list of T numbers."""
    return torch.tensor(values, dtype=dtype).reshape(-1, 1, 1)


def flat(t):
    return t.reshape(t.shape[0], -1)[:, 0].tolist()


def run_all(params, x, **kwargs):
    """Run every backend; return the reference result after checking the others agree."""
    results = {name: scan(params, x, backend=name, record=True, **kwargs) for name in backends(params, x, "recurrent_weight" in kwargs)}
    ref = results["reference"]
    for name, res in results.items():
        torch.testing.assert_close(res.output, ref.output, msg=f"backend {name}")
        for a, b in zip(res.trajectory, ref.trajectory):
            torch.testing.assert_close(a, b, msg=f"backend {name}")
    return ref


def assert_traj(values, expected):
    np.testing.assert_allclose(flat(values), expected, rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- LIF / IF
# beta = 0.5, threshold = 1, x = [0.6, 0.8, 0.2, 1.5]; h = beta v + x, spike if h > 1.
#   t0: h = 0.6                    -> s 0
#   t1: h = 0.5*0.6 + 0.8 = 1.1    -> s 1
#   subtract: v1 = 1.1 - 1 = 0.1;  t2: h = 0.05 + 0.2 = 0.25 (s 0); t3: h = 0.125 + 1.5 = 1.625 (s 1), v = 0.625
#   zero:     v1 = 0;              t2: h = 0.2 (s 0);           t3: h = 0.1 + 1.5 = 1.6 (s 1), v = 0
#   none:     v1 = 1.1;            t2: h = 0.55 + 0.2 = 0.75;   t3: h = 0.375 + 1.5 = 1.875 (s 1), v = 1.875
LIF_GOLDEN = {
    "subtract": ([0, 1, 0, 1], [0.6, 0.1, 0.25, 0.625]),
    "zero": ([0, 1, 0, 1], [0.6, 0.0, 0.2, 0.0]),
    "none": ([0, 1, 0, 1], [0.6, 1.1, 0.75, 1.875]),
}


@pytest.mark.parametrize("reset", sorted(LIF_GOLDEN))
@pytest.mark.parametrize("detach_reset", [False, True])
def test_lif_golden(reset, detach_reset):
    spikes, v = LIF_GOLDEN[reset]
    p = LIFParams(beta=0.5, threshold=1.0, reset=reset, detach_reset=detach_reset)
    res = run_all(p, seq([0.6, 0.8, 0.2, 1.5]))
    assert flat(res.output) == spikes
    assert_traj(res.trajectory.v, v)
    assert_traj(res.state.v, [v[-1]])


# IF (beta = 1), threshold 1, x = [0.5, 0.5, 0.25, 1.0]:
#   t0: h = 0.5 (s 0); t1: h = 1.0, NOT above threshold (strict) -> s 0, v 1.0
#   t2: h = 1.25 -> s 1; subtract: v = 0.25 | zero: v = 0
#   t3: subtract: h = 0.25 + 1.0 = 1.25 -> s 1, v = 0.25 | zero: h = 1.0 -> s 0, v = 1.0
IF_GOLDEN = {
    "subtract": ([0, 0, 1, 1], [0.5, 1.0, 0.25, 0.25]),
    "zero": ([0, 0, 1, 0], [0.5, 1.0, 0.0, 1.0]),
    "none": ([0, 0, 1, 1], [0.5, 1.0, 1.25, 2.25]),
}


@pytest.mark.parametrize("reset", sorted(IF_GOLDEN))
def test_if_golden(reset):
    spikes, v = IF_GOLDEN[reset]
    res = run_all(if_params(threshold=1.0, reset=reset), seq([0.5, 0.5, 0.25, 1.0]))
    assert flat(res.output) == spikes
    assert_traj(res.trajectory.v, v)


# Recurrent LIF, beta 0.5, threshold 1, N = 2, W = [[0, 1], [0, 0]] (neuron 0 gets neuron 1's
# previous spike). x0 = [0.5, 0, 0.6], x1 = [1.5, 0, 0]:
#   t0: drive 0.           n0: h = 0.5 (s 0).               n1: h = 1.5 (s 1), v = 0.5
#   t1: drive n0 = 1 * 1.  n0: h = 0.25 + 0 + 1 = 1.25 (s 1), v = 0.25.   n1: h = 0.25 (s 0)
#   t2: drive n0 = 0.      n0: h = 0.125 + 0.6 = 0.725 (s 0).  n1: h = 0.125 (s 0)
def test_recurrent_lif_golden():
    p = LIFParams(beta=0.5, threshold=1.0)
    x = torch.tensor([[0.5, 1.5], [0.0, 0.0], [0.6, 0.0]], dtype=F64).unsqueeze(1)  # [3, 1, 2]
    w = torch.tensor([[0.0, 1.0], [0.0, 0.0]], dtype=F64)
    res = run_all(p, x, recurrent_weight=w)
    assert res.output[:, 0].tolist() == [[0, 1], [1, 0], [0, 0]]
    np.testing.assert_allclose(res.trajectory.v[:, 0].numpy(), [[0.5, 0.5], [0.25, 0.25], [0.725, 0.125]], atol=1e-12)
    assert isinstance(res.state, RecurrentState)
    assert res.state.output.tolist() == [[0.0, 0.0]]


# ----------------------------------------------------------------------------- CubaLIF
# alpha = beta = 0.5, threshold 1, gain 1, x = [1, 0.5, 0, 0], reset subtract.
# current_first: i = 0.5 i + x; h = 0.5 v + i
#   t0: i = 1,    h = 1 (not > 1, s 0), v 1
#   t1: i = 1,    h = 0.5 + 1 = 1.5 (s 1), v 0.5
#   t2: i = 0.5,  h = 0.25 + 0.5 = 0.75, v 0.75
#   t3: i = 0.25, h = 0.375 + 0.25 = 0.625
# membrane_first: h = 0.5 v + i_prev; then i = 0.5 i_prev + x
#   t0: h = 0 (i_prev 0), i = 1
#   t1: h = 0 + 1 = 1 (s 0), i = 1
#   t2: h = 0.5 + 1 = 1.5 (s 1), v 0.5, i = 0.5
#   t3: h = 0.25 + 0.5 = 0.75, i = 0.25
# normalize (current_first), x = [4, 4, 0, 0]: i = 0.5 i + 0.5 x; h = 0.5 v + 0.5 i
#   t0: i = 2,   h = 1 (s 0), v 1
#   t1: i = 3,   h = 0.5 + 1.5 = 2 (s 1), v 1
#   t2: i = 1.5, h = 0.5 + 0.75 = 1.25 (s 1), v 0.25
#   t3: i = .75, h = 0.125 + 0.375 = 0.5
# gain 2, reset zero (current_first), x = [0.25, 0.5, 0, 0]: h = 0.5 v + 2 i
#   t0: i = .25,    h = .5
#   t1: i = .625,   h = .25 + 1.25 = 1.5 (s 1), v 0
#   t2: i = .3125,  h = .625
#   t3: i = .15625, h = .3125 + .3125 = .625
CUBA_GOLDEN = [
    (dict(order="current_first"), [1, 0.5, 0, 0], [0, 1, 0, 0], [1, 0.5, 0.75, 0.625], [1, 1, 0.5, 0.25]),
    (dict(order="membrane_first"), [1, 0.5, 0, 0], [0, 0, 1, 0], [0, 1, 0.5, 0.75], [1, 1, 0.5, 0.25]),
    (dict(normalize=True), [4, 4, 0, 0], [0, 1, 1, 0], [1, 1, 0.25, 0.5], [2, 3, 1.5, 0.75]),
    (dict(gain=2.0, reset="zero"), [0.25, 0.5, 0, 0], [0, 1, 0, 0], [0.5, 0, 0.625, 0.625], [0.25, 0.625, 0.3125, 0.15625]),
]


@pytest.mark.parametrize("kwargs,x,spikes,v,i", CUBA_GOLDEN, ids=["current_first", "membrane_first", "normalize", "gain_zero"])
def test_cuba_golden(kwargs, x, spikes, v, i):
    p = CubaLIFParams(alpha=0.5, beta=0.5, threshold=1.0, **kwargs)
    res = run_all(p, seq(x))
    assert flat(res.output) == spikes
    assert_traj(res.trajectory.v, v)
    assert_traj(res.trajectory.i, i)
    assert_traj(res.trajectory.i_rec, [0, 0, 0, 0])


# Recurrent CubaLIF with its own recurrent current, alpha_rec = 0.5, N = 1, V = [[2]],
# alpha = beta = 0.5, membrane_first, threshold 1, x = [3, 0, 0, 0], reset zero:
#   t0: h = 0 (i_prev 0, i_rec_prev 0), i = 3, i_rec = 0.5*0 + 2*s_prev(0) = 0
#   t1: h = 0 + 3 + 0 = 3 (s 1), v 0;  i = 1.5, i_rec = 0
#   t2: h = 0 + 1.5 + 0 = 1.5 (s 1), v 0;  i = .75, i_rec = 0 + 2*1 = 2
#   t3: h = 0 + .75 + 2 = 2.75 (s 1);  i = .375, i_rec = 1 + 2*1 = 3
def test_cuba_recurrent_current_golden():
    p = CubaLIFParams(alpha=0.5, beta=0.5, alpha_rec=0.5, order="membrane_first", reset="zero")
    res = run_all(p, seq([3, 0, 0, 0]), recurrent_weight=torch.tensor([[2.0]], dtype=F64))
    assert flat(res.output) == [0, 1, 1, 1]
    assert_traj(res.trajectory.i_rec, [0, 0, 2, 3])
    assert_traj(res.trajectory.i, [3, 1.5, 0.75, 0.375])


# ----------------------------------------------------------------------------- LI
# beta 0.5, x = [1, 1, 0, 2]: v = 1, 1.5, 0.75, 2.375; normalize (a = 0.5): 0.5, 0.75, 0.375, 1.1875
@pytest.mark.parametrize("normalize,expected", [(False, [1, 1.5, 0.75, 2.375]), (True, [0.5, 0.75, 0.375, 1.1875])])
def test_li_golden(normalize, expected):
    res = run_all(LIParams(beta=0.5, normalize=normalize), seq([1, 1, 0, 2]))
    assert_traj(res.output, expected)
    assert_traj(res.trajectory.v, expected)


# ----------------------------------------------------------------------------- GradedLIF
# beta 0.5, threshold 2, penalty 2.5, x = [3, 1, 4, 0]; o = relu(h - 2), v = h - (2.5 + o)[o > 0]
#   t0: h = 3,              o = 1,     v = 3 - 3.5 = -0.5,         out = o_prev = 0
#   t1: h = -0.25 + 1 = .75, o = 0,    v = 0.75,                  out = 1
#   t2: h = .375 + 4 = 4.375, o = 2.375, v = 4.375 - 4.875 = -0.5, out = 0
#   t3: h = -0.25,           o = 0,    v = -0.25,                 out = 2.375
def test_graded_golden():
    res = run_all(GradedLIFParams(beta=0.5, threshold=2.0, penalty=2.5), seq([3, 1, 4, 0]))
    assert_traj(res.output, [0, 1, 0, 2.375])
    assert_traj(res.trajectory.v, [-0.5, 0.75, -0.5, -0.25])
    assert_traj(res.trajectory.o, [1, 0, 2.375, 0])


# ----------------------------------------------------------------------------- ASN
# Every decay 0.5 (tau = 1 / ln 2), m_f = 0.5, theta0 = 1.
# "current" mode, h = 1, x = [2, 2, 2, 0]:    (theta = 1 + theta_dyn_prev; S_hat' = 0.5 S_hat_prev)
#   t0: I 2, S_dyn = .5*2 = 1,          theta 1,      S_hat' 0,     1 - 0 - .5 = .5 > 0      -> z 1,
#       S_hat = 1,      theta_dyn = .5 (0 + .5*1) = .25
#   t1: S_dyn = 1 + .5 = 1.5,           theta 1.25,   S_hat' .5,    1.5 - .5 - .625 = .375   -> z 1,
#       S_hat = 1.75,   theta_dyn = .5 (.25 + .625) = .4375
#   t2: S_dyn = 1 + .75 = 1.75,         theta 1.4375, S_hat' .875,  1.75 - .875 - .71875 > 0 -> z 1,
#       S_hat = 2.3125, theta_dyn = .5 (.4375 + .71875) = .578125
#   t3: S_dyn = 0 + .875 = .875,        theta 1.578125, S_hat' 1.15625, < 0                  -> z 0,
#       S_hat = 1.15625, theta_dyn = .2890625
# "spikes" mode, bias .25, h = 2, x = [2, 0, 0, 0]: I = .5 I + x = 2, 1, .5, .25
#   t0: S_dyn 1,   S 1.25, theta 1,      S_hat' 0,     1.25 - .75 > 0      -> z 1, S_hat 1,    theta_dyn .25
#   t1: S_dyn 1,   S 1.25, theta 1.25,   S_hat' .5,    1.25 - .5 - .625 = .125 -> z 1, S_hat 1.75, theta_dyn .4375
#   t2: S_dyn .75, S 1,    theta 1.4375, S_hat' .875,  1 - .875 - .71875 < 0 -> z 0, S_hat .875, theta_dyn .21875
#   t3: S_dyn .5,  S .75,  theta 1.21875, S_hat' .4375, .75 - .4375 - .609375 < 0 -> z 0, S_hat .4375, theta_dyn .109375
ASN_GOLDEN = [
    (dict(input="current"), [2, 2, 2, 0], [1, 1, 1, 0], [1, 1.5, 1.75, 0.875], [1, 1.75, 2.3125, 1.15625],
     [0.25, 0.4375, 0.578125, 0.2890625]),
    (dict(input="spikes", bias=0.25, h=2.0), [2, 0, 0, 0], [2, 2, 0, 0], [1, 1, 0.75, 0.5], [1, 1.75, 0.875, 0.4375],
     [0.25, 0.4375, 0.21875, 0.109375]),
]


@pytest.mark.parametrize("kwargs,x,out,s_dyn,s_hat,theta_dyn", ASN_GOLDEN, ids=["current", "spikes"])
def test_asn_golden(kwargs, x, out, s_dyn, s_hat, theta_dyn):
    p = ASNParams(tau_phi=HALF_TAU, tau_gamma=HALF_TAU, tau_eta=HALF_TAU, tau_beta=HALF_TAU, m_f=0.5, theta0=1.0, **kwargs)
    assert abs(p.d_phi - 0.5) < 1e-15
    res = run_all(p, seq(x))
    assert_traj(res.output, out)
    assert_traj(res.trajectory.s_dyn, s_dyn)
    assert_traj(res.trajectory.s_hat, s_hat)
    assert_traj(res.trajectory.theta_dyn, theta_dyn)


class Seed000ASN:
    """Direct transcription of seed 000's NumPy ``ASN`` (one neuron, float64).

    Only change: ``self.S_bias = bias,`` (a tuple, a typo in the seed) is ``bias``."""

    def __init__(self, mf=0.1, bias=0):
        self.tau_phi = 2.5
        self.dPhi = np.exp(-1 / self.tau_phi)
        self.tau_gamma = 15.0
        self.dGamma = np.exp(-1 / self.tau_gamma)
        self.tau_eta = 50.0
        self.dEta = np.exp(-1 / self.tau_eta)
        self.dBeta = self.dEta
        self.m_f = mf
        self.theta0 = self.m_f
        self.S_bias = bias
        self.S = self.S_bias
        self.S_dyn = 0
        self.theta = self.theta0
        self.theta_dyn = 0
        self.S_hat = 0
        self.I = 0
        self.spike = 0

    def update(self, current, spike_train=True):
        if spike_train == True:  # noqa: E712 (as in the seed)
            self.I = self.I * self.dBeta + current
        else:
            self.I = current
        self.S_dyn = (1 - self.dPhi) * self.I + self.dPhi * self.S_dyn
        self.S = self.S_bias + self.S_dyn
        self.S_hat = self.S_hat * self.dEta
        if self.S - self.S_hat > 0.5 * self.theta:
            self.spike = 1
            self.S_hat = self.S_hat + self.theta
            self.theta_dyn = self.theta_dyn + self.m_f * self.theta
        else:
            self.spike = 0
        self.theta_dyn = self.theta_dyn * self.dGamma
        self.theta = self.theta0 + self.theta_dyn


@pytest.mark.parametrize("mode", ["spikes", "current"])
@pytest.mark.parametrize("bias", [0.0, 0.05])
def test_asn_matches_seed_000_numpy_loop(mode, bias):
    rng = np.random.default_rng(0)
    T, B = 60, 5
    if mode == "spikes":
        x = (rng.random((T, B)) < 0.3).astype(np.float64) * rng.uniform(0.0, 0.5, (T, B))
    else:
        x = rng.uniform(0.0, 1.0, (T, B))
    expected = np.zeros((T, B))
    expected_state = np.zeros((4, B))
    for b in range(B):
        neuron = Seed000ASN(mf=0.1, bias=bias)
        for t in range(T):
            neuron.update(x[t, b], spike_train=(mode == "spikes"))
            expected[t, b] = neuron.spike
        expected_state[:, b] = [neuron.I, neuron.S_dyn, neuron.theta_dyn, neuron.S_hat]
    p = ASNParams(bias=bias, input=mode)  # defaults are seed 000's
    res = run_all(p, torch.from_numpy(x).unsqueeze(-1))
    assert expected.sum() > 5  # the comparison means something
    np.testing.assert_array_equal(res.output[..., 0].numpy(), expected)
    got_state = np.stack([f[:, 0].numpy() for f in res.state])
    np.testing.assert_allclose(got_state, expected_state, rtol=1e-12, atol=1e-14)


# ----------------------------------------------------------------------------- seed 001
def test_graded_lif_matches_seed_001_layer():
    """Transcription of seed 001's SpikingNeuronLayerRNN.forward arithmetic (after its
    Linear layer): returns (previous inner, previous outer) at every step."""
    torch.manual_seed(1)
    T, B, N = 12, 4, 7
    excitation = torch.randn(T, B, N, dtype=F64) * 2.0 + 1.0  # = self.fc(x) per step
    decay_multiplier, threshold, penalty_threshold = 0.9, 2.0, 2.5
    prev_inner = torch.zeros(B, N, dtype=F64)
    prev_outer = torch.zeros(B, N, dtype=F64)
    states, outputs = [], []
    for t in range(T):
        inner_excitation = excitation[t] + prev_inner * decay_multiplier
        outer_excitation = torch.relu(inner_excitation - threshold)
        do_penalize_gate = (outer_excitation > 0).float()
        inner_excitation = inner_excitation - (penalty_threshold + outer_excitation) * do_penalize_gate
        delayed_return_state, delayed_return_output = prev_inner, prev_outer
        prev_inner, prev_outer = inner_excitation, outer_excitation
        states.append(delayed_return_state)
        outputs.append(delayed_return_output)
    p = GradedLIFParams(beta=decay_multiplier, threshold=threshold, penalty=penalty_threshold)
    res = run_all(p, excitation)
    torch.testing.assert_close(res.output, torch.stack(outputs), rtol=1e-12, atol=1e-12)
    # the seed's delayed state (its logits for the last layer) is v one step back
    torch.testing.assert_close(res.trajectory.v[:-1], torch.stack(states)[1:], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(res.state.v, prev_inner)
    assert (res.output > 0).any()


# ----------------------------------------------------------------------------- seed 003
def seed003_superspike(x, beta=10.0):
    """Heaviside(x, 0) forward, 1 / (beta |x| + 1)^2 backward (seed 003's custom_jvp)."""

    class _F(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return (x > 0).to(x.dtype)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g / (beta * x.abs() + 1.0) ** 2

    return _F.apply(x)


def seed003_lif_step(weights, alpha, beta, betar, state, Sin_t, theta=1.0):
    """Seed 003's ``lif_step`` in torch (batched: ``W @ s`` becomes ``s @ W.T``)."""
    U, I, Ir, S = state
    fc_weight, fc_bias, rec_weight, rec_bias = weights
    U = alpha * (1 - S.detach()) * U + (1 - alpha) * (20.0 * I + Ir)
    I = beta * I + (1 - beta) * (Sin_t @ fc_weight.T)
    Ir = betar * Ir + (1 - betar) * (S @ rec_weight.T)
    S_out = seed003_superspike(U - theta)
    return (U, I, Ir, S_out), S_out


def test_cuba_matches_seed_003_lif_step_with_gradients():
    torch.manual_seed(3)
    T, B, n_in, N = 40, 3, 12, 6
    spikes_in = (torch.rand(T, B, n_in, dtype=F64) < 0.2).to(F64)
    lim_fc, lim_rec = (6 / (n_in + N)) ** 0.5, (6 / (2 * N)) ** 0.5
    w_fc = torch.empty(N, n_in, dtype=F64).uniform_(-lim_fc, lim_fc).requires_grad_(True)
    w_rec = torch.empty(N, N, dtype=F64).uniform_(-lim_rec, lim_rec).requires_grad_(True)

    state = tuple(torch.zeros(B, N, dtype=F64) for _ in range(4))
    seed_out = []
    for t in range(T):
        state, s = seed003_lif_step((w_fc, None, w_rec, None), 0.95, 0.9, 0.85, state, spikes_in[t])
        seed_out.append(s)
    seed_out = torch.stack(seed_out)

    # seed's alpha (membrane) = our beta; seed's beta (synapse) = our alpha
    p = CubaLIFParams(
        alpha=0.9, beta=0.95, alpha_rec=0.85, gain=20.0, normalize=True, order="membrane_first",
        reset="zero", detach_reset=True, surrogate=sg.superspike(10.0),
    )
    target = torch.rand(B, N, dtype=F64) * 5
    seed_loss = ((seed_out.sum(0) - target) ** 2).sum()
    seed_grads = torch.autograd.grad(seed_loss, (w_fc, w_rec))
    assert 0 < seed_out.sum() < seed_out.numel()

    for name in backends(p, spikes_in[..., :N], recurrent=True):
        x = spikes_in @ w_fc.T  # [T, B, N]: the feed-forward drive (a fresh graph per backend)
        res = scan(p, x, backend=name, recurrent_weight=w_rec)
        assert torch.equal(res.output, seed_out), name
        U, I, Ir, _ = state
        # seed's U is the pre-reset membrane; ours is after the reset
        torch.testing.assert_close(res.state.neuron.v, U * (1 - seed_out[-1]))
        torch.testing.assert_close(res.state.neuron.i, I)
        torch.testing.assert_close(res.state.neuron.i_rec, Ir)
        loss = ((res.output.sum(0) - target) ** 2).sum()
        grads = torch.autograd.grad(loss, (w_fc, w_rec))
        for g, sg_ in zip(grads, seed_grads):
            torch.testing.assert_close(g, sg_, rtol=1e-9, atol=1e-12)


# ----------------------------------------------------------------------------- seed 004
class Seed004SpikeFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input):
        ctx.save_for_backward(input)
        out = torch.zeros_like(input)
        out[input > 0] = 1.0
        return out

    @staticmethod
    def backward(ctx, grad_output):
        (input,) = ctx.saved_tensors
        grad_input = grad_output.clone()
        grad_input[input < 0] = 0
        return grad_input


def seed004_layer(input_current, tau_v=20.0, tau_i=5.0, v_threshold=1.0):
    """Seed 004's ``run_spiking_layer`` loop ([T, B, N] input current; "exact method"
    leaks filled in for its ``toBeCompleted``), time-major."""
    T, B, N = input_current.shape
    v = torch.zeros(B, N, dtype=input_current.dtype)
    i = torch.zeros(B, N, dtype=input_current.dtype)
    recorded = []
    for t in range(T):
        v = v * math.exp(-1.0 / tau_v)
        i = i * math.exp(-1.0 / tau_i)
        i = i + input_current[t]
        v = v + i
        s = Seed004SpikeFunction.apply(v - v_threshold)
        recorded.append(s)
        v = v.clone()
        v[v > v_threshold] = 0  # in-place reset: no gradient through reset elements
    return torch.stack(recorded), v, i


SEED004 = dict(reset="zero", detach_reset=True, surrogate=sg.straight_through())


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_cuba_matches_seed_004_loop_with_gradients(dtype):
    torch.manual_seed(4)
    T, B, n_in, N = 50, 4, 20, 8
    spikes_in = (torch.rand(T, B, n_in) < 0.15).to(dtype)
    w = (torch.randn(n_in, N) * 0.3).to(dtype).requires_grad_(True)
    target = torch.full((B, N), 3.0, dtype=dtype)

    seed_spikes, seed_v, seed_i = seed004_layer(torch.einsum("tbi,in->tbn", spikes_in, w))
    seed_grad = torch.autograd.grad(((seed_spikes.sum(0) - target) ** 2).mean(), w)[0]
    assert 0 < seed_spikes.sum() < seed_spikes.numel()

    p = CubaLIFParams.from_tau(tau_mem=20.0, tau_syn=5.0, dt=1.0, **SEED004)
    for name in backends(p, spikes_in[..., :N]):
        x = torch.einsum("tbi,in->tbn", spikes_in, w)  # a fresh graph per backend
        res = scan(p, x, backend=name)
        assert torch.equal(res.output, seed_spikes), name
        tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(res.state.v, seed_v.detach(), **tol)
        torch.testing.assert_close(res.state.i, seed_i.detach(), **tol)
        grad = torch.autograd.grad(((res.output.sum(0) - target) ** 2).mean(), w)[0]
        torch.testing.assert_close(grad, seed_grad, **tol)
        assert grad.abs().sum() > 0


def test_seed_004_gradient_needs_detached_reset():
    """Negative regression test: with the reset *not* detached (a plausible 'fix'),
    the gradient no longer matches seed 004's in-place reset."""
    torch.manual_seed(4)
    x = (torch.rand(50, 4, 8, dtype=F64) * 0.6).requires_grad_(True)
    seed_spikes, _, _ = seed004_layer(x)
    seed_grad = torch.autograd.grad(seed_spikes.sum(), x)[0]
    p = CubaLIFParams.from_tau(tau_mem=20.0, tau_syn=5.0, **{**SEED004, "detach_reset": False})
    out = scan(p, x).output
    assert torch.equal(out, seed_spikes)
    grad = torch.autograd.grad(out.sum(), x)[0]
    assert not torch.allclose(grad, seed_grad)


def test_from_tau_decays():
    p = CubaLIFParams.from_tau(tau_mem=20.0, tau_syn=5.0, dt=1.0)
    assert p.beta == math.exp(-1 / 20) and p.alpha == math.exp(-1 / 5)
    assert LIFParams.from_tau(10.0, dt=2.0).beta == math.exp(-0.2)
    assert LIParams.from_tau(4.0).beta == math.exp(-0.25)


# ----------------------------------------------------------------------------- step == scan
@pytest.mark.parametrize(
    "params,state_type",
    [
        (LIFParams(beta=0.8, threshold=0.7, reset="zero"), LIFState),
        (CubaLIFParams(alpha=0.7, beta=0.85, normalize=True, order="membrane_first"), CubaLIFState),
        (ASNParams(input="current"), ASNState),
    ],
    ids=["lif", "cuba", "asn"],
)
def test_loop_of_step_equals_scan(params, state_type):
    x = torch.rand(9, 3, 5, dtype=F64) * 1.5
    model = model_of(params)
    state = state_type(*(torch.zeros(3, 5, dtype=F64) for _ in state_type._fields))
    outs = []
    for t in range(x.shape[0]):
        out, state = model.step(model.materialize(params, F64, x.device), state, x[t])
        outs.append(out)
    res = scan(params, x, backend="reference")
    assert torch.equal(res.output, torch.stack(outs))
    for a, b in zip(res.state, state):
        assert torch.equal(a, b)
