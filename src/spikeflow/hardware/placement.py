"""Which layers go on the crossbar: a hardware file and :func:`to_crossbar`.

A hardware file (``--hardware crossbar.yaml``; ``.yaml``, ``.json`` or ``.toml``)
holds the :class:`~spikeflow.hardware.CrossbarConfig` fields, plus:

- ``layers``: ``last`` (the last Linear / Conv2d, as seed 003 puts its readout
  weights on the crossbar), ``all``, or a list of module names
  (``model.named_modules()``, e.g. ``["layers.2.module"]``);
- ``hardware_aware``: inject the non-idealities while training (default false).

Example::

    layers: last
    hardware_aware: true
    levels: 16
    program_noise: 0.05
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Union

import torch

from .crossbar import CrossbarConv2d, CrossbarLayer, CrossbarLinear
from .device import CrossbarConfig

__all__ = ["HardwareSpec", "load_hardware", "to_crossbar"]

Layers = Union[str, tuple[str, ...]]


@dataclass(frozen=True)
class HardwareSpec:
    """A device, where it sits in the model, and whether training sees it."""

    crossbar: CrossbarConfig = field(default_factory=CrossbarConfig)
    layers: Layers = "last"
    hardware_aware: bool = False

    def __post_init__(self) -> None:
        layers = self.layers
        if isinstance(layers, str):
            if layers not in ("last", "all"):
                raise ValueError(f"layers must be 'last', 'all' or a list of module names, got {layers!r}")
        elif isinstance(layers, (list, tuple)) and layers and all(isinstance(n, str) for n in layers):
            object.__setattr__(self, "layers", tuple(layers))
        else:
            raise ValueError(f"layers must be 'last', 'all' or a non-empty list of module names, got {layers!r}")
        if not isinstance(self.hardware_aware, bool):
            raise ValueError(f"hardware_aware must be true or false, got {self.hardware_aware!r}")

    def to_dict(self) -> dict[str, Any]:
        layers = self.layers if isinstance(self.layers, str) else list(self.layers)
        return {**self.crossbar.to_dict(), "layers": layers, "hardware_aware": self.hardware_aware}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "HardwareSpec":
        data = dict(data)
        layers = data.pop("layers", "last")
        aware = data.pop("hardware_aware", False)
        return cls(CrossbarConfig.from_dict(data), layers, aware)


def load_hardware(path: Union[str, os.PathLike]) -> HardwareSpec:
    """Read a hardware file (see the module docstring); errors name the file and the
    problem (missing file, bad syntax, unknown key, value out of range).

    The file is data only (:func:`spikeflow.train.config.read_config_file`: YAML with
    ``safe_load``, size, nesting and YAML aliases bounded).

    Raises:
        FileNotFoundError: no such file.
        ValueError: anything wrong with its contents, naming the file and the key.
    """
    from ..train.config import read_config_file

    data = read_config_file(path)
    try:
        return HardwareSpec.from_dict(data)
    except (TypeError, ValueError) as error:
        raise ValueError(f"hardware file {path}: {error}") from None


def _weighted(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    return [(n, m) for n, m in model.named_modules()
            if type(m) in (torch.nn.Linear, torch.nn.Conv2d) or isinstance(m, CrossbarLayer)]


def to_crossbar(model: torch.nn.Module, spec: Union[HardwareSpec, CrossbarConfig, None] = None,
                layers: Layers | None = None, hardware_aware: bool | None = None) -> list[str]:
    """Put layers of ``model`` on crossbars, in place: each chosen ``torch.nn.Linear`` /
    ``torch.nn.Conv2d`` becomes a :class:`CrossbarLinear` / :class:`CrossbarConv2d`
    with its weights (a layer already on a crossbar gets the new settings).

    Args:
        model: any module (spikeflow networks included: their ``TimeDistributed``
            layers wrap torch layers).
        spec: the device and placement; a bare :class:`CrossbarConfig` means ``last``.
        layers, hardware_aware: override the spec's.

    Returns:
        The names of the layers now on crossbars, in model order.
    """
    if spec is None:
        spec = HardwareSpec()
    elif isinstance(spec, CrossbarConfig):
        spec = HardwareSpec(spec)
    elif not isinstance(spec, HardwareSpec):
        raise TypeError(f"spec must be a HardwareSpec or CrossbarConfig, got {type(spec).__name__}")
    layers = spec.layers if layers is None else layers
    aware = spec.hardware_aware if hardware_aware is None else bool(hardware_aware)
    spec = HardwareSpec(spec.crossbar, layers, aware)
    candidates = _weighted(model)
    if not candidates:
        raise ValueError(f"{type(model).__name__} has no Linear or Conv2d layer to put on a crossbar")
    names = [n for n, _ in candidates]
    if spec.layers == "last":
        chosen = names[-1:]
    elif spec.layers == "all":
        chosen = names
    else:
        missing = [n for n in spec.layers if n not in names]
        if missing:
            raise ValueError(f"no Linear or Conv2d layer named {missing} in the model; its weighted layers are {names}")
        chosen = [n for n in names if n in spec.layers]
    modules = dict(model.named_modules())
    for index, name in enumerate(chosen):
        layer = modules[name]
        if isinstance(layer, CrossbarLayer):
            layer.config, layer.hardware_aware, layer.device_index = spec.crossbar, spec.hardware_aware, index
            continue
        kwargs = dict(config=spec.crossbar, hardware_aware=spec.hardware_aware, device_index=index)
        if isinstance(layer, torch.nn.Linear):
            new = CrossbarLinear.from_linear(layer, **kwargs)
        else:
            new = CrossbarConv2d.from_conv(layer, **kwargs)
        new.train(layer.training)
        if name == "":
            raise ValueError("to_crossbar replaces layers inside a model; wrap a bare layer in a container")
        parent_name, _, child = name.rpartition(".")
        setattr(modules[parent_name] if parent_name else model, child, new)
    return chosen


def set_crossbar_config(model: torch.nn.Module, config: CrossbarConfig) -> int:
    """Give every crossbar layer of ``model`` the device ``config`` (reprogrammed at its
    next read); returns how many layers changed."""
    count = 0
    for _, module in model.named_modules():
        if isinstance(module, CrossbarLayer):
            module.config = config
            count += 1
    return count
