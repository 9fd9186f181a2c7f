"""Per-layer spike statistics of a model, gathered by forward hooks.

:class:`LayerActivity` hooks every *spiking* neuron layer of a model (every
:class:`spikeflow.nn.Neuron` except the non-spiking :class:`~spikeflow.nn.LI`
readout) and accumulates, until :meth:`~LayerActivity.reset`, how often each layer
and each of its neurons fired::

    activity = LayerActivity(model)
    for xb in batches:
        model(xb)
    activity.rates()          # {"1": 0.052, "3": 0.11}: spikes per (step, sample, neuron)
    activity.counts()["1"]    # int64 [features]: spikes per neuron, over steps and samples
    activity.step_counts()["1"]  # int64 [T]: spikes at each step t, over samples and neurons
    activity.close()          # remove the hooks

With ``keep_outputs=True`` it also keeps the last forward's spike tensors *with*
their autograd graph (:meth:`~LayerActivity.outputs`), so that a firing-rate
regulariser (:func:`spikeflow.loss.rate_regularizer`) can be added to the loss.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import torch

__all__ = ["LayerActivity", "spiking_layers"]


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside ``DistributedDataParallel``/``DataParallel``/``torch.compile``
    wrappers, so that layer names do not depend on how the model is wrapped."""
    from torch.nn.parallel import DataParallel, DistributedDataParallel

    while True:
        if isinstance(model, (DistributedDataParallel, DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, torch.nn.Module):
            model = model._orig_mod  # torch.compile's OptimizedModule
        else:
            return model


def spiking_layers(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """The spiking neuron layers of ``model`` by module path (``"1"``,
    ``"features.3"``; ``"model"`` when ``model`` itself is one), in module order.
    The ``layers`` list of a :class:`spikeflow.nn.Sequential` is not part of the
    path: the LIF of ``Sequential(Linear, LIF, Linear, LI)`` is ``"1"``.

    Spiking layers are the :class:`spikeflow.nn.Neuron` modules except
    :class:`spikeflow.nn.LI`, whose output is a membrane potential, not spikes.
    Wrappers (DDP, DataParallel, ``torch.compile``) are looked through.
    """
    from ..nn import LI, Neuron

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"LayerActivity needs a torch.nn.Module, got {type(model).__name__}")
    root = _unwrap(model)
    return {
        name or "model": module
        for name, module in _named_modules(root)
        if isinstance(module, Neuron) and not isinstance(module, LI)
    }


def _named_modules(root: torch.nn.Module):
    """``root.named_modules()`` (each module once, at its first path), except that
    the ``layers`` list of a :class:`spikeflow.nn.Sequential` is left out of the
    path: its layers are ``"1"``, ``"0.2"``, as in a ``torch.nn.Sequential``."""
    from ..nn import Sequential

    seen: set[int] = set()

    def walk(module: torch.nn.Module, prefix: str):
        if id(module) in seen:
            return
        seen.add(id(module))
        yield prefix, module
        for name, child in module.named_children():
            if isinstance(module, Sequential) and name == "layers":
                for index, layer in child.named_children():
                    yield from walk(layer, f"{prefix}.{index}" if prefix else index)
            else:
                yield from walk(child, f"{prefix}.{name}" if prefix else name)

    yield from walk(root, "")


def _int64(counts: Any) -> torch.Tensor:
    counts = torch.as_tensor(counts).detach()
    if counts.is_floating_point():
        counts = counts.round()
    return counts.to(torch.int64)


class LayerActivity:
    """Spike counts of every spiking layer of ``model``, accumulated until :meth:`reset`.

    Each call of a spiking layer with output ``s [T, B, *features]`` adds, for that
    layer, the per-neuron counts ``sum_{t, b} (s[t, b] != 0)`` (``[*features]``,
    int64), the per-step counts ``sum_{b, n} (s[t, b, n] != 0)`` (``[T]``, int64:
    the distribution of spike times) and ``s.numel()`` (T * B * neurons) entries.
    A *spike* is any nonzero
    output, so graded-output layers (:class:`~spikeflow.nn.GradedLIF`) count an
    event whatever its size. A layer's firing rate is ``spikes / entries``, the
    fraction of (neuron, step, sample) entries that fired.

    Counts stay on the layer's device while accumulating (no host synchronisation
    per batch); :meth:`counts`, :meth:`spikes` and :meth:`rates` copy them to the
    CPU. Only ``forward`` calls are seen: :meth:`spikeflow.nn.Sequential.record`
    calls the layers' ``record`` and bypasses the hooks.

    A model without spiking layers (an ANN twin) is allowed: nothing is counted
    and :attr:`overall_rate` is 0.

    Args:
        model: the network; DDP/DataParallel/``torch.compile`` wrappers are looked
            through, so layer names are the same with or without them.
        keep_outputs: also keep each layer's output of the last forward of
            ``model``, with its autograd graph (:meth:`outputs`).

    Usable as a context manager, which removes the hooks on exit.
    """

    def __init__(self, model: torch.nn.Module, *, keep_outputs: bool = False) -> None:
        layers = spiking_layers(model)
        self.keep_outputs = bool(keep_outputs)
        self.names: tuple[str, ...] = tuple(layers)
        self._handles: list[Any] = []
        self._counts: dict[str, torch.Tensor] = {}
        self._steps: dict[str, torch.Tensor] = {}
        self._entries: dict[str, int] = {}
        self._outputs: dict[str, torch.Tensor] = {}
        self._closed = False
        for name, module in layers.items():
            self._handles.append(module.register_forward_hook(self._hook(name)))
        if self.keep_outputs:
            # A new forward of the whole model starts a new set of kept outputs.
            self._handles.append(_unwrap(model).register_forward_pre_hook(lambda module, args: self.clear_outputs()))

    def _hook(self, name: str):
        def hook(module: torch.nn.Module, args: Any, output: Any) -> None:
            out = output[0] if isinstance(output, (tuple, list)) else output
            if not isinstance(out, torch.Tensor) or out.dim() < 2:
                raise ValueError(
                    f"LayerActivity: layer {name!r} ({type(module).__name__}) returned "
                    f"{type(out).__name__ if not isinstance(out, torch.Tensor) else f'a {out.dim()}-d tensor'}; "
                    f"expected spikes [T, B, *features]"
                )
            if self.keep_outputs:
                self._outputs[name] = out
            fired = out.detach() != 0
            per_neuron = fired.sum(dim=(0, 1))  # int64 [*features]
            self._add(name, per_neuron, out.numel(), fired.flatten(1).sum(dim=1))  # int64 [T]

        return hook

    def _add(
        self, name: str, per_neuron: torch.Tensor, entries: int, per_step: Optional[torch.Tensor] = None
    ) -> None:
        previous = self._counts.get(name)
        if previous is None:
            self._counts[name] = per_neuron
        elif previous.shape != per_neuron.shape:
            raise ValueError(
                f"LayerActivity: layer {name!r} changed its number of neurons from {tuple(previous.shape)} "
                f"to {tuple(per_neuron.shape)} since the last reset(); call reset() between inputs of "
                f"different feature shapes"
            )
        else:
            self._counts[name] = previous + per_neuron.to(previous.device)
        self._entries[name] = self._entries.get(name, 0) + int(entries)
        if per_step is not None:
            self._add_steps(name, per_step)

    def _add_steps(self, name: str, per_step: torch.Tensor) -> None:
        previous = self._steps.get(name)
        if previous is None:
            self._steps[name] = per_step
            return
        per_step = per_step.to(previous.device)
        if len(per_step) > len(previous):  # runs of different lengths: the shorter one is padded
            previous, per_step = per_step, previous
        self._steps[name] = torch.cat([previous[: len(per_step)] + per_step, previous[len(per_step) :]])

    def reset(self) -> None:
        """Forget everything counted so far, and the kept outputs."""
        self._counts = {}
        self._steps = {}
        self._entries = {}
        self._outputs = {}

    def update(
        self,
        counts: Mapping[str, torch.Tensor],
        entries: Mapping[str, int],
        step_counts: Optional[Mapping[str, torch.Tensor]] = None,
    ) -> None:
        """Add counts gathered elsewhere (another process, another run): per layer,
        per-neuron ``counts`` (``[*features]``), the number of ``entries`` they
        were counted over and, optionally, the per-step ``step_counts`` (``[T]``).
        ``counts`` and ``entries`` must have the same layer names; ``step_counts``
        may name any of the layers (its counts are added on their own)."""
        if set(counts) != set(entries):
            raise ValueError(
                f"LayerActivity.update: counts has layers {sorted(counts)} but entries has {sorted(entries)}"
            )
        for name in counts:
            self._add(name, _int64(counts[name]), int(entries[name]))
        for name, per_step in (step_counts or {}).items():
            per_step = _int64(per_step)
            if per_step.dim() != 1:
                raise ValueError(
                    f"LayerActivity.update: step_counts of layer {name!r} must be one count per step [T], "
                    f"got shape {tuple(per_step.shape)}"
                )
            self._add_steps(name, per_step)

    def counts(self) -> dict[str, torch.Tensor]:
        """Per-neuron spike counts ``[*features]`` (int64, on the CPU, detached) of
        each layer that ran since the last reset."""
        return {name: counts.cpu() for name, counts in self._counts.items()}

    def step_counts(self) -> dict[str, torch.Tensor]:
        """Spikes at each step ``t`` (int64 ``[T]``, on the CPU), summed over samples
        and neurons, of each layer that ran since the last reset: the distribution
        of spike times. (Layers run for different ``T`` add up step by step.)"""
        return {name: steps.cpu() for name, steps in self._steps.items()}

    def spikes(self) -> dict[str, int]:
        """Total spikes of each layer that ran since the last reset."""
        return {name: int(counts.sum()) for name, counts in self._counts.items()}

    def entries(self) -> dict[str, int]:
        """Number of (neuron, step, sample) entries counted per layer since the last reset."""
        return dict(self._entries)

    def rates(self) -> dict[str, float]:
        """Firing rate (spikes per neuron, step and sample) of each layer that ran
        since the last reset."""
        return {
            name: spikes / self._entries[name] for name, spikes in self.spikes().items() if self._entries[name]
        }

    @property
    def overall_rate(self) -> float:
        """Firing rate of all spiking layers together: total spikes over total
        entries (0.0 before any spiking layer ran)."""
        entries = sum(self._entries.values())
        return sum(self.spikes().values()) / entries if entries else 0.0

    @property
    def rate(self) -> float:
        """Alias of :attr:`overall_rate`."""
        return self.overall_rate

    def outputs(self) -> dict[str, torch.Tensor]:
        """Each spiking layer's output ``[T, B, *features]`` from the last forward of
        the model, with its autograd graph, in layer order (a layer called twice in
        one forward keeps its last call). Cleared by :meth:`reset`,
        :meth:`clear_outputs` and at the start of every forward of the model.

        Raises:
            RuntimeError: the monitor was made without ``keep_outputs=True``.
        """
        if not self.keep_outputs:
            raise RuntimeError("LayerActivity.outputs() needs LayerActivity(model, keep_outputs=True)")
        return {name: self._outputs[name] for name in self.names if name in self._outputs}

    def clear_outputs(self) -> None:
        """Drop the kept outputs (and with them their graphs)."""
        self._outputs = {}

    def close(self) -> None:
        """Remove the hooks (the counts stay readable); calling it again is harmless."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._outputs = {}
        self._closed = True

    def __enter__(self) -> "LayerActivity":
        return self

    def __exit__(self, *exc: Optional[object]) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"LayerActivity(layers={list(self.names)}, keep_outputs={self.keep_outputs}, {state})"
