"""spikeflow.nn: module == functional, streaming == one call, record, learnable
parameters, TimeDistributed layers and Sequential."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch

import spikeflow
from spikeflow import nn as snn
from spikeflow import surrogate as sg
from spikeflow.neurons import (
    ASNParams,
    CubaLIFParams,
    CubaOrder,
    GradedLIFParams,
    LIFParams,
    LIParams,
    Reset,
)
from spikeflow import RecurrentState, ScanResult, scan
from spikeflow.backends import backend_names

F64 = torch.float64


# Each case: (module factory, the equivalent functional params, recurrent N or None)
def _cases():
    return {
        "lif": (lambda: snn.LIF(beta=0.75, threshold=0.5), LIFParams(beta=0.75, threshold=0.5), None),
        "lif_zero_detach": (
            lambda: snn.LIF(beta=0.5, reset="zero", detach_reset=True, surrogate=sg.atan(2.0)),
            LIFParams(beta=0.5, reset="zero", detach_reset=True, surrogate=sg.atan(2.0)),
            None,
        ),
        "lif_tau": (lambda: snn.LIF(tau=4.0, dt=2.0), LIFParams.from_tau(4.0, dt=2.0), None),
        "lif_recurrent": (lambda: snn.LIF(beta=0.5, recurrent=5), LIFParams(beta=0.5), 5),
        "if": (lambda: snn.IF(threshold=0.75, reset="zero"), LIFParams(beta=1.0, threshold=0.75, reset="zero"), None),
        "cuba": (
            lambda: snn.CubaLIF(alpha=0.5, beta=0.75, gain=2.0, normalize=True, order="membrane_first"),
            CubaLIFParams(alpha=0.5, beta=0.75, gain=2.0, normalize=True, order="membrane_first"),
            None,
        ),
        "cuba_recurrent": (
            lambda: snn.CubaLIF(alpha=0.5, beta=0.75, alpha_rec=0.25, recurrent=5),
            CubaLIFParams(alpha=0.5, beta=0.75, alpha_rec=0.25),
            5,
        ),
        "cuba_tau": (
            lambda: snn.CubaLIF(tau_mem=20.0, tau_syn=5.0, reset="none"),
            CubaLIFParams.from_tau(tau_mem=20.0, tau_syn=5.0, reset="none"),
            None,
        ),
        "asn": (lambda: snn.ASN(input="current", bias=0.1), ASNParams(input="current", bias=0.1), None),
        "graded": (lambda: snn.GradedLIF(beta=0.5, threshold=0.5), GradedLIFParams(beta=0.5, threshold=0.5), None),
        "li": (lambda: snn.LI(beta=0.5, normalize=True), LIParams(beta=0.5, normalize=True), None),
    }


CASES = _cases()


def _input(T=8, B=3, N=5, dtype=torch.float32):
    return torch.rand(T, B, N, dtype=dtype) * 1.2


@pytest.mark.parametrize("name", sorted(CASES))
def test_module_equals_functional(name):
    make, params, n_rec = CASES[name]
    module = make()
    x = _input()
    out, state = module(x)
    expected = scan(params, x, recurrent_weight=module.recurrent_weight)
    torch.testing.assert_close(out, expected.output, rtol=1e-6, atol=1e-6)
    if n_rec:
        assert isinstance(state, RecurrentState)
        for a, b in zip(state.neuron, expected.state.neuron):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    else:
        assert type(state) is type(expected.state)
        for a, b in zip(state, expected.state):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", sorted(CASES))
def test_forward_returns_exactly_two_values_and_no_hidden_state(name):
    module = CASES[name][0]()
    x = _input()
    result = module(x)
    assert isinstance(result, tuple) and len(result) == 2
    again = module(x)  # no hidden state: the same call gives the same result
    torch.testing.assert_close(result[0], again[0], rtol=0, atol=0)
    assert not module._buffers.get("state") and list(module.buffers()) == [
        b for n, b in module.named_buffers() if n.endswith("_value")
    ]


@pytest.mark.parametrize("name", sorted(CASES))
def test_streaming_equals_one_call(name):
    module = CASES[name][0]().double()
    x = _input(T=7, dtype=F64)
    full_out, full_state = module(x)
    state, outs = None, []
    for t in range(x.shape[0]):
        out, state = module(x[t : t + 1], state)
        outs.append(out)
    torch.testing.assert_close(torch.cat(outs), full_out, rtol=0, atol=1e-12)
    flat_a = list(full_state.neuron) + [full_state.output] if isinstance(full_state, RecurrentState) else list(full_state)
    flat_b = list(state.neuron) + [state.output] if isinstance(state, RecurrentState) else list(state)
    for a, b in zip(flat_a, flat_b):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", sorted(CASES))
def test_record(name):
    module = CASES[name][0]()
    x = _input()
    res = module.record(x)
    assert isinstance(res, ScanResult)
    out, state = module(x)
    torch.testing.assert_close(res.output, out, rtol=0, atol=0)
    neuron_state = state.neuron if isinstance(state, RecurrentState) else state
    assert type(res.trajectory) is type(neuron_state)
    for traj, final in zip(res.trajectory, neuron_state):
        assert traj.shape == (x.shape[0],) + final.shape
        torch.testing.assert_close(traj[-1], final, rtol=0, atol=0)


def test_backend_is_passed_through():
    x = _input()
    ref = snn.LIF(backend="reference")(x)[0]
    auto = snn.LIF()(x)[0]
    torch.testing.assert_close(ref, auto)
    for backend in backend_names():
        module = snn.CubaLIF(backend=backend)
        if backend != "auto":
            assert f"backend={backend!r}" in repr(module)


def test_gradient_flows_to_input_and_recurrent_weight():
    module = snn.CubaLIF(recurrent=5, alpha_rec=0.5, surrogate=sg.sigmoid(5.0))
    x = _input().requires_grad_(True)
    out, _ = module(x)
    out.sum().backward()
    assert x.grad.abs().sum() > 0
    assert module.recurrent_weight.grad.abs().sum() > 0


def test_recurrent_init_matches_seed_003():
    torch.manual_seed(0)
    n = 50
    w = snn.LIF(recurrent=n).recurrent_weight
    bound = math.sqrt(6.0 / (2 * n))
    assert w.shape == (n, n) and w.abs().max() <= bound and w.abs().max() > 0.9 * bound
    assert abs(w.mean().item()) < 0.05


# ----------------------------------------------------------------------------- parameters
def test_tau_sets_beta():
    assert snn.LIF(tau=10.0, dt=1.0).beta.item() == pytest.approx(math.exp(-0.1), rel=1e-6)
    m = snn.LIF(tau=10.0, dt=0.5)
    assert m.tau.item() == pytest.approx(10.0, rel=1e-5)
    c = snn.CubaLIF(tau_mem=20.0, tau_syn=5.0)
    assert c.alpha.item() == pytest.approx(math.exp(-0.2), rel=1e-6)
    assert c.beta.item() == pytest.approx(math.exp(-0.05), rel=1e-6)
    assert snn.LI(tau=2.0).beta.item() == pytest.approx(math.exp(-0.5), rel=1e-6)
    assert snn.LIF().beta.item() == pytest.approx(0.9)
    assert snn.CubaLIF().alpha.item() == pytest.approx(0.8)


def test_fixed_values_are_buffers_and_learnables_are_parameters():
    m = snn.LIF(beta=0.8, threshold=1.5)
    assert list(m.parameters()) == []
    assert sorted(n for n, _ in m.named_buffers()) == ["beta_value", "threshold_value"]
    m = snn.CubaLIF(learn_alpha=True, learn_beta=True, learn_threshold=True)
    assert sorted(n for n, _ in m.named_parameters()) == ["alpha_logit", "beta_logit", "threshold_log"]
    assert m.alpha.item() == pytest.approx(0.8) and m.threshold.item() == pytest.approx(1.0)
    assert m.beta_logit.item() == pytest.approx(math.log(0.9 / 0.1), rel=1e-6)
    assert list(snn.IF().parameters()) == [] and snn.IF().beta.item() == 1.0
    assert list(snn.ASN().parameters()) == []


def test_fixed_values_follow_dtype_and_state_dict():
    m = snn.LIF(beta=0.8, threshold=1.5, shape=(4,)).double()
    assert m.beta.dtype == F64
    m2 = snn.LIF(beta=0.5, threshold=1.0, shape=(4,))
    m2.load_state_dict(m.state_dict())
    assert torch.allclose(m2.beta, torch.full((4,), 0.8, dtype=torch.float32))


@pytest.mark.parametrize(
    "make,names",
    [
        (lambda: snn.LIF(learn_beta=True, learn_threshold=True), ["beta_logit", "threshold_log"]),
        (lambda: snn.CubaLIF(learn_alpha=True, learn_beta=True, learn_threshold=True), ["alpha_logit", "beta_logit", "threshold_log"]),
        (lambda: snn.GradedLIF(beta=0.9, threshold=0.5, learn_beta=True, learn_threshold=True), ["beta_logit", "threshold_log"]),
        (lambda: snn.LI(learn_beta=True), ["beta_logit"]),
        (lambda: snn.IF(learn_threshold=True), ["threshold_log"]),
    ],
    ids=["lif", "cuba", "graded", "li", "if"],
)
def test_learnable_params_get_gradients_and_stay_in_range(make, names):
    module = make()
    x = _input(T=10) * 2
    out, _ = module(x)
    (out.sum() + out.pow(2).sum()).backward()
    for name in names:
        grad = getattr(module, name).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    # Adam moves each raw value by about lr per step: 10 steps of lr 5 push a logit to
    # +-50 (sigmoid saturates to exactly 1.0 in float32, still in [0, 1]).
    for optimizer, lr in ((torch.optim.Adam, 5.0), (torch.optim.Adam, 1.0), (torch.optim.SGD, 1.0)):
        module = make()
        opt = optimizer(module.parameters(), lr=lr)
        for step in range(10):
            opt.zero_grad()
            out, _ = module(x)
            sign = 1.0 if step % 2 else -1.0
            (sign * 10 * out.sum()).backward()
            opt.step()
            for attr in ("alpha", "beta"):
                if hasattr(module, attr):
                    value = getattr(module, attr)
                    assert torch.isfinite(value).all() and (value >= 0).all() and (value <= 1).all()
            if hasattr(module, "threshold"):
                assert (module.threshold > 0).all() and torch.isfinite(module.threshold).all()
        module(x)  # still a valid module after the steps


def test_functional_gradient_matches_module_gradient_through_the_parametrization():
    module = snn.LIF(beta=0.7, threshold=0.8, learn_beta=True, learn_threshold=True, surrogate=sg.atan(2.0)).double()
    x = _input(dtype=F64) * 1.5
    out, _ = module(x)
    out.sum().backward()
    beta = module.beta.detach().clone().requires_grad_(True)
    thr = module.threshold.detach().clone().requires_grad_(True)
    res = scan(LIFParams(beta=beta, threshold=thr, surrogate=sg.atan(2.0)), x)
    torch.testing.assert_close(res.output, out)
    res.output.sum().backward()
    b = beta.detach()
    torch.testing.assert_close(module.beta_logit.grad, beta.grad * b * (1 - b))  # d sigmoid
    torch.testing.assert_close(module.threshold_log.grad, thr.grad * thr.detach())  # d exp


def test_per_neuron_parameters():
    n = 5
    betas = torch.linspace(0.2, 0.9, n)
    module = snn.LIF(beta=betas, threshold=torch.linspace(0.5, 1.5, n), learn_beta=True, learn_threshold=True)
    assert module.beta.shape == (n,)
    torch.testing.assert_close(module.beta, betas)
    module2 = snn.CubaLIF(shape=(n,), learn_alpha=True)
    assert module2.alpha.shape == (n,)
    x = _input(N=n)
    out, _ = module(x)
    # each neuron computes with its own values: compare one column with a scalar LIF
    col = snn.LIF(beta=betas[2].item(), threshold=1.0)(x[..., 2:3])[0]
    assert torch.equal(out[..., 2:3], col)
    out.sum().backward()
    assert module.beta_logit.grad.shape == (n,)
    # per-channel conv parameters: shape (C, 1, 1) broadcasts over [T, B, C, H, W]
    conv_lif = snn.LIF(shape=(3, 1, 1), learn_threshold=True)
    out, state = conv_lif(torch.rand(4, 2, 3, 6, 6))
    assert out.shape == (4, 2, 3, 6, 6) and state.v.shape == (2, 3, 6, 6)


def test_learnable_value_initialized_as_tensor_keeps_values():
    m = snn.LI(beta=torch.tensor([0.1, 0.5, 0.99]), learn_beta=True)
    torch.testing.assert_close(m.beta, torch.tensor([0.1, 0.5, 0.99]))


def test_surrogate_default_is_per_instance_and_by_name():
    a, b = snn.LIF(), snn.LIF()
    assert a.surrogate == sg.superspike() and a.neuron_params().surrogate == sg.superspike()
    assert snn.LIF(surrogate="atan").surrogate == sg.atan()
    assert snn.CubaLIF(surrogate=sg.triangle(3.0)).neuron_params().surrogate == sg.triangle(3.0)


def test_mode_attributes_are_enums_and_changes_take_effect():
    m = snn.LIF(beta=0.5, reset="zero")
    assert m.reset is Reset.ZERO
    assert snn.CubaLIF(order="membrane_first").order is CubaOrder.MEMBRANE_FIRST
    x = torch.full((3, 1, 1), 1.5)
    assert m(x)[1].v.item() == 0.0
    m.reset = Reset.SUBTRACT  # the params are rebuilt on each call: no stale mode
    # h = 1.5 (v .5), .25 + 1.5 = 1.75 (v .75), .375 + 1.5 = 1.875 (v .875)
    assert m(x)[1].v.item() == 0.875


def test_extra_repr():
    r = repr(snn.LIF(beta=0.5, learn_beta=True, reset="zero", detach_reset=True, recurrent=3))
    assert r.startswith("LIF(") and "beta=0.5 (learnable)" in r and "reset=zero" in r
    assert "detach_reset=True" in r and "recurrent=3" in r and "superspike(alpha=10)" in r
    r = repr(snn.CubaLIF(gain=20.0, normalize=True, order="membrane_first", alpha_rec=0.85))
    assert "gain=20" in r and "normalize=True" in r and "order=membrane_first" in r and "alpha_rec=0.85" in r
    assert "tau_phi=2.5" in repr(snn.ASN()) and "input=spikes" in repr(snn.ASN())
    assert "penalty=2.5" in repr(snn.GradedLIF())
    assert repr(snn.LI(normalize=True)) == "LI(beta=0.9, normalize=True)"
    assert "beta=tensor(4,)" in repr(snn.LIF(shape=(4,)))


def test_modules_pickle_and_deepcopy():
    m = snn.CubaLIF(learn_beta=True, recurrent=4, surrogate=sg.atan(2.0))
    buf = io.BytesIO()
    torch.save(m, buf)
    buf.seek(0)
    m2 = torch.load(buf, weights_only=False)
    m3 = copy.deepcopy(m)
    x = _input(N=4)
    for other in (m2, m3):
        torch.testing.assert_close(other(x)[0], m(x)[0], rtol=0, atol=0)


# ----------------------------------------------------------------------------- layers
def test_time_distributed_equals_a_loop_over_time():
    layers = [
        snn.Linear(5, 3),
        snn.Conv2d(2, 4, 3, padding=1),
        snn.Conv1d(2, 3, 3),
        snn.MaxPool2d(2),
        snn.AvgPool2d(2),
        snn.AdaptiveAvgPool2d(1),
        snn.TimeDistributed(torch.nn.ReLU()),
    ]
    inputs = [(5,), (2, 6, 6), (2, 7), (2, 6, 6), (2, 6, 6), (2, 6, 6), (5,)]
    for layer, feat in zip(layers, inputs):
        assert isinstance(layer, snn.TimeDistributed)
        x = torch.randn(4, 3, *feat)
        y = layer(x)
        expected = torch.stack([layer.module(x[t]) for t in range(4)])
        torch.testing.assert_close(y, expected)


def test_time_distributed_non_contiguous_input():
    x = torch.randn(3, 4, 5).transpose(0, 1)  # [T=4, B=3, 5], non-contiguous
    lin = snn.Linear(5, 2)
    torch.testing.assert_close(lin(x), lin.module(x))


def test_batchnorm_and_dropout_fold_time_into_batch():
    bn = snn.BatchNorm2d(3)
    x = torch.randn(4, 2, 3, 5, 5) * 3 + 1
    y = bn(x)
    assert y.shape == x.shape
    # statistics over T*B*H*W per channel
    torch.testing.assert_close(y.mean(dim=(0, 1, 3, 4)), torch.zeros(3), atol=1e-5, rtol=0)
    bn1 = snn.BatchNorm1d(6)
    assert bn1(torch.randn(4, 2, 6)).shape == (4, 2, 6)
    drop = snn.Dropout(0.5)
    z = drop(torch.ones(10, 8, 20))
    assert set(z.unique().tolist()) <= {0.0, 2.0}
    drop.eval()
    assert torch.equal(drop(torch.ones(3, 2, 4)), torch.ones(3, 2, 4))


def test_flatten_keeps_time_and_batch():
    x = torch.randn(4, 2, 3, 5, 5)
    assert snn.Flatten()(x).shape == (4, 2, 75)
    torch.testing.assert_close(snn.Flatten()(x)[1, 0], x[1, 0].flatten())


# ----------------------------------------------------------------------------- Sequential
def _net():
    return snn.Sequential(
        torch.nn.Linear(6, 8),
        snn.LIF(beta=0.5, threshold=0.5),
        snn.Dropout(0.0),
        snn.Linear(8, 4),
        snn.CubaLIF(recurrent=4, alpha_rec=0.5, threshold=0.25),
        torch.nn.Linear(4, 3),
        snn.LI(beta=0.5),
    )


def test_sequential_wraps_plain_torch_layers():
    net = _net()
    assert isinstance(net[0], snn.TimeDistributed) and isinstance(net[0].module, torch.nn.Linear)
    assert isinstance(net[5], snn.TimeDistributed)
    assert isinstance(snn.Sequential(torch.nn.Flatten())[0], snn.Flatten)
    assert len(net) == 7 and list(net)[1] is net[1]


def test_sequential_forward_equals_manual_chain():
    net = _net()
    x = torch.rand(6, 2, 6)
    out, states = net(x)
    assert out.shape == (6, 2, 3) and len(states) == 7
    assert [s is None for s in states] == [True, False, True, True, False, True, False]
    h = net[0](x)
    h, s1 = net[1](h)
    h = net[3](net[2](h))
    h, s4 = net[4](h)
    h, s6 = net[6](net[5](h))
    torch.testing.assert_close(out, h, rtol=0, atol=0)
    torch.testing.assert_close(states[6].v, s6.v, rtol=0, atol=0)


def test_sequential_streaming_equals_one_call():
    net = _net().double()
    x = torch.rand(8, 2, 6, dtype=F64) * 2
    full, full_states = net(x)
    states, outs = None, []
    for t in range(x.shape[0]):
        out, states = net(x[t : t + 1], states)
        outs.append(out)
    torch.testing.assert_close(torch.cat(outs), full, rtol=0, atol=1e-12)
    torch.testing.assert_close(states[4].neuron.v, full_states[4].neuron.v, rtol=0, atol=1e-12)
    # the hidden layer actually spiked
    assert net.record(x).outputs[1].sum() > 0


def test_sequential_record():
    net = _net()
    x = torch.rand(5, 2, 6)
    rec = net.record(x)
    assert isinstance(rec, snn.Recording)
    out, states = net(x)
    torch.testing.assert_close(rec.output, out, rtol=0, atol=0)
    assert len(rec.outputs) == len(rec.trajectories) == len(rec.states) == 7
    assert rec.outputs[-1] is rec.output
    assert rec.outputs[1].shape == (5, 2, 8)
    assert rec.trajectories[0] is None and rec.trajectories[1].v.shape == (5, 2, 8)
    torch.testing.assert_close(rec.trajectories[4].v[-1], rec.states[4].neuron.v)
    torch.testing.assert_close(rec.trajectories[6].v[-1], states[6].v)


def test_nested_sequential():
    inner = snn.Sequential(snn.Linear(6, 4), snn.LIF(beta=0.5))
    net = snn.Sequential(inner, snn.Linear(4, 2), snn.LI())
    x = torch.rand(5, 3, 6)
    out, states = net(x)
    assert isinstance(states[0], list) and len(states[0]) == 2
    out2, _ = net(x, states)
    assert out2.shape == out.shape
    rec = net.record(x)
    assert isinstance(rec.trajectories[0], list)
    torch.testing.assert_close(rec.output, out)


def test_sequential_conv_network_trains():
    net = snn.Sequential(
        snn.Conv2d(1, 4, 3, padding=1),
        snn.BatchNorm2d(4),
        snn.LIF(shape=(4, 1, 1), learn_beta=True),
        snn.MaxPool2d(2),
        snn.Flatten(),
        snn.Linear(4 * 4 * 4, 3),
        snn.LI(),
    )
    x = torch.rand(5, 2, 1, 8, 8) * 3
    out, _ = net(x)
    loss = out.mean(0).pow(2).sum()
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())


@pytest.mark.parametrize(
    "make",
    [
        lambda: snn.LIF(beta=torch.linspace(0.3, 0.9, 5), learn_beta=True, learn_threshold=True, reset="zero"),
        lambda: snn.IF(threshold=0.8, learn_threshold=True, surrogate=sg.atan(2.0)),
        lambda: snn.CubaLIF(learn_alpha=True, learn_beta=True, learn_threshold=True, shape=(5,), normalize=True),
        lambda: snn.CubaLIF(tau_mem=20.0, tau_syn=5.0, learn_beta=True, order="membrane_first", detach_reset=True),
        lambda: snn.GradedLIF(threshold=0.5, learn_beta=True, learn_threshold=True),
        lambda: snn.LI(learn_beta=True, shape=(5,)),
        lambda: snn.ASN(input="current"),
    ],
    ids=["lif", "if", "cuba", "cuba_mf", "graded", "li", "asn"],
)
def test_every_backend_gives_the_module_the_same_outputs_and_gradients(make):
    """Module level: forward, final state and gradients w.r.t. the input, the initial
    state and every learnable parameter agree across the backends that can run it."""
    x0 = torch.rand(12, 3, 5, dtype=F64) * 3.0
    results = {}
    for backend in backend_names():
        if backend == "auto":
            continue
        module = make().double()
        module.backend = backend
        x = x0.clone().requires_grad_(True)
        state0 = scan(module.neuron_params(), x0[:1]).state  # a non-rest initial state
        state0 = type(state0)(*(f.detach().clone().requires_grad_(True) for f in state0))
        try:
            out, state = module(x, state0)
        except ValueError as err:  # this backend cannot run this configuration
            assert "cannot run" in str(err)
            continue
        loss = (out * torch.linspace(0.5, 1.5, 5, dtype=F64)).sum() + sum(f.pow(2).sum() for f in state)
        params = [p for _, p in sorted(module.named_parameters())]
        grads = torch.autograd.grad(loss, [x, *state0, *params], allow_unused=True)
        results[backend] = (out.detach(), [f.detach() for f in state], grads)
    ref = results.pop("reference")
    assert ref[0].any() and (isinstance(module, snn.LI) or not ref[0].all())  # spikes, not saturated
    for backend, (out, state, grads) in results.items():
        torch.testing.assert_close(out, ref[0], msg=backend)
        for a, b in zip(state, ref[1]):
            torch.testing.assert_close(a, b, msg=backend)
        for a, b in zip(grads, ref[2]):
            if b is None:
                assert a is None or not a.any()
            else:
                torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10, msg=backend)


@pytest.mark.parametrize("name", sorted(CASES))
def test_init_state_is_the_rest_state(name):
    module = CASES[name][0]()
    x = _input()
    state = module.init_state(x.shape[1:])
    out, final = module(x, state)
    out_rest, final_rest = module(x)
    torch.testing.assert_close(out, out_rest, rtol=0, atol=0)
    leaves = list(state.neuron) + [state.output] if isinstance(state, RecurrentState) else list(state)
    assert all(t.dtype == torch.float32 and not t.any() for t in leaves)
    assert module.init_state((2, 5), dtype=F64).__class__ is state.__class__


def test_public_api():
    assert spikeflow.nn is snn and "nn" in spikeflow.__all__
    for name in snn.__all__:
        assert getattr(snn, name).__module__.startswith("spikeflow.nn"), name
    assert {"LIF", "IF", "CubaLIF", "ASN", "GradedLIF", "LI", "TimeDistributed", "Sequential", "Recording", "Flatten"} <= set(snn.__all__)


def test_setting_a_mode_validates_it():
    m = snn.CubaLIF()
    m.order = "membrane_first"  # strings are parsed like in the constructor
    assert m.order is CubaOrder.MEMBRANE_FIRST and m.neuron_params().order is CubaOrder.MEMBRANE_FIRST
    with pytest.raises(ValueError, match="unknown reset 'soft'"):
        m.reset = "soft"
    assert m.reset is Reset.SUBTRACT  # a rejected value changes nothing


def test_torch_compile_traces_a_model_without_graph_breaks():
    """fullgraph=True fails on any graph break: parameter checks, the parameter cache and
    the non-finite state check stand aside while dynamo traces (reference backend; the
    fused CPU kernel is in tests/test_compile.py)."""
    torch.manual_seed(0)
    net = snn.Sequential(
        torch.nn.Linear(8, 16), snn.LIF(backend="reference", learn_beta=True, shape=16),
        torch.nn.Linear(16, 4), snn.LI(backend="reference"),
    )
    x = torch.rand(6, 3, 8)
    expected, _ = net(x)
    expected.sum().backward()
    grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    try:
        compiled = torch.compile(net, fullgraph=True, backend="eager")
        out, _ = compiled(x)
        out.sum().backward()
    finally:
        torch._dynamo.reset()  # compiled code keeps tensors alive (tests count live tensors)
    assert torch.equal(out, expected)
    for p, g in zip(net.parameters(), grads):
        torch.testing.assert_close(p.grad, g)
