"""Graded-output LIF with a penalty reset and a one-step output delay (seed 001).

One step ``t`` (tensors ``[B, *features]``)::

    h[t] = beta * v[t-1] + x[t]
    o[t] = max(h[t] - threshold, 0)                 # graded output: the excess
    g[t] = 1 if o[t] > 0 else 0                     # fired (no gradient)
    v[t] = h[t] - (penalty + o[t]) * g[t]           # reset below rest by `penalty`
    out[t] = o[t-1]                                 # the output is delayed one step

The output's gradient is the ReLU derivative of ``h - threshold`` (no surrogate is
needed: the output is continuous). Seed 001 uses ``beta = 0.9``, ``threshold = 2``,
``penalty = 2.5``; it reads its last layer's delayed membrane ``v[t-1]`` as logits,
which a network gets by recording the state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from ._base import (
    NeuronModel,
    Scalar,
    check_decay,
    check_nonnegative,
    check_positive,
    register_model,
    zeros_state,
)

__all__ = ["GradedLIFParams", "GradedLIFState", "graded_lif_step"]


class GradedLIFState(NamedTuple):
    """State, each ``[B, *features]``: membrane ``v`` after the penalty reset and the
    graded output ``o`` of the previous step (emitted at the next step)."""

    v: torch.Tensor
    o: torch.Tensor


@dataclass(frozen=True)
class GradedLIFParams:
    """Parameters of the seed-001 neuron.

    Args:
        beta: per-step membrane decay in [0, 1] (seed 001's ``decay_multiplier``).
        threshold: output threshold (> 0).
        penalty: extra amount removed at a spike (>= 0), seed 001's ``penalty_threshold``.
    """

    beta: Scalar = 0.9
    threshold: Scalar = 2.0
    penalty: Scalar = 2.5

    NUMERIC = ("beta", "threshold", "penalty")

    def __post_init__(self) -> None:
        check_decay("beta", self.beta)
        check_positive("threshold", self.threshold)
        check_nonnegative("penalty", self.penalty)


def graded_lif_step(
    p: GradedLIFParams, state: GradedLIFState, x: torch.Tensor
) -> tuple[torch.Tensor, GradedLIFState]:
    """One step: returns ``(o[t-1], next_state)``."""
    h = p.beta * state.v + x
    o = torch.relu(h - p.threshold)
    fired = (o > 0).to(o.dtype)
    v = h - (p.penalty + o) * fired
    return state.o, GradedLIFState(v, o)


def _init(p, shape, dtype, device) -> GradedLIFState:
    return zeros_state(GradedLIFState, shape, dtype, device)


GRADED_LIF_MODEL = register_model(
    NeuronModel("graded_lif", GradedLIFParams, GradedLIFState, graded_lif_step, _init)
)
