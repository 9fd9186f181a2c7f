"""Adaptive spiking neuron (ASN) of Zambrano et al. (2018), as in seed 000.

The neuron low-pass filters its input into an activation ``S`` and approximates it
with a sum of refractory kernels ``S_hat`` whose height is an adaptive threshold
``theta``. Decays are per step: ``d_x = exp(-1 / tau_x)`` with ``tau`` in steps.
One step ``t`` (tensors ``[B, *features]``)::

    I[t]      = d_beta * I[t-1] + x[t]     ("spike" input mode: x is a spike train)
              = x[t]                       ("current" input mode: x is an analog current)
    S_dyn[t]  = (1 - d_phi) * I[t] + d_phi * S_dyn[t-1]
    S[t]      = bias + S_dyn[t]
    theta     = theta0 + theta_dyn[t-1]
    S_hat'    = d_eta * S_hat[t-1]
    z[t]      = Heaviside((S[t] - S_hat') - theta / 2)
    S_hat[t]  = S_hat' + theta * z[t]
    theta_dyn[t] = d_gamma * (theta_dyn[t-1] + m_f * theta * z[t])
    out[t]    = h * z[t]

Defaults are seed 000's: ``tau_phi = 2.5``, ``tau_gamma = 15``, ``tau_eta = 50``,
``tau_beta = tau_eta``, ``m_f = 0.1``, ``theta0 = m_f``, ``h = 1``, ``bias = 0``. The
surrogate derivative (for training through the ASN) is evaluated at
``(S - S_hat') - theta / 2``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple, Optional

import torch

from .._choice import Choice

from .. import surrogate as _sg
from ._base import (
    NeuronModel,
    check_finite,
    check_nonnegative,
    check_positive,
    register_model,
    zeros_state,
)

__all__ = ["ASNInput", "ASNParams", "ASNState", "asn_step"]


class ASNInput(Choice):
    """How the input enters the membrane filter: a spike train (filtered by
    ``d_beta``) or an analog current (used as is, for a first layer fed pixels)."""

    SPIKES = "spikes"
    CURRENT = "current"

    @classmethod
    def _what(cls) -> str:
        return "ASN input mode"


class ASNState(NamedTuple):
    """ASN state, each ``[B, *features]``: input current ``I``, filtered activation
    ``s_dyn``, adaptive threshold part ``theta_dyn`` and refractory response ``s_hat``."""

    i: torch.Tensor
    s_dyn: torch.Tensor
    theta_dyn: torch.Tensor
    s_hat: torch.Tensor


@dataclass(frozen=True)
class ASNParams:
    """Parameters of the adaptive spiking neuron (time constants in steps).

    Args:
        tau_phi: membrane filter time constant (> 0).
        tau_gamma: threshold-adaptation decay time constant (> 0).
        tau_eta: refractory-response decay time constant (> 0).
        tau_beta: input-current decay in "spikes" mode (> 0); defaults to ``tau_eta``.
        m_f: multiplicative adaptation (>= 0).
        theta0: resting threshold (> 0); defaults to ``m_f``.
        h: output spike height (the value one spike carries).
        bias: constant added to the filtered activation.
        input: :class:`ASNInput` mode or its name.
        surrogate: surrogate gradient of the spike.
    """

    tau_phi: float = 2.5
    tau_gamma: float = 15.0
    tau_eta: float = 50.0
    tau_beta: Optional[float] = None
    m_f: float = 0.1
    theta0: Optional[float] = None
    h: float = 1.0
    bias: float = 0.0
    input: ASNInput = ASNInput.SPIKES
    surrogate: _sg.Surrogate = field(default_factory=_sg.superspike)

    NUMERIC = ("d_beta", "d_phi", "d_eta", "d_gamma", "m_f", "theta0", "h", "bias")

    def __post_init__(self) -> None:
        for name in ("tau_phi", "tau_gamma", "tau_eta"):
            check_positive(name, getattr(self, name))
            object.__setattr__(self, name, float(getattr(self, name)))
        tau_beta = self.tau_eta if self.tau_beta is None else self.tau_beta
        check_positive("tau_beta", tau_beta)
        object.__setattr__(self, "tau_beta", float(tau_beta))
        check_nonnegative("m_f", self.m_f)
        theta0 = self.m_f if self.theta0 is None else self.theta0
        check_positive("theta0", theta0)
        object.__setattr__(self, "theta0", theta0)
        check_finite("h", self.h)
        check_finite("bias", self.bias)
        object.__setattr__(self, "input", ASNInput.parse(self.input))
        if not isinstance(self.surrogate, _sg.Surrogate):
            raise TypeError(f"surrogate must be a spikeflow.surrogate.Surrogate, got {self.surrogate!r}")

    # Per-step decays derived from the time constants.
    @property
    def d_phi(self) -> float:
        return math.exp(-1.0 / self.tau_phi)

    @property
    def d_gamma(self) -> float:
        return math.exp(-1.0 / self.tau_gamma)

    @property
    def d_eta(self) -> float:
        return math.exp(-1.0 / self.tau_eta)

    @property
    def d_beta(self) -> float:
        return math.exp(-1.0 / self.tau_beta)


@dataclass(frozen=True)
class ASNValues:
    """ASN parameters as tensors (what the backends compute with)."""

    d_beta: torch.Tensor
    d_phi: torch.Tensor
    d_eta: torch.Tensor
    d_gamma: torch.Tensor
    m_f: torch.Tensor
    theta0: torch.Tensor
    h: torch.Tensor
    bias: torch.Tensor
    input: ASNInput
    surrogate: _sg.Surrogate


def asn_values(p: ASNParams, dtype: torch.dtype, device: torch.device) -> ASNValues:
    """The numeric ASN parameters rounded once to ``dtype`` (shared by all backends)."""
    tensors = {
        name: torch.tensor(float(getattr(p, name)), dtype=dtype, device=device)
        for name in ASNParams.NUMERIC
    }
    return ASNValues(**tensors, input=p.input, surrogate=p.surrogate)


def asn_step(p: ASNParams | ASNValues, state: ASNState, x: torch.Tensor) -> tuple[torch.Tensor, ASNState]:
    """One ASN step: returns ``(h * spikes, next_state)``."""
    if p.input is ASNInput.SPIKES:
        i = p.d_beta * state.i + x
    else:
        i = x
    s_dyn = (1.0 - p.d_phi) * i + p.d_phi * state.s_dyn
    s = p.bias + s_dyn
    theta = p.theta0 + state.theta_dyn
    s_hat = p.d_eta * state.s_hat
    z = p.surrogate((s - s_hat) - 0.5 * theta)
    s_hat = s_hat + theta * z
    theta_dyn = p.d_gamma * (state.theta_dyn + p.m_f * theta * z)
    return p.h * z, ASNState(i, s_dyn, theta_dyn, s_hat)


def _init(p, shape, dtype, device) -> ASNState:
    return zeros_state(ASNState, shape, dtype, device)


ASN_MODEL = register_model(
    NeuronModel("asn", ASNParams, ASNState, asn_step, _init, materialize=asn_values)
)
