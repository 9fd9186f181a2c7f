"""Saving and loading whole models as one ``.safetensors`` file, without pickle.

::

    spikeflow.save(net, "net.safetensors", metadata={"accuracy": 0.97})
    net = spikeflow.load("net.safetensors")          # the same model, in eval mode
    spikeflow.saving.load_metadata("net.safetensors")  # {"accuracy": 0.97}

The file is a plain safetensors file: the tensors are the model's ``state_dict``
and the header's metadata (strings only) holds

==================  ==============================================================
``format``          ``"spikeflow.model/1"``
``architecture``    JSON of :func:`module_spec`: every layer's type and the
                    constructor settings that rebuild it (shapes, neuron settings,
                    surrogate, learnable flags, backend, ...)
``user``            JSON of the ``metadata`` given to :func:`save`
``aliases``         JSON ``{key: key it shares its tensor with}`` (tied tensors are
                    stored once)
``frozen``          JSON list of the parameters with ``requires_grad = False``
``spikeflow_version``  the version that wrote it
==================  ==============================================================

:func:`load` reads it with ``safetensors`` only: nothing is unpickled and no code
named by the file is imported; a layer type is looked up in the tables of this
module (built-in spikeflow and torch layers, and the classes registered with
:func:`register_layer` / :func:`register_container`).

This module also holds the per-layer (de)serialization that
:class:`spikeflow.convert.SpikingNetwork` uses for its own files
(:func:`spikeflow.convert.network.layer_config` / ``build_layer``).
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import json
import os
from pathlib import Path
from typing import Any, Optional

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from . import nn as snn
from . import surrogate as _sg
from .nn._layers import Flatten, TimeDistributed
from .nn._neurons import _check_backend
from .nn._parametrize import _KINDS
from .nn._sequential import Sequential
from .train.checkpoint import CheckpointError, atomic_write_bytes

__all__ = [
    "FORMAT",
    "ModelFileError",
    "build_module",
    "load",
    "load_metadata",
    "module_spec",
    "register_container",
    "register_layer",
    "save",
]

#: The ``format`` entry of a saved model's metadata.
FORMAT = "spikeflow.model/1"

#: The largest header :func:`load` accepts (safetensors' own limit).
MAX_HEADER_BYTES = 100_000_000

#: The most layers (JSON objects) an architecture may describe: a hostile header of
#: millions of tiny layers would otherwise cost gigabytes of Python objects.
MAX_LAYERS = 100_000

#: The most elements of parameters and buffers that an architecture may ask for beyond
#: the tensors its file holds (buffers that are not saved, rebuilt from the settings).
MAX_UNSAVED_ELEMENTS = 1 << 24

#: Bytes per element of the safetensors dtypes.
_SAFETENSORS_DTYPES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8, "C64": 8,
}


class ModelFileError(CheckpointError):
    """A saved model file is missing, truncated, corrupt or inconsistent."""


# -- the layer tables -------------------------------------------------------------------
#: Torch layers by type name: (class, constructor arguments read back from the module).
#: A ``bias`` flag (``module.bias is not None``) is added where the constructor takes one
#: (always for Linear and Conv, for the norms only when it is off).
_TORCH_LAYERS: dict[str, tuple[type, list[str]]] = {
    "Linear": (torch.nn.Linear, ["in_features", "out_features"]),
    "Conv1d": (torch.nn.Conv1d, ["in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups", "padding_mode"]),
    "Conv2d": (torch.nn.Conv2d, ["in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups", "padding_mode"]),
    "Conv3d": (torch.nn.Conv3d, ["in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups", "padding_mode"]),
    "BatchNorm1d": (torch.nn.BatchNorm1d, ["num_features", "eps", "momentum", "affine", "track_running_stats"]),
    "BatchNorm2d": (torch.nn.BatchNorm2d, ["num_features", "eps", "momentum", "affine", "track_running_stats"]),
    "BatchNorm3d": (torch.nn.BatchNorm3d, ["num_features", "eps", "momentum", "affine", "track_running_stats"]),
    "LayerNorm": (torch.nn.LayerNorm, ["normalized_shape", "eps", "elementwise_affine"]),
    "GroupNorm": (torch.nn.GroupNorm, ["num_groups", "num_channels", "eps", "affine"]),
    "AvgPool1d": (torch.nn.AvgPool1d, ["kernel_size", "stride", "padding", "ceil_mode", "count_include_pad"]),
    "AvgPool2d": (torch.nn.AvgPool2d, ["kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"]),
    "AdaptiveAvgPool1d": (torch.nn.AdaptiveAvgPool1d, ["output_size"]),
    "AdaptiveAvgPool2d": (torch.nn.AdaptiveAvgPool2d, ["output_size"]),
    "AdaptiveMaxPool1d": (torch.nn.AdaptiveMaxPool1d, ["output_size"]),
    "AdaptiveMaxPool2d": (torch.nn.AdaptiveMaxPool2d, ["output_size"]),
    "MaxPool1d": (torch.nn.MaxPool1d, ["kernel_size", "stride", "padding", "dilation", "ceil_mode"]),
    "MaxPool2d": (torch.nn.MaxPool2d, ["kernel_size", "stride", "padding", "dilation", "ceil_mode"]),
    "ReLU": (torch.nn.ReLU, ["inplace"]),
    "LeakyReLU": (torch.nn.LeakyReLU, ["negative_slope", "inplace"]),
    "ELU": (torch.nn.ELU, ["alpha", "inplace"]),
    "GELU": (torch.nn.GELU, ["approximate"]),
    "Sigmoid": (torch.nn.Sigmoid, []),
    "Tanh": (torch.nn.Tanh, []),
    "Softmax": (torch.nn.Softmax, ["dim"]),
    "LogSoftmax": (torch.nn.LogSoftmax, ["dim"]),
    "Identity": (torch.nn.Identity, []),
    "Dropout": (torch.nn.Dropout, ["p", "inplace"]),
    "Dropout1d": (torch.nn.Dropout1d, ["p", "inplace"]),
    "Dropout2d": (torch.nn.Dropout2d, ["p", "inplace"]),
    "torch.Flatten": (torch.nn.Flatten, ["start_dim", "end_dim"]),
    "Unflatten": (torch.nn.Unflatten, ["dim", "unflattened_size"]),
}

#: Classes with ``config()`` / ``from_config()`` (see :func:`register_layer`).
_CUSTOM_LAYERS: dict[str, type] = {}

#: Modules made only of their child modules (see :func:`register_container`).
_CONTAINERS: dict[str, type] = {}

_NEURONS: dict[str, type] = {
    "LIF": snn.LIF,
    "IF": snn.IF,
    "CubaLIF": snn.CubaLIF,
    "GradedLIF": snn.GradedLIF,
    "LI": snn.LI,
    "ASN": snn.ASN,
}

_CROSSBARS = ("CrossbarLinear", "CrossbarConv2d")

#: Type names with a fixed meaning, which registered classes may not take.
_BUILTIN_NAMES = (
    set(_TORCH_LAYERS) | set(_NEURONS) | set(_CROSSBARS)
    | {"TimeDistributed", "Flatten", "Sequential", "torch.Sequential", "SpikingNetwork"}
)

_TORCH_NAMES: dict[type, str] = {cls: name for name, (cls, _) in _TORCH_LAYERS.items()}


def _check_name(cls: type) -> str:
    if not isinstance(cls, type) or not issubclass(cls, torch.nn.Module):
        raise TypeError(f"only torch.nn.Module classes can be registered, got {cls!r}")
    name = cls.__name__
    if name in _BUILTIN_NAMES:
        raise ValueError(f"{name!r} is a built-in layer type of spikeflow.saving; give the class another name")
    return name


def register_layer(cls: type) -> type:
    """Allow instances of ``cls`` (which has ``config() -> dict`` of JSON-able values and
    ``from_config(dict)``, a classmethod rebuilding the layer without its weights) in
    saved models and spiking networks. Usable as a class decorator."""
    name = _check_name(cls)
    if not (hasattr(cls, "config") and hasattr(cls, "from_config")):
        raise TypeError(f"{cls.__name__} needs config() and from_config() to be saved")
    _CUSTOM_LAYERS[name] = cls
    return cls


_MODULE_ATTRS = frozenset(vars(torch.nn.Module()))


def register_container(cls: type) -> type:
    """Allow instances of ``cls``, a module whose whole state is its child modules (no
    parameters, buffers or other attributes of its own, like ``Seed001Net``), in saved
    models. It is rebuilt without calling ``__init__``: a bare instance that gets the
    rebuilt children. Usable as a class decorator."""
    _CONTAINERS[_check_name(cls)] = cls
    return cls


def _register_defaults() -> None:
    from .train.models import Seed001Net

    register_container(Seed001Net)


_register_defaults()


def _load_registrations() -> None:
    """Import the modules that register layers (convert's layers register themselves)."""
    from . import convert  # noqa: F401  (registers Scale, SpikingMaxPool, the TTFS layers)


# -- values -------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    """A constructor argument as JSON (tuples become lists)."""
    if isinstance(value, (tuple, list, torch.Size)):
        return [_plain(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, _sg.Surrogate):
        return {"kind": value.name, "alpha": value.alpha}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"a setting of type {type(value).__name__} cannot be saved: {value!r}")


def _argument(value: Any) -> Any:
    """A JSON list back to the tuple that torch constructors take."""
    return tuple(_argument(v) for v in value) if isinstance(value, list) else value


def _surrogate(value: Any) -> _sg.Surrogate:
    if isinstance(value, str):
        return _sg.by_name(value)
    if not isinstance(value, dict) or set(value) != {"kind", "alpha"}:
        raise ValueError(f"a surrogate must be saved as {{'kind', 'alpha'}}, got {value!r}")
    kind = value["kind"]
    if not isinstance(kind, str) or kind.upper() not in _sg.SurrogateKind.__members__:
        raise ValueError(f"unknown surrogate kind {kind!r}")
    alpha = value["alpha"]
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise ValueError(f"surrogate alpha must be a number, got {alpha!r}")
    return _sg.Surrogate(_sg.SurrogateKind[kind.upper()], float(alpha))


def _constructor_takes(cls: type, name: str) -> bool:
    try:
        return name in inspect.signature(cls).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtin signatures
        return False


# -- module -> spec -----------------------------------------------------------------------
def _unsupported(module: torch.nn.Module, path: str, why: str = "") -> TypeError:
    cls = type(module)
    return TypeError(
        f"cannot save layer {path!r} of type {cls.__module__}.{cls.__qualname__}{why}; spikeflow.saving "
        f"knows the spikeflow and common torch layers; register a class with config()/from_config() "
        f"with spikeflow.saving.register_layer, or a module made only of child modules with "
        f"spikeflow.saving.register_container"
    )


def _neuron_spec(module: snn.Neuron) -> dict:
    name = type(module).__name__
    spec: dict[str, Any] = {"type": name}
    if module._VALUES:
        values = {}
        for value, kind in module._VALUES.items():
            suffix = _KINDS[kind][0]
            learnable = f"{value}_{suffix}" in module._parameters
            stored = module._parameters[f"{value}_{suffix}"] if learnable else module._buffers[f"{value}_value"]
            values[value] = {"shape": list(stored.shape), "learnable": learnable}
        spec["values"] = values
    for field in dataclasses.fields(module._config):  # every static setting
        if field.name not in module._VALUES:
            spec[field.name] = _plain(getattr(module._config, field.name))
    if "dt" in vars(module):
        spec["dt"] = module.dt
    if module.recurrent_weight is not None:
        spec["recurrent"] = int(module.recurrent_weight.shape[0])
    spec["backend"] = module.backend
    return spec


def _torch_spec(module: torch.nn.Module, name: str) -> dict:
    cls, fields = _TORCH_LAYERS[name]
    spec = {"type": name, **{f: _plain(getattr(module, f)) for f in fields}}
    if _constructor_takes(cls, "bias"):
        bias = getattr(module, "bias", None) is not None
        if bias is False or name.startswith(("Linear", "Conv")):  # norms: only when off (older torch lacks it)
            spec["bias"] = bias
    return spec


def _crossbar_spec(module: torch.nn.Module, ideal: bool) -> dict:
    plain = "Linear" if isinstance(module, torch.nn.Linear) else "Conv2d"
    spec = _torch_spec(module, plain)
    if ideal:  # a SpikingNetwork file keeps the ideal layer; its info["hardware"] the device
        return spec
    spec.pop("padding_mode", None)  # a crossbar convolution pads with zeros only
    spec.update(
        type=type(module).__name__,
        config=module.config.to_dict(),
        hardware_aware=module.hardware_aware,
        device_index=module.device_index,
        ideal=bool(module.ideal),
    )
    return spec


def _children_spec(module: torch.nn.Module, path: str, ideal: bool) -> list:
    return [[name, _spec(child, f"{path}.{name}", ideal)] for name, child in module.named_children()]


def _network_spec(module: torch.nn.Module, path: str, ideal: bool) -> dict:
    from .convert.network import FORMAT as NETWORK_FORMAT

    return {
        "type": "SpikingNetwork",
        "format": NETWORK_FORMAT,
        "steps": [dataclasses.asdict(s) for s in module.steps],
        "layers": {name: _spec(layer, f"{path}.{name}", ideal) for name, layer in module.named_layers()},
        "info": module.info,
    }


def _spec(module: torch.nn.Module, path: str, ideal: bool) -> dict:
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"layer {path!r} is not a torch.nn.Module but {type(module).__name__}")
    cls = type(module)
    name = cls.__name__
    if cls is TimeDistributed:
        return {"type": "TimeDistributed", "module": _spec(module.module, f"{path}.module", ideal)}
    if cls is Flatten:
        return {"type": "Flatten"}
    if cls is Sequential:
        return {"type": "Sequential", "layers": [_spec(m, f"{path}.layers.{i}", ideal) for i, m in enumerate(module)]}
    if cls is torch.nn.Sequential:
        return {"type": "torch.Sequential", "children": _children_spec(module, path, ideal)}
    if _NEURONS.get(name) is cls:
        return _neuron_spec(module)
    if cls in _TORCH_NAMES:
        return _torch_spec(module, _TORCH_NAMES[cls])
    if _CUSTOM_LAYERS.get(name) is cls:
        spec = {"type": name, **module.config()}
        if isinstance(module, snn.Neuron) and "backend" not in spec:
            spec["backend"] = module.backend
        return spec
    if _CONTAINERS.get(name) is cls:
        own = [k for k, v in {**module._parameters, **module._buffers}.items() if v is not None]
        extra = sorted(set(vars(module)) - _MODULE_ATTRS)
        if own or extra:
            raise _unsupported(module, path, f" (a registered container, but it has own state: {own + extra})")
        return {"type": name, "children": _children_spec(module, path, ideal)}
    from .convert.network import SpikingNetwork
    from .hardware.crossbar import CrossbarConv2d, CrossbarLinear

    if cls in (CrossbarLinear, CrossbarConv2d):
        return _crossbar_spec(module, ideal)
    if cls is SpikingNetwork:
        return _network_spec(module, path, ideal)
    raise _unsupported(module, path)


def module_spec(module: torch.nn.Module, *, ideal_crossbars: bool = False) -> dict:
    """A JSON-able description from which :func:`build_module` rebuilds ``module`` (a
    module of the same type and settings, with the same ``state_dict`` keys and shapes;
    the weights are stored separately).

    Args:
        module: a spikeflow model or layer (see the module docstring for the types).
        ideal_crossbars: describe crossbar layers as their plain ``Linear`` / ``Conv2d``.

    Raises:
        TypeError: a layer of a type that cannot be described, naming its path and class.
    """
    return _spec(module, "model", bool(ideal_crossbars))


# -- spec -> module -------------------------------------------------------------------------
_LEGACY_SHAPES = {  # the SpikingNetwork files written before the values were described
    "LIF": lambda c: {"beta": c.pop("beta_shape"), "threshold": c.pop("shape")},
    "IF": lambda c: {"beta": c["shape"], "threshold": c.pop("shape")},
    "LI": lambda c: {"beta": c.pop("shape")},
}


def _build_neuron(cls: type, config: dict) -> torch.nn.Module:
    name = cls.__name__
    values = config.pop("values", None)
    if values is None and name in _LEGACY_SHAPES:
        values = {k: {"shape": v, "learnable": False} for k, v in _LEGACY_SHAPES[name](config).items()}
    values = values or {}
    if not isinstance(values, dict) or set(values) != set(cls._VALUES):
        raise ValueError(f"{name} needs the values {sorted(cls._VALUES)}, got {values!r}")
    kwargs: dict[str, Any] = {}
    for key, setting in config.items():
        kwargs[key] = _surrogate(setting) if key == "surrogate" else setting
    for value, kind in cls._VALUES.items():
        entry = values[value]
        if not isinstance(entry, dict) or not isinstance(entry.get("shape"), list):
            raise ValueError(f"{name} value {value!r} must be saved as {{'shape', 'learnable'}}, got {entry!r}")
        shape = tuple(entry["shape"])
        if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise ValueError(f"{name} value {value!r} has an invalid shape {entry['shape']!r}")
        if cls is snn.IF and value == "beta":
            kwargs["shape"] = shape  # IF's beta is 1 of the parameter shape
            continue
        kwargs[value] = torch.full(shape, 0.5 if kind == "decay" else 1.0)  # placeholder, loaded after
        if entry.get("learnable", False) is not False:
            kwargs[f"learn_{value}"] = entry["learnable"]
    return cls(**kwargs)


def _build_torch(name: str, config: dict) -> torch.nn.Module:
    cls, _ = _TORCH_LAYERS[name]
    return cls(**{k: _argument(v) for k, v in config.items()})


def _build_crossbar(name: str, config: dict) -> torch.nn.Module:
    from .hardware.crossbar import CrossbarConv2d, CrossbarLinear
    from .hardware.device import CrossbarConfig

    cls = CrossbarLinear if name == "CrossbarLinear" else CrossbarConv2d
    crossbar = CrossbarConfig.from_dict(config.pop("config"))
    ideal = config.pop("ideal", False)
    layer = cls(**{k: _argument(v) for k, v in config.items()}, config=crossbar)
    layer.ideal = bool(ideal)
    return layer


def _build_children(container: torch.nn.Module, children: Any) -> torch.nn.Module:
    if not isinstance(children, list):
        raise ValueError(f"children must be a list of [name, layer] pairs, got {type(children).__name__}")
    for pair in children:
        if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)):
            raise ValueError(f"a child must be a [name, layer] pair, got {pair!r}")
        container.add_module(pair[0], build_module(pair[1]))
    return container


def build_module(spec: dict) -> torch.nn.Module:
    """The module that :func:`module_spec` described, with freshly initialised weights
    (load them with ``load_state_dict``).

    Raises:
        ValueError: an unknown layer type, or a description that does not fit it.
    """
    if not isinstance(spec, dict):
        raise ValueError(f"a layer must be described by a JSON object, got {type(spec).__name__}")
    config = dict(spec)
    kind = config.pop("type", None)
    if not isinstance(kind, str):
        raise ValueError(f"a layer description has no type: {spec!r}")
    if kind == "TimeDistributed":
        return TimeDistributed(build_module(config["module"]))
    if kind == "Flatten":
        return Flatten()
    if kind == "Sequential":
        layers = config["layers"]
        if not isinstance(layers, list):
            raise ValueError(f"Sequential layers must be a list, got {type(layers).__name__}")
        net = Sequential()
        net.layers = torch.nn.ModuleList(build_module(layer) for layer in layers)  # exactly as saved
        return net
    if kind == "torch.Sequential":
        return _build_children(torch.nn.Sequential(), config["children"])
    if kind in _NEURONS:
        return _build_neuron(_NEURONS[kind], config)
    if kind in _TORCH_LAYERS:
        return _build_torch(kind, config)
    if kind in _CROSSBARS:
        return _build_crossbar(kind, config)
    if kind == "SpikingNetwork":
        from .convert.network import SpikingNetwork

        return SpikingNetwork.from_spec(config)
    if kind not in _CUSTOM_LAYERS and kind not in _CONTAINERS:
        _load_registrations()
    if kind in _CUSTOM_LAYERS:
        cls = _CUSTOM_LAYERS[kind]
        backend = config.pop("backend", None) if issubclass(cls, snn.Neuron) else None
        layer = cls.from_config(config)
        if backend is not None:
            layer.backend = _check_backend(backend)
        return layer
    if kind in _CONTAINERS:
        cls = _CONTAINERS[kind]
        container = cls.__new__(cls)
        torch.nn.Module.__init__(container)
        return _build_children(container, config["children"])
    raise ValueError(
        f"unknown layer type {kind!r}; a custom class must be registered (spikeflow.saving.register_layer "
        f"or register_container) before loading"
    )


# -- the file ------------------------------------------------------------------------------
def _tensors(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Contiguous CPU copies of the state, each shared tensor once, and the aliases."""
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"state_dict entry {key!r} is a {type(value).__name__}, not a tensor")
        if value.layout != torch.strided:
            raise TypeError(f"state_dict entry {key!r} is a {value.layout} tensor; only dense tensors are saved")
        value = value.detach()
        if value.numel() > 0:
            identity = (value.device, value.untyped_storage().data_ptr(), value.storage_offset(),
                        tuple(value.shape), value.stride(), value.dtype)
            if identity in seen:
                aliases[key] = seen[identity]
                continue
            seen[identity] = key
        tensors[key] = value.to("cpu", copy=True).contiguous()
    return tensors, aliases


def save(model: torch.nn.Module, path: str | os.PathLike, *, metadata: Optional[dict] = None) -> Path:
    """Write ``model`` (architecture and weights) to ``path`` as one safetensors file,
    atomically: a failure leaves the previous file at ``path`` as it was.

    Args:
        model: a spikeflow model (see :func:`module_spec` for the layer types).
        path: the file to write (``.safetensors`` by convention).
        metadata: JSON-able values stored with the model (:func:`load_metadata`).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        TypeError: a layer that cannot be saved (naming its path and class), or
            metadata that is not JSON.
    """
    from safetensors.torch import save as serialize

    from . import __version__

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"spikeflow.save takes a torch.nn.Module, got {type(model).__name__}")
    if metadata is not None and not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict of JSON-able values, got {type(metadata).__name__}")
    try:
        architecture = json.dumps(module_spec(model), allow_nan=True)
        user = json.dumps(metadata or {}, allow_nan=False)
    except ValueError as exc:
        raise TypeError(f"the model's settings or metadata are not JSON: {exc}") from exc
    tensors, aliases = _tensors(model.state_dict())
    frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
    header = {
        "format": FORMAT,
        "architecture": architecture,
        "user": user,
        "aliases": json.dumps(aliases),
        "frozen": json.dumps(frozen),
        "spikeflow_version": __version__,
    }
    return atomic_write_bytes(path, serialize(tensors, metadata=header))


def _read_header(path: Path) -> tuple[dict[str, dict], dict[str, str]]:
    """``(tensor entries, metadata)`` of a safetensors file, checked against its size."""
    if not path.is_file():
        raise FileNotFoundError(f"saved model {path} does not exist")
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                raise ModelFileError(f"{path} is not a safetensors file: it is truncated ({size} bytes)")
            length = int.from_bytes(head, "little")
            if length > MAX_HEADER_BYTES:
                raise ModelFileError(f"{path} is not a safetensors file: oversized header of {length} bytes")
            if length > size - 8:
                raise ModelFileError(
                    f"{path} is truncated or not a safetensors file: its header length {length} is "
                    f"larger than the file ({size} bytes)"
                )
            raw = handle.read(length)
    except OSError as exc:
        raise ModelFileError(f"{path} cannot be read: {exc}") from exc
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ModelFileError(f"{path} is corrupt: its safetensors header is not valid JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise ModelFileError(f"{path} is corrupt: its safetensors header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ModelFileError(f"{path} is corrupt: its safetensors metadata is not a map of strings")
    data = size - 8 - length
    for key, entry in header.items():
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_size(o) for o in offsets)
                and isinstance(shape, list) and all(_is_size(d) for d in shape) and offsets[0] <= offsets[1]):
            raise ModelFileError(
                f"{path} is corrupt: tensor {key!r} has an invalid header entry (expected non-negative integer "
                f"data_offsets [begin, end] and shape, found {_short(entry)})"
            )
        dtype = entry.get("dtype")
        if not isinstance(dtype, str) or dtype not in _SAFETENSORS_DTYPES:
            raise ModelFileError(
                f"{path} is corrupt: tensor {key!r} has an unknown dtype {_short(dtype)} "
                f"(expected one of {', '.join(_SAFETENSORS_DTYPES)})"
            )
        if offsets[1] > data:
            raise ModelFileError(
                f"{path} is truncated: tensor {key!r} ends at byte {offsets[1]} of the data, which has {data}"
            )
        needed = _numel(shape) * _SAFETENSORS_DTYPES[dtype]
        if offsets[1] - offsets[0] != needed:
            raise ModelFileError(
                f"{path} is corrupt: tensor {key!r} of shape {shape} and dtype {dtype} needs {needed} bytes, "
                f"its header gives it {offsets[1] - offsets[0]}"
            )
    if metadata.get("format") != FORMAT:
        raise ModelFileError(
            f"{path} is not a saved spikeflow model (expected format {FORMAT!r}, found {metadata.get('format')!r})"
        )
    return header, metadata


def _is_size(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _numel(shape: Any) -> int:
    count = 1
    for size in shape:
        count *= int(size)
    return count


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _count_layers(spec: Any) -> int:
    """How many JSON objects ``spec`` holds (an upper bound on its layers), without recursion."""
    count, stack = 0, [spec]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            count += 1
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return count


def _json(path: Path, metadata: dict, key: str, kind: type) -> Any:
    if key not in metadata:
        raise ModelFileError(f"{path} is corrupt: its metadata has no {key!r} entry")
    try:
        value = json.loads(metadata[key])
    except (ValueError, RecursionError) as exc:
        raise ModelFileError(f"{path} is corrupt: its {key} is not valid JSON ({exc})") from exc
    if not isinstance(value, kind):
        raise ModelFileError(f"{path} is corrupt: its {key} is not a JSON {kind.__name__}")
    return value


class _TooLarge(Exception):
    """Raised inside :class:`_AllocationBudget` when a build asks for too much."""

    def __init__(self, shape: list, total: int, budget: int) -> None:
        super().__init__(shape, total, budget)
        self.shape, self.total, self.budget = shape, total, budget


def _elements(value: Any) -> Optional[int]:
    """The element count of a size argument (a list of ints), else None."""
    if isinstance(value, (list, tuple, torch.Size)) and all(isinstance(v, int) for v in value):
        return _numel(max(int(v), 0) for v in value)
    return None


class _AllocationBudget(TorchDispatchMode):
    """A dispatch mode that refuses any torch operation that would allocate more than
    ``budget`` elements at once, or factory calls (``empty``, ``full``, ``zeros``, ...)
    whose sizes add up to more than ``budget``: it looks at the requested sizes before
    the operation runs, so nothing large is ever allocated."""

    def __init__(self, budget: int) -> None:
        super().__init__()
        self.budget, self.total = budget, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        schema = func._schema
        if not schema.is_mutable and not getattr(func, "is_view", False):
            requested, shape, factory = 0, [], False
            values = list(args) + [kwargs.get(a.name) for a in schema.arguments[len(args):]]
            for argument, value in zip(schema.arguments, values):
                if isinstance(value, torch.Tensor):
                    if value.numel() > requested:
                        requested, shape = value.numel(), list(value.shape)
                elif argument.name in ("size", "repeats") and _elements(value) is not None:
                    count = _elements(value)
                    if argument.name == "repeats" and args and isinstance(args[0], torch.Tensor):
                        count *= args[0].numel()
                    factory = factory or argument.name == "size"
                    if count > requested:
                        requested, shape = count, list(value)
            if factory:
                self.total += requested
            if requested > self.budget or self.total > self.budget:
                raise _TooLarge(shape, max(requested, self.total), self.budget)
        return func(*args, **kwargs)


def _innermost_layer(tb) -> str:
    """The type of the innermost layer :func:`build_module` was building in a traceback."""
    kind = "?"
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code is build_module.__code__ and isinstance(frame.f_locals.get("kind"), str):
            kind = frame.f_locals["kind"]
        tb = tb.tb_next
    return kind


def build_bounded(architecture: Any, shapes: dict[str, list], path: str) -> torch.nn.Module:
    """:func:`build_module` for a description read from the file ``path`` whose
    tensors have ``shapes`` (``{state_dict key: shape}``), without trusting the
    description: while it builds, every torch allocation is compared, before it
    happens, with the number of elements the file's tensors hold (plus
    :data:`MAX_UNSAVED_ELEMENTS` for buffers that are not saved), so a description
    that asks for layers larger than the file (``Linear(10**6, 10**6)`` in a file of a
    few kilobytes) is refused without allocating them. The built module's
    ``state_dict`` must then have exactly the keys and shapes of ``shapes``.

    Raises:
        ModelFileError: too many layers, a description that cannot be built, one that
            asks for more memory than the file's tensors, or one whose tensors are not
            those in the file; the message names the file, the layer and the sizes.
    """
    layers = _count_layers(architecture)
    if layers > MAX_LAYERS:
        raise ModelFileError(f"{path}: its architecture describes {layers} objects, more than the {MAX_LAYERS} allowed")
    held = sum(_numel(shape) for shape in shapes.values())
    budget = 2 * held + MAX_UNSAVED_ELEMENTS
    try:
        with _AllocationBudget(budget):
            model = build_module(architecture)
    except _TooLarge as exc:
        raise ModelFileError(
            f"{path} does not fit its architecture: a {_innermost_layer(exc.__traceback__)} layer asks for a tensor "
            f"of shape {exc.shape} ({_numel(exc.shape)} elements, {exc.total} with what was built before it), but "
            f"the file's tensors hold {held} elements (at most {budget} are allowed while building)"
        ) from None
    except Exception as exc:  # any failure to rebuild is a bad file, whatever raised it
        raise ModelFileError(f"{path}: its architecture cannot be rebuilt: {_reason(exc)}") from exc
    expected = model.state_dict()
    missing = [k for k in expected if k not in shapes]
    unexpected = sorted(set(shapes) - set(expected))
    if missing or unexpected:
        parts = [f"missing tensors {missing}"] if missing else []
        parts += [f"unexpected tensors {unexpected}"] if unexpected else []
        raise ModelFileError(f"{path} does not fit its architecture: {'; '.join(parts)}")
    for key, tensor in expected.items():
        if list(tensor.shape) != list(shapes[key]):
            layer = key.rpartition(".")[0]
            kind = type(model.get_submodule(layer)).__name__
            raise ModelFileError(
                f"{path} does not fit its architecture: tensor {key!r} has shape {list(shapes[key])}, "
                f"the architecture (layer {layer!r}, {kind}) needs {list(tensor.shape)}"
            )
    return model


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def load_metadata(path: str | os.PathLike) -> dict:
    """The ``metadata`` dict given to :func:`save` (reads the header only).

    Raises:
        FileNotFoundError: no file at ``path``.
        ModelFileError: the file is not a readable saved spikeflow model.
    """
    path = Path(path)
    _, metadata = _read_header(path)
    return _json(path, metadata, "user", dict)


def _device(map_location: Any) -> torch.device:
    try:
        return torch.device(map_location)
    except (TypeError, RuntimeError) as exc:
        raise ValueError(f"map_location must be a device such as 'cpu' or 'cuda:0', got {map_location!r}") from exc


def _compatible(expected: torch.Tensor, found: torch.Tensor) -> bool:
    if expected.is_floating_point() and found.is_floating_point():
        return True  # a model kept in another float precision loads as it was saved
    return expected.dtype == found.dtype


def load(path: str | os.PathLike, *, map_location: Any = "cpu") -> torch.nn.Module:
    """Read a model that :func:`save` wrote, without unpickling anything.

    Args:
        path: the saved file.
        map_location: the device of the loaded tensors.

    Returns:
        The model, in eval mode, with the saved weights in the dtypes they were saved in.

    Raises:
        FileNotFoundError: no file at ``path``.
        ModelFileError: (a :class:`~spikeflow.train.checkpoint.CheckpointError`) the file
            is truncated, corrupt, not a saved spikeflow model, names an unknown layer
            type, or its tensors do not fit its architecture; the message names the file.

    Whatever the file holds, nothing else is raised, no code it names runs, and memory
    stays bounded by what it holds: the safetensors header is checked against the
    file's size (every tensor's bytes against its shape and dtype), and the
    architecture is built under :func:`build_bounded`, which refuses a layer larger
    than the file's tensors before allocating it.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    device = _device(map_location)
    entries, metadata = _read_header(path)
    architecture = _json(path, metadata, "architecture", dict)
    aliases = _json(path, metadata, "aliases", dict) if "aliases" in metadata else {}
    frozen = _json(path, metadata, "frozen", list) if "frozen" in metadata else []
    _json(path, metadata, "user", dict)  # the whole header is checked, though the model does not need it
    for key, target in aliases.items():
        if not isinstance(target, str) or target not in entries or key in entries:
            raise ModelFileError(f"{path} is corrupt: alias {key!r} -> {target!r} names no stored tensor")
    shapes = {key: entries[aliases.get(key, key)]["shape"] for key in set(entries) | set(aliases)}
    model = build_bounded(architecture, shapes, str(path))
    expected = model.state_dict()
    try:
        stored = {}
        with safe_open(str(path), framework="pt", device=str(device)) as handle:
            for key in entries:
                stored[key] = handle.get_tensor(key)
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError, KeyError, OverflowError) as exc:
        raise ModelFileError(f"{path} is corrupt or truncated: safetensors cannot read it ({exc})") from exc
    state = {key: stored[aliases.get(key, key)] for key in expected}
    for key, tensor in expected.items():
        if not _compatible(tensor, state[key]):
            raise ModelFileError(
                f"{path} does not fit its architecture: tensor {key!r} has dtype {state[key].dtype}, "
                f"the architecture needs {tensor.dtype}"
            )
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except (RuntimeError, ValueError, TypeError) as exc:  # pragma: no cover - checked above
        raise ModelFileError(f"{path} does not fit its architecture: {exc}") from exc
    parameters = dict(model.named_parameters())
    for name in frozen:
        if isinstance(name, str) and name in parameters:
            parameters[name].requires_grad_(False)
    return model.to(device).eval()
