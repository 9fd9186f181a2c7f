"""The surrogate contract (STYLE 8): exact Heaviside forward, backward = derivative of
the primitive, g(0) = 1 for every surrogate, lookup by name."""

from __future__ import annotations

import math

import pytest
import torch

from spikeflow import surrogate as sg

ALL = [
    sg.superspike(10.0),
    sg.superspike(1.0),
    sg.sigmoid(10.0),
    sg.sigmoid(2.5),
    sg.atan(2.0),
    sg.atan(0.5),
    sg.triangle(1.0),
    sg.triangle(4.0),
    sg.straight_through(),
]
IDS = [repr(s) for s in ALL]


def _kinks(s: sg.Surrogate) -> list[float]:
    """Points where the primitive's derivative is not smooth."""
    if s.kind is sg.SurrogateKind.TRIANGLE:
        return [0.0, 1.0 / s.alpha, -1.0 / s.alpha]
    if s.kind in (sg.SurrogateKind.STRAIGHT_THROUGH, sg.SurrogateKind.SUPERSPIKE):
        return [0.0]
    return []


def _points(s: sg.Surrogate, n: int = 201, eps: float = 1e-3) -> torch.Tensor:
    """u in [-3, 3] (float64), keeping a margin of 10*eps around each kink."""
    u = torch.linspace(-3.0, 3.0, n, dtype=torch.float64) + 1.234e-3  # off the grid of kinks
    keep = torch.ones_like(u, dtype=torch.bool)
    for k in _kinks(s):
        keep &= (u - k).abs() > 10 * eps
    return u[keep]


@pytest.mark.parametrize("s", ALL, ids=IDS)
def test_backward_equals_finite_difference_of_primitive(s):
    eps = 1e-5
    u = _points(s).requires_grad_(True)
    s(u).sum().backward()
    with torch.no_grad():
        fd = (s.primitive(u + eps) - s.primitive(u - eps)) / (2 * eps)
    torch.testing.assert_close(u.grad, fd, rtol=1e-6, atol=1e-8)
    # and the documented derivative is what the backward multiplies by
    torch.testing.assert_close(u.grad, s.derivative(u.detach()), rtol=0, atol=0)


@pytest.mark.parametrize("s", ALL, ids=IDS)
def test_derivative_at_threshold_is_one(s):
    for dtype in (torch.float32, torch.float64):
        zero = torch.zeros((), dtype=dtype)
        assert s.derivative(zero).item() == 1.0
        u = zero.clone().requires_grad_(True)
        s(u).backward()
        assert u.grad.item() == 1.0


@pytest.mark.parametrize("s", ALL, ids=IDS)
def test_forward_is_exact_strict_heaviside(s):
    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        tiny = torch.finfo(dtype).tiny
        u = torch.tensor([-1.0, -tiny, 0.0, -0.0, tiny, 1.0, 1e4], dtype=dtype)
        out = s(u)
        assert out.dtype == dtype
        assert out.tolist() == [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0]


@pytest.mark.parametrize("s", ALL, ids=IDS)
def test_gradcheck_against_primitive(s):
    """torch.autograd.gradcheck in float64 on ``H(u) + (P(u) - H(u)).detach()``: its
    value is P(u), so the numerical Jacobian is P'(u), while the analytical one is the
    custom Function's backward. They agree iff backward == d primitive / du."""
    u = _points(s, n=41).requires_grad_(True)

    def f(v):
        return s(v) + (s.primitive(v) - sg.heaviside(v)).detach()

    assert torch.autograd.gradcheck(f, (u,), eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("s", ALL, ids=IDS)
def test_vjp_with_upstream_gradient_and_noncontiguous_input(s):
    base = torch.randn(6, 8, dtype=torch.float64)
    u = base.t().requires_grad_(True)  # non-contiguous [8, 6]
    assert not u.is_contiguous()
    upstream = torch.randn(6, 8, dtype=torch.float64).t()
    (grad,) = torch.autograd.grad(s(u), u, upstream)
    torch.testing.assert_close(grad, upstream * s.derivative(u.detach()), rtol=0, atol=0)


def test_formulas_match_the_documented_table():
    u = torch.tensor([-0.7, -0.1, 0.3, 2.0], dtype=torch.float64)
    a = 3.0
    torch.testing.assert_close(sg.superspike(a).derivative(u), 1 / (1 + a * u.abs()) ** 2)
    sgm = torch.sigmoid(a * u)
    torch.testing.assert_close(sg.sigmoid(a).derivative(u), 4 * sgm * (1 - sgm))
    torch.testing.assert_close(sg.atan(a).derivative(u), 1 / (1 + (math.pi * a * u / 2) ** 2))
    torch.testing.assert_close(sg.triangle(a).derivative(u), torch.clamp(1 - a * u.abs(), min=0))
    torch.testing.assert_close(sg.straight_through().derivative(u), (u >= 0).double())
    # seed 003's SuperSpike: 1 / (beta |x| + 1)^2 with beta = 10
    torch.testing.assert_close(sg.superspike().derivative(u), 1 / (10 * u.abs() + 1) ** 2)


def test_straight_through_is_the_relu_derivative_of_seed_004():
    u = torch.tensor([-1.0, -1e-9, 0.0, 1e-9, 2.0], requires_grad=True)
    sg.straight_through()(u).sum().backward()
    assert u.grad.tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]  # seed 004: grad[input < 0] = 0


def test_by_name():
    assert sg.by_name("atan", 2.0) == sg.atan(2.0)
    assert sg.by_name("Fast-Sigmoid") == sg.superspike()
    assert sg.by_name(" superspike ", 5.0).alpha == 5.0
    assert sg.by_name("arctan").kind is sg.SurrogateKind.ATAN
    assert sg.by_name("straight_through") == sg.straight_through()
    with pytest.raises(ValueError, match="straight_through surrogate has no alpha"):
        sg.by_name("straight_through", 2.0)
    with pytest.raises(ValueError, match="unknown surrogate 'erf'; known: .*atan"):
        sg.by_name("erf")


@pytest.mark.parametrize("alpha", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_alpha(alpha):
    with pytest.raises(ValueError, match="surrogate alpha must be a finite number > 0"):
        sg.superspike(alpha)


def test_surrogates_are_values():
    assert sg.superspike(10.0) == sg.superspike(10.0)
    assert sg.superspike(10.0) != sg.superspike(5.0)
    assert hash(sg.atan(2.0)) == hash(sg.atan(2.0))
    assert repr(sg.triangle(2.0)) == "triangle(alpha=2)"
    with pytest.raises(TypeError, match="SurrogateKind"):
        sg.Surrogate("atan", 2.0)
