"""Neuron models: each a frozen parameter dataclass, a NamedTuple state and a pure
step function ``step(params, state, x_t) -> (output_t, next_state)``.

These step functions are the reference semantics of spikeflow; the fused backends
in :mod:`spikeflow.scan` are tested against them.
"""

from ._base import NeuronModel, Reset, decay_from_tau, model_of
from .asn import ASNInput, ASNParams, ASNState, asn_step
from .cuba import CubaLIFParams, CubaLIFState, CubaOrder, cuba_lif_step
from .graded import GradedLIFParams, GradedLIFState, graded_lif_step
from .integrator import LIParams, LIState, li_step
from .lif import LIFParams, LIFState, if_params, lif_step

__all__ = [
    "ASNInput",
    "ASNParams",
    "ASNState",
    "CubaLIFParams",
    "CubaLIFState",
    "CubaOrder",
    "GradedLIFParams",
    "GradedLIFState",
    "LIFParams",
    "LIFState",
    "LIParams",
    "LIState",
    "NeuronModel",
    "Reset",
    "asn_step",
    "cuba_lif_step",
    "decay_from_tau",
    "graded_lif_step",
    "if_params",
    "li_step",
    "lif_step",
    "model_of",
]
