"""Leaky integrate-and-fire (LIF) and integrate-and-fire (IF) neurons.

Discrete-time update for one step ``t`` (all tensors of shape ``[B, *features]``)::

    h[t] = beta * v[t-1] + x[t]                 # leak, then integrate the input
    s[t] = Heaviside(h[t] - threshold)          # spike if strictly above threshold
    v[t] = h[t] - s[t] * threshold              # reset "subtract"
         = h[t] - s[t] * h[t]                   # reset "zero"
         = h[t]                                 # reset "none"

``x`` is the input already in membrane units (the current times ``R dt / tau`` in
the continuous picture); ``beta`` is the per-step decay, ``exp(-dt / tau)`` for a
membrane time constant ``tau`` (:meth:`LIFParams.from_tau`). ``beta = 1`` is the
IF neuron used for ANN conversion (:func:`if_params`). With ``detach_reset`` the
spike used in the reset carries no gradient (the backward treats it as a
constant), as in seed 003 and snnTorch's ``reset_delay``-free variant. The
surrogate derivative is evaluated at ``h[t] - threshold``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch

from .. import surrogate as _sg
from ._base import (
    NeuronModel,
    Reset,
    Scalar,
    check_decay,
    check_positive,
    decay_from_tau,
    register_model,
    zeros_state,
)

__all__ = ["LIFParams", "LIFState", "if_params", "lif_step"]


class LIFState(NamedTuple):
    """LIF state: ``v``, the membrane potential after the reset, ``[B, *features]``."""

    v: torch.Tensor


@dataclass(frozen=True)
class LIFParams:
    """Parameters of a LIF neuron (validated at construction).

    Args:
        beta: per-step membrane decay in [0, 1] (1 = no leak).
        threshold: firing threshold, > 0, in membrane units.
        reset: :class:`Reset` mode or its name ("subtract", "zero", "none").
        detach_reset: if True, no gradient flows through the reset.
        surrogate: the surrogate gradient of the spike.
    """

    beta: Scalar = 0.9
    threshold: Scalar = 1.0
    reset: Reset = Reset.SUBTRACT
    detach_reset: bool = False
    surrogate: _sg.Surrogate = field(default_factory=_sg.superspike)

    NUMERIC = ("beta", "threshold")

    def __post_init__(self) -> None:
        check_decay("beta", self.beta)
        check_positive("threshold", self.threshold)
        object.__setattr__(self, "reset", Reset.parse(self.reset))
        if not isinstance(self.surrogate, _sg.Surrogate):
            raise TypeError(f"surrogate must be a spikeflow.surrogate.Surrogate, got {self.surrogate!r}")

    @classmethod
    def from_tau(cls, tau: Scalar, dt: float = 1.0, **kwargs) -> "LIFParams":
        """Parameters from a membrane time constant: ``beta = exp(-dt / tau)``."""
        return cls(beta=decay_from_tau(tau, dt), **kwargs)


def if_params(
    threshold: Scalar = 1.0,
    reset: Reset | str = Reset.SUBTRACT,
    detach_reset: bool = False,
    surrogate: _sg.Surrogate | None = None,
) -> LIFParams:
    """Integrate-and-fire: a LIF neuron without leak (``beta = 1``)."""
    return LIFParams(
        beta=1.0,
        threshold=threshold,
        reset=reset,
        detach_reset=detach_reset,
        surrogate=surrogate if surrogate is not None else _sg.superspike(),
    )


def reset_membrane(h: torch.Tensor, s: torch.Tensor, threshold: Scalar, reset: Reset) -> torch.Tensor:
    """Apply a reset to the pre-reset membrane ``h`` given spikes ``s`` (shared by the LIF family)."""
    if reset is Reset.SUBTRACT:
        return h - s * threshold
    if reset is Reset.ZERO:
        return h - s * h
    return h


def lif_step(p: LIFParams, state: LIFState, x: torch.Tensor) -> tuple[torch.Tensor, LIFState]:
    """One LIF step: returns ``(spikes, next_state)``, both ``[B, *features]``."""
    h = p.beta * state.v + x
    s = p.surrogate(h - p.threshold)
    s_reset = s.detach() if p.detach_reset else s
    return s, LIFState(reset_membrane(h, s_reset, p.threshold, p.reset))


def _init(p: LIFParams, shape, dtype, device) -> LIFState:
    return zeros_state(LIFState, shape, dtype, device)


LIF_MODEL = register_model(NeuronModel("lif", LIFParams, LIFState, lif_step, _init))
