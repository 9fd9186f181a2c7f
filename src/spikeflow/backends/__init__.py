"""Backends of the time-loop driver :func:`spikeflow.scan`, behind one registry.

- ``reference`` (:mod:`.reference`): a loop over the neuron's step function; every
  neuron, dtype and device, recurrent layers. The definition the others are tested
  against.
- ``cpu`` (:mod:`.cpu`): fused C++/OpenMP kernels, built at first use.
- ``triton`` (:mod:`.triton`): one generic Triton scan kernel for CUDA tensors (made
  at first use; triton is imported only then, and without triton or CUDA the backend
  is unavailable and ``"auto"`` passes over it).

Each backend is registered per neuron with its :class:`Capabilities`;
:func:`resolve` is the one dispatch function (``backend="auto"`` picks the
highest-priority backend that can run a call; a named backend that cannot raises an
error naming the reason and the backends that can).
"""

from . import cpu as _cpu  # noqa: F401  (registers the fused CPU backend)
from . import reference as _reference  # noqa: F401  (registers the reference backend)
from . import triton as _triton  # noqa: F401  (registers the GPU backend; imports triton lazily)
from ._registry import (
    Backend,
    Capabilities,
    backend_names,
    backends_for,
    register_backend,
    resolve,
)

__all__ = ["Backend", "Capabilities", "backend_names", "backends_for", "register_backend", "resolve"]
