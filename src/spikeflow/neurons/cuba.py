"""Current-based LIF neuron (CubaLIF): a synaptic current filters the input.

One step ``t`` (tensors ``[B, *features]``), with ``a_i = 1 - alpha`` and
``a_v = 1 - beta`` when ``normalize`` is set, else ``a_i = a_v = 1``::

    order "current_first" (snnTorch Synaptic, seed 004):
        i[t] = alpha * i[t-1] + a_i * x[t]
        h[t] = beta * v[t-1] + a_v * (gain * i[t])
    order "membrane_first" (Norse, seed 003):
        h[t] = beta * v[t-1] + a_v * (gain * i[t-1])
        i[t] = alpha * i[t-1] + a_i * x[t]
    s[t] = Heaviside(h[t] - threshold)
    v[t] = reset(h[t], s[t])                    # as in the LIF neuron

``alpha = exp(-dt / tau_syn)`` and ``beta = exp(-dt / tau_mem)``
(:meth:`CubaLIFParams.from_tau`). With recurrent connections (a layer option) the
recurrent drive ``r[t] = V s[t-1]`` either joins ``x[t]`` or, when ``alpha_rec`` is
set, passes through its own synaptic filter and enters the membrane beside the
feed-forward current, exactly as in seed 003::

    i_rec[t] = alpha_rec * i_rec[t-1] + a_r * r[t]        # a_r = 1 - alpha_rec if normalize
    h[t]     = beta * v[t-1] + a_v * (gain * i + i_rec)    # i, i_rec as the order picks

Seed 003 is ``CubaLIFParams(alpha=0.9, beta=0.95, alpha_rec=0.85, gain=20,
normalize=True, order="membrane_first", reset="zero", detach_reset=True)`` (its
``alpha`` is our membrane ``beta``); seed 004 is ``CubaLIFParams.from_tau(tau_mem=20,
tau_syn=5, dt=1, reset="zero", detach_reset=True,
surrogate=straight_through())``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Optional

import torch

from .._choice import Choice

from .. import surrogate as _sg
from ._base import (
    NeuronModel,
    Reset,
    Scalar,
    check_decay,
    check_finite,
    check_positive,
    decay_from_tau,
    register_model,
    zeros_state,
)
from .lif import reset_membrane

__all__ = ["CubaLIFParams", "CubaLIFState", "CubaOrder", "cuba_lif_step"]


class CubaOrder(Choice):
    """Whether ``x[t]`` reaches the membrane in the same step or one step later."""

    CURRENT_FIRST = "current_first"
    MEMBRANE_FIRST = "membrane_first"

    @classmethod
    def _what(cls) -> str:
        return "order"


class CubaLIFState(NamedTuple):
    """CubaLIF state, each ``[B, *features]``: membrane ``v`` (after reset),
    synaptic current ``i`` and recurrent synaptic current ``i_rec`` (stays zero
    unless ``alpha_rec`` is set)."""

    v: torch.Tensor
    i: torch.Tensor
    i_rec: torch.Tensor


@dataclass(frozen=True)
class CubaLIFParams:
    """Parameters of the current-based LIF neuron.

    Args:
        alpha: per-step synaptic-current decay in [0, 1].
        beta: per-step membrane decay in [0, 1].
        threshold: firing threshold (> 0).
        gain: factor of the synaptic current into the membrane (seed 003 uses 20).
        normalize: scale each filter's input by ``1 - decay`` (exponential-Euler form).
        order: :class:`CubaOrder` or its name.
        alpha_rec: decay of a separate recurrent synaptic current, or None to add the
            recurrent drive to the input.
        reset, detach_reset, surrogate: as for :class:`~spikeflow.neurons.LIFParams`.
    """

    alpha: Scalar = 0.8
    beta: Scalar = 0.9
    threshold: Scalar = 1.0
    gain: float = 1.0
    normalize: bool = False
    order: CubaOrder = CubaOrder.CURRENT_FIRST
    alpha_rec: Optional[float] = None
    reset: Reset = Reset.SUBTRACT
    detach_reset: bool = False
    surrogate: _sg.Surrogate = field(default_factory=_sg.superspike)

    NUMERIC = ("alpha", "beta", "threshold")

    def __post_init__(self) -> None:
        check_decay("alpha", self.alpha)
        check_decay("beta", self.beta)
        check_positive("threshold", self.threshold)
        check_finite("gain", self.gain)
        object.__setattr__(self, "gain", float(self.gain))
        if self.alpha_rec is not None:
            check_decay("alpha_rec", self.alpha_rec)
            object.__setattr__(self, "alpha_rec", float(self.alpha_rec))
        object.__setattr__(self, "order", CubaOrder.parse(self.order))
        object.__setattr__(self, "reset", Reset.parse(self.reset))
        if not isinstance(self.surrogate, _sg.Surrogate):
            raise TypeError(f"surrogate must be a spikeflow.surrogate.Surrogate, got {self.surrogate!r}")

    @classmethod
    def from_tau(
        cls, tau_mem: Scalar, tau_syn: Scalar, dt: float = 1.0, **kwargs
    ) -> "CubaLIFParams":
        """Exact decays from time constants (same unit as ``dt``, e.g. ms)."""
        return cls(alpha=decay_from_tau(tau_syn, dt), beta=decay_from_tau(tau_mem, dt), **kwargs)


def _input_scale(p: CubaLIFParams, decay: Scalar) -> Scalar:
    return 1.0 - decay if p.normalize else 1.0


def cuba_lif_step(
    p: CubaLIFParams, state: CubaLIFState, x: torch.Tensor, recurrent: torch.Tensor | None = None
) -> tuple[torch.Tensor, CubaLIFState]:
    """One CubaLIF step: returns ``(spikes, next_state)``.

    ``recurrent`` is the recurrent drive ``V s[t-1]`` of a recurrent layer, or None.
    """
    a_i = _input_scale(p, p.alpha)
    a_v = _input_scale(p, p.beta)
    if recurrent is not None and p.alpha_rec is None:
        x = x + recurrent
    i_rec_new = state.i_rec
    if p.alpha_rec is not None:
        i_rec_new = p.alpha_rec * state.i_rec
        if recurrent is not None:
            a_r = 1.0 - p.alpha_rec if p.normalize else 1.0
            i_rec_new = i_rec_new + a_r * recurrent
    i_new = p.alpha * state.i + a_i * x
    if p.order is CubaOrder.CURRENT_FIRST:
        i_drive, r_drive = i_new, i_rec_new
    else:
        i_drive, r_drive = state.i, state.i_rec
    drive = p.gain * i_drive
    if p.alpha_rec is not None:
        drive = drive + r_drive
    h = p.beta * state.v + a_v * drive
    s = p.surrogate(h - p.threshold)
    s_reset = s.detach() if p.detach_reset else s
    return s, CubaLIFState(reset_membrane(h, s_reset, p.threshold, p.reset), i_new, i_rec_new)


def _init(p: CubaLIFParams, shape, dtype, device) -> CubaLIFState:
    return zeros_state(CubaLIFState, shape, dtype, device)


CUBA_LIF_MODEL = register_model(
    NeuronModel(
        "cuba_lif", CubaLIFParams, CubaLIFState, cuba_lif_step, _init, takes_recurrent=True
    )
)
