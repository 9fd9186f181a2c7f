"""Compare a converted spiking network with its ANN: accuracy, spikes, operations, energy.

:func:`evaluate_conversion` runs the ANN once and the SNN once per batch for
``max(timesteps)`` steps (through :func:`~spikeflow.convert.simulate.simulate`, so
the readout is the network's own) and measures, from that single run, for every
requested ``T``:

- the SNN's accuracy and its argmax agreement with the ANN;
- the synaptic operations: every non-zero input element of a Linear / Conv at one
  step triggers one accumulate per outgoing connection (:func:`synaptic_operations`),
  counted step by step so that the count after ``T`` steps is exact for every ``T``;
- an energy estimate from the 45 nm figures of Horowitz (ISSCC 2014), :data:`E_MAC`
  and :data:`E_AC`.

Spike statistics come from forward hooks on the neuron layers (nothing else is
kept): spikes per neuron and sample, silent neurons, the distribution of spike
times, and, for time-to-first-spike codings, of first-spike times.
:func:`log_to_tensorboard` writes a report (and the weights) as TensorBoard
scalars and histograms.

Conventions: a *spike* is a non-zero output element of a neuron layer at one step
(graded or scaled outputs count as one event); steps are indexed ``t = 0 .. T-1``;
per-sample quantities are averages over the evaluated samples.
"""

from __future__ import annotations

import functools
import math
import numbers
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import torch
import torch.nn.functional as F

from .. import nn as snn
from ..nn._layers import TimeDistributed
from .graph import LayerGraph
from .network import SpikingNetwork
from .simulate import check_static_input, check_timesteps, simulate

__all__ = [
    "E_AC",
    "E_MAC",
    "ConversionReport",
    "NeuronStats",
    "SynapseStats",
    "dense_macs",
    "evaluate_conversion",
    "log_to_tensorboard",
    "synaptic_operations",
]

#: Energy of one 32-bit floating-point multiply-accumulate in 45 nm CMOS, in joules:
#: multiply 3.7 pJ + add 0.9 pJ (M. Horowitz, "Computing's energy problem (and what we
#: can do about it)", ISSCC 2014, p. 10-14).
E_MAC = 4.6e-12

#: Energy of one 32-bit floating-point add (an accumulate) in 45 nm CMOS, in joules
#: (Horowitz, ISSCC 2014).
E_AC = 0.9e-12

_WEIGHTED = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)


# -- operation counts -------------------------------------------------------------------
def _check_weighted(module: torch.nn.Module) -> None:
    if not isinstance(module, _WEIGHTED):
        raise TypeError(
            f"operations are counted for Linear and Conv1d/2d/3d layers, got {type(module).__name__}"
        )


def _nonzero(x: torch.Tensor) -> torch.Tensor:
    """``1.0`` where ``x != 0``, else ``0.0`` (float32, the shape of ``x``)."""
    return torch.ne(x, 0, out=torch.empty(x.shape, dtype=torch.float32, device=x.device))


@torch.no_grad()
def synaptic_operations(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The accumulates that the non-zero elements of ``x`` trigger in ``module``.

    Each non-zero input element triggers one accumulate per outgoing connection
    (its fan-out); zeros trigger nothing. For every row ``n`` of ``x``:

    - ``Linear``: ``ops[n] = nnz(x[n]) * out_features``;
    - ``ConvNd``: ``ops[n] = (C_out / groups) * sum_p (ones_k * m[n])[p]``, where
      ``m[n]`` is the number of non-zero channels at each input position, ``ones_k``
      an all-ones kernel of the layer's size, and the convolution has the layer's
      stride, padding (mode included), and dilation: each output position ``p``
      counts the non-zero inputs in its receptive field, so the sum over ``p`` is
      ``sum_inputs nnz * fan-out`` with borders and strides exact. Padding zeros
      trigger nothing.

    Biases are not counted. With ``x`` all ones this is the layer's dense MAC count
    (:func:`dense_macs`).

    Args:
        module: a ``torch.nn.Linear`` or ``torch.nn.Conv1d/2d/3d``.
        x: a batch of inputs ``[N, *in]`` (``[N, ..., in_features]`` for a Linear,
            ``[N, C_in, *spatial]`` for a conv).

    Returns:
        int64 ``[N]``: operations per row.
    """
    _check_weighted(module)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if isinstance(module, torch.nn.Linear):
        if x.dim() < 2 or x.shape[-1] != module.in_features:
            raise ValueError(
                f"Linear({module.in_features}, {module.out_features}) expects input [N, ..., "
                f"{module.in_features}], got shape {tuple(x.shape)}"
            )
        return _nonzero(x).flatten(1).sum(1, dtype=torch.float64).to(torch.int64) * module.out_features
    spatial = module.weight.dim() - 2
    if x.dim() != spatial + 2 or x.shape[1] != module.in_channels:
        raise ValueError(
            f"{type(module).__name__} expects input [N, {module.in_channels}, *{spatial} spatial dims], "
            f"got shape {tuple(x.shape)}"
        )
    mask = _nonzero(x).sum(1, keepdim=True)  # non-zero channels per position (exact in float32)
    padding = module.padding
    if module.padding_mode != "zeros":
        mask = F.pad(mask, module._reversed_padding_repeated_twice, mode=module.padding_mode)
        padding = 0
    ones = torch.ones((1, 1) + tuple(module.kernel_size), dtype=mask.dtype, device=mask.device)
    conv = (F.conv1d, F.conv2d, F.conv3d)[spatial - 1]
    fields = conv(mask, ones, None, module.stride, padding, module.dilation)
    per_channel = fields.flatten(1).sum(1, dtype=torch.float64).round().to(torch.int64)
    return per_channel * (module.out_channels // module.groups)


def dense_macs(module: torch.nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of ``module`` on one dense input of shape ``input_shape``
    (without the batch dimension): :func:`synaptic_operations` of an all-ones input.

    For an unpadded convolution this is the textbook
    ``prod(out_spatial) * C_out * (C_in / groups) * prod(kernel)``; with padding, the
    products with padding zeros are not counted. ``Linear``: ``in * out`` (times any
    leading dimensions)."""
    _check_weighted(module)
    shape = tuple(int(s) for s in input_shape)
    param = module.weight
    ones = torch.ones((1,) + shape, dtype=param.dtype, device=param.device)
    return int(synaptic_operations(module, ones)[0])


# -- the report ---------------------------------------------------------------------------
def _mean_var(histogram: list[int]) -> tuple[Optional[float], Optional[float]]:
    """Mean and (population) variance of the value ``k`` weighted by ``histogram[k]``."""
    total = sum(histogram)
    if total == 0:
        return None, None
    mean = sum(k * n for k, n in enumerate(histogram)) / total
    var = sum(n * (k - mean) ** 2 for k, n in enumerate(histogram)) / total
    return mean, var


@dataclass
class NeuronStats:
    """Spikes of one neuron layer over the evaluated samples and ``steps`` steps.

    With ``c[s, n]`` the spikes of neuron ``n`` on sample ``s`` over all steps:

    Attributes:
        name: the layer's step name in the spiking network.
        neurons: neurons per sample (the layer's feature size).
        samples, steps: samples evaluated, steps simulated (``max(timesteps)``).
        total_spikes: ``sum c[s, n]``.
        spikes_mean, spikes_var: mean and population variance of ``c[s, n]`` over
            all ``(s, n)``: spikes per neuron per sample.
        firing_rate: ``spikes_mean / steps``, spikes per neuron per step.
        silent_fraction: fraction of ``(s, n)`` with ``c[s, n] = 0``.
        dead_fraction: fraction of neurons that spiked on no sample at all.
        max_spikes: ``max c[s, n]``.
        count_histogram: ``[k]`` = number of ``(s, n)`` with ``c[s, n] = k``.
        spikes_per_step: ``[t]`` = spikes at step ``t`` (all samples and neurons),
            the distribution of spike times.
        spike_time_mean, spike_time_var: of the step index of all spikes (None
            without spikes).
        first_spike_histogram: time-to-first-spike codings only: ``[t]`` = number
            of ``(s, n)`` whose first spike is at step ``t`` (silent ones left out).
        first_spike_mean, first_spike_var: of those first-spike steps.
        single_spike: TTFS codings only: whether every neuron spiked at most once per
            sample (``max_spikes <= 1``).
    """

    name: str
    neurons: int
    samples: int
    steps: int
    total_spikes: int
    spikes_mean: float
    spikes_var: float
    firing_rate: float
    silent_fraction: float
    dead_fraction: float
    max_spikes: int
    count_histogram: list[int]
    spikes_per_step: list[int]
    spike_time_mean: Optional[float] = None
    spike_time_var: Optional[float] = None
    first_spike_histogram: Optional[list[int]] = None
    first_spike_mean: Optional[float] = None
    first_spike_var: Optional[float] = None
    single_spike: Optional[bool] = None


@dataclass
class SynapseStats:
    """Operations of one weighted layer, per sample.

    Attributes:
        name: the layer's step name.
        layer: its class (``Linear``, ``Conv2d``, ...).
        analog: whether it reads the analog input (no neuron before it): its
            operations are dense MACs, counted once per sample since the input
            current is the same at every step.
        macs: dense MACs per sample (:func:`dense_macs`), the ANN's cost of the layer.
        synops: ``{T: accumulates per sample over steps 0..T-1}`` (0 for an analog
            layer).
    """

    name: str
    layer: str
    analog: bool
    macs: int
    synops: dict[int, float]


@dataclass
class ConversionReport:
    """The result of :func:`evaluate_conversion`.

    Per-T dicts are keyed by the number of steps ``T``. Energies are per sample, in
    joules::

        ann_energy_j  = E_MAC * ann_macs
        snn_energy_j[T] = E_MAC * input_macs + E_AC * synops[T]
        energy_ratio[T] = snn_energy_j[T] / ann_energy_j

    Neuron-state updates, pooling and biases are not counted.

    Attributes:
        timesteps: the evaluated ``T`` (sorted).
        samples: number of evaluated samples.
        ann_accuracy: the ANN's accuracy (fraction).
        snn_accuracy: ``{T: accuracy}`` of the SNN read out after ``T`` steps.
        agreement: ``{T: fraction of samples where SNN and ANN argmax agree}``.
        ann_macs: dense MACs per sample of all weighted layers.
        input_macs: the part of ``ann_macs`` in layers reading the analog input,
            which the SNN also spends (once per sample).
        synops: ``{T: accumulates per sample}`` of the layers reading spikes.
        ann_energy_j, snn_energy_j, energy_ratio: as above (``energy_ratio`` None if
            the ANN has no MACs).
        e_mac_j, e_ac_j: the energy figures used.
        coding, readout: from the network's ``info``.
        neurons: spike statistics per neuron layer, in network order.
        synapses: operations per weighted layer, in network order.
    """

    timesteps: list[int]
    samples: int
    ann_accuracy: float
    snn_accuracy: dict[int, float]
    agreement: dict[int, float]
    ann_macs: int
    input_macs: int
    synops: dict[int, float]
    ann_energy_j: float
    snn_energy_j: dict[int, float]
    energy_ratio: dict[int, Optional[float]]
    e_mac_j: float = E_MAC
    e_ac_j: float = E_AC
    coding: Optional[str] = None
    readout: str = "mean"
    neurons: list[NeuronStats] = field(default_factory=list)
    synapses: list[SynapseStats] = field(default_factory=list)

    _PER_T = ("snn_accuracy", "agreement", "synops", "snn_energy_j", "energy_ratio")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (per-T keys as strings, NaN and inf as None);
        :meth:`from_dict` reads it back."""
        return _clean(asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ConversionReport":
        """The report :meth:`to_dict` described."""
        data = dict(data)
        for key in cls._PER_T:
            data[key] = {int(t): v for t, v in data[key].items()}
        data["neurons"] = [NeuronStats(**n) for n in data.get("neurons", [])]
        data["synapses"] = [
            SynapseStats(**{**s, "synops": {int(t): v for t, v in s["synops"].items()}})
            for s in data.get("synapses", [])
        ]
        return cls(**data)

    def table(self) -> str:
        """A short text table: one row per ``T``."""
        lines = [
            f"ANN accuracy {100 * self.ann_accuracy:6.2f} %   MACs/sample {self.ann_macs:.3g}   "
            f"energy/sample {self.ann_energy_j * 1e6:.3g} uJ   ({self.samples} samples, "
            f"coding {self.coding or '?'})",
            f"{'T':>6} {'SNN acc':>9} {'agreement':>10} {'synops/sample':>14} {'energy ratio':>13}",
        ]
        for t in self.timesteps:
            ratio = self.energy_ratio[t]
            lines.append(
                f"{t:>6} {100 * self.snn_accuracy[t]:>7.2f} % {100 * self.agreement[t]:>8.2f} % "
                f"{self.synops[t]:>14.4g} {'-' if ratio is None else f'{ratio:.4g}':>13}"
            )
        return "\n".join(lines)


def _clean(value: Any) -> Any:
    """``value`` with dict keys as strings and non-finite floats as None."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# -- hooks ---------------------------------------------------------------------------------
class _NeuronTally:
    """Accumulates one neuron layer's spikes from its outputs ``[T_chunk, B, ...]``."""

    def __init__(self, name: str, steps: int, ttfs: bool) -> None:
        self.name, self.steps, self.ttfs = name, steps, ttfs
        self.neurons: Optional[int] = None
        self.samples = 0
        self.per_step = torch.zeros(steps, dtype=torch.int64)
        self.histogram = torch.zeros(steps + 1, dtype=torch.int64)
        self.first = torch.zeros(steps, dtype=torch.int64)
        self.sum_squares = 0
        self.max = 0
        self.ever: Optional[torch.Tensor] = None
        self._count: Optional[torch.Tensor] = None
        self._first: Optional[torch.Tensor] = None
        self._offset = 0

    def begin(self) -> None:
        self._count = self._first = None
        self._offset = 0

    def observe(self, out: torch.Tensor) -> None:
        # float32 0/1 sums are exact below 2**24: counts per chunk <= steps, per step
        # and sample <= neurons
        fired = _nonzero(out.flatten(2))  # [Tc, B, N]
        tc = fired.shape[0]
        if self._offset + tc > self.steps:
            raise RuntimeError(f"neuron layer {self.name!r} ran more steps than the simulation")
        count = fired.sum(0)
        self._count = count if self._count is None else self._count + count
        self.per_step[self._offset : self._offset + tc] += fired.sum(2).to(torch.int64).sum(1).cpu()
        if self.ttfs:
            # the first spike of the chunk scores tc - t_first, later ones less, none 0
            countdown = torch.arange(tc, 0, -1, dtype=fired.dtype, device=fired.device).view(-1, 1, 1)
            score = (fired * countdown).amax(0).to(torch.int64)
            first = torch.where(score > 0, tc - score + self._offset, -1)
            self._first = first if self._first is None else torch.where(self._first >= 0, self._first, first)
        self._offset += tc

    def end(self) -> None:
        if self._count is None:
            raise RuntimeError(f"neuron layer {self.name!r} did not run")
        count = self._count.to(torch.int64)
        self.neurons = count.shape[1]
        self.samples += count.shape[0]
        flat = count.flatten().cpu()
        self.histogram += torch.bincount(flat, minlength=self.steps + 1)
        self.sum_squares += int((flat * flat).sum())
        self.max = max(self.max, int(flat.max()))
        spiked = (count > 0).any(0).cpu()
        self.ever = spiked if self.ever is None else self.ever | spiked
        if self.ttfs:
            times = self._first.flatten().cpu()
            self.first += torch.bincount(times[times >= 0], minlength=self.steps)

    def stats(self) -> NeuronStats:
        pairs = self.samples * self.neurons
        total = int(self.per_step.sum())
        mean = total / pairs
        var = self.sum_squares / pairs - mean * mean
        per_step = self.per_step.tolist()
        time_mean, time_var = _mean_var(per_step)
        stats = NeuronStats(
            name=self.name,
            neurons=self.neurons,
            samples=self.samples,
            steps=self.steps,
            total_spikes=total,
            spikes_mean=mean,
            spikes_var=max(var, 0.0),
            firing_rate=mean / self.steps,
            silent_fraction=int(self.histogram[0]) / pairs,
            dead_fraction=1.0 - int(self.ever.sum()) / self.neurons,
            max_spikes=self.max,
            count_histogram=self.histogram[: self.max + 1].tolist(),
            spikes_per_step=per_step,
            spike_time_mean=time_mean,
            spike_time_var=time_var,
        )
        if self.ttfs:
            stats.first_spike_histogram = self.first.tolist()
            stats.first_spike_mean, stats.first_spike_var = _mean_var(stats.first_spike_histogram)
            stats.single_spike = self.max <= 1
        return stats


class _SynapseTally:
    """Accumulates one weighted layer's operations from its inputs ``[T_chunk, B, ...]``.

    With ``changes`` (time-to-first-spike networks, whose spikes reach the weights as
    persistent step currents) an input triggers its accumulates when it *changes*,
    once per spike, as an event-driven synapse would; otherwise at every step it is
    non-zero."""

    def __init__(self, name: str, module: torch.nn.Module, analog: bool, steps: int, changes: bool = False) -> None:
        self.name, self.module, self.analog, self.steps = name, module, analog, steps
        self.changes = changes
        self.macs: Optional[int] = None
        self.per_step = torch.zeros(steps, dtype=torch.int64)
        self._offset = 0
        self._previous: Optional[torch.Tensor] = None

    def begin(self) -> None:
        self._offset = 0
        self._previous = None

    def observe(self, x: torch.Tensor) -> None:
        tc, b = x.shape[:2]
        if self.macs is None:
            self.macs = dense_macs(self.module, tuple(x.shape[2:]))
        if not self.analog:
            events = x
            if self.changes:
                before = torch.zeros_like(x[:1]) if self._previous is None else self._previous
                events = torch.diff(x, dim=0, prepend=before)
                self._previous = x[-1:].detach()
            ops = synaptic_operations(self.module, events.flatten(0, 1)).view(tc, b).sum(1)
            self.per_step[self._offset : self._offset + tc] += ops.cpu()
        self._offset += tc

    def stats(self, timesteps: list[int], samples: int) -> SynapseStats:
        cumulative = torch.cumsum(self.per_step, 0)
        return SynapseStats(
            name=self.name,
            layer=type(self.module).__name__,
            analog=self.analog,
            macs=int(self.macs or 0),
            synops={t: int(cumulative[t - 1]) / samples for t in timesteps},
        )


def _spiking_neurons(net: SpikingNetwork) -> list[tuple[str, torch.nn.Module]]:
    """The neuron layers that emit spikes (the non-spiking ``LI`` readout left out)."""
    return [(n, m) for n, m in net.neurons() if not isinstance(m, snn.LI)]


def _weighted_layers(net: SpikingNetwork) -> list[tuple[str, torch.nn.Module, torch.nn.Module, bool]]:
    """``(name, TimeDistributed wrapper, Linear/Conv, analog)`` of every weighted layer;
    ``analog`` when no neuron layer lies between it and the network's input."""
    analog: set[str] = set()
    found = []
    for step in net.steps:
        if step.op == "input":
            analog.add(step.name)
            continue
        reads_analog = any(i in analog for i in step.inputs)
        module = net.layer(step.name) if step.op == "layer" else None
        if reads_analog and not isinstance(module, snn.Neuron):
            analog.add(step.name)
        if isinstance(module, TimeDistributed) and isinstance(module.module, _WEIGHTED):
            found.append((step.name, module, module.module, reads_analog))
    return found


# -- evaluation -------------------------------------------------------------------------------
def _device(model: Any) -> torch.device:
    modules = [model] if isinstance(model, torch.nn.Module) else [n.module for n in model.nodes if n.module is not None]
    for module in modules:
        for tensor in list(module.parameters()) + list(module.buffers()):
            return tensor.device
    return torch.device("cpu")


def _check_inputs(
    ann: Any, snn_net: Any, images: Any, labels: Any, batch_size: Any, e_mac: Any = E_MAC, e_ac: Any = E_AC
) -> torch.Tensor:
    if not isinstance(snn_net, SpikingNetwork):
        raise TypeError(f"snn must be a SpikingNetwork, got {type(snn_net).__name__}")
    if not isinstance(ann, (torch.nn.Module, LayerGraph)):
        raise TypeError(f"ann must be a torch.nn.Module or a LayerGraph, got {type(ann).__name__}")
    if not isinstance(images, torch.Tensor) or not images.is_floating_point() or images.dim() < 2:
        raise ValueError(
            f"images must be a floating-point tensor [N, ...], got "
            f"{type(images).__name__ if not isinstance(images, torch.Tensor) else f'{images.dtype} {tuple(images.shape)}'}"
        )
    try:
        labels = torch.as_tensor(labels)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"labels must be integer class indices [N], got {type(labels).__name__} {labels!r:.60}") from None
    if labels.dim() != 1 or labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integer class indices [N], got {labels.dtype} {tuple(labels.shape)}")
    if len(labels) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if len(images) == 0:
        raise ValueError("no samples to evaluate")
    if int(labels.min()) < 0:
        raise ValueError(f"labels must be class indices >= 0, got {int(labels.min())}")
    check_static_input(images, "images")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    for name, value in (("e_mac", e_mac), ("e_ac", e_ac)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} (joules per operation) must be a finite number >= 0, got {value!r}")
    return labels


@torch.no_grad()
def evaluate_conversion(
    ann: Union[torch.nn.Module, LayerGraph],
    snn: SpikingNetwork,
    images: torch.Tensor,
    labels: torch.Tensor,
    timesteps: list[int] | int,
    *,
    batch_size: int = 100,
    chunk: Optional[int] = 32,
    e_mac: float = E_MAC,
    e_ac: float = E_AC,
    progress: bool = False,
) -> ConversionReport:
    """Measure a converted network against its ANN (see the module docstring).

    Args:
        ann: the ANN, a ``torch.nn.Module`` (run in eval mode) or a :class:`LayerGraph`,
            mapping ``[B, ...]`` images to ``[B, classes]`` scores.
        snn: the converted network; images are presented as a constant input current
            (:func:`~spikeflow.convert.simulate.simulate`, whose readout follows
            ``snn.info["readout"]``).
        images: ``[N, ...]`` floating-point inputs.
        labels: ``[N]`` integer classes.
        timesteps: the ``T`` to evaluate; one simulation of ``max(timesteps)`` steps
            per batch serves them all.
        batch_size: samples per batch.
        chunk: steps fed to the SNN at a time (bounds memory; results are the
            same up to float rounding); None feeds all steps at once.
        e_mac, e_ac: energy per MAC and per accumulate in joules (:data:`E_MAC`,
            :data:`E_AC`).
        progress: show a tqdm progress bar (needs ``tqdm``).

    Returns:
        A :class:`ConversionReport`.

    Raises:
        TypeError: ``ann`` or ``snn`` of the wrong type.
        ValueError: ``images`` not a finite floating-point batch or of a shape the
            ANN does not take; ``labels`` not integer classes in ``[0, classes)``, one
            per image; bad ``timesteps``, ``batch_size``, ``chunk``, ``e_mac`` or
            ``e_ac``.
    """
    labels = _check_inputs(ann, snn, images, labels, batch_size, e_mac, e_ac)
    steps = check_timesteps(timesteps)
    total = steps[-1]
    coding = snn.info.get("coding")
    ttfs = isinstance(coding, str) and coding.startswith("ttfs")
    neuron_tallies = [(m, _NeuronTally(n, total, ttfs)) for n, m in _spiking_neurons(snn)]
    step_currents = str(snn.info.get("coding", "")).startswith("ttfs")
    synapse_tallies = [
        (w, _SynapseTally(n, inner, analog, total, changes=step_currents)) for n, w, inner, analog in _weighted_layers(snn)
    ]
    hooks = [m.register_forward_hook(lambda _m, _a, out, t=t: t.observe(out[0])) for m, t in neuron_tallies]
    hooks += [w.register_forward_pre_hook(lambda _m, args, t=t: t.observe(args[0])) for w, t in synapse_tallies]
    tallies = [t for _, t in neuron_tallies] + [t for _, t in synapse_tallies]

    ann_run = functools.partial(ann.run, what="images") if isinstance(ann, LayerGraph) else ann
    was_training = isinstance(ann, torch.nn.Module) and ann.training
    if isinstance(ann, torch.nn.Module):
        ann.eval()
    snn_was_training = snn.training
    snn.eval()
    ann_device, snn_device = _device(ann), _device(snn)
    ann_correct = 0
    snn_correct = {t: 0 for t in steps}
    agree = {t: 0 for t in steps}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(images), desc="SNN", unit="sample", leave=False)
    try:
        for start in range(0, len(images), batch_size):
            x = images[start : start + batch_size]
            y = labels[start : start + batch_size]
            try:
                ann_out = ann_run(x.to(ann_device))
            except torch.cuda.OutOfMemoryError:
                raise
            except RuntimeError as exc:
                raise ValueError(f"images of shape {tuple(images.shape)} do not fit the ANN: {exc}") from exc
            if start == 0 and ann_out.dim() == 2 and int(labels.max()) >= ann_out.shape[1]:
                raise ValueError(
                    f"labels must be class indices in [0, {ann_out.shape[1]}) for the ANN's "
                    f"{ann_out.shape[1]} outputs, got {int(labels.max())}"
                )
            ann_pred = ann_out.argmax(1).cpu()
            ann_correct += int((ann_pred == y).sum())
            for tally in tallies:
                tally.begin()
            outputs = simulate(snn, x.to(snn_device), steps, chunk=chunk)
            for _, tally in neuron_tallies:
                tally.end()
            for t, out in outputs.items():
                if out.dim() != 2:
                    raise ValueError(f"the SNN's output must be class scores [B, classes], got shape {tuple(out.shape)}")
                pred = out.argmax(1).cpu()
                snn_correct[t] += int((pred == y).sum())
                agree[t] += int((pred == ann_pred).sum())
            if bar is not None:
                bar.update(len(x))
                bar.set_postfix(acc=f"{snn_correct[total] / min(start + batch_size, len(images)):.3f}")
    finally:
        for hook in hooks:
            hook.remove()
        if bar is not None:
            bar.close()
        if was_training:
            ann.train()
        snn.train(snn_was_training)

    n = len(images)
    synapses = [t.stats(steps, n) for _, t in synapse_tallies]
    ann_macs = sum(s.macs for s in synapses)
    input_macs = sum(s.macs for s in synapses if s.analog)
    synops = {t: float(sum(s.synops[t] for s in synapses)) for t in steps}
    ann_energy = e_mac * ann_macs
    snn_energy = {t: e_mac * input_macs + e_ac * synops[t] for t in steps}
    return ConversionReport(
        timesteps=steps,
        samples=n,
        ann_accuracy=ann_correct / n,
        snn_accuracy={t: snn_correct[t] / n for t in steps},
        agreement={t: agree[t] / n for t in steps},
        ann_macs=ann_macs,
        input_macs=input_macs,
        synops=synops,
        ann_energy_j=ann_energy,
        snn_energy_j=snn_energy,
        energy_ratio={t: snn_energy[t] / ann_energy if ann_energy > 0 else None for t in steps},
        e_mac_j=float(e_mac),
        e_ac_j=float(e_ac),
        coding=coding if isinstance(coding, str) else None,
        readout=str(snn.info.get("readout", "mean")),
        neurons=[t.stats() for _, t in neuron_tallies],
        synapses=synapses,
    )


# -- TensorBoard -------------------------------------------------------------------------------
def _weights(model: Any) -> list[tuple[str, torch.Tensor]]:
    """``(name, tensor)`` of the weights and biases of a module, a LayerGraph or a
    SpikingNetwork's weighted layers, and the thresholds of its neurons."""
    if isinstance(model, SpikingNetwork):
        found = [(f"{name}.{p}", getattr(inner, p)) for name, _, inner, _ in _weighted_layers(model)
                 for p in ("weight", "bias") if getattr(inner, p, None) is not None]
        found += [(f"{name}.threshold", m.threshold) for name, m in _spiking_neurons(model)
                  if isinstance(getattr(m, "threshold", None), torch.Tensor)]
        return found
    if isinstance(model, LayerGraph):
        return [(f"{node.name}.{p}", getattr(node.module, p)) for node in model.nodes if node.module is not None
                for p in ("weight", "bias") if isinstance(getattr(node.module, p, None), torch.Tensor)]
    if isinstance(model, torch.nn.Module):
        return list(model.named_parameters())
    raise TypeError(f"expected a torch.nn.Module, LayerGraph or SpikingNetwork, got {type(model).__name__}")


def log_to_tensorboard(
    report: ConversionReport,
    log_dir: str | os.PathLike,
    ann: Optional[Union[torch.nn.Module, LayerGraph]] = None,
    snn: Optional[SpikingNetwork] = None,
) -> Path:
    """Write ``report`` (and the weights of ``ann`` / ``snn`` if given) as TensorBoard
    events in ``log_dir`` (seed 002's statistics). Tags:

    - scalars at step ``T``: ``accuracy/snn``, ``accuracy/ann`` (the same at every
      ``T``, a reference line), ``agreement``, ``synops/per_sample``,
      ``energy/snn_j``, ``energy/ann_j``, ``energy/ratio``;
    - per neuron layer, at step ``max(T)``: ``spikes_per_neuron/{mean,var}/<layer>``,
      ``firing_rate/<layer>``, ``silent_fraction/<layer>``,
      ``spike_time/{mean,var}/<layer>`` and, for TTFS codings,
      ``first_spike_time/{mean,var}/<layer>``;
    - histograms (one bucket per integer): ``spike_counts/<layer>`` (spikes per
      neuron and sample), ``spike_times/<layer>`` (step of every spike),
      ``first_spike_times/<layer>`` (TTFS);
    - ``weights/ann/<parameter>`` and ``weights/snn/<layer>.<weight|bias|threshold>``.

    Returns:
        ``log_dir`` as a Path.

    Raises:
        ImportError: the ``tensorboard`` package is missing (``pip install spikeflow[tensorboard]``).
    """
    from ..train.tensorboard import TensorBoardLogger

    if not isinstance(report, ConversionReport):
        raise TypeError(f"log_to_tensorboard takes a ConversionReport, got {type(report).__name__}")
    last = report.timesteps[-1]
    with TensorBoardLogger(log_dir) as board:
        for t in report.timesteps:
            board.log_metrics(t, {
                "accuracy/snn": report.snn_accuracy[t],
                "accuracy/ann": report.ann_accuracy,
                "agreement": report.agreement[t],
                "synops/per_sample": report.synops[t],
                "energy/snn_j": report.snn_energy_j[t],
                "energy/ann_j": report.ann_energy_j,
                **({"energy/ratio": report.energy_ratio[t]} if report.energy_ratio[t] is not None else {}),
            })
        for layer in report.neurons:
            values = {
                f"spikes_per_neuron/mean/{layer.name}": layer.spikes_mean,
                f"spikes_per_neuron/var/{layer.name}": layer.spikes_var,
                f"firing_rate/{layer.name}": layer.firing_rate,
                f"silent_fraction/{layer.name}": layer.silent_fraction,
                f"spike_time/mean/{layer.name}": layer.spike_time_mean,
                f"spike_time/var/{layer.name}": layer.spike_time_var,
                f"first_spike_time/mean/{layer.name}": layer.first_spike_mean,
                f"first_spike_time/var/{layer.name}": layer.first_spike_var,
            }
            board.log_metrics(last, {k: v for k, v in values.items() if v is not None})
            board.log_integer_histogram(f"spike_counts/{layer.name}", layer.count_histogram, last)
            board.log_integer_histogram(f"spike_times/{layer.name}", layer.spikes_per_step, last)
            if layer.first_spike_histogram is not None:
                board.log_integer_histogram(f"first_spike_times/{layer.name}", layer.first_spike_histogram, last)
        for prefix, model in (("ann", ann), ("snn", snn)):
            if model is None:
                continue
            for name, tensor in _weights(model):
                if tensor.numel():
                    board.writer.add_histogram(f"weights/{prefix}/{name}", tensor.detach().float().cpu(), 0)
    return Path(log_dir)
