"""The backend registry: who can run which neuron, with declared capabilities.

A backend is registered per neuron model name (or ``"*"`` for every model) with
:class:`Capabilities`. Dispatch is one function, :func:`resolve`: an explicitly
requested backend that cannot run a call raises an error naming the reason and the
backends that can; ``"auto"`` takes the most preferred backend that can.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

from ..neurons._base import NeuronModel

ALL_FLOAT_DTYPES = frozenset({torch.float16, torch.bfloat16, torch.float32, torch.float64})


@dataclass(frozen=True)
class Capabilities:
    """What a backend supports.

    Attributes:
        dtypes: input dtypes it runs.
        devices: device types (``"cpu"``, ``"cuda"``).
        recurrent: whether it runs layers with recurrent weights.
        params_check: ``check(params) -> reason or None`` for parameter-dependent
            limits (for example a mode a kernel does not implement).
        available: ``available() -> reason or None``, whether the backend can be used
            on this machine at all (a missing compiler, no CUDA).
    """

    dtypes: frozenset = ALL_FLOAT_DTYPES
    devices: frozenset = frozenset({"cpu", "cuda"})
    recurrent: bool = False
    params_check: Optional[Callable[[Any], Optional[str]]] = None
    available: Optional[Callable[[], Optional[str]]] = None


@dataclass(frozen=True)
class Backend:
    """A registered implementation of the multi-step scan for one neuron model.

    ``run(model, params, x, state, recurrent, record)`` receives materialized
    parameters (see :meth:`NeuronModel.materialize`) and a validated state, and
    returns ``(output [T, B, ...], final_state, trajectory or None)``.
    """

    name: str
    neuron: str
    run: Callable[..., tuple]
    caps: Capabilities = field(default_factory=Capabilities)
    priority: int = 0  # higher is preferred by "auto"

    def why_not(self, params: Any, x: torch.Tensor, recurrent: bool) -> Optional[str]:
        """None when this backend can run the call, else the reason it cannot."""
        reason = self.unsupported(params, x, recurrent)
        if reason is None and self.caps.available is not None:
            reason = self.caps.available()
        return reason

    def unsupported(self, params: Any, x: torch.Tensor, recurrent: bool) -> Optional[str]:
        """Why the call is outside the declared capabilities (availability aside)."""
        caps = self.caps
        if x.dtype not in caps.dtypes:
            names = ", ".join(sorted(str(d).replace("torch.", "") for d in caps.dtypes))
            return f"dtype {str(x.dtype).replace('torch.', '')} is not supported (supports {names})"
        if x.device.type not in caps.devices:
            return f"device {x.device.type!r} is not supported (supports {sorted(caps.devices)})"
        if recurrent and not caps.recurrent:
            return "recurrent weights are not supported"
        if caps.params_check is not None:
            reason = caps.params_check(params)
            if reason:
                return reason
        return None


_BACKENDS: dict[tuple[str, str], Backend] = {}


def register_backend(backend: Backend) -> Backend:
    """Register ``backend`` for its neuron (``"*"`` for all). Done once, at import."""
    key = (backend.neuron, backend.name)
    if key in _BACKENDS:
        raise ValueError(f"backend {backend.name!r} is already registered for {backend.neuron!r}")
    _BACKENDS[key] = backend
    return backend


def backends_for(model: NeuronModel) -> list[Backend]:
    """Every backend registered for ``model``, most preferred first."""
    found = [b for (neuron, _), b in _BACKENDS.items() if neuron in (model.name, "*")]
    return sorted(found, key=lambda b: -b.priority)


def backend_names() -> list[str]:
    """All backend names known to spikeflow (for messages and the CLI)."""
    return sorted({name for (_, name) in _BACKENDS} | {"auto"})


_warned: set[tuple[str, str]] = set()


def _warn_unavailable(model: NeuronModel, backend: Backend, reason: str) -> None:
    key = (model.name, backend.name)
    if key not in _warned:
        _warned.add(key)
        warnings.warn(
            f"spikeflow: the {backend.name!r} backend would run {model.name} but is unavailable "
            f"here ({reason}); backend='auto' uses the next one. Pass backend='reference' to "
            f"silence this warning.",
            RuntimeWarning,
            stacklevel=4,
        )


def resolve(model: NeuronModel, name: str, params: Any, x: torch.Tensor, recurrent: bool) -> Backend:
    """Pick the backend that runs this call (see the module docstring)."""
    candidates = backends_for(model)
    if name == "auto":
        for backend in candidates:
            reason = backend.why_not(params, x, recurrent)
            if reason is None:
                return backend
            if backend.unsupported(params, x, recurrent) is None:  # only unavailable here
                _warn_unavailable(model, backend, reason)
        raise AssertionError("the reference backend supports every call")  # pragma: no cover
    for backend in candidates:
        if backend.name == name:
            reason = backend.why_not(params, x, recurrent)
            if reason is None:
                return backend
            working = [b.name for b in candidates if b.why_not(params, x, recurrent) is None]
            raise ValueError(
                f"backend {name!r} cannot run this {model.name} call: {reason}. "
                f"Backends that can: {', '.join(working)} (or backend='auto')."
            )
    known = [b.name for b in candidates]
    raise ValueError(
        f"unknown backend {name!r} for {model.name}; available: {', '.join(known)}, or 'auto'"
    )
