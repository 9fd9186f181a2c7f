"""torch.compile and the fused CPU kernels.

Under ``torch.compile`` the cpu backend runs through two registered torch operators
(``spikeflow::cpu_scan`` and ``spikeflow::cpu_scan_backward``) instead of a direct
ctypes call inside an ``autograd.Function`` (a graph break). Checked here: whole
models and every neuron trace with ``fullgraph=True`` (any graph break fails),
compiled results equal the eager ones bit for bit (the same kernels run), and
``torch.library.opcheck`` accepts the operators (schema, fake tensors, autograd
registration).
"""

from __future__ import annotations

import pytest
import torch

import spikeflow
from spikeflow import nn as snn
from spikeflow import surrogate as sg
from spikeflow.backends import cpu as cpu_backend
from spikeflow.backends._fused import NEURONS as FUSED
from spikeflow.backends._fused import config
from spikeflow.neurons import ASNParams, CubaLIFParams, GradedLIFParams, LIFParams, LIParams

pytestmark = pytest.mark.skipif(cpu_backend.available() is not None,
                                reason=f"cpu kernels unavailable: {cpu_backend.available()}")



@pytest.fixture(autouse=True)
def _forget_compiled_code():
    """Compiled graphs keep tensors alive (tests that count live tensors run later)."""
    yield
    torch._dynamo.reset()
    import gc

    gc.collect()


NEURONS = {
    "lif": LIFParams(beta=0.8, threshold=0.7, surrogate=sg.atan(2.0)),
    "cuba_lif": CubaLIFParams(alpha=0.7, beta=0.85, threshold=0.6, order="membrane_first"),
    "asn": ASNParams(input="current"),  # the current-input mode gives i no gradient
    "graded_lif": GradedLIFParams(beta=0.8, threshold=0.5),
    "li": LIParams(beta=0.75),
}


def _case(name: str, record: bool, T: int = 37, shape=(3, 5)):
    gen = torch.Generator().manual_seed(hash((name, record)) % 2**31)
    params = NEURONS[name]
    x = (torch.rand(T, *shape, generator=gen) * 1.5).requires_grad_()
    state = spikeflow.init_state(params, shape)
    state = type(state)(*[(f + 0.1 * torch.rand(f.shape, generator=gen)).requires_grad_() for f in state])
    return params, x, state


def _grads(params, x, state, record, fn):
    result = fn(x, state)
    gen = torch.Generator().manual_seed(7)
    loss = (result.output * torch.randn(result.output.shape, generator=gen)).sum()
    loss = loss + sum((f * torch.randn(f.shape, generator=gen)).sum() for f in result.state)
    if record:
        loss = loss + sum((f * torch.randn(f.shape, generator=gen)).sum() for f in result.trajectory)
    inputs = [x, *state]
    grads = torch.autograd.grad(loss, inputs, allow_unused=True)
    return result, grads


@pytest.mark.parametrize("record", [False, True], ids=["plain", "record"])
@pytest.mark.parametrize("name", sorted(NEURONS))
def test_compiled_scan_equals_eager(name, record):
    params, x, state = _case(name, record)

    def run(x, state):
        return spikeflow.scan(params, x, state, backend="cpu", record=record)

    torch._dynamo.reset()
    compiled = torch.compile(run, fullgraph=True, backend="aot_eager")
    eager, eager_grads = _grads(params, x, state, record, run)
    got, got_grads = _grads(params, x, state, record, compiled)
    assert torch.equal(got.output, eager.output)
    for a, b in zip(got.state, eager.state):
        assert torch.equal(a, b)
    if record:
        for a, b in zip(got.trajectory, eager.trajectory):
            assert torch.equal(a, b)
    for a, b in zip(got_grads, eager_grads):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.equal(a, b)


def test_compiled_model_with_learnable_parameters_matches_the_reference():
    """A whole model, inductor, fullgraph: spikes equal to the reference backend,
    gradients of every weight and learnable decay within float tolerance."""
    def build(backend):
        torch.manual_seed(0)
        return snn.Sequential(
            torch.nn.Linear(8, 16), snn.LIF(backend=backend, learn_beta=True, shape=16),
            torch.nn.Linear(16, 4), snn.LI(backend=backend),
        )

    x = torch.rand(20, 3, 8)
    ref = build("reference")
    expected, _ = ref(x)
    expected.sum().backward()
    net = build("cpu")
    torch._dynamo.reset()
    out, _ = torch.compile(net, fullgraph=True)(x)
    out.sum().backward()
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    for p, q in zip(net.parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("record", [False, True], ids=["plain", "record"])
@pytest.mark.parametrize("name", ["lif", "cuba_lif"])
def test_operators_pass_opcheck(name, record):
    params, x, state = _case(name, record, T=9, shape=(2, 3))
    values = spikeflow.neurons.model_of(params).materialize(params, torch.float32, x.device)
    neuron = FUSED[name]
    prm = [getattr(values, p) for p in neuron.params]
    states = [getattr(state, f).detach().requires_grad_() for f in neuron.fields]
    args = (x.detach().requires_grad_(), states, prm, name,
            config(values), record, cpu_backend._checkpoint_interval(len(neuron.fields), 4), 0)
    torch.library.opcheck(cpu_backend._KERNELS.op, args)


def test_operators_refuse_what_the_kernel_would_misread():
    params, x, state = _case("cuba_lif", False, T=4, shape=(2, 3))
    values = spikeflow.neurons.model_of(params).materialize(params, torch.float32, x.device)
    prm = [getattr(values, p) for p in FUSED["cuba_lif"].params]
    cfg = config(values)
    with pytest.raises(ValueError, match=r"cuba_lif takes 2 state fields \('v', 'i'\) .* got 3"):
        cpu_backend._KERNELS.op(x.detach(), list(state), prm, "cuba_lif", cfg, False, 4, 0)
    with pytest.raises(ValueError, match="unknown neuron 'lfi'"):
        cpu_backend._KERNELS.op(x.detach(), [state.v], prm[:2], "lfi", cfg, False, 4, 0)
    with pytest.raises(ValueError, match=r"shaped like x\[0\] \(2, 3\); got torch.float32 \(3, 2\)"):
        cpu_backend._KERNELS.op(x.detach(), [state.v.t(), state.i], prm, "cuba_lif", cfg, False, 4, 0)
