"""Non-spiking leaky integrator (LI), the usual readout layer.

One step ``t`` (tensors ``[B, *features]``), with ``a = 1 - beta`` when
``normalize`` is set, else ``a = 1``::

    v[t] = beta * v[t-1] + a * x[t]
    out[t] = v[t]

``beta = exp(-dt / tau)`` (:meth:`LIParams.from_tau`); ``beta = 1`` with
``normalize = False`` sums the input over time (seed 002's IntegratorNeuronCell).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from ._base import NeuronModel, Scalar, check_decay, decay_from_tau, register_model, zeros_state

__all__ = ["LIParams", "LIState", "li_step"]


class LIState(NamedTuple):
    """LI state: the membrane ``v``, ``[B, *features]``."""

    v: torch.Tensor


@dataclass(frozen=True)
class LIParams:
    """Parameters of the leaky integrator.

    Args:
        beta: per-step decay in [0, 1].
        normalize: scale the input by ``1 - beta`` (a unit-gain low-pass filter).
    """

    beta: Scalar = 0.9
    normalize: bool = False

    NUMERIC = ("beta",)

    def __post_init__(self) -> None:
        check_decay("beta", self.beta)

    @classmethod
    def from_tau(cls, tau: Scalar, dt: float = 1.0, **kwargs) -> "LIParams":
        return cls(beta=decay_from_tau(tau, dt), **kwargs)


def li_step(p: LIParams, state: LIState, x: torch.Tensor) -> tuple[torch.Tensor, LIState]:
    """One step: returns ``(v[t], next_state)``."""
    a = 1.0 - p.beta if p.normalize else 1.0
    v = p.beta * state.v + a * x
    return v, LIState(v)


def _init(p, shape, dtype, device) -> LIState:
    return zeros_state(LIState, shape, dtype, device)


LI_MODEL = register_model(NeuronModel("li", LIParams, LIState, li_step, _init))
