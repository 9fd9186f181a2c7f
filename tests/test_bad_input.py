"""Every misuse raises a clear error (message checked), never a silent fix."""

from __future__ import annotations

import math

import pytest
import torch

from spikeflow import nn as snn
from spikeflow.neurons import (
    ASNParams,
    CubaLIFParams,
    CubaLIFState,
    GradedLIFParams,
    LIFParams,
    LIFState,
    LIParams,
    decay_from_tau,
)
from spikeflow import RecurrentState, scan

NAN = float("nan")


# ----------------------------------------------------------------------------- input shape
@pytest.mark.parametrize("module", [snn.LIF(), snn.CubaLIF(), snn.ASN(), snn.GradedLIF(), snn.LI(), snn.IF()], ids=repr)
def test_missing_time_axis(module):
    with pytest.raises(ValueError, match=r"time-major.*\[T, B, \*features\].*got shape \(5,\).*unsqueeze\(0\)"):
        module(torch.rand(5))


def test_input_type_and_dtype():
    with pytest.raises(TypeError, match="input must be a torch.Tensor"):
        snn.LIF()([[1.0, 2.0]])
    with pytest.raises(TypeError, match="floating-point tensor, got dtype torch.int64"):
        snn.LIF()(torch.ones(3, 2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="no time steps"):
        snn.LIF()(torch.ones(0, 2, 4))


def test_layers_need_a_time_axis():
    with pytest.raises(ValueError, match=r"TimeDistributed\(Linear\) expects a time-major input \[T, B, \.\.\.\].*got shape \(4,\)"):
        snn.Linear(4, 2)(torch.rand(4))
    with pytest.raises(ValueError, match=r"Flatten expects a time-major input"):
        snn.Flatten()(torch.rand(4))
    with pytest.raises(ValueError, match=r"Sequential expects a time-major input"):
        snn.Sequential(snn.LIF())(torch.rand(4))
    with pytest.raises(TypeError, match="Sequential expects a torch.Tensor"):
        snn.Sequential(snn.LIF())(None)


def test_recurrent_layer_needs_T_B_N_input_of_matching_size():
    with pytest.raises(ValueError, match=r"recurrent_weight must have shape \[4, 4\] for 4 neurons, got \(3, 3\)"):
        snn.LIF(recurrent=3)(torch.rand(2, 1, 4))
    with pytest.raises(ValueError, match=r"recurrent layers need input \[T, B, N\], got shape \(2, 1, 3, 3\)"):
        snn.CubaLIF(recurrent=3)(torch.rand(2, 1, 3, 3))
    with pytest.raises(ValueError, match=r"recurrent_weight must have shape \[3, 3\]"):
        scan(LIFParams(), torch.rand(2, 1, 3), recurrent_weight=torch.rand(3))
    with pytest.raises(TypeError, match="recurrent must be a positive int"):
        snn.LIF(recurrent=0)
    with pytest.raises(TypeError, match="recurrent must be a positive int"):
        snn.LIF(recurrent=True)


# ----------------------------------------------------------------------------- state
def test_state_shape_mismatch_is_never_silently_rezeroed():
    lif = snn.LIF()
    _, state = lif(torch.rand(3, 2, 4))
    with pytest.raises(ValueError, match=r"state.v has shape \(2, 4\) but the input's \[B, \*features\] is \(5, 4\); pass state=None"):
        lif(torch.rand(3, 5, 4), state)
    with pytest.raises(ValueError, match=r"state.i has shape \(2, 3\)"):
        snn.CubaLIF()(torch.rand(1, 2, 4), CubaLIFState(torch.zeros(2, 4), torch.zeros(2, 3), torch.zeros(2, 4)))


def test_state_dtype_mismatch():
    _, state = snn.LIF()(torch.rand(3, 2, 4))
    with pytest.raises(TypeError, match="state.v has dtype torch.float32 but the input has torch.float64"):
        snn.LIF().double()(torch.rand(3, 2, 4, dtype=torch.float64), state)


def test_state_of_the_wrong_type():
    _, cuba_state = snn.CubaLIF()(torch.rand(3, 2, 4))
    with pytest.raises(TypeError, match="state must be a LIFState, got CubaLIFState"):
        snn.LIF()(torch.rand(3, 2, 4), cuba_state)
    with pytest.raises(TypeError, match="state must be a LIFState, got tuple"):
        snn.LIF()(torch.rand(3, 2, 4), (torch.zeros(2, 4),))
    with pytest.raises(TypeError, match="state.v must be a tensor, got float"):
        snn.LIF()(torch.rand(3, 2, 4), LIFState(0.0))
    with pytest.raises(TypeError, match="a recurrent layer's state must be a RecurrentState, got LIFState"):
        snn.LIF(recurrent=4)(torch.rand(3, 2, 4), LIFState(torch.zeros(2, 4)))
    with pytest.raises(TypeError, match="state.neuron must be a LIFState"):
        snn.LIF(recurrent=4)(torch.rand(3, 2, 4), RecurrentState(cuba_state, torch.zeros(2, 4)))
    with pytest.raises(ValueError, match=r"state.output has shape \(2, 3\) but the input's \[B, \*features\] is \(2, 4\)"):
        snn.LIF(recurrent=4)(torch.rand(3, 2, 4), RecurrentState(LIFState(torch.zeros(2, 4)), torch.zeros(2, 3)))
    with pytest.raises(TypeError, match="state.output must be a tensor, got NoneType"):
        snn.LIF(recurrent=4)(torch.rand(3, 2, 4), RecurrentState(LIFState(torch.zeros(2, 4)), None))
    with pytest.raises(TypeError, match="state.output has dtype torch.float64 but the input has torch.float32"):
        snn.LIF(recurrent=4)(
            torch.rand(3, 2, 4), RecurrentState(LIFState(torch.zeros(2, 4)), torch.zeros(2, 4, dtype=torch.float64))
        )


def test_sequential_state_list():
    net = snn.Sequential(snn.Linear(4, 3), snn.LIF(), snn.LI())
    _, states = net(torch.rand(2, 1, 4))
    with pytest.raises(ValueError, match="Sequential state has 2 entries but the network has 3 layers"):
        net(torch.rand(2, 1, 4), states[1:])
    with pytest.raises(TypeError, match="Sequential state must be a list with one entry per layer"):
        net(torch.rand(2, 1, 4), states[1])  # a NamedTuple is not a list of states
    with pytest.raises(ValueError, match=r"state\[0\] must be None: layer 0 \(TimeDistributed\) is stateless"):
        net(torch.rand(2, 1, 4), [states[1], states[1], states[2]])
    with pytest.raises(TypeError, match="state must be a LIState, got LIFState"):
        net(torch.rand(2, 1, 4), [None, states[1], states[1]])


# ----------------------------------------------------------------------------- parameters
@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: snn.LIF(tau=0.0), "tau must be > 0, got 0.0"),
        (lambda: snn.LIF(tau=-5.0), "tau must be > 0, got -5.0"),
        (lambda: snn.LIF(tau=5.0, dt=0.0), "dt must be > 0, got 0.0"),
        (lambda: snn.LI(tau=NAN), "tau must be finite, got nan"),
        (lambda: snn.CubaLIF(tau_syn=-1.0), "tau must be > 0"),
        (lambda: snn.LIF(beta=1.5), r"beta must be in \[0, 1\], got 1.5"),
        (lambda: snn.LIF(beta=-0.1), r"beta must be in \[0, 1\], got -0.1"),
        (lambda: snn.LIF(beta=NAN), "beta must be finite, got nan"),
        (lambda: snn.LIF(beta=torch.tensor([0.5, 1.2])), r"beta must be in \[0, 1\], got a tensor with min 0.5 and max 1.2"),
        (lambda: snn.CubaLIF(alpha=2.0), r"alpha must be in \[0, 1\], got 2.0"),
        (lambda: snn.CubaLIF(alpha_rec=-0.5), r"alpha_rec must be in \[0, 1\]"),
        (lambda: snn.LI(beta=1.01), r"beta must be in \[0, 1\]"),
        (lambda: snn.LIF(threshold=0.0), "threshold must be > 0, got 0.0"),
        (lambda: snn.IF(threshold=-1.0), "threshold must be > 0, got -1.0"),
        (lambda: snn.CubaLIF(threshold=NAN), "threshold must be finite, got nan"),
        (lambda: snn.GradedLIF(threshold=0.0), "threshold must be > 0"),
        (lambda: snn.GradedLIF(penalty=-0.5), "penalty must be >= 0, got -0.5"),
        (lambda: snn.CubaLIF(gain=math.inf), "gain must be finite, got inf"),
        (lambda: snn.ASN(tau_phi=0.0), "tau_phi must be > 0, got 0.0"),
        (lambda: snn.ASN(m_f=-0.1), "m_f must be >= 0"),
        (lambda: snn.ASN(theta0=0.0), "theta0 must be > 0"),
        (lambda: snn.ASN(m_f=0.0), "theta0 must be > 0, got 0.0"),  # theta0 defaults to m_f
        (lambda: snn.ASN(h=NAN), "h must be finite"),
        (lambda: snn.LIF(threshold="1"), "threshold must be a number or a tensor, got str"),
        (lambda: snn.LIF(beta=True), "beta must be a number or a tensor, got bool"),
    ],
)
def test_parameter_out_of_range(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: LIFParams(beta=1.5), r"beta must be in \[0, 1\]"),
        (lambda: LIFParams.from_tau(0.0), "tau must be > 0"),
        (lambda: LIParams(beta=-1.0), r"beta must be in \[0, 1\]"),
        (lambda: GradedLIFParams(penalty=-1.0), "penalty must be >= 0"),
        (lambda: CubaLIFParams(threshold=-1.0), "threshold must be > 0"),
        (lambda: ASNParams(tau_beta=-1.0), "tau_beta must be > 0"),
        (lambda: decay_from_tau(torch.tensor([1.0, -1.0])), "tau must be > 0, got a tensor"),
        (lambda: LIFParams(surrogate="atan"), "surrogate must be a spikeflow.surrogate.Surrogate"),
    ],
)
def test_params_dataclasses_validate(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_learnable_decay_at_the_boundary():
    with pytest.raises(ValueError, match=r"a learnable beta must be strictly between 0 and 1 .*got 1; use learn_beta=False"):
        snn.LIF(beta=1.0, learn_beta=True)
    with pytest.raises(ValueError, match="a learnable beta must be strictly between 0 and 1"):
        snn.LI(beta=0.0, learn_beta=True)
    with pytest.raises(ValueError, match="a learnable alpha must be strictly between 0 and 1"):
        snn.CubaLIF(alpha=torch.tensor([0.5, 0.0]), learn_alpha=True)
    snn.LIF(beta=1.0)  # a fixed 1 is fine
    snn.LIF(beta=0.0)


def test_both_decay_and_time_constant():
    with pytest.raises(ValueError, match="give either beta or tau, not both"):
        snn.LIF(beta=0.9, tau=5.0)
    with pytest.raises(ValueError, match="give either alpha or tau_syn, not both"):
        snn.CubaLIF(alpha=0.5, tau_syn=5.0)
    with pytest.raises(ValueError, match="give either beta or tau_mem, not both"):
        snn.CubaLIF(beta=0.5, tau_mem=5.0)
    with pytest.raises(ValueError, match="give either beta or tau, not both"):
        snn.LI(beta=0.5, tau=5.0)


@pytest.mark.parametrize("shape", ["N", 3.0, (3, "a"), (0,), (-1,), [2.5], None])
def test_wrong_shape_type(shape):
    with pytest.raises(TypeError, match="shape must be a tuple of positive ints"):
        snn.LIF(shape=shape)


def test_shape_as_int_and_list():
    assert snn.LIF(shape=4).beta.shape == (4,)
    assert snn.LIF(shape=[2, 1]).beta.shape == (2, 1)


def test_parameter_shape_that_does_not_broadcast():
    with pytest.raises(ValueError, match=r"parameter beta of shape \(3,\) does not broadcast to the input's \[B, \*features\] = \(2, 4\)"):
        snn.LIF(shape=(3,))(torch.rand(2, 2, 4))
    with pytest.raises(ValueError, match=r"parameter threshold of shape \(3, 2, 4\) would grow the input's"):
        snn.LIF(threshold=torch.ones(3, 2, 4), learn_threshold=True)(torch.rand(2, 2, 4))
    with pytest.raises(ValueError, match=r"beta of shape \(2,\) does not match the parameter shape \(3,\)"):
        snn.LIF(beta=torch.full((2,), 0.5), shape=(3,))


def test_unknown_names():
    with pytest.raises(ValueError, match="unknown surrogate 'erf'; known:"):
        snn.LIF(surrogate="erf")
    with pytest.raises(TypeError, match="surrogate must be a spikeflow.surrogate.Surrogate .* or its name, got 3"):
        snn.LIF(surrogate=3)
    with pytest.raises(ValueError, match="unknown backend 'cuda-fast'; available: auto, .*reference"):
        snn.LIF(backend="cuda-fast")
    with pytest.raises(TypeError, match="backend must be a string"):
        snn.LIF(backend=None)
    with pytest.raises(ValueError, match="unknown backend 'nope' for lif; available: .*reference"):
        scan(LIFParams(), torch.rand(2, 1, 3), backend="nope")
    with pytest.raises(ValueError, match=r"unknown reset 'soft'; expected one of \['subtract', 'zero', 'none'\]"):
        snn.LIF(reset="soft")
    with pytest.raises(ValueError, match="unknown order 'both'"):
        snn.CubaLIF(order="both")
    with pytest.raises(ValueError, match="unknown ASN input mode 'analog'"):
        snn.ASN(input="analog")


def test_flags_must_be_bools():
    with pytest.raises(TypeError, match="detach_reset must be True or False, got 'yes'"):
        snn.LIF(detach_reset="yes")
    with pytest.raises(TypeError, match="learn_beta must be True or False"):
        snn.LIF(learn_beta=1)
    with pytest.raises(TypeError, match="normalize must be True or False"):
        snn.LI(normalize=None)


# ----------------------------------------------------------------------------- layers
def test_time_distributed_refuses_stateful_and_time_walking_modules():
    with pytest.raises(TypeError, match="TimeDistributed only wraps stateless layers; LIF has state"):
        snn.TimeDistributed(snn.LIF())
    with pytest.raises(TypeError, match="only wraps stateless layers"):
        snn.TimeDistributed(torch.nn.Sequential(torch.nn.Linear(2, 2), snn.LIF()))
    with pytest.raises(TypeError, match="LSTM walks through time itself"):
        snn.TimeDistributed(torch.nn.LSTM(3, 3))
    with pytest.raises(TypeError, match="TimeDistributed wraps a torch.nn.Module, got function"):
        snn.TimeDistributed(lambda x: x)


def test_sequential_refuses_unsafe_layers():
    with pytest.raises(ValueError, match=r"torch.nn.Flatten\(start_dim=0, end_dim=-1\) would mix the time and batch axes.*spikeflow.nn.Flatten"):
        snn.Sequential(torch.nn.Flatten(start_dim=0))
    with pytest.raises(TypeError, match="layer 1 must be a torch.nn.Module, got function"):
        snn.Sequential(snn.LIF(), lambda x: x)
    with pytest.raises(TypeError, match="torch.nn.Sequential holding spikeflow neurons cannot pass their state"):
        snn.Sequential(torch.nn.Sequential(torch.nn.Linear(2, 2), snn.LIF()))
    with pytest.raises(TypeError, match="GRU walks through time itself"):
        snn.Sequential(torch.nn.GRU(2, 2))
