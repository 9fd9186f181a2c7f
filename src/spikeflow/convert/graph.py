"""The first stage of conversion: a trained ANN as a small graph of known layers.

:func:`trace` captures a ``torch.nn.Module`` with ``torch.fx`` (on a deep copy, in
eval mode; torch itself is never patched) and maps every node onto one of the
layer kinds in :class:`Kind`. Anything else raises a :class:`ConversionError` that
names the node, its place in the graph and what is supported. The result, a
:class:`LayerGraph`, is what every later stage (folding, calibration, replacement
by spiking layers) reads and rewrites; it can also run as the ANN it came from,
which is how each stage is checked.
"""

from __future__ import annotations

import copy
import operator
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional

import torch
import torch.fx
import torch.nn.functional as F

from .._choice import Choice

__all__ = ["ConversionError", "Kind", "LayerGraph", "Node", "SUPPORTED", "trace"]


class ConversionError(ValueError):
    """A model, or a part of it, that cannot be converted (the message says why)."""


class Kind(Choice):
    """What a node of a :class:`LayerGraph` computes."""

    INPUT = "input"
    LINEAR = "linear"  # torch.nn.Linear
    CONV = "conv"  # torch.nn.Conv1d / Conv2d
    BATCHNORM = "batchnorm"  # torch.nn.BatchNorm1d / 2d (eval statistics)
    RELU = "relu"  # max(x, 0); attrs["max"] set for a clipped ReLU
    MAXPOOL = "maxpool"
    AVGPOOL = "avgpool"  # AvgPool1d/2d and AdaptiveAvgPool1d/2d
    FLATTEN = "flatten"  # flatten every feature dimension: [B, ...] -> [B, F]
    ADD = "add"
    CAT = "cat"  # attrs["dim"]: the feature dimension (>= 1)
    ACTIVATION = "activation"  # a spikeflow conversion activation (QCFS, ASN transfer)
    OUTPUT = "output"

    @classmethod
    def _what(cls) -> str:
        return "layer kind"


#: What :func:`trace` accepts, for error messages and the docs.
SUPPORTED = (
    "Linear, Conv1d, Conv2d, BatchNorm1d/2d, ReLU (also F.relu, torch.relu, clamp(min=0)), "
    "clipped ReLU (ReLU6, Hardtanh(0, m), clamp(0, m)), MaxPool1d/2d, AvgPool1d/2d, "
    "AdaptiveAvgPool1d/2d, Flatten (also torch.flatten(x, 1), x.view(x.size(0), -1)), "
    "Dropout and Identity (removed), residual add (x + y, torch.add), "
    "torch.cat along a feature dimension, and spikeflow.convert activations (QCFS, ASNActivation)"
)


@dataclass
class Node:
    """One layer of a :class:`LayerGraph`.

    Attributes:
        name: unique name (the module path, or the fx node name for functions).
        kind: what it computes.
        inputs: names of the nodes it reads, in order.
        module: the torch module holding its weights or settings (Linear, Conv,
            BatchNorm, pooling, a conversion activation), None for the others.
        attrs: settings that are not in a module (``max`` of a clipped ReLU,
            ``dim`` of a cat).
        where: where it came from in the traced model, for error messages.
    """

    name: str
    kind: Kind
    inputs: list[str]
    module: Optional[torch.nn.Module] = None
    attrs: dict[str, Any] = field(default_factory=dict)
    where: str = ""

    def __repr__(self) -> str:
        extra = f", {self.attrs}" if self.attrs else ""
        module = f", {type(self.module).__name__}" if self.module is not None else ""
        return f"Node({self.name!r}, {self.kind.value}, inputs={self.inputs}{module}{extra})"


def _pool_module(fn: Callable, args: tuple, kwargs: dict) -> torch.nn.Module:
    """A pooling function call as the equivalent module."""
    rest = list(args[1:])
    names = {
        F.max_pool1d: (torch.nn.MaxPool1d, ["kernel_size", "stride", "padding", "dilation", "ceil_mode"]),
        F.max_pool2d: (torch.nn.MaxPool2d, ["kernel_size", "stride", "padding", "dilation", "ceil_mode"]),
        F.avg_pool1d: (torch.nn.AvgPool1d, ["kernel_size", "stride", "padding", "ceil_mode", "count_include_pad"]),
        F.avg_pool2d: (torch.nn.AvgPool2d, ["kernel_size", "stride", "padding", "ceil_mode", "count_include_pad"]),
        F.adaptive_avg_pool1d: (torch.nn.AdaptiveAvgPool1d, ["output_size"]),
        F.adaptive_avg_pool2d: (torch.nn.AdaptiveAvgPool2d, ["output_size"]),
    }
    cls, params = names[fn]
    options = dict(zip(params, rest))
    options.update({k: v for k, v in kwargs.items() if k in params})
    if "return_indices" in kwargs and kwargs["return_indices"]:
        raise ConversionError("max pooling with return_indices=True cannot be converted")
    return cls(**options)


_POOL_FUNCTIONS = (F.max_pool1d, F.max_pool2d, F.avg_pool1d, F.avg_pool2d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d)
_RELU_FUNCTIONS = (F.relu, torch.relu, torch.nn.functional.relu_)
_ADD_FUNCTIONS = (operator.add, operator.iadd, torch.add)
_IDENTITY_FUNCTIONS = (F.dropout, F.dropout1d, F.dropout2d, torch.nn.functional.alpha_dropout)


class LayerGraph:
    """A trained network as a list of :class:`Node` in execution order.

    ``graph.run(x)`` evaluates it as an ANN on ``[B, ...]``; ``graph.run(x,
    record=True)`` also returns every node's output (calibration reads the
    activations from it).
    """

    def __init__(self, nodes: list[Node], input_shape: Optional[tuple[int, ...]] = None) -> None:
        self.nodes = list(nodes)
        self.input_shape = input_shape
        self._check()

    # -- structure -------------------------------------------------------------------
    def _check(self) -> None:
        names = set()
        for node in self.nodes:
            if node.name in names:
                raise ConversionError(f"duplicate node name {node.name!r}")
            for i in node.inputs:
                if i not in names:
                    raise ConversionError(f"node {node.name!r} reads {i!r} before it is computed")
            names.add(node.name)
        kinds = [n.kind for n in self.nodes]
        if kinds.count(Kind.INPUT) != 1 or kinds[0] is not Kind.INPUT:
            raise ConversionError("a convertible model has exactly one tensor input")
        if kinds.count(Kind.OUTPUT) != 1 or kinds[-1] is not Kind.OUTPUT:
            raise ConversionError("a convertible model returns exactly one tensor")

    def __getitem__(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def __iter__(self):
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def users(self, name: str) -> list[Node]:
        """The nodes that read ``name``."""
        return [n for n in self.nodes if name in n.inputs]

    def remove(self, name: str) -> None:
        """Drop a node with one input; its users read that input instead."""
        node = self[name]
        if len(node.inputs) != 1:
            raise ConversionError(f"cannot bypass node {name!r} with {len(node.inputs)} inputs")
        for user in self.users(name):
            user.inputs = [node.inputs[0] if i == name else i for i in user.inputs]
        self.nodes.remove(node)

    def copy(self) -> "LayerGraph":
        """A deep copy (modules included)."""
        return LayerGraph(copy.deepcopy(self.nodes), self.input_shape)

    def __repr__(self) -> str:
        lines = "\n".join(f"  {n!r}" for n in self.nodes)
        return f"LayerGraph(\n{lines}\n)"

    # -- evaluation ------------------------------------------------------------------
    def run(self, x: torch.Tensor, record: bool = False, what: str = "input"):
        """Evaluate as an ANN on ``x`` (``[B, ...]``): the output, and with ``record``
        also a dict of every node's output.

        Raises:
            ValueError: ``x`` does not fit a layer (naming ``what``, its shape and the
                layer), instead of torch's bare shape or dtype error.
        """
        values: dict[str, torch.Tensor] = {}
        out = None
        for node in self.nodes:
            args = [values[i] for i in node.inputs]
            if node.kind is Kind.INPUT:
                y = x
            elif node.kind is Kind.OUTPUT:
                y = out = args[0]
            else:
                try:
                    y = apply_ann(node, args)
                except torch.cuda.OutOfMemoryError:
                    raise
                except RuntimeError as exc:  # a bare torch shape / dtype error: say where
                    shapes = ", ".join(str(tuple(a.shape)) for a in args)
                    raise ValueError(
                        f"{what} of shape {tuple(x.shape)} and dtype {x.dtype} does not fit the model: "
                        f"{node.where or repr(node.name)} got {shapes}: {exc}"
                    ) from exc
            values[node.name] = y
        return (out, values) if record else out

    def check_finite(self) -> None:
        """Refuse NaN or Inf in any weight, bias or buffer (BatchNorm statistics): one
        such value poisons every spike downstream; and a negative BatchNorm variance.

        Raises:
            ValueError: naming the parameter (``node.parameter``) and what it holds.
        """
        for node in self.nodes:
            if node.module is None:
                continue
            tensors = list(node.module.named_parameters()) + list(node.module.named_buffers())
            for pname, tensor in tensors:
                if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                    nan = int(torch.isnan(tensor).sum())
                    inf = int(torch.isinf(tensor).sum())
                    raise ValueError(
                        f"parameter {node.name}.{pname} of shape {tuple(tensor.shape)} holds {nan} NaN and "
                        f"{inf} Inf values; expected finite weights (a NaN or Inf weight poisons every "
                        f"spike after it): retrain or repair the model before conversion"
                    )
            var = getattr(node.module, "running_var", None)
            if isinstance(node.module, torch.nn.modules.batchnorm._BatchNorm) and var is not None and bool((var < 0).any()):
                raise ValueError(
                    f"parameter {node.name}.running_var must be >= 0 (a variance), got min {float(var.min()):.4g}"
                )


def apply_ann(node: Node, args: list[torch.Tensor]) -> torch.Tensor:
    """One node evaluated as an ANN layer on ``[B, ...]`` inputs."""
    kind = node.kind
    if kind in (Kind.LINEAR, Kind.CONV, Kind.BATCHNORM, Kind.MAXPOOL, Kind.AVGPOOL, Kind.ACTIVATION):
        return node.module(args[0])
    if kind is Kind.RELU:
        y = torch.relu(args[0])
        return y.clamp(max=node.attrs["max"]) if node.attrs.get("max") is not None else y
    if kind is Kind.FLATTEN:
        return args[0].flatten(1)
    if kind is Kind.ADD:
        return args[0] + args[1]
    if kind is Kind.CAT:
        return torch.cat(args, dim=node.attrs["dim"])
    raise ConversionError(f"node {node.name!r} of kind {kind.value} cannot be evaluated")


# -- tracing ---------------------------------------------------------------------------
class _Tracer(torch.fx.Tracer):
    """Keeps conversion activations (and nothing else of spikeflow) as leaves."""

    def is_leaf_module(self, m: torch.nn.Module, qualname: str) -> bool:
        if getattr(m, "conversion_activation", False):
            return True
        return super().is_leaf_module(m, qualname)


def _describe(node: torch.fx.Node, position: int, total: int, modules: dict) -> str:
    target = node.target
    if node.op == "call_module":
        return f"layer {target!r} ({type(modules[target]).__name__}) at position {position} of {total}"
    elif callable(target):
        what = f"{node.op} {getattr(target, '__module__', '')}.{getattr(target, '__name__', target)}"
    else:
        what = f"{node.op} {target}"
    return f"node {node.name!r} ({what}) at position {position} of {total}"


def _is_batch_size(arg: Any) -> bool:
    """``x.size(0)`` or ``x.shape[0]`` in a traced graph."""
    if not isinstance(arg, torch.fx.Node):
        return False
    if arg.op == "call_method" and arg.target == "size" and tuple(arg.args[1:]) == (0,):
        return True
    return arg.op == "call_function" and arg.target is operator.getitem and arg.args[1] == 0 and (
        isinstance(arg.args[0], torch.fx.Node)
        and arg.args[0].op in ("call_function", "call_method")
        and getattr(arg.args[0], "target", None) in ("size", getattr)
    )


def trace(model: torch.nn.Module, input_shape: Optional[Iterable[int]] = None) -> LayerGraph:
    """Capture ``model`` as a :class:`LayerGraph` (on a deep copy in eval mode).

    Args:
        model: any ``torch.nn.Module`` that ``torch.fx`` can trace whose layers are in
            :data:`SUPPORTED`.
        input_shape: the shape of one sample (without the batch), kept for later
            stages; optional.

    Raises:
        ConversionError: naming the first node that cannot be converted.
        TypeError: ``model`` is not a module.
        ValueError: ``input_shape`` is not a tuple of positive ints.
    """
    if isinstance(model, LayerGraph):
        return model.copy()
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module or a LayerGraph, got {type(model).__name__}")
    model = copy.deepcopy(model).eval()
    try:
        fx_graph = _Tracer().trace(model)
    except Exception as exc:  # fx raises many types for untraceable control flow
        raise ConversionError(
            f"torch.fx cannot trace {type(model).__name__}: {exc}. Models with data-dependent "
            f"control flow must be rewritten (or exported to ONNX) before conversion"
        ) from exc
    modules = dict(model.named_modules())
    fx_nodes = list(fx_graph.nodes)
    total = len(fx_nodes)
    nodes: list[Node] = []
    alias: dict[str, str] = {}  # fx node name -> LayerGraph node name (for removed nodes)
    shape_nodes: set[str] = set()  # size()/shape nodes, used only by view/reshape

    def ref(a: Any, where: str) -> str:
        if not isinstance(a, torch.fx.Node):
            raise ConversionError(f"{where}: expected a tensor argument, got the constant {a!r}")
        if a.name in shape_nodes:
            raise ConversionError(f"{where}: uses a tensor's shape as a value; only x.view(x.size(0), -1) is supported")
        return alias.get(a.name, a.name)

    def add(name: str, kind: Kind, inputs: list[str], module=None, where: str = "", **attrs) -> None:
        nodes.append(Node(name, kind, inputs, module, attrs, where))
        if name != current.name:
            alias[current.name] = name

    for position, fx in enumerate(fx_nodes):
        current = fx
        where = _describe(fx, position, total, modules)
        unsupported = ConversionError(f"{where} cannot be converted; supported layers: {SUPPORTED}")
        if fx.op == "placeholder":
            if any(n.kind is Kind.INPUT for n in nodes):
                raise ConversionError(f"{where}: a convertible model takes exactly one tensor input")
            add(fx.name, Kind.INPUT, [], where=where)
            continue
        if fx.op == "output":
            if not isinstance(fx.args[0], torch.fx.Node):
                raise ConversionError(f"{where}: a convertible model returns exactly one tensor")
            add("output", Kind.OUTPUT, [ref(fx.args[0], where)], where=where)
            continue
        if fx.op == "get_attr":
            raise ConversionError(
                f"{where} reads a parameter or buffer directly; put it in a supported layer"
            )
        if fx.op == "call_module":
            module = modules[fx.target]
            name = str(fx.target)
            x = ref(fx.args[0], where)
            if isinstance(module, (torch.nn.Dropout, torch.nn.Dropout1d, torch.nn.Dropout2d, torch.nn.Identity)):
                alias[fx.name] = x
            elif isinstance(module, torch.nn.Linear):
                add(name, Kind.LINEAR, [x], module, where)
            elif isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d)):
                if module.padding_mode != "zeros":
                    raise ConversionError(f"{where}: only zero padding is supported, got {module.padding_mode!r}")
                add(name, Kind.CONV, [x], module, where)
            elif isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                add(name, Kind.BATCHNORM, [x], module, where)
            elif isinstance(module, torch.nn.ReLU):
                add(name, Kind.RELU, [x], where=where)
            elif isinstance(module, torch.nn.ReLU6):
                add(name, Kind.RELU, [x], where=where, max=6.0)
            elif isinstance(module, torch.nn.Hardtanh) and module.min_val == 0.0:
                add(name, Kind.RELU, [x], where=where, max=float(module.max_val))
            elif isinstance(module, (torch.nn.MaxPool1d, torch.nn.MaxPool2d)):
                if module.return_indices:
                    raise ConversionError(f"{where}: max pooling with return_indices=True cannot be converted")
                add(name, Kind.MAXPOOL, [x], module, where)
            elif isinstance(module, (torch.nn.AvgPool1d, torch.nn.AvgPool2d, torch.nn.AdaptiveAvgPool1d, torch.nn.AdaptiveAvgPool2d)):
                add(name, Kind.AVGPOOL, [x], module, where)
            elif isinstance(module, torch.nn.Flatten):
                if module.start_dim != 1 or module.end_dim != -1:
                    raise ConversionError(f"{where}: only Flatten(start_dim=1, end_dim=-1) is supported")
                add(name, Kind.FLATTEN, [x], where=where)
            elif getattr(module, "conversion_activation", False):
                add(name, Kind.ACTIVATION, [x], module, where)
            else:
                raise unsupported
            continue
        target = fx.target
        if fx.op == "call_method":
            if target == "size" or target == "dim":
                shape_nodes.add(fx.name)
                continue
            x = ref(fx.args[0], where)
            if target in ("relu", "relu_"):
                add(fx.name, Kind.RELU, [x], where=where)
            elif target == "flatten" and tuple(fx.args[1:]) in ((1,), (1, -1)) and not fx.kwargs:
                add(fx.name, Kind.FLATTEN, [x], where=where)
            elif target in ("view", "reshape") and len(fx.args) == 3 and _is_batch_size(fx.args[1]) and fx.args[2] == -1:
                add(fx.name, Kind.FLATTEN, [x], where=where)
            elif target in ("add", "add_") and len(fx.args) == 2 and isinstance(fx.args[1], torch.fx.Node):
                add(fx.name, Kind.ADD, [x, ref(fx.args[1], where)], where=where)
            elif target in ("clamp", "clamp_", "clip") and _clamp_bounds(fx) is not None:
                low, high = _clamp_bounds(fx)
                add(fx.name, Kind.RELU, [x], where=where, **({"max": high} if high is not None else {}))
            elif target in ("contiguous", "detach"):
                alias[fx.name] = x
            else:
                raise unsupported
            continue
        # call_function
        if target is getattr:
            if fx.args[1] == "shape":
                shape_nodes.add(fx.name)
                continue
            raise unsupported
        if target is operator.getitem and isinstance(fx.args[0], torch.fx.Node) and fx.args[0].name in shape_nodes:
            shape_nodes.add(fx.name)
            continue
        if target in _RELU_FUNCTIONS:
            add(fx.name, Kind.RELU, [ref(fx.args[0], where)], where=where)
        elif target is F.relu6:
            add(fx.name, Kind.RELU, [ref(fx.args[0], where)], where=where, max=6.0)
        elif target is F.hardtanh and _hardtanh_bounds(fx)[0] == 0.0:
            add(fx.name, Kind.RELU, [ref(fx.args[0], where)], where=where, max=_hardtanh_bounds(fx)[1])
        elif target in (torch.clamp, torch.clip) and _clamp_bounds(fx) is not None:
            low, high = _clamp_bounds(fx)
            add(fx.name, Kind.RELU, [ref(fx.args[0], where)], where=where, **({"max": high} if high is not None else {}))
        elif target in _ADD_FUNCTIONS:
            a, b = fx.args[0], fx.args[1]
            if not (isinstance(a, torch.fx.Node) and isinstance(b, torch.fx.Node)) or fx.kwargs.get("alpha", 1) != 1:
                raise ConversionError(f"{where}: only the sum of two tensors is supported (no constants, no alpha)")
            add(fx.name, Kind.ADD, [ref(a, where), ref(b, where)], where=where)
        elif target is torch.cat:
            tensors = fx.args[0]
            dim = fx.args[1] if len(fx.args) > 1 else fx.kwargs.get("dim", 0)
            if dim == 0:
                raise ConversionError(f"{where}: concatenation along the batch dimension cannot be converted")
            add(fx.name, Kind.CAT, [ref(t, where) for t in tensors], where=where, dim=int(dim))
        elif target is torch.flatten and tuple(fx.args[1:]) in ((1,), (1, -1)):
            add(fx.name, Kind.FLATTEN, [ref(fx.args[0], where)], where=where)
        elif target in _POOL_FUNCTIONS:
            module = _pool_module(target, fx.args, dict(fx.kwargs))
            kind = Kind.MAXPOOL if isinstance(module, (torch.nn.MaxPool1d, torch.nn.MaxPool2d)) else Kind.AVGPOOL
            add(fx.name, kind, [ref(fx.args[0], where)], module, where)
        elif target in _IDENTITY_FUNCTIONS:
            alias[fx.name] = ref(fx.args[0], where)
        else:
            raise unsupported
    for node in nodes:
        if node.kind is Kind.CAT and node.attrs["dim"] < 0:
            raise ConversionError(
                f"{node.where}: give the concatenation dimension as a positive index (got {node.attrs['dim']})"
            )
    shape = None
    if input_shape is not None:
        try:
            shape = tuple(input_shape)
        except TypeError:
            shape = None
        if not shape or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
            raise ValueError(f"input_shape must be a tuple of positive ints (one sample, no batch), got {input_shape!r}")
    return LayerGraph(nodes, shape)


def _clamp_bounds(fx: torch.fx.Node) -> Optional[tuple[float, Optional[float]]]:
    """``(0, max)`` for ``clamp(x, min=0[, max=m])``; None for anything else."""
    args = list(fx.args[1:])
    low = fx.kwargs.get("min", args[0] if args else None)
    high = fx.kwargs.get("max", args[1] if len(args) > 1 else None)
    if low != 0 and low != 0.0:
        return None
    if high is not None and not isinstance(high, (int, float)):
        return None
    return 0.0, (float(high) if high is not None else None)


def _hardtanh_bounds(fx: torch.fx.Node) -> tuple[float, float]:
    args = list(fx.args[1:])
    low = fx.kwargs.get("min_val", args[0] if args else -1.0)
    high = fx.kwargs.get("max_val", args[1] if len(args) > 1 else 1.0)
    return float(low), float(high)
