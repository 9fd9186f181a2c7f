"""A chain of layers with explicit per-layer state."""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, NamedTuple, Optional

import torch

from ._layers import Flatten, TimeDistributed, check_sequence

__all__ = ["Recording", "Sequential"]


class Recording(NamedTuple):
    """What :meth:`Sequential.record` returns.

    Attributes:
        output: the last layer's output ``[T, B, ...]``.
        states: the final state of every layer (None for stateless layers).
        outputs: every layer's output ``[T, B, ...]``, in order.
        trajectories: every layer's state trajectory (fields ``[T, B, ...]``; the
            list of trajectories for a nested Sequential), None for stateless layers.
    """

    output: torch.Tensor
    states: list
    outputs: list
    trajectories: list


@contextlib.contextmanager
def _naming_the_layer(index: int, layer: torch.nn.Module, x: torch.Tensor) -> Iterator[None]:
    """Re-raise a shape or dtype error from inside a layer with the layer's index, type
    and input shape in front (torch's own message, "mat1 and mat2 shapes cannot be
    multiplied", names neither)."""
    try:
        yield
    except (RuntimeError, ValueError, TypeError) as error:
        if type(error) not in (RuntimeError, ValueError, TypeError) or str(error).startswith("layer "):
            raise  # a specific error class (it names its problem) or already named
        inner = layer.module if isinstance(layer, TimeDistributed) else layer
        raise type(error)(
            f"layer {index} ({type(inner).__name__}) failed on input of shape {tuple(x.shape)}: {error}"
        ) from error


def _prepare(layer: Any, index: int) -> torch.nn.Module:
    """Wrap a plain stateless torch layer so that it runs on ``[T, B, ...]``."""
    if not isinstance(layer, torch.nn.Module):
        raise TypeError(f"layer {index} must be a torch.nn.Module, got {type(layer).__name__}")
    if getattr(layer, "stateful", None) is not None:
        return layer  # a spikeflow layer: neuron, Sequential, TimeDistributed, Flatten
    if isinstance(layer, torch.nn.Flatten):
        if layer.start_dim == 1 and layer.end_dim == -1:
            return Flatten()  # the same thing once T and B are kept apart
        raise ValueError(
            f"layer {index}: torch.nn.Flatten(start_dim={layer.start_dim}, end_dim={layer.end_dim}) "
            f"would mix the time and batch axes of [T, B, ...]; use spikeflow.nn.Flatten()"
        )
    if isinstance(layer, torch.nn.Sequential) and any(getattr(m, "stateful", False) for m in layer.modules()):
        raise TypeError(
            f"layer {index}: a torch.nn.Sequential holding spikeflow neurons cannot pass their "
            f"state; use spikeflow.nn.Sequential"
        )
    return TimeDistributed(layer)


class Sequential(torch.nn.Module):
    """Layers applied in order to a time-major input, with explicit state per layer.

    Plain stateless torch layers (``torch.nn.Linear``, ``torch.nn.Conv2d``,
    ``torch.nn.ReLU``, ...) are wrapped in :class:`TimeDistributed` automatically;
    ``torch.nn.Flatten()`` becomes :class:`Flatten`. ::

        net = spikeflow.nn.Sequential(torch.nn.Linear(784, 100), spikeflow.nn.LIF(), ...)
        out, states = net(x)                      # x: [T, B, 784]
        out2, states = net(x_next, states)        # streaming: continue from states

    Args:
        *layers: neuron modules, spikeflow layers, nested Sequentials, or stateless
            torch modules.
    """

    stateful = True

    def __init__(self, *layers: torch.nn.Module) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList(_prepare(layer, i) for i, layer in enumerate(layers))

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, index: int) -> torch.nn.Module:
        return self.layers[index]

    def __iter__(self) -> Iterator[torch.nn.Module]:
        return iter(self.layers)

    def _states(self, state: Optional[list]) -> list:
        n = len(self.layers)
        if state is None:
            return [None] * n
        if not isinstance(state, (list, tuple)) or hasattr(state, "_fields"):  # not a NamedTuple state
            raise TypeError(
                f"Sequential state must be a list with one entry per layer (or None), "
                f"got {type(state).__name__}"
            )
        if len(state) != n:
            raise ValueError(
                f"Sequential state has {len(state)} entries but the network has {n} layers; "
                f"pass the states returned by the previous call, or None to start from rest"
            )
        for i, (layer, s) in enumerate(zip(self.layers, state)):
            if s is not None and not getattr(layer, "stateful", False):
                raise ValueError(f"state[{i}] must be None: layer {i} ({type(layer).__name__}) is stateless")
        return list(state)

    def forward(self, x: torch.Tensor, state: Optional[list] = None) -> tuple[torch.Tensor, list]:
        """Run the chain over ``x`` (``[T, B, ...]``).

        Returns:
            ``(output, states)``: ``states[i]`` is layer ``i``'s final state (None if
            stateless); pass ``states`` back as ``state`` to continue.
        """
        check_sequence(x, "Sequential")
        states = self._states(state)
        new_states = []
        for index, (layer, s) in enumerate(zip(self.layers, states)):
            with _naming_the_layer(index, layer, x):
                if getattr(layer, "stateful", False):
                    x, s = layer(x, s)
                else:
                    x = layer(x)
            new_states.append(s)
        return x, new_states

    def record(self, x: torch.Tensor, state: Optional[list] = None) -> Recording:
        """Like :meth:`forward`, also returning every layer's output and state trajectory."""
        check_sequence(x, "Sequential")
        states = self._states(state)
        new_states, outputs, trajectories = [], [], []
        for layer, s in zip(self.layers, states):
            trajectory = None
            with _naming_the_layer(len(outputs), layer, x):
                if getattr(layer, "stateful", False):
                    result = layer.record(x, s)
                    if isinstance(result, Recording):
                        x, s, trajectory = result.output, result.states, result.trajectories
                    else:
                        x, s, trajectory = result.output, result.state, result.trajectory
                else:
                    x = layer(x)
            new_states.append(s)
            outputs.append(x)
            trajectories.append(trajectory)
        return Recording(x, new_states, outputs, trajectories)
