"""Neuron modules: thin ``torch.nn.Module`` wrappers over the step functions.

Each module holds its parameters (learnable or fixed, see :mod:`._parametrize`),
builds the neuron's parameter dataclass from their current values on every call and
runs :func:`spikeflow.scan`. There is no hidden state: ::

    out, state = lif(x)                 # x: [T, B, *features], from rest
    out, state = lif(x_next, state)     # continue where the last call stopped
    result = lif.record(x)              # ScanResult(output, state, trajectory)

The equations live in :mod:`spikeflow.neurons`; the docstrings here only name them.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, NamedTuple, Optional

import torch

from .. import surrogate as _sg
from ..neurons import (
    ASNParams,
    CubaLIFParams,
    CubaOrder,
    GradedLIFParams,
    LIFParams,
    LIParams,
    Reset,
    decay_from_tau,
)
from .._scan import RecurrentState, ScanResult, init_state, scan
from ..numerics import state_dtype
from ..backends import backend_names
from ._parametrize import add_value, as_shape, describe, is_learnable, read_value

__all__ = ["ASN", "CubaLIF", "GradedLIF", "IF", "LI", "LIF", "Neuron"]

_UNSET: Any = None  # a decay argument left out (so that "beta and tau" can be detected)


def _check_backend(backend: Any) -> str:
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a string such as 'auto', got {type(backend).__name__}")
    known = backend_names()
    if backend not in known:
        raise ValueError(f"unknown backend {backend!r}; available: {', '.join(known)}")
    return backend


def _surrogate(value: Any) -> _sg.Surrogate:
    """A fresh default per instance (no shared mutable default), a name, or a Surrogate."""
    if value is None:
        return _sg.superspike()
    if isinstance(value, str):
        return _sg.by_name(value)
    if isinstance(value, _sg.Surrogate):
        return value
    raise TypeError(
        f"surrogate must be a spikeflow.surrogate.Surrogate (e.g. surrogate.atan(2.0)) or "
        f"its name, got {value!r}"
    )


def _decay(name: str, value: Any, tau_name: str, tau: Any, dt: float, default: float) -> Any:
    """``value``, or ``exp(-dt / tau)`` when the time constant is given instead."""
    if tau is not None:
        if value is not None:
            raise ValueError(f"give either {name} or {tau_name}, not both")
        return decay_from_tau(tau, dt)
    return default if value is None else value


def _plain(value: Any) -> Any:
    return value.detach() if isinstance(value, torch.Tensor) else value


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def _value_property(name: str, kind: str, doc: str) -> property:
    return property(lambda self: read_value(self, name, kind), doc=doc)


def _config_property(name: str, doc: str) -> property:
    """A static (non-tensor) setting kept in the module's validated params; setting it
    validates the new value and takes effect at the next call."""

    def set_(self, value: Any) -> None:
        self._config = dataclasses.replace(self._config, **{name: value})

    return property(lambda self: getattr(self._config, name), set_, doc=doc)


class Neuron(torch.nn.Module):
    """Abstract base of the neuron modules: ``forward(x, state) -> (output, state)``.

    Subclasses implement :meth:`neuron_params`. Every neuron module is *stateful* in
    the sense that it takes and returns a state; it never stores one.
    """

    stateful: ClassVar[bool] = True
    _VALUES: ClassVar[dict[str, str]] = {}  # parameter name -> kind ("decay"/"positive")

    def __init__(self, backend: str = "auto") -> None:
        super().__init__()
        self.backend = _check_backend(backend)
        self.register_parameter("recurrent_weight", None)

    def _configure(self, params: Any, values: dict[str, Any], learnable: dict[str, bool], shape: tuple) -> None:
        """Keep ``params`` (validated) for its static settings and register each
        numeric value in ``_VALUES`` as a learnable parameter or a fixed buffer."""
        self._config = params
        for name, kind in self._VALUES.items():
            flag = _flag(f"learn_{name}", learnable.get(name, False))
            add_value(self, name, values[name], kind=kind, learnable=flag, shape=shape)

    def neuron_params(self) -> Any:
        """The neuron's parameter dataclass with the current parameter values.

        Validating the dataclass costs more than a one-step scan, so the result is
        reused while the settings and every value tensor are the same objects at the
        same version (an in-place change, a ``load_state_dict`` or a new learnable
        value builds and validates it again)."""
        current = {name: read_value(self, name, kind) for name, kind in self._VALUES.items()}
        if torch.compiler.is_compiling():  # traced once; version counters are not traceable
            return dataclasses.replace(self._config, **current)
        versions = tuple((id(t), t._version) for t in current.values())
        cached = self.__dict__.get("_params_cache")
        if cached is not None and cached[0] is self._config and cached[1] == versions:
            return cached[2]
        params = dataclasses.replace(self._config, **current)
        # the cache holds the settings and (through params) the value tensors, so no
        # other object can take their ids while the entry lives
        self.__dict__["_params_cache"] = (self._config, versions, params)
        return params

    def init_state(
        self,
        shape: torch.Size | tuple,
        *,
        dtype: Optional[torch.dtype] = None,
        device: Optional[torch.device | str] = None,
    ) -> NamedTuple:
        """The resting state for an input whose ``[B, *features]`` is ``shape`` (what
        ``state=None`` starts from); a ``RecurrentState`` for a recurrent layer."""
        dtype = state_dtype(dtype or torch.get_default_dtype())
        neuron = init_state(self.neuron_params(), shape, dtype=dtype, device=device)
        if self.recurrent_weight is None:
            return neuron
        return RecurrentState(neuron, torch.zeros(shape, dtype=dtype, device=device))

    def _add_recurrent(self, recurrent: Optional[int]) -> None:
        """Lateral weights ``[N, N]``, uniform in ``+-sqrt(6 / (2 N))`` as in seed 003."""
        if recurrent is None:
            return
        if isinstance(recurrent, bool) or not isinstance(recurrent, int) or recurrent < 1:
            raise TypeError(f"recurrent must be a positive int (the number of neurons), got {recurrent!r}")
        bound = math.sqrt(6.0 / (2 * recurrent))
        weight = torch.empty(recurrent, recurrent).uniform_(-bound, bound)
        self.recurrent_weight = torch.nn.Parameter(weight)

    def _scan(self, x: torch.Tensor, state: Any, record: bool) -> ScanResult:
        return scan(
            self.neuron_params(),
            x,
            state,
            backend=self.backend,
            recurrent_weight=self.recurrent_weight,
            record=record,
        )

    def forward(self, x: torch.Tensor, state: Optional[NamedTuple] = None) -> tuple[torch.Tensor, Any]:
        """Run over ``x`` (``[T, B, *features]``) from ``state`` (None: from rest).

        Returns:
            ``(output [T, B, *features], final state)``; with ``recurrent`` the state is a
            :class:`~spikeflow.RecurrentState`.
        """
        result = self._scan(x, state, record=False)
        return result.output, result.state

    def record(self, x: torch.Tensor, state: Optional[NamedTuple] = None) -> ScanResult:
        """Like :meth:`forward`, also recording the state after every step.

        Returns:
            :class:`~spikeflow.ScanResult` ``(output, state, trajectory)``, each
            trajectory field ``[T, B, *features]`` (the neuron state; for a recurrent
            layer ``trajectory[-1]`` equals ``state.neuron``).
        """
        return self._scan(x, state, record=True)

    def _value_repr(self) -> list[str]:
        parts = []
        for name, kind in self._VALUES.items():
            text = f"{name}={describe(read_value(self, name, kind))}"
            if is_learnable(self, name, kind):
                text += " (learnable)"
            parts.append(text)
        return parts

    def _common_repr(self) -> list[str]:
        parts = []
        if self.recurrent_weight is not None:
            parts.append(f"recurrent={self.recurrent_weight.shape[0]}")
        if self.backend != "auto":
            parts.append(f"backend={self.backend!r}")
        return parts


class _LIFLayer(Neuron):
    """Shared implementation of :class:`LIF` and :class:`IF` (both final)."""

    _VALUES = {"beta": "decay", "threshold": "positive"}

    beta = _value_property("beta", "decay", "Current per-step membrane decay.")
    threshold = _value_property("threshold", "positive", "Current firing threshold.")

    reset = _config_property("reset", "Reset mode (a :class:`~spikeflow.neurons.Reset`).")
    detach_reset = _config_property("detach_reset", "Whether the reset carries no gradient.")
    surrogate = _config_property("surrogate", "Surrogate gradient of the spike.")

    def _setup(self, beta, threshold, reset, detach_reset, surrogate, learn_beta, learn_threshold, shape, recurrent):
        params = LIFParams(  # validates every value once, with the params' own messages
            beta=_plain(beta),
            threshold=_plain(threshold),
            reset=reset,
            detach_reset=_flag("detach_reset", detach_reset),
            surrogate=_surrogate(surrogate),
        )
        self._configure(
            params,
            {"beta": beta, "threshold": threshold},
            {"beta": learn_beta, "threshold": learn_threshold},
            as_shape(shape),
        )
        self._add_recurrent(recurrent)

    def extra_repr(self) -> str:
        parts = self._value_repr() + [f"reset={self.reset.value}"]
        if self.detach_reset:
            parts.append("detach_reset=True")
        parts.append(f"surrogate={self.surrogate!r}")
        return ", ".join(parts + self._common_repr())


class LIF(_LIFLayer):
    """Leaky integrate-and-fire neurons (equations: :mod:`spikeflow.neurons.lif`).

    Args:
        beta: per-step membrane decay in [0, 1]; 0.9 if neither ``beta`` nor ``tau`` is given.
        tau: membrane time constant (> 0, same unit as ``dt``); sets ``beta = exp(-dt / tau)``.
        dt: simulation step, used with ``tau``.
        threshold: firing threshold (> 0).
        reset: "subtract", "zero" or "none" (or a :class:`~spikeflow.neurons.Reset`).
        detach_reset: no gradient through the reset.
        surrogate: surrogate gradient (a :class:`~spikeflow.surrogate.Surrogate` or its
            name); None gives a new ``superspike()``.
        learn_beta: make ``beta`` learnable (stored as its logit, so it stays in (0, 1)).
        learn_threshold: make ``threshold`` learnable (stored as its log, stays > 0).
        shape: parameter shape, ``()`` for one shared value, ``(N,)`` per neuron; it
            must broadcast to the input's features.
        recurrent: number of neurons ``N`` to add lateral weights ``[N, N]``
            (``recurrent_weight``); the state is then a ``RecurrentState``.
        backend: scan backend ("auto", "reference", "cpu", ...).

    Shapes: input and output ``[T, B, *features]``; state :class:`~spikeflow.neurons.LIFState`.
    """

    def __init__(
        self,
        beta: Optional[float] = _UNSET,
        *,
        tau: Optional[float] = None,
        dt: float = 1.0,
        threshold: float = 1.0,
        reset: Reset | str = "subtract",
        detach_reset: bool = False,
        surrogate: Optional[_sg.Surrogate | str] = None,
        learn_beta: bool = False,
        learn_threshold: bool = False,
        shape: tuple = (),
        recurrent: Optional[int] = None,
        backend: str = "auto",
    ) -> None:
        super().__init__(backend)
        self.dt = float(dt)
        beta = _decay("beta", beta, "tau", tau, dt, default=0.9)
        self._setup(beta, threshold, reset, detach_reset, surrogate, learn_beta, learn_threshold, shape, recurrent)

    @property
    def tau(self) -> torch.Tensor:
        """Membrane time constant ``-dt / log(beta)`` (inf for ``beta = 1``)."""
        return -self.dt / torch.log(self.beta)


class IF(_LIFLayer):
    """Integrate-and-fire neurons: a :class:`LIF` with ``beta`` fixed to 1 (no leak).

    Args: as for :class:`LIF`, without ``beta``, ``tau``, ``dt`` and ``learn_beta``.
    """

    def __init__(
        self,
        threshold: float = 1.0,
        *,
        reset: Reset | str = "subtract",
        detach_reset: bool = False,
        surrogate: Optional[_sg.Surrogate | str] = None,
        learn_threshold: bool = False,
        shape: tuple = (),
        recurrent: Optional[int] = None,
        backend: str = "auto",
    ) -> None:
        super().__init__(backend)
        self._setup(1.0, threshold, reset, detach_reset, surrogate, False, learn_threshold, shape, recurrent)


class CubaLIF(Neuron):
    """Current-based LIF neurons (equations: :mod:`spikeflow.neurons.cuba`).

    Args:
        alpha: per-step synaptic-current decay in [0, 1] (0.8 by default), or give ``tau_syn``.
        beta: per-step membrane decay in [0, 1] (0.9 by default), or give ``tau_mem``.
        tau_mem, tau_syn: time constants (> 0, unit of ``dt``): ``exp(-dt / tau)``.
        dt: simulation step, used with the time constants.
        threshold: firing threshold (> 0).
        gain: factor of the synaptic current into the membrane.
        normalize: scale each filter's input by ``1 - decay``.
        order: "current_first" (snnTorch, seed 004) or "membrane_first" (Norse, seed 003).
        alpha_rec: decay of a separate recurrent synaptic current (seed 003), or None
            to add the recurrent drive to the input.
        reset, detach_reset, surrogate, shape, recurrent, backend: as for :class:`LIF`.
        learn_alpha, learn_beta, learn_threshold: learnable switches (logit / log storage).

    Shapes: input and output ``[T, B, *features]``; state :class:`~spikeflow.neurons.CubaLIFState`.
    """

    _VALUES = {"alpha": "decay", "beta": "decay", "threshold": "positive"}

    alpha = _value_property("alpha", "decay", "Current per-step synaptic-current decay.")
    beta = _value_property("beta", "decay", "Current per-step membrane decay.")
    threshold = _value_property("threshold", "positive", "Current firing threshold.")
    gain = _config_property("gain", "Factor of the synaptic current into the membrane.")
    normalize = _config_property("normalize", "Whether each filter's input is scaled by 1 - decay.")
    order = _config_property("order", "A :class:`~spikeflow.neurons.CubaOrder`.")
    alpha_rec = _config_property("alpha_rec", "Decay of the separate recurrent current, or None.")
    reset = _config_property("reset", "Reset mode (a :class:`~spikeflow.neurons.Reset`).")
    detach_reset = _config_property("detach_reset", "Whether the reset carries no gradient.")
    surrogate = _config_property("surrogate", "Surrogate gradient of the spike.")

    def __init__(
        self,
        alpha: Optional[float] = _UNSET,
        beta: Optional[float] = _UNSET,
        *,
        tau_mem: Optional[float] = None,
        tau_syn: Optional[float] = None,
        dt: float = 1.0,
        threshold: float = 1.0,
        gain: float = 1.0,
        normalize: bool = False,
        order: CubaOrder | str = "current_first",
        alpha_rec: Optional[float] = None,
        reset: Reset | str = "subtract",
        detach_reset: bool = False,
        surrogate: Optional[_sg.Surrogate | str] = None,
        learn_alpha: bool = False,
        learn_beta: bool = False,
        learn_threshold: bool = False,
        shape: tuple = (),
        recurrent: Optional[int] = None,
        backend: str = "auto",
    ) -> None:
        super().__init__(backend)
        self.dt = float(dt)
        alpha = _decay("alpha", alpha, "tau_syn", tau_syn, dt, default=0.8)
        beta = _decay("beta", beta, "tau_mem", tau_mem, dt, default=0.9)
        params = CubaLIFParams(
            alpha=_plain(alpha),
            beta=_plain(beta),
            threshold=_plain(threshold),
            gain=gain,
            normalize=_flag("normalize", normalize),
            order=order,
            alpha_rec=alpha_rec,
            reset=reset,
            detach_reset=_flag("detach_reset", detach_reset),
            surrogate=_surrogate(surrogate),
        )
        self._configure(
            params,
            {"alpha": alpha, "beta": beta, "threshold": threshold},
            {"alpha": learn_alpha, "beta": learn_beta, "threshold": learn_threshold},
            as_shape(shape),
        )
        self._add_recurrent(recurrent)

    def extra_repr(self) -> str:
        parts = self._value_repr()
        if self.gain != 1.0:
            parts.append(f"gain={self.gain:g}")
        if self.normalize:
            parts.append("normalize=True")
        parts.append(f"order={self.order.value}")
        if self.alpha_rec is not None:
            parts.append(f"alpha_rec={self.alpha_rec:g}")
        parts.append(f"reset={self.reset.value}")
        if self.detach_reset:
            parts.append("detach_reset=True")
        parts.append(f"surrogate={self.surrogate!r}")
        return ", ".join(parts + self._common_repr())


class ASN(Neuron):
    """Adaptive spiking neurons of seed 000 (equations: :mod:`spikeflow.neurons.asn`).

    No learnable parameters. Args are those of :class:`~spikeflow.neurons.ASNParams`
    (time constants in steps), plus ``backend``; ``surrogate`` None gives a new
    ``superspike()``. Output is ``h * spikes``, ``[T, B, *features]``.
    """

    def __init__(
        self,
        tau_phi: float = 2.5,
        tau_gamma: float = 15.0,
        tau_eta: float = 50.0,
        tau_beta: Optional[float] = None,
        m_f: float = 0.1,
        theta0: Optional[float] = None,
        h: float = 1.0,
        bias: float = 0.0,
        input: str = "spikes",
        surrogate: Optional[_sg.Surrogate | str] = None,
        backend: str = "auto",
    ) -> None:
        super().__init__(backend)
        self._config = ASNParams(
            tau_phi=tau_phi,
            tau_gamma=tau_gamma,
            tau_eta=tau_eta,
            tau_beta=tau_beta,
            m_f=m_f,
            theta0=theta0,
            h=h,
            bias=bias,
            input=input,
            surrogate=_surrogate(surrogate),
        )

    def neuron_params(self) -> ASNParams:
        return self._config  # nothing learnable: the validated params as they are

    def extra_repr(self) -> str:
        p = self._config
        parts = [
            f"tau_phi={p.tau_phi:g}", f"tau_gamma={p.tau_gamma:g}", f"tau_eta={p.tau_eta:g}",
            f"tau_beta={p.tau_beta:g}", f"m_f={p.m_f:g}", f"theta0={describe(p.theta0)}",
            f"h={describe(p.h)}", f"bias={describe(p.bias)}", f"input={p.input.value}",
            f"surrogate={p.surrogate!r}",
        ]
        return ", ".join(parts + self._common_repr())


class GradedLIF(Neuron):
    """Graded-output LIF with a penalty reset and a one-step output delay (seed 001;
    equations: :mod:`spikeflow.neurons.graded`).

    Args:
        beta: per-step membrane decay in [0, 1].
        threshold: output threshold (> 0).
        penalty: extra amount removed at a spike (>= 0, fixed).
        learn_beta, learn_threshold, shape, backend: as for :class:`LIF`.
    """

    _VALUES = {"beta": "decay", "threshold": "positive", "penalty": "positive"}

    beta = _value_property("beta", "decay", "Current per-step membrane decay.")
    threshold = _value_property("threshold", "positive", "Current output threshold.")
    penalty = _value_property("penalty", "positive", "Reset penalty (fixed).")

    def __init__(
        self,
        beta: float = 0.9,
        threshold: float = 2.0,
        penalty: float = 2.5,
        *,
        learn_beta: bool = False,
        learn_threshold: bool = False,
        shape: tuple = (),
        backend: str = "auto",
    ) -> None:
        super().__init__(backend)
        params = GradedLIFParams(beta=_plain(beta), threshold=_plain(threshold), penalty=_plain(penalty))
        self._configure(
            params,
            {"beta": beta, "threshold": threshold, "penalty": penalty},
            {"beta": learn_beta, "threshold": learn_threshold},
            as_shape(shape),
        )

    def extra_repr(self) -> str:
        return ", ".join(self._value_repr() + self._common_repr())


class LI(Neuron):
    """Non-spiking leaky integrator, the usual readout (equations:
    :mod:`spikeflow.neurons.integrator`). The output is the membrane ``v[t]``.

    Args:
        beta: per-step decay in [0, 1] (0.9 by default), or give ``tau``.
        tau, dt: time constant and step: ``beta = exp(-dt / tau)``.
        normalize: scale the input by ``1 - beta``.
        learn_beta, shape, backend: as for :class:`LIF`.
    """

    _VALUES = {"beta": "decay"}

    beta = _value_property("beta", "decay", "Current per-step decay.")
    normalize = _config_property("normalize", "Whether the input is scaled by 1 - beta.")

    def __init__(
        self,
        beta: Optional[float] = _UNSET,
        *,
        tau: Optional[float] = None,
        dt: float = 1.0,
        normalize: bool = False,
        learn_beta: bool = False,
        shape: tuple = (),
        backend: str = "auto",
    ) -> None:
        super().__init__(backend)
        self.dt = float(dt)
        beta = _decay("beta", beta, "tau", tau, dt, default=0.9)
        params = LIParams(beta=_plain(beta), normalize=_flag("normalize", normalize))
        self._configure(params, {"beta": beta}, {"beta": learn_beta}, as_shape(shape))

    @property
    def tau(self) -> torch.Tensor:
        """Time constant ``-dt / log(beta)``."""
        return -self.dt / torch.log(self.beta)

    def extra_repr(self) -> str:
        parts = self._value_repr()
        if self.normalize:
            parts.append("normalize=True")
        return ", ".join(parts + self._common_repr())
