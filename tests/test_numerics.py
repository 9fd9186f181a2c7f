"""Numerical guards: half-precision inputs keep a float32 state, a NaN/Inf state is
reported with its cause (or raises), and gradients stay finite at extreme but valid
parameters (see spikeflow.numerics)."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest
import torch

import spikeflow
from spikeflow import surrogate as sg
from spikeflow.backends import backend_names
from spikeflow.neurons import ASNParams, CubaLIFParams, GradedLIFParams, LIFParams, LIParams, if_params
from spikeflow.numerics import NonFiniteError, NonFiniteWarning, get_nonfinite_policy, state_dtype

NEURONS = {
    "lif": LIFParams(),
    "if": if_params(),
    "cuba_lif": CubaLIFParams(),
    "asn": ASNParams(),
    "graded_lif": GradedLIFParams(),
    "li": LIParams(),
}
BACKENDS = [b for b in ("reference", "cpu") if b in backend_names()]


@pytest.fixture(autouse=True)
def _default_policy():
    with spikeflow.nonfinite_policy("warn"):
        yield


def _x(T=12, shape=(3, 5), seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand((T, *shape), generator=g) * 1.5).to(dtype)


# --------------------------------------------------------------------------- non-finite state


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(NEURONS))
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_a_poisoned_input_warns_with_its_first_time_step(name, backend, bad):
    x = _x()
    x[5, 1, 2] = bad
    with pytest.warns(NonFiniteWarning, match=r"first at time step 5") as record:
        spikeflow.scan(NEURONS[name], x, backend=backend)
    message = str(record[0].message)
    assert message.startswith(type(NEURONS[name]).__name__.removesuffix("Params"))
    kind = "1 NaN and 0 Inf" if bad != bad else "0 NaN and 1 Inf"
    assert f"the input holds {kind} of its {x.numel()} values" in message


@pytest.mark.parametrize("name", sorted(NEURONS))
def test_raise_policy_stops_the_call(name):
    x = _x()
    x[0, 0, 0] = float("nan")
    with spikeflow.nonfinite_policy("raise"):
        with pytest.raises(NonFiniteError, match="first at time step 0"):
            spikeflow.scan(NEURONS[name], x)
    assert isinstance(NonFiniteError("x"), FloatingPointError)


def test_ignore_policy_is_silent_and_finite_runs_never_warn():
    x = _x()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for params in NEURONS.values():
            spikeflow.scan(params, x)  # finite: no warning
        x[3] = float("nan")
        with spikeflow.nonfinite_policy("ignore"):
            out = spikeflow.scan(LIFParams(), x)
    assert torch.isnan(out.state.v).any()


def test_a_nan_learnable_parameter_is_named():
    beta = torch.full((5,), 0.9, requires_grad=True)  # learnable values skip the range check
    with torch.no_grad():
        beta[2] = float("nan")
    with pytest.raises(NonFiniteError, match="parameter beta holds NaN or Inf"):
        with spikeflow.nonfinite_policy("raise"):
            spikeflow.scan(LIFParams(beta=beta), _x())


def test_a_nan_initial_state_is_named():
    state = spikeflow.init_state(LIFParams(), (3, 5))
    state.v[1, 1] = float("nan")
    with pytest.warns(NonFiniteWarning, match="the initial state field 'v' holds NaN or Inf"):
        spikeflow.scan(LIFParams(), _x(), state)


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_overflowing_state_is_named(backend):
    # an integrator without reset, fed 3e38 twice, exceeds float32's 3.4e38
    x = torch.full((4, 1, 2), 3e38)
    with pytest.warns(NonFiniteWarning, match="state field 'v' overflowed torch.float32"):
        spikeflow.scan(if_params(reset="none", threshold=1.0), x, backend=backend)


def test_module_calls_are_checked_too():
    layer = spikeflow.nn.LIF()
    x = _x()
    x[2, 0, 0] = float("nan")
    with pytest.warns(NonFiniteWarning, match="first at time step 2"):
        layer(x)


def test_policy_values_are_checked_and_restored():
    with pytest.raises(ValueError, match="non-finite policy must be one of warn, raise, ignore; got 'loud'"):
        spikeflow.set_nonfinite_policy("loud")
    assert get_nonfinite_policy() == "warn"
    previous = spikeflow.set_nonfinite_policy("raise")
    try:
        assert previous == "warn" and get_nonfinite_policy() == "raise"
    finally:
        spikeflow.set_nonfinite_policy(previous)


def _python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True, timeout=120
    )


def test_environment_variable_sets_the_policy():
    code = (
        "import torch, spikeflow; from spikeflow.neurons import LIFParams\n"
        "try:\n    spikeflow.scan(LIFParams(), torch.full((2, 1, 1), float('nan')))\n"
        "except spikeflow.NonFiniteError as e:\n    print('raised', e)\n"
    )
    out = _python(code, SPIKEFLOW_NONFINITE="raise")
    assert out.returncode == 0 and out.stdout.startswith("raised LIF:"), out.stderr
    bad = _python("import spikeflow", SPIKEFLOW_NONFINITE="sometimes")
    assert bad.returncode != 0
    assert "SPIKEFLOW_NONFINITE must be one of warn, raise, ignore; got 'sometimes'" in bad.stderr


# --------------------------------------------------------------------------- half precision


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_keep_a_float32_state(dtype):
    x = _x(dtype=dtype)
    result = spikeflow.scan(LIFParams(), x, record=True)
    assert result.output.dtype == dtype
    assert result.state.v.dtype == torch.float32 and result.trajectory.v.dtype == torch.float32
    reference = spikeflow.scan(LIFParams(), x.float(), backend="reference", record=True)
    assert torch.equal(result.output.float(), reference.output)
    assert state_dtype(dtype) == torch.float32 and state_dtype(torch.float64) == torch.float64
    # the state comes back in: a float32 state goes with a half input, a half one does not
    spikeflow.scan(LIFParams(), x, result.state)
    with pytest.raises(TypeError, match=f"state.v has dtype {dtype} but the input has {dtype}, whose state is kept"):
        spikeflow.scan(LIFParams(), x, type(result.state)(result.state.v.to(dtype)))
    layer = spikeflow.nn.LIF()
    assert layer.init_state((3, 5), dtype=dtype).v.dtype == torch.float32


def test_float16_membrane_does_not_overflow():
    # IF without reset: 4,000 steps of input 20 reach 80,000 > float16's 65,504
    x = torch.full((4000, 1, 1), 20.0, dtype=torch.float16)
    state = spikeflow.scan(if_params(reset="none", threshold=1e6), x).state
    assert state.v.item() == 80000.0


def test_bfloat16_small_inputs_are_not_lost_to_rounding():
    # 1,000 inputs of bf16(0.001) into an integrator (beta = 1): a bfloat16 state would
    # stop growing once 0.001 falls below half its spacing (at 0.5); float32 keeps them
    x = torch.full((1000, 1, 1), 0.001, dtype=torch.bfloat16)
    v = spikeflow.scan(LIParams(beta=1.0), x).state.v
    expected = 1000 * x[0, 0, 0].double()
    assert abs(v.double().item() - expected.item()) < 1e-4


def test_half_recurrent_layer_and_gradients():
    torch.manual_seed(0)
    layer = spikeflow.nn.LIF(recurrent=6).to(torch.bfloat16)
    x = _x(shape=(2, 6), dtype=torch.bfloat16).requires_grad_()
    out, state = layer(x)
    assert out.dtype == torch.bfloat16 and state.neuron.v.dtype == torch.float32
    out.float().sum().backward()
    assert x.grad.dtype == torch.bfloat16 and torch.isfinite(x.grad.float()).all()
    assert torch.isfinite(layer.recurrent_weight.grad.float()).all()


# --------------------------------------------------------------------------- extreme parameters


SURROGATES = [sg.superspike, sg.sigmoid, sg.atan, sg.triangle]


@pytest.mark.parametrize("make", SURROGATES, ids=lambda f: f.__name__)
@pytest.mark.parametrize("alpha", [1e-6, 1e-3, 1.0, 1e3, 1e6, 1e30])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_surrogate_derivatives_stay_finite_and_bounded(make, alpha, dtype):
    big = torch.finfo(dtype).max
    u = torch.tensor([-float("inf"), -big, -1e4, -1.0, -1e-30, 0.0, 1e-30, 1.0, 1e4, big, float("inf")])
    g = make(alpha).derivative(u.to(dtype))
    assert torch.isfinite(g).all()
    assert ((g >= 0) & (g <= 1)).all()  # g(0) = 1 is the maximum of every surrogate
    assert g[5] == 1


EXTREMES = {
    "no-leak": LIFParams(beta=1.0, threshold=1e-6, surrogate=sg.sigmoid(1e6)),
    "no-memory": LIFParams(beta=0.0, threshold=1e6, surrogate=sg.atan(1e-6)),
    "tiny-threshold-zero-reset": LIFParams(beta=0.999, threshold=1e-8, reset="zero", surrogate=sg.superspike(1e4)),
    "cuba-no-leak": CubaLIFParams(alpha=1.0, beta=1.0, threshold=1e3, gain=1e3, surrogate=sg.triangle(1e-4)),
    "cuba-instant": CubaLIFParams(alpha=0.0, beta=0.0, threshold=1e-6, normalize=True),
    "asn-fast": ASNParams(tau_phi=1e-3, tau_gamma=1e-3, tau_eta=1e-3, m_f=0.0, theta0=1e-3),
    "asn-slow": ASNParams(tau_phi=1e6, tau_gamma=1e6, tau_eta=1e6, m_f=100.0),
    "graded-large": GradedLIFParams(beta=1.0, threshold=1e-6, penalty=1e6),
    "li-no-leak": LIParams(beta=1.0),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(EXTREMES))
def test_gradients_stay_finite_at_extreme_parameters(name, backend):
    params = EXTREMES[name]
    g = torch.Generator().manual_seed(1)
    x = ((torch.rand(500, 4, 8, generator=g) - 0.3) * 50).requires_grad_()
    out, state, _ = spikeflow.scan(params, x, backend=backend)
    loss = out.sum() + sum(v.sum() for v in state)
    (grad,) = torch.autograd.grad(loss, x)
    assert torch.isfinite(out).all() and torch.isfinite(grad).all(), name
    if backend != "reference":
        ref_out, ref_state, _ = spikeflow.scan(params, x, backend="reference")
        assert torch.equal(out, ref_out)
        (ref_grad,) = torch.autograd.grad(ref_out.sum() + sum(v.sum() for v in ref_state), x)
        torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-4 * ref_grad.abs().max().item())
