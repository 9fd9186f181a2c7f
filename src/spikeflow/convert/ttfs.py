r"""Time-to-first-spike (TTFS) coding (seed 002): every neuron spikes at most once,
and a larger activation spikes earlier.

Three builders with the signature of :func:`~spikeflow.convert.rate.rate_network`
(``build(graph, calibration, *, options, info=None) -> SpikingNetwork``):

- :func:`ttfs_network` (coding ``ttfs``): plain, asynchronous TTFS (Rueckauer & Liu
  2018, "Conversion of analog to spiking neural networks using sparse temporal
  coding"). Approximate; degrades with depth.
- :func:`ttfs_dynamic_network` (``ttfs-dynamic``): layer-synchronous windows with a
  falling (dynamic) threshold; exact up to a quantization of every activation to
  ``K`` levels.
- :func:`ttfs_clamped_network` (``ttfs-clamped``): the dynamic scheme for ANNs
  trained with activations clamped to ``[0, m]`` (the clamp is the scale; no data).
  :func:`clamp_activations` prepares such an ANN for fine-tuning.

Time steps are counted from 0: ``n = 0, 1, ..., T - 1``. ``H(u)`` is 1 for ``u > 0``,
``H0(u)`` is 1 for ``u >= 0``. ``lambda`` is an activation's scale (its calibrated
maximum, or the clamp), ``z`` its ANN pre-activation (bias included, ANN units).

Plain TTFS (:class:`TTFSNeuron`, model ``ttfs``)
------------------------------------------------
An IF neuron (no leak, threshold ``lambda``, strictly above as
:class:`spikeflow.nn.IF`) that fires once and is silent afterwards::

    h[n] = h[n-1] + x[n]                          # h[-1] = 0, never reset
    s[n] = H(h[n] - lambda) * (1 - f[n-1])        # f: "has fired", f[-1] = 0
    f[n] = f[n-1] + s[n]

Its spike enters the next layer as a persistent step current
(:class:`StepCurrent`, ``c[n] = sum_{m <= n} s[m] = H0(n - n_i)``) worth ``lambda``
(:class:`~spikeflow.convert.layers.Scale`, folded into the next weights), so the
next membrane integrates ``sum_i w_i lambda_i (n - n_i + 1)_+ + (n + 1) b``: all
layers run at once. The network's output is the last layer's current; its mean
over ``T`` steps (``info["readout"] = "mean"``) decodes an input spiking at ``n_i``
as ``lambda_i (T - n_i) / T``. A neuron of the first layer (constant input ``z > 0``)
fires at ``n = floor(lambda / z)``, a time inverse to its activation, while the decoding
is linear in time (it tends to ``lambda`` for every neuron that fires as ``T`` grows,
so longer runs do not help), and every neuron may fire before all of its inputs
have: the code is monotone but not faithful, and its error compounds with depth
(the seed's thesis: deep networks fell to chance). It is here as the published
baseline. Additions and concatenations are taken as they come (no timing to align).

TTFS with a dynamic threshold (:class:`DynamicTTFSNeuron`, model ``ttfs_dynamic``)
---------------------------------------------------------------------------------
Time is cut into windows of ``K`` steps (``window``); window ``w`` is the steps
``wK <= n < (w+1)K``. A neuron of phase ``p`` integrates during window ``p`` only and
fires during window ``p + 1`` only, against a threshold that falls linearly::

    h[n] = h[n-1] + 1[n in window p] x[n]
    theta[n] = lambda (K - k - o),   k = n - (p+1)K  (the step within window p+1)
    s[n] = 1[n in window p+1] H0(h[n] - theta[n]) (1 - f[n-1]),   f[n] = f[n-1] + s[n]

where ``o`` in ``[0, 1)`` is ``threshold_offset``. If the input's integral over
window ``p`` is ``K z``, the neuron fires at ``k = K - q`` with

    q = floor(K z / lambda + o)              (fires iff q >= 1; q >= K fires at k = 0)

and its step current, summed over window ``p + 1``, is ``K - k = clip(q, 0, K)``.
So the next layer (phase ``p + 1``) integrates over its window exactly
``sum_i w_i lambda_i clip(q_i, 0, K) + K b = K (sum_i w_i a_i + b)`` with

    a = Q_K(z) = lambda clip(floor(K z / lambda + o), 0, K) / K,

the ANN's ReLU clipped at ``lambda`` and quantized to ``K`` levels: rounded for
``o = 1/2`` (the default; ``|a - clip(z, 0, lambda)| <= lambda / 2K``), floored for
``o = 0`` (``<= lambda / K``). The whole network computes the ANN with every
activation replaced by ``Q_K`` (exactly, up to float rounding at ties); an error
``e_l`` in layer ``l``'s activations gives ``e_{l+1} <= |W_{l+1}| e_l + lambda / 2K``.
A QCFS activation with ``L`` levels and shift ``o`` *is* ``Q_L``, so a QCFS-trained
ANN converts without loss with ``window = L``.

Phases come from the graph: a neuron reading the (constant) input has phase 0, one
reading layers of phase ``p`` has phase ``p``, its output phase ``p + 1``; linear
layers keep the phase of their input. The network runs
``total_steps = (P + 1) K`` steps, ``P`` the output's phase (the number of neurons on
the longest path). A :class:`WindowReadout` integrates the output current over
window ``P``: ``y[n] = (1/K) sum_{m <= n, m in window P} x[m]``, so the output at the
last step (``info["readout"] = "last"``) is the ANN's logits estimate;
``simulate(net, x, [net.info["total_steps"]])`` returns it (and the same value for
any longer run; shorter runs give a partial sum). Biases integrate correctly since
every linear layer adds ``b`` at every step of its window.

Branches: an addition or concatenation of inputs of different phases moves each
earlier input's window integral into the latest input's window
(:class:`WindowDelay`: ``y[n] = (1/K) sum_{m in window s} x[m]`` for ``n`` in window
``s + d``, 0 elsewhere), which is exact for the layers that read it (they only sum
over their window); residual networks convert. Constant inputs need no delay.

Max pooling
-----------
Of spikes (after a ReLU): :class:`FirstSpikeMaxPool`, which fires once, at the
earliest spike in its window (the largest activation); its output then becomes a
step current like a neuron's. Of the constant input: ordinary max pooling. Of a
current (a max pooling before its ReLU): the two are swapped on a copy of the
graph, since ``relu(maxpool(z)) = maxpool(relu(z))`` (the scale stays that of the
ReLU node); a max pooling of a current not read by a ReLU is a
:class:`~spikeflow.convert.graph.ConversionError`.

Conversion activations (QCFS, ...) are treated as ReLUs clipped at their own scale.

Neuron layers are ``spikeflow.nn`` neurons (``net.neurons()`` lists them). Their
step functions :func:`ttfs_step` and :func:`dynamic_ttfs_step` are the reference
(``record()`` runs them through :func:`spikeflow.scan`); ``forward`` computes all
steps at once in closed form (:func:`ttfs_parallel`, :func:`dynamic_ttfs_parallel`),
with the same spikes. They have no surrogate gradient (made for inference after
conversion).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, NamedTuple, Optional

import torch

from .. import nn as snn
from .._scan import _check_input as check_input
from .._scan import _check_state as check_state
from ..neurons._base import NeuronModel, Scalar, check_positive, register_model, zeros_state
from ..nn._layers import check_sequence
from ..nn._parametrize import as_shape, describe, read_value
from .calibrate import Calibration, Normalization, activation_nodes, check_builder_inputs
from .graph import ConversionError, Kind, LayerGraph, Node
from .layers import Scale, SpikingMaxPool
from .network import SpikingNetwork, Step, register_layer
from .rate import neuron_shape
from .replace import stateless_layer, finalize, to_spiking

__all__ = [
    "DynamicTTFSNeuron",
    "DynamicTTFSParams",
    "DynamicTTFSState",
    "FirstSpikeMaxPool",
    "StepCurrent",
    "TTFSNeuron",
    "TTFSParams",
    "TTFSState",
    "WindowDelay",
    "WindowReadout",
    "clamp_activations",
    "dynamic_ttfs_parallel",
    "dynamic_ttfs_step",
    "ttfs_clamped_network",
    "ttfs_dynamic_network",
    "ttfs_network",
    "ttfs_parallel",
    "ttfs_step",
]


# -- neuron models: parameters, state, step function -----------------------------------
class TTFSState(NamedTuple):
    """Plain TTFS state, each ``[B, *features]``: ``v`` the membrane (never reset),
    ``fired`` 1 after the neuron's spike, else 0."""

    v: torch.Tensor
    fired: torch.Tensor


@dataclass(frozen=True)
class TTFSParams:
    """Plain TTFS neuron: ``threshold`` (> 0, membrane units; the activation scale)."""

    threshold: Scalar = 1.0

    NUMERIC = ("threshold",)

    def __post_init__(self) -> None:
        check_positive("threshold", self.threshold)


def ttfs_step(p: TTFSParams, state: TTFSState, x: torch.Tensor) -> tuple[torch.Tensor, TTFSState]:
    """One plain TTFS step (module docstring): ``(spikes, next_state)``, ``[B, *features]``."""
    h = state.v + x
    s = (h > p.threshold).to(h.dtype) * (1 - state.fired)
    return s, TTFSState(h, state.fired + s)


class DynamicTTFSState(NamedTuple):
    """Dynamic TTFS state, each ``[B, *features]``: membrane ``v``, ``fired`` (0/1)
    and ``t``, the number of steps done (the same everywhere)."""

    v: torch.Tensor
    fired: torch.Tensor
    t: torch.Tensor


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


def _check_offset(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) < 1.0:
        raise ValueError(f"threshold_offset must be a number in [0, 1), got {value!r}")
    return float(value)


@dataclass(frozen=True)
class DynamicTTFSParams:
    """Dynamic-threshold TTFS neuron (module docstring).

    Args:
        threshold: ``lambda`` (> 0), the activation scale in membrane units.
        window: ``K`` (>= 1), steps per window.
        phase: ``p`` (>= 0): integrates in window ``p``, fires in window ``p + 1``.
        offset: ``o`` in ``[0, 1)``: ``q = floor(K z / lambda + o)``.
    """

    threshold: Scalar = 1.0
    window: int = 16
    phase: int = 0
    offset: float = 0.5

    NUMERIC = ("threshold",)

    def __post_init__(self) -> None:
        check_positive("threshold", self.threshold)
        _check_int("window", self.window, 1)
        _check_int("phase", self.phase, 0)
        object.__setattr__(self, "offset", _check_offset(self.offset))


def dynamic_ttfs_step(
    p: DynamicTTFSParams, state: DynamicTTFSState, x: torch.Tensor
) -> tuple[torch.Tensor, DynamicTTFSState]:
    """One dynamic TTFS step (module docstring): ``(spikes, next_state)``."""
    t, K = state.t, p.window
    start = p.phase * K  # first step of the integration window
    integrate = (t >= start) & (t < start + K)
    h = state.v + torch.where(integrate, x, torch.zeros_like(x))
    k = t - (start + K)  # step within the firing window
    firing = (k >= 0) & (k < K)
    theta = p.threshold * (K - k - p.offset)
    s = (firing & (h >= theta)).to(h.dtype) * (1 - state.fired)
    return s, DynamicTTFSState(h, state.fired + s, t + 1)


def _first(above: torch.Tensor, fired: torch.Tensor) -> torch.Tensor:
    """Spikes at the first step of ``above`` (``[T, B, ...]``, bool) where not ``fired`` before."""
    count = torch.cumsum(above.to(fired.dtype), dim=0)
    return (above & (count == 1) & (fired == 0)).to(fired.dtype)


def ttfs_parallel(p: TTFSParams, x: torch.Tensor, state: TTFSState) -> tuple[torch.Tensor, TTFSState]:
    """All steps of :func:`ttfs_step` at once (``x``: ``[T, B, *features]``): the membrane
    is never reset, so ``h = v + cumsum(x)`` and the spike is the first ``h > lambda``."""
    h = state.v + torch.cumsum(x, dim=0)
    s = _first(h > p.threshold, state.fired)
    return s, TTFSState(h[-1], state.fired + s.sum(0))


def _rows(first: int, steps: int, start: int, stop: int) -> tuple[int, int]:
    """The rows ``[a, b)`` of a chunk of ``steps`` steps from step ``first`` that fall in
    the steps ``[start, stop)`` (``a == b`` if none)."""
    a = min(max(start - first, 0), steps)
    return a, min(max(stop - first, a), steps)


def dynamic_ttfs_parallel(
    p: DynamicTTFSParams, x: torch.Tensor, state: DynamicTTFSState
) -> tuple[torch.Tensor, DynamicTTFSState]:
    """All steps of :func:`dynamic_ttfs_step` at once (``x``: ``[T, B, *features]``),
    touching only the rows of the two windows: the membrane sums the integration
    window's rows in the step function's order, and stays constant in the firing
    window, where the spike is the first row with ``h >= theta``. ``state.t`` must be
    the same everywhere (as the step function keeps it)."""
    t = state.t.reshape(-1)[:1]
    if t.numel() and not bool((state.t == t).all()):
        raise ValueError("state.t must be the same for every neuron (it counts the steps done)")
    first = int(t.item()) if t.numel() else 0
    steps, K, start = x.shape[0], p.window, p.phase * p.window
    h = state.v
    a, b = _rows(first, steps, start, start + K)
    if b > a:
        h = h.clone()
        for row in x[a:b]:
            h += row
    s = torch.zeros_like(x)
    fired = state.fired
    a, b = _rows(first, steps, start + K, start + 2 * K)
    if b > a:
        k = torch.arange(first + a, first + b, dtype=x.dtype, device=x.device) - (start + K)
        theta = p.threshold * (K - k - p.offset).view((-1,) + (1,) * (x.dim() - 1))  # [rows, *threshold]
        s[a:b] = _first(h >= theta, fired)
        fired = fired + s[a:b].sum(0)
    return s, DynamicTTFSState(h, fired, state.t + steps)


def _zeros(state_type: type):
    return lambda p, shape, dtype, device: zeros_state(state_type, shape, dtype, device)


TTFS_MODEL = register_model(NeuronModel("ttfs", TTFSParams, TTFSState, ttfs_step, _zeros(TTFSState)))
DYNAMIC_TTFS_MODEL = register_model(
    NeuronModel("ttfs_dynamic", DynamicTTFSParams, DynamicTTFSState, dynamic_ttfs_step, _zeros(DynamicTTFSState))
)


# -- neuron modules -----------------------------------------------------------------
def _plain(value: Any) -> Any:
    return value.detach() if isinstance(value, torch.Tensor) else value


class _TTFSLayer(snn.Neuron):
    """What both TTFS neuron modules share: a fixed threshold (a buffer) and a
    forward pass in closed form over all steps (``_parallel``), equal to the scan of
    the step function that :meth:`record` runs."""

    _VALUES = {"threshold": "positive"}
    _MODEL: NeuronModel
    _parallel: Any

    def forward(self, x: torch.Tensor, state: Optional[NamedTuple] = None) -> tuple[torch.Tensor, NamedTuple]:
        """Run over ``x`` (``[T, B, *features]``) from ``state`` (None: from rest):
        ``(spikes [T, B, *features], final state)``."""
        check_input(x)
        params = self._MODEL.materialize(self.neuron_params(), x.dtype, x.device)
        if state is None:
            state = self._MODEL.init_state(params, x.shape[1:], x.dtype, x.device)
        else:
            check_state(state, self._MODEL.state_type, x)
        return self._parallel(params, x, state)

    @property
    def threshold(self) -> torch.Tensor:
        """The firing threshold ``lambda``."""
        return read_value(self, "threshold", "positive")

    def _settings(self) -> dict:
        return {}

    def config(self) -> dict:
        """JSON-able settings for :func:`~spikeflow.convert.network.build_layer`."""
        return {"shape": list(self.threshold.shape), **self._settings()}

    @classmethod
    def from_config(cls, config: dict) -> "_TTFSLayer":
        config = dict(config)
        shape = tuple(config.pop("shape"))
        return cls(threshold=torch.ones(shape), shape=shape, **config)

    def extra_repr(self) -> str:
        parts = [f"threshold={describe(self.threshold)}"]
        parts += [f"{k}={v!r}" for k, v in self._settings().items()]
        return ", ".join(parts + self._common_repr())


@register_layer
class TTFSNeuron(_TTFSLayer):
    """Plain TTFS neurons (model ``ttfs``, equations in the module docstring): an IF
    neuron with threshold ``threshold`` that spikes at most once.

    Args:
        threshold: ``lambda`` (> 0); a tensor of ``shape`` for one value per channel.
        shape: parameter shape, ``()`` per layer, ``(C, 1, 1)`` per channel.
        backend: the scan backend of :meth:`record` (``forward`` is in closed form).

    Shapes: input and output ``[T, B, *features]``; state :class:`TTFSState`.
    """

    _MODEL = TTFS_MODEL
    _parallel = staticmethod(ttfs_parallel)

    def __init__(self, threshold: Scalar = 1.0, *, shape: tuple = (), backend: str = "auto") -> None:
        super().__init__(backend)
        params = TTFSParams(threshold=_plain(threshold))
        self._configure(params, {"threshold": threshold}, {}, as_shape(shape))


@register_layer
class DynamicTTFSNeuron(_TTFSLayer):
    """Dynamic-threshold TTFS neurons (model ``ttfs_dynamic``, module docstring):
    integrate during window ``phase``, spike once during window ``phase + 1`` at step
    ``K - floor(K z / lambda + offset)`` of it.

    Args:
        threshold: ``lambda`` (> 0), per layer or per channel (``shape``).
        window: ``K``, steps per window.
        phase: ``p``, the integration window.
        offset: ``o`` in ``[0, 1)`` (1/2 rounds, 0 floors).
        shape, backend: as for :class:`TTFSNeuron`.

    Shapes: input and output ``[T, B, *features]``; state :class:`DynamicTTFSState`.
    """

    _MODEL = DYNAMIC_TTFS_MODEL
    _parallel = staticmethod(dynamic_ttfs_parallel)

    def __init__(
        self,
        threshold: Scalar = 1.0,
        *,
        window: int,
        phase: int,
        offset: float = 0.5,
        shape: tuple = (),
        backend: str = "auto",
    ) -> None:
        super().__init__(backend)
        params = DynamicTTFSParams(threshold=_plain(threshold), window=window, phase=phase, offset=offset)
        self._configure(params, {"threshold": threshold}, {}, as_shape(shape))

    @property
    def window(self) -> int:
        """``K``, steps per window."""
        return self._config.window

    @property
    def phase(self) -> int:
        """``p``: integrates in window ``p``, fires in window ``p + 1``."""
        return self._config.phase

    @property
    def offset(self) -> float:
        """``o``: the threshold offset."""
        return self._config.offset

    def _settings(self) -> dict:
        return {"window": self.window, "phase": self.phase, "offset": self.offset}


# -- the other layers of a TTFS network -----------------------------------------------
def _check_state_tensor(what: str, state: torch.Tensor, shape: torch.Size) -> None:
    if not isinstance(state, torch.Tensor) or state.shape != shape:
        got = tuple(state.shape) if isinstance(state, torch.Tensor) else type(state).__name__
        raise ValueError(f"{what} state has shape {got}, expected {tuple(shape)}")


@register_layer
class StepCurrent(torch.nn.Module):
    """Each spike becomes a persistent unit step current: the running sum of the input,
    ``y[n] = c[n-1] + x[n]``, ``c`` (state, ``[B, *features]``) the sum so far. For a
    train with one spike at ``n_i`` this is ``H0(n - n_i)``."""

    stateful = True

    def forward(self, x: torch.Tensor, state: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``x``: ``[T, B, *features]`` -> ``(y [T, B, *features], sum [B, *features])``."""
        check_sequence(x, "StepCurrent")
        y = torch.cumsum(x, dim=0)
        if state is not None:
            _check_state_tensor("StepCurrent", state, x.shape[1:])
            y = y + state
        return y, y[-1]

    def config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config: dict) -> "StepCurrent":
        return cls()


@register_layer
class FirstSpikeMaxPool(torch.nn.Module):
    """Max pooling of time-to-first-spike trains: each pooling window fires once, at
    the first step at which any of its inputs spikes (in TTFS coding the earliest
    spike is the largest activation)::

        P[n] = maxpool(x[n]),   F[n] = H(F[-1] + sum_{m <= n} P[m]),   y[n] = F[n] - F[n-1]

    ``F`` ("the window has fired", ``[B, C, *pooled]``) is the state, 0 at rest.
    Unlike :class:`~spikeflow.convert.layers.SpikingMaxPool` it never emits a second
    spike. Inputs are 0/1 spikes (a pooled value other than 0 or 1 is an error).

    Args:
        pool: the ANN's ``MaxPool1d`` / ``MaxPool2d`` (kernel, stride, padding,
            dilation and ceil mode are kept).
    """

    stateful = True

    def __init__(self, pool: torch.nn.Module) -> None:
        super().__init__()
        if not isinstance(pool, (torch.nn.MaxPool1d, torch.nn.MaxPool2d)) or pool.return_indices:
            raise TypeError(f"FirstSpikeMaxPool takes a MaxPool1d or MaxPool2d without indices, got {pool!r}")
        self.pool = copy.deepcopy(pool)
        self.spatial = 1 if isinstance(pool, torch.nn.MaxPool1d) else 2

    def forward(self, x: torch.Tensor, state: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``x``: ``[T, B, C, *spatial]`` of 0/1 -> ``(y [T, B, C, *pooled], F [B, C, *pooled])``."""
        if not isinstance(x, torch.Tensor) or x.dim() != self.spatial + 3:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(
                f"FirstSpikeMaxPool({self.spatial}d) expects [T, B, C, {'L' if self.spatial == 1 else 'H, W'}], "
                f"got {shape}"
            )
        pooled = self.pool(x.flatten(0, 1)).unflatten(0, x.shape[:2])  # [T, B, C, *pooled]
        if bool(((pooled != 0) & (pooled != 1)).any()):
            raise ValueError("FirstSpikeMaxPool expects spikes (0 or 1), got other values")
        if state is None:
            state = torch.zeros_like(pooled[0])
        else:
            _check_state_tensor("FirstSpikeMaxPool", state, pooled.shape[1:])
        fired = ((state + torch.cumsum(pooled, dim=0)) > 0).to(x.dtype)
        return torch.diff(fired, dim=0, prepend=state.unsqueeze(0)), fired[-1]

    def config(self) -> dict:
        return SpikingMaxPool.config(self)  # the same settings

    @classmethod
    def from_config(cls, config: dict) -> "FirstSpikeMaxPool":
        return cls(SpikingMaxPool.from_config(config).pool)


class WindowState(NamedTuple):
    """State of :class:`WindowReadout` and :class:`WindowDelay`: ``total``, the
    integral of the input over the source window so far (``[B, *features]``), and
    ``t``, the number of steps done."""

    total: torch.Tensor
    t: int


def _window_sums(layer: torch.nn.Module, x: torch.Tensor, state: Optional[WindowState], start: int):
    """``(index [T], running integral of x over steps start..start+K-1 [T, B, ...], t)``."""
    check_sequence(x, type(layer).__name__)
    if state is None:
        state = WindowState(torch.zeros_like(x[0]), 0)
    elif not isinstance(state, WindowState):
        raise TypeError(f"{type(layer).__name__} state must be a WindowState, got {type(state).__name__}")
    else:
        _check_state_tensor(type(layer).__name__, state.total, x.shape[1:])
    n = torch.arange(state.t, state.t + x.shape[0], device=x.device)
    inside = ((n >= start) & (n < start + layer.window)).to(x.dtype)
    gated = x * inside.view((-1,) + (1,) * (x.dim() - 1))
    return n, state.total + torch.cumsum(gated, dim=0), state.t + x.shape[0]


@register_layer
class WindowReadout(torch.nn.Module):
    """The mean of the input over window ``source``, as far as it has come::

        y[n] = (1/K) sum_{m <= n, sK <= m < (s+1)K} x[m]

    At the last step of the window (and ever after) this is the window mean: the
    logits of a ttfs-dynamic network (read with ``info["readout"] = "last"``).

    Args:
        window: ``K`` (>= 1).
        source: ``s`` (>= 0), the window integrated.
    """

    stateful = True

    def __init__(self, window: int, source: int) -> None:
        super().__init__()
        self.window = _check_int("window", window, 1)
        self.source = _check_int("source", source, 0)

    def forward(self, x: torch.Tensor, state: Optional[WindowState] = None) -> tuple[torch.Tensor, WindowState]:
        """``x``: ``[T, B, ...]`` -> ``(y [T, B, ...], state)``."""
        _, sums, t = _window_sums(self, x, state, self.source * self.window)
        return sums / self.window, WindowState(sums[-1], t)

    def config(self) -> dict:
        return {"window": self.window, "source": self.source}

    @classmethod
    def from_config(cls, config: dict) -> "WindowReadout":
        return cls(**config)

    def extra_repr(self) -> str:
        return f"window={self.window}, source={self.source}"


@register_layer
class WindowDelay(torch.nn.Module):
    """Moves a current's integral over window ``source`` into window ``source + delay``::

        y[n] = (1/K) sum_{sK <= m < (s+1)K} x[m]   for n in window s + d, else 0

    so that a layer integrating over window ``s + d`` receives what the input carried
    in window ``s``: the delay of the earlier branch of an addition or concatenation
    in a ttfs-dynamic network. Memory: one ``[B, *features]`` sum, whatever the delay.

    Args:
        window: ``K`` (>= 1).
        source: ``s`` (>= 0).
        delay: ``d`` (>= 1), in windows.
    """

    stateful = True

    def __init__(self, window: int, source: int, delay: int) -> None:
        super().__init__()
        self.window = _check_int("window", window, 1)
        self.source = _check_int("source", source, 0)
        self.delay = _check_int("delay", delay, 1)

    def forward(self, x: torch.Tensor, state: Optional[WindowState] = None) -> tuple[torch.Tensor, WindowState]:
        """``x``: ``[T, B, ...]`` -> ``(y [T, B, ...], state)``."""
        n, sums, t = _window_sums(self, x, state, self.source * self.window)
        start = (self.source + self.delay) * self.window
        target = ((n >= start) & (n < start + self.window)).to(x.dtype)
        # the source window ends before the target window starts: sums[n] is complete there
        y = sums * target.view((-1,) + (1,) * (x.dim() - 1)) / self.window
        return y, WindowState(sums[-1], t)

    def config(self) -> dict:
        return {"window": self.window, "source": self.source, "delay": self.delay}

    @classmethod
    def from_config(cls, config: dict) -> "WindowDelay":
        return cls(**config)

    def extra_repr(self) -> str:
        return f"window={self.window}, source={self.source}, delay={self.delay}"


# -- timing on the graph ----------------------------------------------------------------
_ACTIVATIONS = (Kind.RELU, Kind.ACTIVATION)


def _natures(graph: LayerGraph) -> dict[str, str]:
    """What each node's SNN output is: ``static`` (a constant current, computed from
    the input alone), ``spikes`` (single spikes: activations and max pooling of
    them) or ``current`` (anything else)."""
    nature: dict[str, str] = {}
    for node in graph.nodes:
        sources = [nature[i] for i in node.inputs]
        if node.kind is Kind.INPUT:
            nature[node.name] = "static"
        elif node.kind in _ACTIVATIONS:
            nature[node.name] = "spikes"
        elif node.kind is Kind.MAXPOOL:
            nature[node.name] = sources[0]
        else:
            nature[node.name] = "static" if all(s == "static" for s in sources) else "current"
    return nature


def _prepare(graph: LayerGraph) -> LayerGraph:
    """A copy of ``graph`` where every max pooling of a current that only a ReLU reads
    comes after that ReLU (``relu(maxpool(z)) = maxpool(relu(z))``); any other max
    pooling of a current is a ConversionError."""
    graph = graph.copy()
    while True:
        nature = _natures(graph)
        pool = next((n for n in graph.nodes if n.kind is Kind.MAXPOOL and nature[n.name] == "current"), None)
        if pool is None:
            return graph
        users = graph.users(pool.name)
        if len(users) != 1 or users[0].kind not in _ACTIVATIONS:
            raise ConversionError(
                f"{pool.where or pool.name}: max pooling of a current (not of spikes nor of the input) "
                f"has no TTFS form; it must be read by exactly one ReLU (then the two are swapped) "
                f"or come after its ReLU"
            )
        relu = users[0]
        for user in graph.users(relu.name):
            user.inputs = [pool.name if i == relu.name else i for i in user.inputs]
        relu.inputs, pool.inputs = list(pool.inputs), [relu.name]
        graph.nodes.remove(pool)
        graph.nodes.insert(graph.nodes.index(relu) + 1, pool)


@dataclass
class _Timing:
    """Windows of a ttfs-dynamic network: ``phase[node]`` the window over which a
    node's current integrates to ``K`` times its ANN value (None: any, a constant);
    ``delays[node]`` the delay in windows of each input of an addition or
    concatenation; ``output`` the output's window."""

    phase: dict[str, Optional[int]]
    delays: dict[str, list[int]]
    output: int


def _timing(graph: LayerGraph) -> _Timing:
    phase: dict[str, Optional[int]] = {}
    delays: dict[str, list[int]] = {}
    output = 0
    for node in graph.nodes:
        ins = [phase[i] for i in node.inputs]
        if node.kind is Kind.INPUT:
            phase[node.name] = None
        elif node.kind in _ACTIVATIONS:
            phase[node.name] = (ins[0] or 0) + 1  # integrates in window ins[0], fires in the next
        elif node.kind in (Kind.ADD, Kind.CAT):
            known = [p for p in ins if p is not None]
            latest = max(known) if known else None
            phase[node.name] = latest
            if known and min(known) != latest:
                delays[node.name] = [0 if p is None else latest - p for p in ins]
        elif node.kind is Kind.OUTPUT:
            output = ins[0] or 0
            phase[node.name] = output
        else:
            phase[node.name] = ins[0]
    return _Timing(phase, delays, output)


# -- building ---------------------------------------------------------------------------
def _neuron_threshold(node: Node, scale: torch.Tensor, calibration: Calibration) -> tuple[torch.Tensor, tuple]:
    shape = neuron_shape(scale, calibration.ranks.get(node.name))
    threshold = scale.reshape(shape) if shape else scale
    return threshold.detach().clone().float(), shape


def _build(
    graph: LayerGraph,
    calibration: Calibration,
    make_neuron,
    timing: Optional[_Timing],
    window: int,
) -> tuple[list[Step], dict[str, torch.nn.Module]]:
    """Steps and layers of a TTFS network (before finalize): ``graph`` is prepared,
    ``make_neuron(node, threshold, shape)`` builds each activation's neurons;
    ``timing`` (ttfs-dynamic) adds the window delays and the readout."""
    nature = _natures(graph)

    def neuron(node: Node, scale: torch.Tensor) -> list:
        threshold, shape = _neuron_threshold(node, scale, calibration)
        return [("", make_neuron(node, threshold, shape), {})]

    def maxpool(node: Node) -> torch.nn.Module:
        return FirstSpikeMaxPool(node.module) if nature[node.inputs[0]] == "spikes" else stateless_layer(node)

    net = to_spiking(graph, calibration.scales, neuron, maxpool)
    steps = list(net.steps)
    layers = {s.name: net.layer(s.name) for s in steps if s.op == "layer"}
    _add_step_currents(steps, layers, calibration.scales)
    if timing is not None:
        _add_windows(steps, layers, graph, timing, window)
    return steps, layers


def _add_step_currents(steps: list[Step], layers: dict, scales: dict[str, torch.Tensor]) -> None:
    """After every spike train read by anything but a first-spike max pooling: a
    :class:`StepCurrent` and a :class:`Scale` by the activation's scale (in place)."""
    scale_of: dict[str, torch.Tensor] = {}
    for step in list(steps):
        module = layers.get(step.name)
        if isinstance(module, _TTFSLayer):
            scale_of[step.name] = scales[step.name]
        elif isinstance(module, FirstSpikeMaxPool):
            scale_of[step.name] = scale_of[step.inputs[0]]
        else:
            continue
        readers = [s for s in steps if step.name in s.inputs and not isinstance(layers.get(s.name), FirstSpikeMaxPool)]
        if not readers:
            continue
        current, scaled = step.name + ".current", step.name + ".scale"
        at = steps.index(step) + 1
        steps[at:at] = [Step(current, "layer", [step.name]), Step(scaled, "layer", [current])]
        layers[current], layers[scaled] = StepCurrent(), Scale(scale_of[step.name])
        for reader in readers:
            reader.inputs = [scaled if i == step.name else i for i in reader.inputs]


def _add_windows(steps: list[Step], layers: dict, graph: LayerGraph, timing: _Timing, window: int) -> None:
    """A :class:`WindowDelay` on every input of an addition or concatenation that is
    earlier than its latest input, and the :class:`WindowReadout` before the output
    (in place)."""
    for name, delays in timing.delays.items():
        join = next(s for s in steps if s.name == name)
        for index, (source, delay) in enumerate(zip(list(join.inputs), delays)):
            if delay == 0:
                continue
            moved = f"{name}.delay{index}"
            steps.insert(steps.index(join), Step(moved, "layer", [source]))
            layers[moved] = WindowDelay(window, timing.phase[graph[name].inputs[index]], delay)
            join.inputs[index] = moved
    out = steps[-1]
    readout = out.name + ".readout"
    steps.insert(len(steps) - 1, Step(readout, "layer", list(out.inputs)))
    layers[readout] = WindowReadout(window, timing.output)
    out.inputs = [readout]


def _finish(steps, layers, info: dict, fold_scales: bool) -> SpikingNetwork:
    layers = {s.name: layers[s.name] for s in steps if s.op == "layer"}  # in step order
    net = SpikingNetwork(steps, layers, info).eval()
    return finalize(net) if fold_scales else net


def ttfs_network(
    graph: LayerGraph,
    calibration: Calibration,
    *,
    fold_scales: bool = True,
    info: Optional[dict] = None,
) -> SpikingNetwork:
    """The plain (asynchronous) TTFS network of a folded, calibrated graph (Rueckauer &
    Liu 2018; equations in the module docstring). Read it with the mean over ``T``
    steps (``simulate``'s default); it only approximates the ANN.

    Args:
        graph: from :func:`~spikeflow.convert.fold.fold_batchnorm`.
        calibration: from :func:`~spikeflow.convert.calibrate.calibrate`.
        fold_scales: fold each spike's value into the next layer's weights.
        info: facts saved with the network.

    Raises:
        ConversionError: a max pooling of a current that no single ReLU reads.
    """
    check_builder_inputs("ttfs_network", graph, calibration)
    graph = _prepare(graph)

    def make(node: Node, threshold: torch.Tensor, shape: tuple) -> torch.nn.Module:
        return TTFSNeuron(threshold, shape=shape)

    steps, layers = _build(graph, calibration, make, None, 0)
    info = dict(info or {})
    info.setdefault("coding", "ttfs")
    info["readout"] = "mean"
    return _finish(steps, layers, info, fold_scales)


def ttfs_dynamic_network(
    graph: LayerGraph,
    calibration: Calibration,
    *,
    window: int = 32,
    threshold_offset: float = 0.5,
    fold_scales: bool = True,
    info: Optional[dict] = None,
) -> SpikingNetwork:
    """The layer-synchronous TTFS network with dynamic thresholds (module docstring):
    every activation ``clip(z, 0, lambda)`` becomes ``Q_K(z)``, quantized to
    ``K = window`` levels, exactly.

    Run it for ``info["total_steps"] = (P + 1) * window`` steps (``P``: neurons on the
    longest path) and read the last step (``info["readout"] = "last"``)::

        logits = simulate(net, x, [net.info["total_steps"]])[net.info["total_steps"]]

    Args:
        graph, calibration, fold_scales, info: as for :func:`ttfs_network`.
        window: ``K`` (>= 1), steps per layer; the error per activation is at most
            ``lambda / 2K`` (``lambda / K`` with ``threshold_offset = 0``).
        threshold_offset: ``o`` in ``[0, 1)``: 0.5 rounds activations to the nearest
            level, 0 floors them.

    Raises:
        ConversionError: a max pooling of a current that no single ReLU reads.
    """
    check_builder_inputs("ttfs_dynamic_network", graph, calibration)
    window = _check_int("window", window, 1)
    offset = _check_offset(threshold_offset)
    graph = _prepare(graph)
    timing = _timing(graph)

    def make(node: Node, threshold: torch.Tensor, shape: tuple) -> torch.nn.Module:
        phase = timing.phase[node.name] - 1
        return DynamicTTFSNeuron(threshold, window=window, phase=phase, offset=offset, shape=shape)

    steps, layers = _build(graph, calibration, make, timing, window)
    info = dict(info or {})
    info.setdefault("coding", "ttfs-dynamic")
    info.update(
        readout="last",
        window=window,
        threshold_offset=offset,
        depth=timing.output,
        total_steps=(timing.output + 1) * window,
    )
    return _finish(steps, layers, info, fold_scales)


def _clamp(node: Node) -> Optional[torch.Tensor]:
    """The fixed scale of an activation (a clipped ReLU's maximum, a conversion
    activation's own scale), or None."""
    if node.kind is Kind.RELU:
        value = node.attrs.get("max")
    else:
        value = getattr(node.module, "scale", None)
    return None if value is None else torch.as_tensor(value, dtype=torch.float32).detach().clone()


def ttfs_clamped_network(
    graph: LayerGraph,
    calibration: Optional[Calibration] = None,
    *,
    window: int = 32,
    threshold_offset: float = 0.5,
    fold_scales: bool = True,
    info: Optional[dict] = None,
) -> SpikingNetwork:
    """TTFS with clamped ReLUs (seed 002): :func:`ttfs_dynamic_network` with every
    scale the ANN's clamp ``m`` (``clamp(x, 0, m)``, ``Hardtanh(0, m)``, ``ReLU6``;
    a conversion activation's own scale), so no calibration data is needed and no
    activation is ever clipped by the conversion: ``a = Q_K(z)`` with ``lambda = m``.

    Args:
        graph: a folded graph whose activations are all clamped.
        calibration: ignored for the scales (accepted for the common builder
            signature); its ``ranks`` are used for per-channel scales if given.
        window, threshold_offset, fold_scales, info: as for :func:`ttfs_dynamic_network`.

    Raises:
        ConversionError: naming the first activation that is not clamped (train with
            :func:`clamp_activations`, or use ``ttfs-dynamic``), or a clamp <= 0.
    """
    check_builder_inputs("ttfs_clamped_network", graph, calibration, optional=True)
    scales: dict[str, torch.Tensor] = {}
    for name in activation_nodes(graph):
        node = graph[name]
        value = _clamp(node)
        if value is None:
            raise ConversionError(
                f"{node.where or node.name}: ttfs-clamped needs activations clamped to [0, m] "
                f"(clamp(x, 0, m), Hardtanh(0, m), ReLU6), got an unclamped "
                f"{'ReLU' if node.kind is Kind.RELU else type(node.module).__name__}; fine-tune the ANN "
                f"with clamp_activations(model) or use the coding 'ttfs-dynamic'"
            )
        if not bool((value > 0).all()) or not bool(torch.isfinite(value).all()):
            raise ConversionError(f"{node.where or node.name}: the clamp must be finite and > 0, got {value}")
        scales[name] = value
    ranks = dict(calibration.ranks) if calibration is not None else {}
    fixed = Calibration(scales, Normalization.MAX, 100.0, False, 0, ranks)
    info = dict(info or {})
    info.setdefault("coding", "ttfs-clamped")
    return ttfs_dynamic_network(
        graph, fixed, window=window, threshold_offset=threshold_offset, fold_scales=fold_scales, info=info
    )


def clamp_activations(model: torch.nn.Module, maximum: float = 1.0) -> torch.nn.Module:
    """A copy of ``model`` with every ``torch.nn.ReLU`` module replaced by
    ``torch.nn.Hardtanh(0, maximum)``, i.e. ``min(max(x, 0), maximum)``, to fine-tune
    before converting with ``ttfs-clamped``. Functional calls (``F.relu``,
    ``torch.relu``, ``x.relu()``) are not modules and are left unchanged; write them
    as modules (or as ``torch.clamp(x, 0, maximum)``) to clamp them.

    Args:
        model: any module (not modified).
        maximum: the clamp ``m`` (> 0, finite).
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"clamp_activations expects a torch.nn.Module, got {type(model).__name__}")
    if isinstance(maximum, bool) or not isinstance(maximum, (int, float)) or not (0 < maximum < math.inf):
        raise ValueError(f"maximum must be a finite number > 0, got {maximum!r}")
    model = copy.deepcopy(model)
    if isinstance(model, torch.nn.ReLU):
        return torch.nn.Hardtanh(0.0, float(maximum))
    for parent in model.modules():
        for name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.ReLU):
                setattr(parent, name, torch.nn.Hardtanh(0.0, float(maximum)))
    return model
