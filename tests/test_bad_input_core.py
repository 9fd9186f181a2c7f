"""Bad input at the core boundaries (neuron modules, Sequential, encoders, losses), as
one case table: every case must raise the named exception with a message that names
the argument, what was expected and what came. (tests/test_bad_input.py holds the
older, more detailed cases of the neuron modules and scan.)"""

from __future__ import annotations

import pytest
import torch

import spikeflow
from spikeflow import encode, loss
from spikeflow.nn import ASN, LI, LIF, CubaLIF, GradedLIF, Sequential

NAN, INF = float("nan"), float("inf")


def _x(*shape):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(0))


def _filled(value, *shape):
    return torch.full(shape, value)


S = (_x(6, 4, 3) > 0.5).float()
Y = torch.tensor([0, 1, 2, 1])

CASES = {
    # encoders ------------------------------------------------------------------
    "direct-T-zero": (lambda: encode.direct(_x(4, 5), 0), ValueError, r"time steps T must be >= 1, got 0"),
    "direct-T-float": (lambda: encode.direct(_x(4, 5), 2.5), TypeError, r"T must be an int, got float"),
    "direct-int-x": (lambda: encode.direct(torch.ones(4, 5, dtype=torch.long), 3), TypeError,
                     r"direct: x must be a floating-point tensor, got dtype torch.int64"),
    "direct-list": (lambda: encode.direct([1, 2], 3), TypeError, r"direct: x must be a torch.Tensor .* got list"),
    "rate-above-one": (lambda: encode.rate(_x(4, 5) + 1, 3), ValueError, r"rate: values must be in \[0, 1\], got min"),
    "rate-nan": (lambda: encode.rate(_filled(NAN, 4, 5), 3), ValueError, r"rate: x contains NaN"),
    "rate-scalar": (lambda: encode.rate(torch.tensor(0.5), 3), ValueError, r"rate: x must have shape \[B, \*features\], got a scalar"),
    "poisson-negative": (lambda: encode.poisson(-_x(4, 5), 3), ValueError, r"poisson: values must be in \[0, 1\], got min -"),
    "poisson-nan": (lambda: encode.poisson(_filled(NAN, 4, 5), 3), ValueError, r"poisson: x contains NaN"),
    "poisson-inf": (lambda: encode.poisson(_filled(INF, 4, 5), 3), ValueError, r"poisson: values must be in \[0, 1\], got min inf"),
    "latency-nan": (lambda: encode.latency(_filled(NAN, 4, 5), 3), ValueError, r"latency: x contains NaN"),
    "latency-above-one": (lambda: encode.latency(_x(4, 5) * 3 + 1, 3), ValueError, r"latency: values must be in \[0, 1\]"),
    "latency-tau-linear": (lambda: encode.latency(_x(4, 5), 3, tau=0), ValueError, r"latency: tau applies to kind='log' only"),
    "delta-nan": (lambda: encode.delta(_filled(NAN, 3, 2, 2)), ValueError, r"delta: x holds 12 NaN or Inf values \(first at time step 0\)"),
    "delta-threshold": (lambda: encode.delta(_x(3, 2, 2), threshold=-1), ValueError, r"delta: threshold must be finite and > 0, got -1"),
    "delta-start": (lambda: encode.delta(_x(3, 2, 2), start="middle"), ValueError, r"unknown delta start 'middle'; expected one of"),
    "delta-rank": (lambda: encode.delta(_x(3)), ValueError, r"delta: x must be a sequence of shape \[T, B, \*features\]"),
    "multiplicative-T": (lambda: encode.multiplicative(_x(4, 5), 0), ValueError, r"time steps T must be >= 1, got 0"),
    # losses --------------------------------------------------------------------
    "ce-rank": (lambda: loss.spike_count_cross_entropy(S[0], Y), ValueError, r"spikes must have shape \[T, B, C\], got \(4, 3\)"),
    "ce-float-target": (lambda: loss.spike_count_cross_entropy(S, Y.float()), TypeError, r"target must hold integer class labels, got dtype torch.float32"),
    "ce-target-range": (lambda: loss.spike_count_cross_entropy(S, Y + 5), ValueError, r"target labels must be in \[0, 3\) for C = 3 classes, got min 5 and max 7"),
    "ce-target-length": (lambda: loss.spike_count_cross_entropy(S, Y[:2]), ValueError, r"target must have shape \[B\] = \(4,\) .* got \(2,\)"),
    "ce-int-spikes": (lambda: loss.spike_count_cross_entropy(S.long(), Y), TypeError, r"spikes must be a floating-point tensor, got dtype torch.int64"),
    "mse-nan-on": (lambda: loss.spike_count_mse(S, Y, on=NAN), ValueError, r"spike_count_mse: on must be finite and >= 0, got nan"),
    "mse-negative-off": (lambda: loss.spike_count_mse(S, Y, off=-1), ValueError, r"spike_count_mse: off must be finite and >= 0, got -1"),
    "membrane-reduce": (lambda: loss.membrane_cross_entropy(S, Y, reduce="median"), ValueError, r"unknown time reduction 'median'; expected one of \['max', 'mean', 'last', 'sum'\]"),
    "first-spike-tau": (lambda: loss.first_spike_time_loss(S, Y, tau=0), ValueError, r"first_spike_time_loss: tau must be finite and > 0, got 0"),
    "first-spike-int": (lambda: loss.first_spike_times(S.long()), TypeError, r"spikes must be a floating-point tensor, got dtype torch.int64"),
    "regularizer-no-bound": (lambda: loss.rate_regularizer(S), ValueError, r"rate_regularizer: give lower, upper or both"),
    "regularizer-nan": (lambda: loss.rate_regularizer(S, lower=NAN), ValueError, r"rate_regularizer: lower must be finite and >= 0, got nan"),
    "regularizer-order": (lambda: loss.rate_regularizer(S, lower=3, upper=1), ValueError, r"lower \(3\) must not exceed upper \(1\)"),
    # neuron modules --------------------------------------------------------------
    "lif-beta": (lambda: LIF(beta=2), ValueError, r"beta must be in \[0, 1\], got 2"),
    "lif-tau": (lambda: LIF(tau=-1), ValueError, r"tau must be > 0, got -1"),
    "lif-nan-threshold": (lambda: LIF(threshold=NAN), ValueError, r"threshold must be finite, got nan"),
    "lif-inf-threshold": (lambda: LIF(threshold=INF), ValueError, r"threshold must be finite, got inf"),
    "lif-reset": (lambda: LIF(reset="hard"), ValueError, r"unknown reset 'hard'; expected one of \['subtract', 'zero', 'none'\]"),
    "lif-surrogate": (lambda: LIF(surrogate="banana"), ValueError, r"unknown surrogate 'banana'; known: arctan"),
    "lif-rank-1": (lambda: LIF()(_x(5)), ValueError, r"time-major with shape \[T, B, \*features\] .* got shape \(5,\)"),
    "lif-int-input": (lambda: LIF()(torch.ones(3, 2, dtype=torch.long)), TypeError, r"input must be a floating-point tensor, got dtype torch.int64"),
    "lif-no-steps": (lambda: LIF()(_x(0, 2, 4)), ValueError, r"input has no time steps: shape \(0, 2, 4\)"),
    "lif-state-shape": (lambda: LIF()(_x(3, 2, 4), LIF().init_state((2, 5))), ValueError,
                        r"state.v has shape \(2, 5\) but the input's \[B, \*features\] is \(2, 4\)"),
    "lif-state-dtype": (lambda: LIF()(_x(3, 2, 4), LIF().init_state((2, 4), dtype=torch.float64)), TypeError,
                        r"state.v has dtype torch.float64 but the input has torch.float32"),
    "lif-state-device": (lambda: LIF()(_x(3, 2, 4), LIF().init_state((2, 4), device="meta")), ValueError,
                         r"state.v is on meta but the input is on cpu"),
    "lif-state-type": (lambda: LIF()(_x(3, 2, 4), (torch.zeros(2, 4),)), TypeError, r"state must be a LIFState, got tuple"),
    "lif-param-shape": (lambda: LIF(shape=4, learn_beta=True)(_x(3, 2, 5)), ValueError,
                        r"parameter beta of shape \(4,\) does not broadcast to the input's \[B, \*features\] = \(2, 5\)"),
    "recurrent-size": (lambda: LIF(recurrent=4)(_x(3, 2, 5)), ValueError, r"recurrent_weight must have shape \[5, 5\] for 5 neurons, got \(4, 4\)"),
    "recurrent-rank": (lambda: LIF(recurrent=4)(_x(3, 2, 4, 1)), ValueError, r"recurrent layers need input \[T, B, N\], got shape \(3, 2, 4, 1\)"),
    "recurrent-count": (lambda: LIF(recurrent=0), TypeError, r"recurrent must be a positive int \(the number of neurons\), got 0"),
    "recurrent-weight-dtype": (lambda: spikeflow.scan(spikeflow.neurons.LIFParams(), _x(3, 2, 4), recurrent_weight=torch.zeros(4, 4, dtype=torch.long)),
                               TypeError, r"recurrent_weight must be a floating-point tensor on the input's device cpu, got dtype torch.int64"),
    "cuba-alpha": (lambda: CubaLIF(alpha=-0.1), ValueError, r"alpha must be in \[0, 1\], got -0.1"),
    "cuba-order": (lambda: CubaLIF(order="sideways"), ValueError, r"unknown order 'sideways'; expected one of \['current_first', 'membrane_first'\]"),
    "asn-tau": (lambda: ASN(tau_phi=0), ValueError, r"tau_phi must be > 0, got 0"),
    "asn-input": (lambda: ASN(input="voltage"), ValueError, r"unknown ASN input mode 'voltage'; expected one of \['spikes', 'current'\]"),
    "li-beta": (lambda: LI(beta=1.5), ValueError, r"beta must be in \[0, 1\], got 1.5"),
    "li-backend": (lambda: LI(backend="gpu9"), ValueError, r"unknown backend 'gpu9'; available: auto, cpu, reference"),
    "graded-penalty": (lambda: GradedLIF(penalty=-1), ValueError, r"penalty must be >= 0, got -1"),
    "scan-params": (lambda: spikeflow.scan(object(), _x(3, 2, 4)), TypeError, r"object is not a neuron parameter type; known: "),
    # Sequential --------------------------------------------------------------------
    "sequential-function": (lambda: Sequential(lambda t: t), TypeError, r"layer 0 must be a torch.nn.Module, got function"),
    "sequential-state-length": (lambda: Sequential(LIF(), LIF())(_x(3, 2, 4), [None]), ValueError,
                                r"Sequential state has 1 entries but the network has 2 layers"),
    "sequential-stateless-state": (lambda: Sequential(torch.nn.Linear(4, 4), LIF())(_x(3, 2, 4), [LIF().init_state((2, 4)), None]),
                                   ValueError, r"state\[0\] must be None: layer 0 \(TimeDistributed\) is stateless"),
    "sequential-layer-shape": (lambda: Sequential(torch.nn.Linear(5, 3), LIF())(_x(3, 2, 4)), RuntimeError,
                               r"layer 0 \(Linear\) failed on input of shape \(3, 2, 4\): mat1 and mat2 shapes cannot be multiplied"),
    "sequential-record-shape": (lambda: Sequential(LIF(), torch.nn.Linear(5, 3)).record(_x(3, 2, 4)), RuntimeError,
                                r"layer 1 \(Linear\) failed on input of shape \(3, 2, 4\)"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_gives_a_clear_error(case):
    call, error, pattern = CASES[case]
    with pytest.raises(error, match=pattern):
        call()


def test_the_table_covers_every_public_encoder_and_loss():
    covered = " ".join(CASES)
    for name in ("direct", "rate", "poisson", "latency", "delta", "multiplicative"):
        assert name in covered, name
    for prefix in ("ce", "mse", "membrane", "first-spike", "regularizer"):
        assert prefix in covered, prefix
