"""Every fast backend equals the reference: the shared equivalence suite.

Written over ``spikeflow.backends.backends_for(model)``: each backend registered for a
neuron other than ``"reference"`` (the fused ``"cpu"`` kernels today, later GPU
kernels) is checked against the reference loop over the step function on

- outputs: spikes identical (``torch.equal``) for the spiking neurons, close for the
  others;
- final states and recorded trajectories: close;
- gradients, with random upstream gradients on the output, the final state and the
  trajectory: w.r.t. the input, every initial-state field and every learnable
  parameter: close (float64 ~1e-10 relative, float32 ~1e-4);

over a grid of configurations (reset modes, detach_reset, every surrogate kind,
both CubaLIF orders, normalize, ASN input modes, scalar / per-feature / learnable
parameters, float32 and float64, T in {1, 7, 200}, feature shapes, non-contiguous
inputs and states, nonzero initial states), plus hypothesis-drawn cases and a
float64 ``gradcheck`` of each backend's own autograd.

A backend that cannot run a configuration (its capabilities or ``available()``)
is skipped for it with the reason, never silently replaced.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Optional

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import spikeflow
from spikeflow import surrogate as sg
from spikeflow.neurons import (
    ASNParams,
    CubaLIFParams,
    GradedLIFParams,
    LIFParams,
    LIParams,
    model_of,
)
from spikeflow import init_state
from spikeflow.backends import backends_for

# ---------------------------------------------------------------------------
# What is compared

SURROGATES = [sg.superspike(10.0), sg.sigmoid(4.0), sg.atan(2.0), sg.triangle(1.0), sg.straight_through()]
assert {s.kind for s in SURROGATES} == set(sg.SurrogateKind), "a surrogate kind is not covered"

DEFAULTS = {
    "lif": LIFParams(),
    "cuba_lif": CubaLIFParams(),
    "asn": ASNParams(),
    "graded_lif": GradedLIFParams(),
    "li": LIParams(),
}
SPIKING = {"lif", "cuba_lif", "asn"}  # outputs must be bitwise identical
DTYPES = [torch.float32, torch.float64]
ALL_USES = frozenset({"output", "state", "trajectory"})


def _fast_backends(neuron: str) -> list[str]:
    return [b.name for b in backends_for(model_of(DEFAULTS[neuron])) if b.name != "reference"]


def _pairs(neurons) -> list:
    """pytest params (neuron, backend) for every fast backend of every neuron."""
    return [
        pytest.param(n, b, id=f"{n}-{b}") for n in neurons for b in _fast_backends(n)
    ]


ALL_PAIRS = _pairs(DEFAULTS)


def _backend(neuron: str, name: str):
    for backend in backends_for(model_of(DEFAULTS[neuron])):
        if backend.name == name:
            return backend
    raise AssertionError(f"backend {name!r} is not registered for {neuron}")


def _device_for(backend) -> torch.device:
    if "cpu" in backend.caps.devices:
        return torch.device("cpu")
    if "cuda" in backend.caps.devices and torch.cuda.is_available():
        return torch.device("cuda")
    devices = sorted(backend.caps.devices)
    pytest.skip(f"backend {backend.name!r} needs a device this machine lacks ({devices})")


def _tolerances(dtype: torch.dtype) -> tuple[float, float]:
    if dtype == torch.float64:
        return 1e-10, 1e-12
    return 1e-4, 1e-5


def _close(got: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype, what: str) -> None:
    rtol, atol = _tolerances(dtype)
    got, ref = got.detach(), ref.detach()
    scale = max(1.0, float(ref.abs().max())) if ref.numel() else 1.0
    torch.testing.assert_close(got, ref, rtol=rtol, atol=atol * scale, msg=lambda m: f"{what}: {m}")


def _grad_or_zeros(g: Optional[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(like) if g is None else g


def _to(params: Any, device: torch.device) -> Any:
    """``params`` with its tensor fields on ``device`` (keeping learnable leaves as leaves)."""
    if device.type == "cpu":
        return params
    changes = {}
    for f in dataclasses.fields(params):
        value = getattr(params, f.name)
        if isinstance(value, torch.Tensor):
            changes[f.name] = value.detach().to(device).requires_grad_(value.requires_grad)
    return dataclasses.replace(params, **changes)


def _leaf(t: torch.Tensor, requires_grad: bool, strided: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """A fresh leaf and the tensor passed to scan, with ``t``'s values: the leaf itself,
    or a non-contiguous view of it (the leaf stores the first dim last)."""
    if not strided:
        leaf = t.detach().clone().requires_grad_(requires_grad)
        return leaf, leaf
    leaf = t.detach().movedim(0, -1).contiguous().requires_grad_(requires_grad)
    view = leaf.movedim(-1, 0)
    assert not view.is_contiguous() or view.shape[0] == 1 or view[0].numel() == 1
    return leaf, view


@dataclass
class Run:
    output: torch.Tensor
    state: NamedTuple
    trajectory: Optional[NamedTuple]
    grads: dict = field(default_factory=dict)


def _run(
    params: Any,
    x: torch.Tensor,
    state: NamedTuple,
    backend: str,
    *,
    record: bool,
    uses: frozenset,
    upstream: dict,
    grad_x: bool,
    grad_state: bool,
    noncontiguous: bool,
) -> Run:
    """One scan with fresh leaves; gradients of sum(result * upstream) w.r.t. every leaf."""
    leaves: dict[str, torch.Tensor] = {}
    leaves["x"], x_in = _leaf(x, grad_x, noncontiguous)
    fields = []
    for name, value in zip(state._fields, state):
        leaves[f"state.{name}"], value_in = _leaf(value, grad_state, noncontiguous)
        fields.append(value_in)
    for f in dataclasses.fields(params):
        value = getattr(params, f.name)
        if isinstance(value, torch.Tensor) and value.requires_grad:
            leaves[f"params.{f.name}"] = value
    result = spikeflow.scan(params, x_in, type(state)(*fields), backend=backend, record=record)
    run = Run(result.output, result.state, result.trajectory)
    terms = []
    if "output" in uses:
        terms.append((result.output * upstream["output"]).sum())
    if "state" in uses:
        terms += [(v * upstream[f"state.{n}"]).sum() for n, v in zip(result.state._fields, result.state)]
    if "trajectory" in uses and record:
        terms += [
            (v * upstream[f"trajectory.{n}"]).sum()
            for n, v in zip(result.trajectory._fields, result.trajectory)
        ]
    wanted = {k: v for k, v in leaves.items() if v.requires_grad}
    loss = sum(terms) if terms else None
    if wanted and loss is not None and loss.requires_grad:
        grads = torch.autograd.grad(loss, list(wanted.values()), allow_unused=True)
        run.grads = {k: _grad_or_zeros(g, v) for (k, v), g in zip(wanted.items(), grads)}
    else:
        run.grads = {k: torch.zeros_like(v) for k, v in wanted.items()}
    return run


def assert_equivalent(
    backend_name: str,
    params: Any,
    x: torch.Tensor,
    state: Optional[NamedTuple] = None,
    *,
    record: Optional[bool] = None,
    uses: frozenset = ALL_USES,
    grad_x: bool = True,
    grad_state: bool = True,
    noncontiguous: bool = False,
    seed: int = 0,
) -> None:
    """``backend_name`` agrees with the reference on this call (see the module docstring).

    ``record=None`` checks both with and without the trajectory (a backend may save
    different things for its backward in the two cases).
    """
    for mode in (True, False) if record is None else (record,):
        _assert_equivalent_once(backend_name, params, x, state, record=mode, uses=uses,
                                grad_x=grad_x, grad_state=grad_state,
                                noncontiguous=noncontiguous, seed=seed)


def _assert_equivalent_once(backend_name, params, x, state, *, record, uses, grad_x, grad_state,
                            noncontiguous, seed) -> None:
    model = model_of(params)
    backend = _backend(model.name, backend_name)
    device = _device_for(backend)
    params = _to(params, device)
    x = x.to(device)
    if state is None:
        state = init_state(params, x.shape[1:], dtype=x.dtype, device=device)
    state = type(state)(*(v.to(device) for v in state))
    reason = backend.why_not(params, x, False)
    if reason is not None:
        pytest.skip(f"backend {backend_name!r} cannot run this call: {reason}")
    gen = torch.Generator().manual_seed(seed + 1)
    upstream = {"output": torch.randn(x.shape, generator=gen, dtype=x.dtype).to(device)}
    for name in state._fields:
        upstream[f"state.{name}"] = torch.randn(x.shape[1:], generator=gen, dtype=x.dtype).to(device)
        upstream[f"trajectory.{name}"] = torch.randn(x.shape, generator=gen, dtype=x.dtype).to(device)
    kwargs = dict(record=record, uses=uses, upstream=upstream, grad_x=grad_x, grad_state=grad_state,
                  noncontiguous=noncontiguous)
    ref = _run(params, x, state, "reference", **kwargs)
    got = _run(params, x, state, backend_name, **kwargs)

    dtype = x.dtype
    assert got.output.shape == ref.output.shape and got.output.dtype == ref.output.dtype
    if model.name in SPIKING and dtype in (torch.float32, torch.float64):
        if not torch.equal(got.output, ref.output):
            diff = (got.output != ref.output).sum().item()
            raise AssertionError(
                f"{backend_name}: {diff} of {ref.output.numel()} spikes differ from the reference"
            )
    else:
        _close(got.output, ref.output, dtype, "output")
    assert type(got.state) is type(ref.state)
    for name, a, b in zip(ref.state._fields, got.state, ref.state):
        assert a.shape == b.shape and a.dtype == b.dtype, f"state.{name}"
        _close(a, b, dtype, f"final state.{name}")
    if record:
        assert type(got.trajectory) is type(ref.trajectory)
        for name, a, b in zip(ref.trajectory._fields, got.trajectory, ref.trajectory):
            assert a.shape == b.shape == x.shape, f"trajectory.{name}"
            _close(a, b, dtype, f"trajectory.{name}")
    else:
        assert got.trajectory is None
    assert got.grads.keys() == ref.grads.keys()
    for key in ref.grads:
        _close(got.grads[key], ref.grads[key], dtype, f"gradient w.r.t. {key}")


# ---------------------------------------------------------------------------
# Inputs


def _randn(shape, dtype, gen, scale=1.0, shift=0.0) -> torch.Tensor:
    return torch.randn(shape, generator=gen, dtype=torch.float64).mul(scale).add(shift).to(dtype)


def _uniform(shape, dtype, gen, lo, hi) -> torch.Tensor:
    return (lo + (hi - lo) * torch.rand(shape, generator=gen, dtype=torch.float64)).to(dtype)


def _random_state(neuron: str, shape, dtype, gen) -> NamedTuple:
    """A nonzero state: membranes around rest, ASN thresholds and responses >= 0."""
    state_type = model_of(DEFAULTS[neuron]).state_type
    fields = []
    for name in state_type._fields:
        if neuron == "asn" and name in ("theta_dyn", "s_hat"):
            fields.append(_uniform(shape, dtype, gen, 0.0, 0.3))
        elif neuron == "graded_lif" and name == "o":
            fields.append(_uniform(shape, dtype, gen, -0.5, 1.0).clamp(min=0.0))
        else:
            fields.append(_randn(shape, dtype, gen, 0.5))
    return state_type(*fields)


def _input(neuron: str, shape, dtype, gen) -> torch.Tensor:
    """Inputs that make the neurons fire at a moderate rate."""
    if neuron == "asn":
        return _uniform(shape, dtype, gen, 0.0, 0.6)
    if neuron == "graded_lif":
        return _randn(shape, dtype, gen, 1.5, 0.6)
    return _randn(shape, dtype, gen, 0.8, 0.35)


def _learnable(value: torch.Tensor) -> torch.Tensor:
    return value.detach().clone().requires_grad_(True)


# ---------------------------------------------------------------------------
# Grids


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("surrogate", SURROGATES, ids=repr)
@pytest.mark.parametrize("detach", [False, True], ids=["attached", "detached"])
@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
@pytest.mark.parametrize("neuron,backend", _pairs(["lif"]))
def test_lif_grid(neuron, backend, reset, detach, surrogate, dtype):
    gen = torch.Generator().manual_seed(1)
    features = (5,)
    params = LIFParams(
        beta=_learnable(_uniform(features, dtype, gen, 0.6, 1.0)),  # per feature, learnable
        threshold=_learnable(torch.tensor(0.9, dtype=dtype)),  # scalar, learnable
        reset=reset,
        detach_reset=detach,
        surrogate=surrogate,
    )
    x = _input(neuron, (7, 3, *features), dtype, gen)
    assert_equivalent(backend, params, x, _random_state(neuron, (3, *features), dtype, gen))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("detach", [False, True], ids=["attached", "detached"])
@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
@pytest.mark.parametrize("normalize", [False, True], ids=["plain", "normalized"])
@pytest.mark.parametrize("order", ["current_first", "membrane_first"])
@pytest.mark.parametrize("neuron,backend", _pairs(["cuba_lif"]))
def test_cuba_grid(neuron, backend, order, normalize, reset, detach, dtype):
    gen = torch.Generator().manual_seed(2)
    features = (4,)
    index = ["subtract", "zero", "none"].index(reset) + 3 * detach + 6 * normalize
    params = CubaLIFParams(
        alpha=_learnable(torch.tensor(0.75, dtype=dtype)),
        beta=_learnable(_uniform(features, dtype, gen, 0.7, 0.97)),
        threshold=_learnable(_uniform(features, dtype, gen, 0.5, 1.2)),
        gain=2.5 if normalize else 1.3,
        normalize=normalize,
        order=order,
        reset=reset,
        detach_reset=detach,
        surrogate=SURROGATES[index % len(SURROGATES)],
    )
    x = _input(neuron, (7, 3, *features), dtype, gen) * (3.0 if normalize else 1.0)
    assert_equivalent(backend, params, x, _random_state(neuron, (3, *features), dtype, gen))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("surrogate", SURROGATES, ids=repr)
@pytest.mark.parametrize("mode", ["spikes", "current"])
@pytest.mark.parametrize("neuron,backend", _pairs(["asn"]))
def test_asn_grid(neuron, backend, mode, surrogate, dtype):
    gen = torch.Generator().manual_seed(3)
    params = ASNParams(
        tau_phi=2.0, tau_gamma=12.0, tau_eta=30.0, tau_beta=8.0, m_f=0.2, theta0=0.15, h=1.5, bias=0.05,
        input=mode, surrogate=surrogate,
    )
    x = _input(neuron, (7, 3, 5), dtype, gen)
    assert_equivalent(backend, params, x, _random_state(neuron, (3, 5), dtype, gen))


PARAM_FORMS = ["float", "tensor", "learnable-scalar", "per-feature", "learnable-per-feature"]


def _form(form: str, value: float, features, dtype, gen, spread: float):
    if form == "float":
        return value
    if form == "tensor":
        return torch.tensor(value, dtype=dtype)
    if form == "learnable-scalar":
        return _learnable(torch.tensor(value, dtype=dtype))
    tensor = _uniform(features, dtype, gen, value - spread, value + spread)
    return _learnable(tensor) if form.startswith("learnable") else tensor


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("form", PARAM_FORMS)
@pytest.mark.parametrize("neuron,backend", _pairs(["graded_lif"]))
def test_graded_grid(neuron, backend, form, dtype):
    gen = torch.Generator().manual_seed(4)
    features = (6,)
    params = GradedLIFParams(
        beta=_form(form, 0.85, features, dtype, gen, 0.1),
        threshold=_form(form, 1.0, features, dtype, gen, 0.4),
        penalty=_form(form, 0.8, features, dtype, gen, 0.5),
    )
    x = _input(neuron, (7, 3, *features), dtype, gen)
    assert_equivalent(backend, params, x, _random_state(neuron, (3, *features), dtype, gen))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("form", PARAM_FORMS)
@pytest.mark.parametrize("normalize", [False, True], ids=["plain", "normalized"])
@pytest.mark.parametrize("neuron,backend", _pairs(["li"]))
def test_li_grid(neuron, backend, normalize, form, dtype):
    gen = torch.Generator().manual_seed(5)
    features = (6,)
    params = LIParams(beta=_form(form, 0.8, features, dtype, gen, 0.15), normalize=normalize)
    x = _input(neuron, (7, 3, *features), dtype, gen)
    assert_equivalent(backend, params, x, _random_state(neuron, (3, *features), dtype, gen))


def _representative(neuron: str, dtype, features, gen) -> Any:
    """One non-trivial configuration per neuron, with learnable per-feature parameters."""
    if neuron == "lif":
        return LIFParams(beta=_learnable(_uniform(features, dtype, gen, 0.7, 1.0)),
                         threshold=_learnable(torch.tensor(0.8, dtype=dtype)), reset="subtract",
                         surrogate=sg.atan(2.0))
    if neuron == "cuba_lif":
        return CubaLIFParams(alpha=_learnable(_uniform(features, dtype, gen, 0.5, 0.9)),
                             beta=_learnable(torch.tensor(0.9, dtype=dtype)), threshold=0.7, gain=4.0,
                             normalize=True, reset="zero", detach_reset=True,
                             surrogate=sg.superspike(5.0))
    if neuron == "asn":
        return ASNParams(m_f=0.15, h=1.0, bias=0.02, surrogate=sg.sigmoid(5.0))
    if neuron == "graded_lif":
        return GradedLIFParams(beta=_learnable(_uniform(features, dtype, gen, 0.7, 0.95)),
                               threshold=_learnable(torch.tensor(1.2, dtype=dtype)),
                               penalty=_learnable(_uniform(features, dtype, gen, 0.5, 1.5)))
    return LIParams(beta=_learnable(_uniform(features, dtype, gen, 0.6, 0.99)), normalize=True)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(
    "steps,batch,features,noncontiguous",
    [
        (1, 2, (5,), False),
        (1, 3, (3, 4, 2), True),
        (7, 2, (5,), True),
        (7, 3, (3, 4, 2), False),
        (7, 4, (150,), True),  # 600 elements: several kernel blocks and a ragged tail
        (200, 2, (5,), False),
        (200, 3, (3, 4, 2), True),
    ],
    ids=lambda v: str(v) if not isinstance(v, bool) else ("strided" if v else "contiguous"),
)
@pytest.mark.parametrize("neuron,backend", ALL_PAIRS)
def test_shapes_and_lengths(neuron, backend, steps, batch, features, noncontiguous, dtype):
    gen = torch.Generator().manual_seed(6)
    params = _representative(neuron, dtype, features, gen)
    x = _input(neuron, (steps, batch, *features), dtype, gen)
    state = _random_state(neuron, (batch, *features), dtype, gen)
    assert_equivalent(backend, params, x, state, noncontiguous=noncontiguous)


@pytest.mark.parametrize(
    "record,uses,grad_x,grad_state",
    [
        (True, frozenset({"output"}), True, True),
        (True, frozenset({"state"}), True, True),
        (True, frozenset({"trajectory"}), True, False),
        (False, frozenset({"output", "state"}), False, True),
        (False, frozenset({"output"}), False, False),  # parameters only
    ],
    ids=["output", "state", "trajectory", "no-record", "params-only"],
)
@pytest.mark.parametrize("neuron,backend", ALL_PAIRS)
def test_partial_upstream_gradients(neuron, backend, record, uses, grad_x, grad_state):
    """Missing upstream gradients (None in the backward) and inputs without grad."""
    gen = torch.Generator().manual_seed(7)
    dtype = torch.float64
    params = _representative(neuron, dtype, (4,), gen)
    x = _input(neuron, (9, 3, 4), dtype, gen)
    assert_equivalent(backend, params, x, _random_state(neuron, (3, 4), dtype, gen), record=record,
                      uses=uses, grad_x=grad_x, grad_state=grad_state)


@pytest.mark.parametrize("record", [False, True], ids=["plain", "record"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("neuron,backend", ALL_PAIRS)
def test_inference_mode(neuron, backend, dtype, record):
    """Without autograd (no_grad, nothing requiring grad) the results are the same."""
    gen = torch.Generator().manual_seed(8)
    params = DEFAULTS[neuron]
    x = _input(neuron, (12, 3, 5), dtype, gen)
    state = _random_state(neuron, (3, 5), dtype, gen)
    dev = _device_for(_backend(neuron, backend))
    x, state = x.to(dev), type(state)(*(v.to(dev) for v in state))
    with torch.no_grad():
        ref = spikeflow.scan(params, x, state, backend="reference", record=record)
        got = spikeflow.scan(params, x, state, backend=backend, record=record)
    if neuron in SPIKING:
        assert torch.equal(got.output, ref.output)
    _close(got.output, ref.output, dtype, "output")
    for a, b in zip(got.state, ref.state):
        _close(a, b, dtype, "final state")
    if record:
        for a, b in zip(got.trajectory, ref.trajectory):
            _close(a, b, dtype, "trajectory")


# ---------------------------------------------------------------------------
# Hypothesis: random shapes, lengths and parameter forms


@st.composite
def _cases(draw, neuron: str):
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    dtype = draw(st.sampled_from(DTYPES))
    steps = draw(st.integers(1, 12))
    batch = draw(st.integers(1, 3))
    features = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=3)))

    def param(value, spread, lo=None, hi=None):
        form = draw(st.sampled_from(PARAM_FORMS + ["learnable-full"]))
        if form == "learnable-full":  # one value per batch element and feature
            t = _uniform((batch, *features), dtype, gen, value - spread, value + spread)
        elif form.endswith("per-feature"):
            # per feature, along the last dims only, or all feature dims
            dims = features[draw(st.integers(0, len(features) - 1)):]
            t = _uniform(dims, dtype, gen, value - spread, value + spread)
        else:
            return _form(form, value, features, dtype, gen, spread)
        if lo is not None or hi is not None:
            t = t.clamp(lo, hi)
        return _learnable(t) if form.startswith("learnable") else t

    surrogate = draw(st.sampled_from(SURROGATES))
    reset = draw(st.sampled_from(["subtract", "zero", "none"]))
    detach = draw(st.booleans())
    if neuron == "lif":
        params = LIFParams(beta=param(0.85, 0.15, 0.0, 1.0), threshold=param(1.0, 0.5), reset=reset,
                           detach_reset=detach, surrogate=surrogate)
    elif neuron == "cuba_lif":
        params = CubaLIFParams(alpha=param(0.8, 0.2, 0.0, 1.0), beta=param(0.85, 0.15, 0.0, 1.0),
                               threshold=param(0.8, 0.4),
                               gain=draw(st.sampled_from([1.0, 0.7, 3.0])),
                               normalize=draw(st.booleans()),
                               order=draw(st.sampled_from(["current_first", "membrane_first"])),
                               reset=reset, detach_reset=detach, surrogate=surrogate)
    elif neuron == "asn":
        m_f = draw(st.sampled_from([0.0, 0.1, 0.4]))
        params = ASNParams(tau_phi=draw(st.sampled_from([1.5, 2.5])), tau_gamma=15.0,
                           tau_eta=draw(st.sampled_from([10.0, 50.0])), m_f=m_f,
                           theta0=draw(st.sampled_from([0.12] if m_f == 0 else [None, 0.12])),
                           h=draw(st.sampled_from([1.0, 0.5])), bias=draw(st.sampled_from([0.0, 0.1])),
                           input=draw(st.sampled_from(["spikes", "current"])), surrogate=surrogate)
    elif neuron == "graded_lif":
        params = GradedLIFParams(beta=param(0.85, 0.15, 0.0, 1.0), threshold=param(1.5, 0.5),
                                 penalty=param(1.0, 0.9, 0.0, None))
    else:
        params = LIParams(beta=param(0.8, 0.2, 0.0, 1.0), normalize=draw(st.booleans()))
    x = _input(neuron, (steps, batch, *features), dtype, gen)
    state = _random_state(neuron, (batch, *features), dtype, gen) if draw(st.booleans()) else None
    options = dict(
        noncontiguous=draw(st.booleans()),
        record=draw(st.booleans()),
        grad_x=draw(st.booleans()),
        grad_state=draw(st.booleans()),
        seed=seed,
    )
    return params, x, state, options


def _hypothesis_test(neuron: str):
    @pytest.mark.parametrize("backend", _fast_backends(neuron))
    @settings(max_examples=15, deadline=None)
    @given(case=_cases(neuron))
    def test(backend, case):
        params, x, state, options = case
        assert_equivalent(backend, params, x, state, **options)

    test.__name__ = f"test_random_{neuron}"
    return test


test_random_lif = _hypothesis_test("lif")
test_random_cuba_lif = _hypothesis_test("cuba_lif")
test_random_asn = _hypothesis_test("asn")
test_random_graded_lif = _hypothesis_test("graded_lif")
test_random_li = _hypothesis_test("li")


# ---------------------------------------------------------------------------
# gradcheck of each backend's own autograd (float64)
#
# A spike is a step function: its finite-difference derivative is zero, while the
# backward pass uses the surrogate. With the triangle surrogate of sharpness
# alpha, g(u) = 0 exactly for |u| >= 1 / alpha, so on inputs that keep every
# membrane distance u at least that far from the threshold the backend's
# gradient must equal the true derivative of the (locally smooth) computation:
# every path except the surrogate term (resets, state coupling, parameters) is
# checked against finite differences. The surrogate term itself is checked
# against the reference above.

GRADCHECK_ALPHA = 100.0
GRADCHECK_MARGIN = 1.5 / GRADCHECK_ALPHA


@dataclass(frozen=True)
class _RecordingSurrogate(sg.Surrogate):
    """The triangle surrogate that also records every membrane distance it sees."""

    log: list = field(default_factory=list, compare=False, hash=False)

    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        self.log.append(u.detach().abs().min() if u.numel() else torch.tensor(float("inf")))
        return super().__call__(u)


def _gradcheck_case(neuron: str, seed: int):
    """(params, learnable names, x, state) for a small float64 gradcheck."""
    gen = torch.Generator().manual_seed(seed)
    dtype = torch.float64
    features = (3,)
    recorder = _RecordingSurrogate(sg.SurrogateKind.TRIANGLE, GRADCHECK_ALPHA)
    if neuron == "lif":
        params = LIFParams(beta=_learnable(_uniform(features, dtype, gen, 0.6, 0.95)),
                           threshold=_learnable(torch.tensor(0.8, dtype=dtype)), reset="subtract",
                           surrogate=recorder)
        names = ("beta", "threshold")
    elif neuron == "cuba_lif":
        params = CubaLIFParams(alpha=_learnable(torch.tensor(0.7, dtype=dtype)),
                               beta=_learnable(_uniform(features, dtype, gen, 0.6, 0.95)),
                               threshold=_learnable(torch.tensor(0.6, dtype=dtype)), gain=8.0,
                               normalize=True, order="membrane_first", reset="zero", surrogate=recorder)
        names = ("alpha", "beta", "threshold")
    elif neuron == "asn":
        params = ASNParams(m_f=0.3, h=1.5, bias=0.05, tau_beta=5.0, surrogate=recorder)
        names = ()
    elif neuron == "graded_lif":
        params = GradedLIFParams(beta=_learnable(_uniform(features, dtype, gen, 0.6, 0.95)),
                                 threshold=_learnable(torch.tensor(1.0, dtype=dtype)),
                                 penalty=_learnable(_uniform(features, dtype, gen, 0.2, 1.0)))
        names = ("beta", "threshold", "penalty")
    else:
        params = LIParams(beta=_learnable(_uniform(features, dtype, gen, 0.6, 0.95)), normalize=True)
        names = ("beta",)
    x = _input(neuron, (5, 2, *features), dtype, gen) * 1.5
    state = _random_state(neuron, (2, *features), dtype, gen)
    return params, names, recorder, x, state


def _min_distance(neuron: str, params, recorder, x, state) -> float:
    """The smallest |u| (distance to the threshold or to the relu kink) on this input."""
    with torch.no_grad():
        if neuron == "graded_lif":
            result = spikeflow.scan(params, x, state, backend="reference", record=True)
            v_prev = torch.cat([state.v.unsqueeze(0), result.trajectory.v[:-1]])
            return float((params.beta * v_prev + x - params.threshold).abs().min())
        if neuron == "li":
            return float("inf")
        recorder.log.clear()
        spikeflow.scan(params, x, state, backend="reference")
        return float(torch.stack(recorder.log).min())


@pytest.mark.parametrize("neuron,backend", ALL_PAIRS)
def test_gradcheck(neuron, backend):
    device = _device_for(_backend(neuron, backend))
    for seed in range(200):
        params, names, recorder, x, state = _gradcheck_case(neuron, seed)
        if _min_distance(neuron, params, recorder, x, state) > GRADCHECK_MARGIN:
            break
    else:  # pragma: no cover - the search succeeds within a few seeds
        pytest.fail("no input kept the membranes away from the threshold")
    params = _to(params, device)
    inputs = [x.to(device).requires_grad_(True), *(v.to(device).requires_grad_(True) for v in state)]
    inputs += [getattr(params, n) for n in names]
    ns = len(state)
    state_type = type(state)

    def fn(x, *rest):
        p = dataclasses.replace(params, **dict(zip(names, rest[ns:])))
        result = spikeflow.scan(p, x, state_type(*rest[:ns]), backend=backend, record=True)
        return (result.output, *result.state, *result.trajectory)

    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7, rtol=1e-6)


def test_every_fast_backend_is_covered():
    """The grids above reach every registered non-reference backend."""
    registered = {
        (name, b.name) for name, params in DEFAULTS.items() for b in backends_for(model_of(params))
        if b.name != "reference"
    }
    assert registered == {tuple(p.values) for p in ALL_PAIRS}


# ---------------------------------------------------------------------------
# Recurrent layers: the recurrent product r[t] = s[t-1] W^T + b inside the time loop


def _recurrent_backends(neuron: str) -> list:
    return [
        pytest.param(neuron, b.name, id=f"{neuron}-{b.name}")
        for b in backends_for(model_of(DEFAULTS[neuron]))
        if b.name != "reference" and b.caps.recurrent
    ]


RECURRENT_PAIRS = [p for n in DEFAULTS for p in _recurrent_backends(n)]


def _recurrent_run(params, x, state, weight, bias, previous, backend, record, upstream):
    leaves = {
        "x": x.detach().clone().requires_grad_(),
        "weight": weight.detach().clone().requires_grad_(),
        "previous": previous.detach().clone().requires_grad_(),
        **{f"state.{n}": v.detach().clone().requires_grad_() for n, v in zip(state._fields, state)},
    }
    if bias is not None:
        leaves["bias"] = bias.detach().clone().requires_grad_()
    for f in dataclasses.fields(params):
        value = getattr(params, f.name)
        if isinstance(value, torch.Tensor) and value.requires_grad:
            leaves[f"params.{f.name}"] = value
    neuron_state = type(state)(*[leaves[f"state.{n}"] for n in state._fields])
    result = spikeflow.scan(
        params, leaves["x"], spikeflow.RecurrentState(neuron_state, leaves["previous"]),
        backend=backend, record=record, recurrent_weight=leaves["weight"],
        recurrent_bias=leaves.get("bias"),
    )
    loss = (result.output * upstream["output"]).sum()
    loss = loss + sum((v * upstream[f"state.{n}"]).sum()
                      for n, v in zip(result.state.neuron._fields, result.state.neuron))
    if record:
        loss = loss + sum((v * upstream[f"trajectory.{n}"]).sum()
                          for n, v in zip(result.trajectory._fields, result.trajectory))
    grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
    run = Run(result.output, result.state, result.trajectory)
    run.grads = {k: _grad_or_zeros(g, v) for (k, v), g in zip(leaves.items(), grads)}
    return run


def assert_recurrent_equivalent(backend_name, params, x, state, weight, bias, previous, *,
                                record: bool, seed: int = 0) -> None:
    """Like :func:`assert_equivalent`, for a recurrent layer (gradients also w.r.t. the
    recurrent weight, bias and the previous output)."""
    model = model_of(params)
    backend = _backend(model.name, backend_name)
    reason = backend.why_not(params, x, True)
    if reason is not None:
        pytest.skip(f"backend {backend_name!r} cannot run this call: {reason}")
    gen = torch.Generator().manual_seed(seed + 1)
    upstream = {"output": torch.randn(x.shape, generator=gen, dtype=x.dtype)}
    for name in state._fields:
        upstream[f"state.{name}"] = torch.randn(x.shape[1:], generator=gen, dtype=x.dtype)
        upstream[f"trajectory.{name}"] = torch.randn(x.shape, generator=gen, dtype=x.dtype)
    args = (params, x, state, weight, bias, previous)
    ref = _recurrent_run(*args, "reference", record, upstream)
    got = _recurrent_run(*args, backend_name, record, upstream)
    if model.name in SPIKING:
        diff = (got.output != ref.output).sum().item()
        assert diff == 0, f"{backend_name}: {diff} of {ref.output.numel()} outputs differ (recurrent)"
    else:
        _close(got.output, ref.output, x.dtype, "output")
    for name, a, b in zip(ref.state.neuron._fields, got.state.neuron, ref.state.neuron):
        _close(a, b, x.dtype, f"final state.{name}")
    _close(got.state.output, ref.state.output, x.dtype, "final state.output")
    if record:
        for name, a, b in zip(ref.trajectory._fields, got.trajectory, ref.trajectory):
            _close(a, b, x.dtype, f"trajectory.{name}")
    assert got.grads.keys() == ref.grads.keys()
    for key in ref.grads:
        _close(got.grads[key], ref.grads[key], x.dtype, f"gradient w.r.t. {key} (recurrent)")


def _recurrent_params(neuron: str, features: int, dtype, gen, learnable: bool):
    beta = _uniform((features,), dtype, gen, 0.6, 0.95)
    if learnable and neuron != "asn":
        beta = _learnable(beta)
    if neuron == "lif":
        return LIFParams(beta=beta, threshold=0.8, surrogate=sg.sigmoid(4.0))
    if neuron == "cuba_lif":
        return CubaLIFParams(alpha=0.7, beta=beta, threshold=0.6, order="membrane_first")
    if neuron == "asn":
        return ASNParams(m_f=0.3, h=1.5)
    if neuron == "graded_lif":
        return GradedLIFParams(beta=beta, threshold=1.0)
    return LIParams(beta=beta)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("record", [False, True], ids=["plain", "record"])
@pytest.mark.parametrize("steps,bias", [(1, True), (9, False), (60, True)])
@pytest.mark.parametrize("neuron,backend", RECURRENT_PAIRS)
def test_recurrent_grid(neuron, backend, steps, bias, record, dtype):
    gen = torch.Generator().manual_seed(steps * 7 + record)
    batch, features = 3, 6
    params = _recurrent_params(neuron, features, dtype, gen, learnable=True)
    x = _input(neuron, (steps, batch, features), dtype, gen)
    state = _random_state(neuron, (batch, features), dtype, gen)
    weight = _randn((features, features), dtype, gen, 0.4)
    b = _randn((features,), dtype, gen, 0.1) if bias else None
    previous = (torch.rand((batch, features), generator=gen, dtype=torch.float64) < 0.3).to(dtype)
    assert_recurrent_equivalent(backend, params, x, state, weight, b, previous, record=record)


@settings(max_examples=25, deadline=None)
@given(
    pair=st.sampled_from([p.values for p in RECURRENT_PAIRS] or [("lif", "reference")]),
    steps=st.integers(1, 40), batch=st.integers(1, 4), features=st.integers(1, 9),
    record=st.booleans(), seed=st.integers(0, 2**16),
)
def test_recurrent_random(pair, steps, batch, features, record, seed):
    neuron, backend = pair
    gen = torch.Generator().manual_seed(seed)
    dtype = torch.float32
    params = _recurrent_params(neuron, features, dtype, gen, learnable=seed % 2 == 0)
    x = _input(neuron, (steps, batch, features), dtype, gen)
    state = _random_state(neuron, (batch, features), dtype, gen)
    weight = _randn((features, features), dtype, gen, 0.5)
    previous = torch.zeros(batch, features, dtype=dtype)
    assert_recurrent_equivalent(backend, params, x, state, weight, None, previous, record=record,
                                seed=seed)


def test_every_recurrent_backend_is_covered():
    assert {("lif", "cpu"), ("cuba_lif", "cpu"), ("asn", "cpu"), ("li", "cpu")} <= {
        tuple(p.values) for p in RECURRENT_PAIRS
    }
