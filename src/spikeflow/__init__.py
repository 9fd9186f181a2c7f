"""spikeflow: fast spiking neural networks on PyTorch.

Time-major tensors ``[T, B, *features]`` everywhere; neurons defined once as pure
step functions (:mod:`spikeflow.neurons`), run over time by one driver
(:func:`spikeflow.scan`) with fused backends, and composed into networks with
:mod:`spikeflow.nn`.
"""

from . import backends, neurons, nn, numerics, surrogate
from ._scan import RecurrentState, ScanResult, init_state, scan
from .numerics import NonFiniteError, NonFiniteWarning, nonfinite_policy, set_nonfinite_policy
from .saving import load, save

__version__ = "0.1.0"

__all__ = [
    "NonFiniteError",
    "NonFiniteWarning",
    "RecurrentState",
    "ScanResult",
    "__version__",
    "backends",
    "init_state",
    "load",
    "neurons",
    "nn",
    "nonfinite_policy",
    "numerics",
    "save",
    "scan",
    "set_nonfinite_policy",
    "surrogate",
]
