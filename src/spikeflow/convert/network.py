"""The result of a conversion: :class:`SpikingNetwork`, an ordinary spikeflow model.

A spiking network is a graph of layers over time-major tensors ``[T, B, ...]``:
stateless layers (Linear, Conv, pooling, Flatten, :class:`~spikeflow.convert.layers.Scale`)
run on all time steps at once, stateful ones (spikeflow neurons, spiking max
pooling) walk through time with explicit state, and residual additions and
concatenations join branches. Like every spikeflow layer it is called as
``out, state = net(x, state)``, so a long input can be fed in pieces.

``net.save(path)`` writes the architecture (JSON) and the weights (tensors only)
atomically; :meth:`SpikingNetwork.load` reads it back with ``weights_only=True``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from .. import nn as snn
from ..nn._layers import check_sequence
from ..saving import _CUSTOM_LAYERS, _TORCH_LAYERS, build_module, module_spec, register_layer  # noqa: F401
from ..train.checkpoint import CheckpointError, is_dict_of, read_weights_only, save_weights_only
from .layers import Scale, SpikingMaxPool

__all__ = ["FORMAT", "Step", "SpikingNetwork", "register_layer", "layer_config", "build_layer"]

#: The ``format`` entry of a saved network.
FORMAT = "spikeflow.spiking-network/1"


@dataclass
class Step:
    """One node of a :class:`SpikingNetwork`.

    Attributes:
        name: unique node name.
        op: ``input``, ``layer`` (a module, stateless or stateful), ``add``, ``cat``
            or ``output``.
        inputs: names of the nodes it reads.
        attrs: ``dim`` for ``cat``; for a neuron layer ``initial_membrane``, the
            membrane at ``t = 0`` as a fraction of the threshold.
    """

    name: str
    op: str
    inputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)


# -- layer (de)serialization: spikeflow.saving holds the tables -------------------------
register_layer(Scale)
register_layer(SpikingMaxPool)


def layer_config(module: torch.nn.Module) -> dict:
    """A JSON-able description from which :func:`build_layer` rebuilds ``module``
    (without its weights): :func:`spikeflow.saving.module_spec`, with crossbar layers
    described as their ideal layer (``info["hardware"]`` keeps the device)."""
    return module_spec(module, ideal_crossbars=True)


def build_layer(config: dict) -> torch.nn.Module:
    """The module :func:`layer_config` described (weights to be loaded separately);
    :func:`spikeflow.saving.build_module`, which also reads the older descriptions."""
    return build_module(config)


def _key(name: str) -> str:
    return name.replace(".", "_")


class SpikingNetwork(torch.nn.Module):
    """A converted spiking network.

    Args:
        steps: the nodes in execution order; the first is the ``input``, the last the
            ``output``.
        layers: the module of every ``layer`` step, by step name.
        info: plain, JSON-able facts about the conversion (coding, scales, source),
            saved with the network.

    ``forward(x, state=None) -> (out, state)``: ``x`` is ``[T, B, *input]`` (an image
    becomes a constant current with ``x.expand(T, *x.shape)``); ``out`` is the output
    node's ``[T, B, ...]`` (the last layer's input current per step, whose mean over
    time estimates the ANN's output); ``state`` maps every stateful layer's name to its
    state.
    """

    def __init__(self, steps: list[Step], layers: dict[str, torch.nn.Module], info: Optional[dict] = None) -> None:
        super().__init__()
        self.steps = list(steps)
        self.layers = torch.nn.ModuleDict({_key(k): v for k, v in layers.items()})
        self.info = dict(info or {})
        names = set()
        for step in self.steps:
            if step.op not in ("input", "layer", "add", "cat", "output"):
                raise ValueError(f"unknown step op {step.op!r}")
            if any(i not in names for i in step.inputs):
                raise ValueError(f"step {step.name!r} reads a node that is not computed before it")
            if step.op == "layer" and _key(step.name) not in self.layers:
                raise ValueError(f"step {step.name!r} has no module")
            names.add(step.name)
        if not self.steps or self.steps[0].op != "input" or self.steps[-1].op != "output":
            raise ValueError("a spiking network starts with its input step and ends with its output step")
        self._last_use = {}
        for index, step in enumerate(self.steps):
            for i in step.inputs:
                self._last_use[i] = index

    def layer(self, name: str) -> torch.nn.Module:
        """The module of step ``name``."""
        return self.layers[_key(name)]

    def named_layers(self) -> list[tuple[str, torch.nn.Module]]:
        """``(step name, module)`` of every layer step, in order."""
        return [(s.name, self.layer(s.name)) for s in self.steps if s.op == "layer"]

    def neurons(self) -> list[tuple[str, torch.nn.Module]]:
        """``(step name, module)`` of every spiking neuron layer, in order."""
        return [(n, m) for n, m in self.named_layers() if isinstance(m, snn.Neuron)]

    def _initial_state(self, step: Step, module: torch.nn.Module, x: torch.Tensor) -> Any:
        fraction = step.attrs.get("initial_membrane", 0.0)
        if not isinstance(module, snn.Neuron) or not fraction:
            return None
        state = module.init_state(x.shape[1:], dtype=x.dtype, device=x.device)
        threshold = module.threshold.detach().to(dtype=x.dtype, device=x.device)
        return state._replace(v=torch.zeros_like(state.v) + fraction * threshold)

    def _check_input(self, x: torch.Tensor, state: Optional[dict]) -> None:
        """Refuse what would fail deep inside a layer (rank, dtype, device, state)."""
        check_sequence(x, "SpikingNetwork")
        if not x.is_floating_point():
            raise TypeError(f"SpikingNetwork input must be a floating-point tensor [T, B, ...], got dtype {x.dtype}")
        reference = next(iter(self.parameters()), None)
        if reference is None:
            reference = next((b for b in self.buffers() if b.is_floating_point()), None)
        if reference is not None:
            if x.dtype != reference.dtype:
                raise TypeError(
                    f"SpikingNetwork input has dtype {x.dtype} but the network's weights are {reference.dtype}; "
                    f"convert the input (x.to({reference.dtype})) or the network"
                )
            if x.device != reference.device:
                raise ValueError(
                    f"SpikingNetwork input is on {x.device} but the network is on {reference.device}; "
                    f"move one of them (x.to(device) or net.to(device))"
                )
        if state is None:
            return
        if not isinstance(state, dict):
            raise TypeError(
                f"SpikingNetwork state must be a dict {{layer name: state}} (as returned by the last call) or None, "
                f"got {type(state).__name__}"
            )
        stateful = [s.name for s in self.steps if s.op == "layer" and getattr(self.layer(s.name), "stateful", False)]
        unknown = sorted(set(state) - set(stateful), key=str)
        if unknown:
            raise ValueError(
                f"SpikingNetwork state has entries for {unknown}, which are not stateful layers of this network; "
                f"expected keys among {stateful}"
            )

    def run(self, x: torch.Tensor, state: Optional[dict] = None, keep: bool = False):
        """``(out, state, values)``: as :meth:`forward`, and with ``keep`` every node's
        output ``{name: [T, B, ...]}`` (``values`` is empty otherwise).

        Raises:
            TypeError: ``x`` not a floating-point tensor of the network's dtype; ``state``
                not a dict.
            ValueError: ``x`` without a time axis, on another device, or of a shape a
                layer does not take (naming the layer); ``state`` keys that are not
                stateful layers, or states that do not match the input.
        """
        self._check_input(x, state)
        state = dict(state or {})
        new_state: dict[str, Any] = {}
        values: dict[str, torch.Tensor] = {}
        kept: dict[str, torch.Tensor] = {}
        out = None
        for index, step in enumerate(self.steps):
            args = [values[i] for i in step.inputs]
            if step.op == "input":
                y = x
            elif step.op == "layer":
                module = self.layer(step.name)
                try:
                    if getattr(module, "stateful", False):
                        s = state.get(step.name)
                        if s is None:
                            s = self._initial_state(step, module, args[0])
                        y, new_state[step.name] = module(args[0], s)
                    else:
                        y = module(args[0])
                except torch.cuda.OutOfMemoryError:
                    raise
                except RuntimeError as exc:  # torch's bare shape error: say where and what came
                    raise ValueError(
                        f"SpikingNetwork input of shape {tuple(x.shape)} does not fit layer {step.name!r} "
                        f"({type(module).__name__}), which got shape {tuple(args[0].shape)}: {exc}"
                    ) from exc
            elif step.op == "add":
                y = args[0] + args[1]
            elif step.op == "cat":
                y = torch.cat(args, dim=step.attrs["dim"] + 1)  # +1: the time axis
            else:
                out = y = args[0]
            values[step.name] = y
            if keep:
                kept[step.name] = y
            for i in step.inputs:  # free what no later step reads
                if self._last_use.get(i) == index and i in values:
                    del values[i]
        return out, new_state, kept

    def forward(self, x: torch.Tensor, state: Optional[dict] = None) -> tuple[torch.Tensor, dict]:
        out, state, _ = self.run(x, state)
        return out, state

    # -- saving ----------------------------------------------------------------------
    def spec(self) -> dict:
        """The architecture as plain data (what :meth:`save` writes besides the weights)."""
        return {
            "format": FORMAT,
            "steps": [asdict(s) for s in self.steps],
            "layers": {name: layer_config(module) for name, module in self.named_layers()},
            "info": self.info,
        }

    @classmethod
    def from_spec(cls, spec: dict) -> "SpikingNetwork":
        """An untrained network of the architecture :meth:`spec` described."""
        if not isinstance(spec, dict) or spec.get("format") != FORMAT:
            raise ValueError(f"not a spikeflow spiking network (format {spec.get('format') if isinstance(spec, dict) else None!r})")
        steps = [Step(**s) for s in spec["steps"]]
        layers = {name: build_layer(config) for name, config in spec["layers"].items()}
        return cls(steps, layers, spec.get("info"))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the network to ``path`` atomically (architecture as JSON, weights as
        tensors; loadable with ``weights_only=True``)."""
        payload = {"format": FORMAT, "spec": json.dumps(self.spec()), "state_dict": self.state_dict()}
        return save_weights_only(path, payload)

    @classmethod
    def load(cls, path: str | os.PathLike, map_location: Any = "cpu") -> "SpikingNetwork":
        """Read a network :meth:`save` wrote.

        Nothing is unpickled but tensors and plain values (``weights_only=True``), and
        the architecture is built under the memory bound of
        :func:`spikeflow.saving.build_bounded`: a file cannot ask for layers larger than
        the tensors it holds.

        Raises:
            CheckpointError: a missing, truncated or corrupt file, one that is not a
                saved spiking network, or whose architecture and weights do not fit
                (a :class:`~spikeflow.saving.ModelFileError`); the message names the file.
        """
        from ..saving import ModelFileError, build_bounded

        payload = read_weights_only(path, map_location, what="spiking network")
        if not isinstance(payload, dict) or payload.get("format") != FORMAT or not isinstance(payload.get("spec"), str):
            raise CheckpointError(
                f"{path} is not a saved spikeflow spiking network (expected a dict with format {FORMAT!r} and a "
                f"JSON spec)"
            )
        state = payload.get("state_dict")
        if not is_dict_of(state, torch.Tensor):
            raise CheckpointError(f"{path}: the saved spiking network's state_dict is not a dict of tensors")
        try:
            spec = json.loads(payload["spec"])
        except (ValueError, RecursionError) as exc:
            raise CheckpointError(f"{path}: the saved spiking network's spec is not valid JSON ({exc})") from None
        if not isinstance(spec, dict) or spec.get("format") != FORMAT:
            raise CheckpointError(f"{path}: the saved spiking network's spec is not a {FORMAT!r} object")
        spec = {key: value for key, value in spec.items() if key != "type"}
        net = build_bounded({"type": "SpikingNetwork", **spec}, {k: list(v.shape) for k, v in state.items()}, str(path))
        if not isinstance(net, cls):  # pragma: no cover - the type is fixed above
            raise ModelFileError(f"{path}: the saved spiking network is not a {cls.__name__}")
        try:
            net.load_state_dict(state)
        except (ValueError, KeyError, RuntimeError, TypeError) as exc:
            raise CheckpointError(f"{path}: the saved spiking network is inconsistent: {exc}") from exc
        return net

    def extra_repr(self) -> str:
        lines = []
        for s in self.steps:
            if s.op in ("add", "cat"):
                lines.append(f"{s.name}: {s.op}({', '.join(s.inputs)})")
        return "\n".join(lines)
