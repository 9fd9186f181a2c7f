"""Watching a run: per-layer spike statistics and TensorBoard logs.

:class:`LayerActivity` counts, through forward hooks, the spikes of every spiking
neuron layer of a model (``spikeflow.nn.Neuron`` layers except the non-spiking
``LI`` readout), per layer and per neuron. :class:`TensorBoardLogger` writes a run's
scalars, per-layer firing rates and per-neuron spike-count histograms with
``torch.utils.tensorboard`` (the ``tensorboard`` extra).
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Optional

import torch

__all__ = ["LayerActivity", "TensorBoardLogger"]


class LayerActivity:
    """Spike counts of every spiking layer of ``model``, accumulated until :meth:`reset`.

    For a layer with output ``s [T, B, *features]`` it adds, per call,
    ``spikes = sum(s != 0)``, ``entries = s.numel()`` and the per-neuron counts
    ``sum_{t, b} (s[t, b] != 0)`` (``[*features]``). The firing rate of a layer is
    ``spikes / entries``: the fraction of (step, sample, neuron) entries that spiked.
    Layers are named by their module path (``"1"``, ``"features.2"``). With
    ``keep_outputs``, the last output of each layer is also kept *with* its graph
    (:meth:`outputs`), for a regulariser on the spikes.
    """

    def __init__(self, model: torch.nn.Module, *, keep_outputs: bool = False) -> None:
        from ..nn import LI, Neuron

        self.keep_outputs = keep_outputs
        self._handles = []
        self.names: list[str] = []
        for name, module in model.named_modules():
            if isinstance(module, Neuron) and not isinstance(module, LI):
                self.names.append(name or "model")
                self._handles.append(module.register_forward_hook(self._hook(name or "model")))
        self.reset()

    def _hook(self, name: str):
        def hook(module, args, output) -> None:
            out = output[0] if isinstance(output, tuple) else output
            if self.keep_outputs:
                self._outputs[name] = out
            out = out.detach()
            fired = out != 0
            self._spikes[name] = self._spikes.get(name, 0) + fired.sum()
            self._entries[name] = self._entries.get(name, 0) + out.numel()
            per_neuron = fired.flatten(0, 1).sum(0)
            previous = self._counts.get(name)
            self._counts[name] = per_neuron if previous is None or previous.shape != per_neuron.shape else (
                previous + per_neuron
            )

        return hook

    def reset(self) -> None:
        """Forget everything counted so far."""
        self._spikes: dict[str, Any] = {}
        self._entries: dict[str, int] = {}
        self._counts: dict[str, torch.Tensor] = {}
        self._outputs: dict[str, torch.Tensor] = {}

    def outputs(self) -> dict[str, torch.Tensor]:
        """The last output ``[T, B, *features]`` of each layer, with its graph
        (``keep_outputs=True`` only); :meth:`clear_outputs` drops them."""
        return dict(self._outputs)

    def clear_outputs(self) -> None:
        self._outputs = {}

    def rates(self) -> dict[str, float]:
        """Firing rate of each layer that ran since the last reset."""
        return {name: float(self._spikes[name]) / self._entries[name] for name in self._entries if self._entries[name]}

    @property
    def rate(self) -> float:
        """Firing rate over all spiking layers together (0 before any spike layer ran)."""
        entries = sum(self._entries.values())
        return float(sum(float(s) for s in self._spikes.values())) / entries if entries else 0.0

    def counts(self) -> dict[str, torch.Tensor]:
        """Per-neuron spike counts ``[*features]`` of each layer (on the CPU)."""
        return {name: counts.cpu() for name, counts in self._counts.items()}

    def close(self) -> None:
        """Remove the hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> "LayerActivity":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class TensorBoardLogger:
    """TensorBoard event files for a run, in ``log_dir``.

    ``log_metrics`` writes each number of a dict as a scalar under ``prefix/name``;
    ``log_activity`` writes each layer's firing rate (``firing_rate/<layer>``) and a
    histogram of its per-neuron spike counts (``spike_counts/<layer>``).
    """

    def __init__(self, log_dir: str | os.PathLike) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ImportError(
                "TensorBoard logging needs the tensorboard package: pip install spikeflow[tensorboard]"
            ) from None
        self.log_dir = os.fspath(log_dir)
        self._writer = SummaryWriter(self.log_dir)

    def log_metrics(self, step: int, metrics: Mapping[str, Any], prefix: str = "") -> None:
        for name, value in metrics.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            self._writer.add_scalar(f"{prefix}/{name}" if prefix else name, value, step)

    def log_activity(self, step: int, activity: LayerActivity) -> None:
        for name, rate in activity.rates().items():
            self._writer.add_scalar(f"firing_rate/{name}", rate, step)
        for name, counts in activity.counts().items():
            self._writer.add_histogram(f"spike_counts/{name}", counts.flatten().float(), step)

    def log_config(self, config: Mapping[str, Any]) -> None:
        lines = [f"| {key} | {value} |" for key, value in sorted(config.items())]
        self._writer.add_text("config", "| setting | value |\n|---|---|\n" + "\n".join(lines), 0)

    def close(self) -> None:
        self._writer.flush()
        self._writer.close()

    def __enter__(self) -> "TensorBoardLogger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
