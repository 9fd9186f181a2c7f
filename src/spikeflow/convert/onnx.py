"""Import an ONNX model (for example a Keras / TensorFlow model exported with
``tf2onnx``, or a torch model exported with ``torch.onnx.export``) as a
:class:`~spikeflow.convert.graph.LayerGraph`.

:func:`load_onnx` parses the file with the ``onnx`` package (``pip install
spikeflow[onnx]``) and maps every ONNX operator onto the node kinds that
:func:`~spikeflow.convert.graph.trace` produces, with real torch modules holding
the weights (``torch.nn.Linear``, ``Conv1d`` / ``Conv2d``, ``BatchNorm1d`` / ``2d``
with running statistics, ``MaxPool``, ``AvgPool``, ``AdaptiveAvgPool``), so every
later stage (:func:`~spikeflow.convert.fold.fold_batchnorm`,
:func:`~spikeflow.convert.calibrate.calibrate`, the coding builders) works on the
result unchanged::

    from spikeflow.convert import calibrate, fold_batchnorm, rate_network
    from spikeflow.convert.onnx import load_onnx
    graph = fold_batchnorm(load_onnx("model.onnx"))
    snn = rate_network(graph, calibrate(graph, images))

ONNX operators and what they become (:data:`SUPPORTED_ONNX`):

* ``Gemm`` (``Y = alpha * A' B' + beta * C`` with ``A' = A``, ``B' = B`` or
  ``B^T``; ``transA = 1`` is rejected): a ``Linear`` with ``W = alpha * B'^T``,
  ``b = beta * C`` (``C`` a scalar, ``[out]`` or ``[1, out]``).
* ``MatMul`` by a constant ``[in, out]`` matrix: a ``Linear`` without bias
  (``W = B^T``); an ``Add`` of a constant right after it (Keras ``Dense``) becomes
  its bias. The same holds after ``Gemm`` and ``Conv``.
* ``Conv`` (1-d / 2-d, any group count, zero padding equal on both sides; ``auto_pad``
  ``NOTSET``, ``VALID``, or ``SAME_UPPER`` / ``SAME_LOWER`` where the total padding is
  even; uneven padding is rejected): ``Conv1d`` / ``Conv2d``.
* ``BatchNormalization`` (inference form): ``BatchNorm1d`` / ``BatchNorm2d`` with
  ``y = scale * (x - mean) / sqrt(var + epsilon) + B``.
* ``Relu``; ``Clip`` with ``min = 0`` (a clipped ReLU ``min(max(x, 0), max)``).
* ``MaxPool``, ``AveragePool`` (``count_include_pad`` kept; no dilation),
  ``GlobalAveragePool`` (``AdaptiveAvgPool(1)``), ``GlobalMaxPool`` (a ``MaxPool`` over
  the whole, known, spatial extent), ``ReduceMean`` over all spatial axes (Keras'
  global average pooling; ``keepdims = 0`` adds a flatten).
* ``Flatten`` (``axis = 1``), ``Reshape`` that flattens (to ``[N, -1]``, ``[0, -1]``,
  ``[-1, features]``, or ``[batch, -1]`` with the model's fixed batch size; the target
  may be computed from ``Shape`` / ``Gather`` / ``Unsqueeze`` / ``Concat``, as
  ``x.view(x.size(0), -1)`` exports), ``Squeeze`` of size-1 spatial axes: a flatten.
* ``Dropout``, ``Identity`` and ``Cast`` to a float type: removed.
* ``Add`` of two tensors (a residual connection), ``Concat`` along a feature axis.
* ``Softmax`` / ``LogSoftmax`` over the class axis, only as the very last operator:
  **dropped** (both are strictly increasing in each logit for fixed others with a
  shared normalizer, so the argmax, what a converted classifier reports, is
  unchanged; the imported graph outputs the logits).
* ``Constant``, and ``Shape`` / ``Gather`` / ``Slice`` / ``Unsqueeze`` / ``Squeeze`` /
  ``Concat`` / ``Cast`` / ``Reshape`` / ``Transpose`` / ``Add`` / ``Sub`` / ``Mul`` on constants:
  evaluated at import (shape arithmetic, weights that were not pre-folded).

**Channels-last (NHWC) models.** Keras exports take ``[N, H, W, C]`` inputs and
start with ``Transpose(perm=[0, 3, 1, 2])`` to the channels-first layout the ONNX
convolutions use (``[0, 2, 1]`` for ``[N, W, C]`` inputs). That leading Transpose is
**removed**: the imported graph, like every spikeflow layer, takes **channels-first**
inputs, ``graph.input_shape`` is the channels-first shape of one sample, and the
graph's input node records what was removed::

    graph.nodes[0].attrs == {"layout": "NHWC", "permute": (0, 3, 1, 2)}
    graph.run(x_nhwc.permute(*graph.nodes[0].attrs["permute"]))  # == the ONNX model

(The spiking networks built from the graph take channels-first inputs too.) The
``Transpose(perm=[0, 2, 3, 1])`` that Keras exports put back before a ``Flatten``
feeding a ``Dense`` layer is folded into that layer's weights (its input columns are
reordered), so the graph flattens in the channels-first order as ``trace`` does.
Any other Transpose is rejected.

Anything else raises :class:`~spikeflow.convert.graph.ConversionError` naming the ONNX
node (name, operator, position) and the supported list.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Any, Optional, Union

import numpy as np
import torch

from .graph import ConversionError, Kind, LayerGraph, Node

__all__ = ["SUPPORTED_ONNX", "load_onnx"]

#: The ONNX operators :func:`load_onnx` accepts (see the module docstring for the details).
SUPPORTED_ONNX = (
    "Gemm, MatMul (+ Add of a bias), Conv (1-d/2-d, symmetric padding), BatchNormalization, Relu, "
    "Clip(min=0[, max]), MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool, ReduceMean over the "
    "spatial axes, Flatten(axis=1), Reshape/Squeeze that flatten, Dropout, Identity, Add of two "
    "tensors, Concat along a feature axis, Softmax/LogSoftmax as the last operator, a leading "
    "channels-last Transpose, Transpose before a Flatten feeding Gemm/MatMul, and constant shape "
    "arithmetic (Constant, Shape, Gather, Slice, Unsqueeze, Squeeze, Concat, Cast)"
)

_FLOAT_TYPES = {1, 10, 11, 16}  # ONNX TensorProto FLOAT, FLOAT16, DOUBLE, BFLOAT16
_CONSTANT_OPS = {"Identity", "Dropout", "Cast", "Gather", "Slice", "Unsqueeze", "Squeeze", "Concat", "Reshape",
                 "Transpose", "Add", "Sub", "Mul"}


#: The most elements an importer array may have that the file's sizes declare rather
#: than hold (a per-channel constant broadcast to the declared channels, the feature
#: order of a flattened channels-last tensor, the result of folding constants).
MAX_DECLARED_ELEMENTS = 1 << 24


def _bounded(count: int, where: str, what: str) -> None:
    if count > MAX_DECLARED_ELEMENTS:
        raise ConversionError(
            f"{where}: {what} would have {count} elements, more than the {MAX_DECLARED_ELEMENTS} an import allows "
            f"(the file declares sizes far larger than the tensors it holds)"
        )


def _require_onnx():
    try:
        import onnx
        import onnx.numpy_helper  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "importing ONNX models needs the onnx package: pip install spikeflow[onnx]"
        ) from exc
    return onnx


class _Marker:
    """A value of a shape computation that is not known at import time."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


#: The batch size (``Shape(x)[0]``) and any other dimension the file does not fix.
_BATCH = _Marker("N")
_UNKNOWN = _Marker("?")


@dataclass
class _Tensor:
    """A tensor computed at run time.

    ``node``: the LayerGraph node computing it; ``shape``: its ONNX shape (int or None
    per axis, axis 0 the batch; None if the rank is unknown). A Transpose that is
    waiting for a Flatten leaves ``permutation`` (of the node's output, whose shape is
    ``base_shape``); a Flatten of such a tensor leaves ``columns``: feature ``j`` of
    the ONNX tensor is feature ``columns[j]`` of the node's (channels-first) output.
    """

    node: str
    shape: Optional[tuple]
    permutation: Optional[tuple[int, ...]] = None
    base_shape: Optional[tuple] = None
    columns: Optional[np.ndarray] = None

    @property
    def rank(self) -> Optional[int]:
        return None if self.shape is None else len(self.shape)


def _read(model: Any, onnx) -> tuple[Any, str]:
    """The ModelProto and a description of where it came from."""
    if isinstance(model, onnx.ModelProto):
        return model, "the ONNX model"
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"load_onnx expects a path to a .onnx file or an onnx.ModelProto, got {type(model).__name__}")
    path = os.fspath(model)
    if not os.path.exists(path):
        raise FileNotFoundError(f"ONNX file not found: {path}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"expected an ONNX file, got the directory {path}")
    try:
        proto = onnx.load(path)
    except Exception as exc:  # protobuf DecodeError, external-data errors, ...
        raise ConversionError(f"{path} is not a readable ONNX model: {type(exc).__name__}: {exc}") from exc
    return proto, path


def _shapes(model, onnx) -> dict[str, Optional[tuple]]:
    """ONNX shape of every tensor the file (after shape inference) describes."""
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:  # a model shape inference rejects: use the shapes the file gives
        pass
    shapes: dict[str, Optional[tuple]] = {}
    for info in list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output):
        t = info.type.tensor_type
        if not info.type.HasField("tensor_type") or not t.HasField("shape"):
            continue
        shapes[info.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)
    return shapes


def _float(array: np.ndarray) -> torch.Tensor:
    """A float32 torch copy of a numpy array."""
    return torch.tensor(np.asarray(array, dtype=np.float32))


def _axis(axis: int, rank: Optional[int], where: str) -> int:
    if axis >= 0:
        return axis
    if rank is None:
        raise ConversionError(f"{where}: negative axis {axis} on a tensor of unknown rank")
    return axis + rank


class _Importer:
    """Walks the ONNX graph once, in its (topological) order."""

    def __init__(self, model, source: str, onnx) -> None:
        self.onnx = onnx
        self.source = source
        graph = model.graph
        self.graph = graph
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
        self.shapes = _shapes(model, onnx)
        self.values: dict[str, Any] = {}
        self.nodes: list[Node] = []
        self.used_names = {"output"}
        self.uses: dict[str, int] = {}
        for n in graph.node:
            for i in n.input:
                self.uses[i] = self.uses.get(i, 0) + 1
        for o in graph.output:
            self.uses[o.name] = self.uses.get(o.name, 0) + 1
        for init in graph.initializer:
            self.values[init.name] = onnx.numpy_helper.to_array(init)

    # -- helpers ------------------------------------------------------------------------
    def unique(self, raw: str, fallback: str) -> str:
        base = re.sub(r"[^0-9A-Za-z_]+", "_", raw).strip("_") or fallback
        name, i = base, 1
        while name in self.used_names:
            name, i = f"{base}_{i}", i + 1
        self.used_names.add(name)
        return name

    def add(self, kind: Kind, inputs: list[str], where: str, raw: str, module=None, **attrs) -> str:
        name = self.unique(raw, kind.value)
        self.nodes.append(Node(name, kind, inputs, module, attrs, where))
        return name

    def shape(self, name: str) -> Optional[tuple]:
        return self.shapes.get(name)

    def attrs(self, node) -> dict[str, Any]:
        out = {}
        for a in node.attribute:
            value = self.onnx.helper.get_attribute_value(a)
            out[a.name] = value.decode() if isinstance(value, bytes) else value
        return out

    def value(self, name: str, where: str) -> Any:
        if name not in self.values:
            raise ConversionError(
                f"{where} reads {name!r}, which is not computed before it (the ONNX graph is not "
                f"topologically sorted, or the tensor is missing)"
            )
        return self.values[name]

    def tensor(self, node, index: int, where: str, *, permuted: bool = False, columns: bool = False) -> _Tensor:
        """Input ``index`` of ``node`` as a run-time tensor."""
        if index >= len(node.input) or not node.input[index]:
            raise ConversionError(f"{where}: input {index} is missing")
        v = self.value(node.input[index], where)
        if not isinstance(v, _Tensor):
            raise ConversionError(
                f"{where}: input {index} ({node.input[index]!r}) is a constant; a convertible layer reads "
                f"the network's activations there"
            )
        if v.permutation is not None and not permuted:
            raise ConversionError(
                f"{where} reads the output of a Transpose; a Transpose is only supported at the input "
                f"(channels-last to channels-first) or right before a Flatten that feeds Gemm/MatMul"
            )
        if v.columns is not None and not columns:
            raise ConversionError(
                f"{where} reads a flattened channels-last tensor; that is only supported as the input "
                f"of Gemm/MatMul (whose weights are reordered)"
            )
        return v

    def constant(self, node, index: int, where: str, what: str, optional: bool = False) -> Optional[np.ndarray]:
        """Input ``index`` of ``node`` as a numeric constant (an initializer or Constant)."""
        if index >= len(node.input) or not node.input[index]:
            if optional:
                return None
            raise ConversionError(f"{where}: the {what} (input {index}) is missing")
        v = self.value(node.input[index], where)
        if isinstance(v, _Tensor):
            raise ConversionError(
                f"{where}: the {what} (input {index}, {node.input[index]!r}) is computed at run time; "
                f"it must be a constant (an initializer)"
            )
        if v.dtype == object:
            raise ConversionError(f"{where}: the {what} depends on the input's shape; it must be a constant")
        return v

    def only_first_output(self, node, where: str) -> None:
        for extra in node.output[1:]:
            if extra and self.uses.get(extra, 0):
                raise ConversionError(f"{where}: only the first output can be used, but {extra!r} is read")

    def rank(self, x: _Tensor, where: str) -> int:
        if x.rank is None:
            raise ConversionError(f"{where}: the rank of the input is unknown (the ONNX file has no shape for it)")
        return x.rank

    def pads(self, a: dict, kernel: tuple, strides: tuple, dilations: tuple, x: _Tensor, where: str) -> tuple:
        """Symmetric zero padding per spatial axis, or a ConversionError."""
        spatial = len(kernel)
        auto = a.get("auto_pad", "NOTSET") or "NOTSET"
        if auto == "NOTSET":
            pads = list(a.get("pads", [0] * 2 * spatial))
            begin, end = pads[:spatial], pads[spatial:]
            if begin != end:
                raise ConversionError(
                    f"{where}: padding {pads} is not equal on both sides (begin {begin}, end {end}); "
                    f"only symmetric padding can be converted"
                )
            return tuple(int(p) for p in begin)
        if auto == "VALID":
            return (0,) * spatial
        if auto not in ("SAME_UPPER", "SAME_LOWER"):
            raise ConversionError(f"{where}: unknown auto_pad {auto!r}")
        sizes = x.shape[2:] if x.shape is not None and len(x.shape) == spatial + 2 else (None,) * spatial
        result = []
        for axis, (k, s, d, n) in enumerate(zip(kernel, strides, dilations, sizes)):
            extent = (k - 1) * d + 1
            if s == 1:
                total = extent - 1
            elif n is None:
                raise ConversionError(
                    f"{where}: auto_pad={auto} with stride {s} needs the input's spatial size, which the "
                    f"ONNX file does not give"
                )
            else:
                total = max((-(-n // s) - 1) * s + extent - n, 0)
            if total % 2:
                raise ConversionError(
                    f"{where}: auto_pad={auto} pads {total} in total along spatial axis {axis}, unequally on "
                    f"the two sides; only symmetric padding can be converted"
                )
            result.append(total // 2)
        return tuple(result)

    # -- the walk ---------------------------------------------------------------------
    def run(self) -> LayerGraph:
        graph = self.graph
        initializers = {i.name for i in graph.initializer}
        inputs = [i for i in graph.input if i.name not in initializers]
        if len(inputs) != 1:
            raise ConversionError(
                f"{self.source}: a convertible model has exactly one input, found {len(inputs)} "
                f"({[i.name for i in inputs]})"
            )
        if len(graph.output) != 1:
            raise ConversionError(
                f"{self.source}: a convertible model has exactly one output, found {len(graph.output)} "
                f"({[o.name for o in graph.output]})"
            )
        if len(graph.node) == 0:
            raise ConversionError(f"{self.source}: the ONNX graph has no operators")
        source = inputs[0]
        elem = source.type.tensor_type.elem_type if source.type.HasField("tensor_type") else None
        if elem not in _FLOAT_TYPES:
            raise ConversionError(
                f"{self.source}: the input {source.name!r} is not a floating-point tensor "
                f"(ONNX element type {elem}); only float inputs can be converted"
            )
        self.input_node = self.add(Kind.INPUT, [], f"ONNX input {source.name!r}", source.name)
        self.input_name = source.name
        self.values[source.name] = _Tensor(self.input_node, self.shape(source.name))
        self.output_name = graph.output[0].name
        total = len(graph.node)
        for position, node in enumerate(graph.node):
            label = repr(node.name) if node.name else f"(unnamed, output {node.output[0]!r})"
            where = f"ONNX node {label} ({node.op_type}) at position {position} of {total}"
            self.convert(node, where)
        out = self.value(self.output_name, f"the output {self.output_name!r}")
        if not isinstance(out, _Tensor) or out.permutation is not None or out.columns is not None:
            raise ConversionError(
                f"{self.source}: the output {self.output_name!r} is a constant or a transposed tensor; "
                f"it must be the last layer's activations"
            )
        self.nodes.append(Node("output", Kind.OUTPUT, [out.node], None, {}, f"ONNX output {self.output_name!r}"))
        nodes = self.prune()
        shape = self.shape(self.input_name)
        if "permute" in nodes[0].attrs and shape is not None:
            shape = tuple(shape[p] for p in nodes[0].attrs["permute"])
        sample = shape[1:] if shape is not None and all(shape[1:]) else None
        return LayerGraph(nodes, tuple(int(s) for s in sample) if sample is not None else None)

    def prune(self) -> list[Node]:
        """The nodes the output depends on (and the input)."""
        needed = {"output"}
        for node in reversed(self.nodes):
            if node.name in needed:
                needed.update(node.inputs)
        return [n for n in self.nodes if n.name in needed or n.kind is Kind.INPUT]

    def convert(self, node, where: str) -> None:
        op = node.op_type
        if node.domain not in ("", "ai.onnx"):
            raise ConversionError(f"{where}: operator domain {node.domain!r} cannot be converted; "
                                  f"supported ONNX operators: {SUPPORTED_ONNX}")
        a = self.attrs(node)
        if op == "Constant":
            self.values[node.output[0]] = self.constant_value(a, where)
            return
        present = [self.value(i, where) for i in node.input if i]
        if op == "Shape" and present:
            self.values[node.output[0]] = self.shape_of(present[0], a, where)
            return
        if op in _CONSTANT_OPS and present and not any(isinstance(v, _Tensor) for v in present):
            self.values[node.output[0]] = self.fold(node, a, where)
            return
        handler = getattr(self, f"op_{op}", None)
        if handler is None:
            raise ConversionError(f"{where} cannot be converted; supported ONNX operators: {SUPPORTED_ONNX}")
        self.only_first_output(node, where)
        self.values[node.output[0]] = handler(node, a, where)

    # -- constants ----------------------------------------------------------------------
    def constant_value(self, a: dict, where: str) -> np.ndarray:
        if "value" in a:
            return self.onnx.numpy_helper.to_array(a["value"])
        for key, dtype in (("value_float", np.float32), ("value_floats", np.float32),
                           ("value_int", np.int64), ("value_ints", np.int64)):
            if key in a:
                return np.asarray(a[key], dtype=dtype)
        raise ConversionError(
            f"{where}: only numeric Constant values (value, value_float(s), value_int(s)) are supported"
        )

    def shape_of(self, x: Any, a: dict, where: str) -> np.ndarray:
        """``Shape(x)``; for a run-time tensor with the batch and any unknown size as markers."""
        if not isinstance(x, _Tensor):
            dims = list(np.shape(x))
        elif x.shape is None:
            raise ConversionError(f"{where}: the shape of a tensor of unknown rank")
        else:
            dims = [_BATCH] + [d if d else _UNKNOWN for d in x.shape[1:]]
        start, end = a.get("start", 0), a.get("end", len(dims))
        return np.array(dims[start:end] if end is not None else dims[start:], dtype=object)

    def axes(self, node, a: dict, where: str) -> Optional[list[int]]:
        """The ``axes`` attribute or (newer opsets) second input."""
        if "axes" in a:
            return [int(i) for i in a["axes"]]
        if len(node.input) > 1 and node.input[1]:
            return [int(i) for i in np.asarray(self.constant(node, 1, where, "axes")).reshape(-1)]
        return None

    def fold(self, node, a: dict, where: str) -> np.ndarray:
        """Evaluate an operator on constants (shape arithmetic)."""
        op = node.op_type
        v = [self.value(i, where) if i else None for i in node.input]
        if op in ("Add", "Sub", "Mul", "Gather", "Concat"):  # the ops whose result can outgrow their inputs
            self.fold_size(op, v, a, where)
        try:
            if op in ("Identity", "Dropout"):
                return v[0]
            if op == "Cast":
                if v[0].dtype == object:
                    return v[0]
                return v[0].astype(self.onnx.helper.tensor_dtype_to_np_dtype(a["to"]))
            if op == "Gather":
                return np.asarray(np.take(v[0], np.asarray(v[1]).astype(np.int64), axis=a.get("axis", 0)))
            if op == "Slice":
                return self.slice(v, a)
            if op == "Unsqueeze":
                axes = self.axes(node, a, where)
                return np.expand_dims(v[0], tuple(_axis(i, v[0].ndim + len(axes), where) for i in axes))
            if op == "Squeeze":
                axes = self.axes(node, a, where)
                return np.squeeze(v[0], axis=tuple(axes) if axes is not None else None)
            if op == "Concat":
                return np.concatenate([np.atleast_1d(x) for x in v if x is not None], axis=a.get("axis", 0))
            if op == "Reshape":
                target = [int(t) for t in np.asarray(v[1]).reshape(-1)]
                target = [v[0].shape[i] if t == 0 and not a.get("allowzero", 0) else t for i, t in enumerate(target)]
                return v[0].reshape(target)
            if op == "Transpose":
                return np.transpose(v[0], a.get("perm"))
            if op == "Add":
                return v[0] + v[1]
            if op == "Sub":
                return v[0] - v[1]
            if op == "Mul":
                return v[0] * v[1]
        except ConversionError:
            raise
        except Exception as exc:
            raise ConversionError(f"{where}: cannot evaluate it on constants ({type(exc).__name__}: {exc})") from exc
        raise ConversionError(f"{where} cannot be converted; supported ONNX operators: {SUPPORTED_ONNX}")

    def fold_size(self, op: str, v: list, a: dict, where: str) -> None:
        """Refuse to fold constants into an array larger than :data:`MAX_DECLARED_ELEMENTS`
        (broadcasting two vectors, or gathering many rows, multiplies sizes)."""
        arrays = [np.asarray(x) if not isinstance(x, np.ndarray) else x for x in v if x is not None]
        try:
            if op in ("Add", "Sub", "Mul") and len(arrays) >= 2:
                count = math.prod(np.broadcast_shapes(arrays[0].shape, arrays[1].shape))
            elif op == "Gather" and len(arrays) >= 2:
                axis = int(a.get("axis", 0))
                rest = math.prod(d for i, d in enumerate(arrays[0].shape) if i != axis % max(arrays[0].ndim, 1))
                count = arrays[1].size * rest
            else:
                count = sum(x.size for x in arrays)
        except (ValueError, TypeError):
            return  # the fold itself reports shapes that do not fit
        _bounded(count, where, "the folded constant")

    def slice(self, v: list, a: dict) -> np.ndarray:
        """``Slice`` of a constant (bounds as attributes before opset 10, inputs after)."""
        if self.opset < 10:
            starts, ends, axes, steps = a["starts"], a["ends"], a.get("axes"), None
        else:
            starts, ends = v[1], v[2]
            axes, steps = (v[3] if len(v) > 3 else None), (v[4] if len(v) > 4 else None)
        starts, ends = [int(i) for i in np.reshape(starts, -1)], [int(i) for i in np.reshape(ends, -1)]
        axes = range(len(starts)) if axes is None else [int(i) for i in np.reshape(axes, -1)]
        steps = [1] * len(starts) if steps is None else [int(i) for i in np.reshape(steps, -1)]
        index = [slice(None)] * v[0].ndim
        for start, end, axis, step in zip(starts, ends, axes, steps):
            index[axis] = slice(start, end, step)
        return v[0][tuple(index)]

    # -- weighted layers ----------------------------------------------------------------
    def dense(self, node, x: _Tensor, weight: np.ndarray, bias: Optional[np.ndarray], where: str) -> _Tensor:
        """A Linear ``y = W x + b`` with ``W`` ``[out, in]`` (the ONNX column order)."""
        if x.rank is not None and x.rank != 2:
            raise ConversionError(f"{where}: a dense layer on a rank-{x.rank} tensor cannot be converted (rank 2 only)")
        if x.shape is not None and x.shape[1] and x.shape[1] != weight.shape[1]:
            raise ConversionError(f"{where}: weight for {weight.shape[1]} inputs applied to {x.shape[1]} features")
        if x.columns is not None:
            if len(x.columns) != weight.shape[1]:
                raise ConversionError(
                    f"{where}: weight for {weight.shape[1]} inputs applied to {len(x.columns)} features"
                )
            reordered = np.empty_like(weight)
            reordered[:, x.columns] = weight
            weight = reordered
        layer = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
        with torch.no_grad():
            layer.weight.copy_(_float(weight))
            if bias is not None:
                layer.bias.copy_(_float(bias))
        name = self.add(Kind.LINEAR, [x.node], where, node.name or node.output[0], layer.eval())
        return _Tensor(name, self.shape(node.output[0]) or (None, weight.shape[0]))

    def op_Gemm(self, node, a: dict, where: str) -> _Tensor:
        x = self.tensor(node, 0, where, columns=True)
        if a.get("transA", 0):
            raise ConversionError(f"{where}: transA=1 (a transposed activation) cannot be converted")
        b = self.constant(node, 1, where, "weight B").astype(np.float64)
        if b.ndim != 2:
            raise ConversionError(f"{where}: weight B must be a matrix, got shape {list(b.shape)}")
        weight = (b if a.get("transB", 0) else b.T) * float(a.get("alpha", 1.0))  # [out, in]
        c = self.constant(node, 2, where, "bias C", optional=True)
        bias = None
        if c is not None:
            bias = self.per_channel(c.astype(np.float64), weight.shape[0], 2, 1, where) * float(a.get("beta", 1.0))
        return self.dense(node, x, weight, bias, where)

    def op_MatMul(self, node, a: dict, where: str) -> _Tensor:
        x = self.tensor(node, 0, where, columns=True)
        b = self.constant(node, 1, where, "weight matrix")
        if b.ndim != 2:
            raise ConversionError(
                f"{where}: MatMul by a constant of shape {list(b.shape)}; only a matrix [in, out] is supported"
            )
        return self.dense(node, x, b.astype(np.float64).T, None, where)

    def op_Conv(self, node, a: dict, where: str) -> _Tensor:
        x = self.tensor(node, 0, where)
        w = self.constant(node, 1, where, "weight W")
        spatial = w.ndim - 2
        if spatial not in (1, 2):
            raise ConversionError(f"{where}: a {spatial}-d convolution cannot be converted (1-d and 2-d only)")
        if x.rank is not None and x.rank != spatial + 2:
            raise ConversionError(f"{where}: weight {list(w.shape)} on an input of rank {x.rank}")
        kernel = tuple(int(k) for k in w.shape[2:])
        if tuple(a.get("kernel_shape", kernel)) != kernel:
            raise ConversionError(
                f"{where}: kernel_shape {a['kernel_shape']} does not match the weight {list(w.shape)}"
            )
        strides = tuple(int(s) for s in a.get("strides", (1,) * spatial))
        dilations = tuple(int(d) for d in a.get("dilations", (1,) * spatial))
        groups = int(a.get("group", 1))
        padding = self.pads(a, kernel, strides, dilations, x, where)
        in_channels = w.shape[1] * groups
        if x.shape is not None and x.shape[1] and x.shape[1] != in_channels:
            raise ConversionError(f"{where}: weight {list(w.shape)} with group={groups} on {x.shape[1]} input channels")
        if w.shape[0] % groups:
            raise ConversionError(f"{where}: {w.shape[0]} output channels are not divisible by group={groups}")
        b = self.constant(node, 2, where, "bias B", optional=True)
        cls = torch.nn.Conv1d if spatial == 1 else torch.nn.Conv2d
        conv = cls(in_channels, w.shape[0], kernel, stride=strides, padding=padding, dilation=dilations,
                   groups=groups, bias=b is not None)
        with torch.no_grad():
            conv.weight.copy_(_float(w))
            if b is not None:
                conv.bias.copy_(_float(b.reshape(-1)))
        name = self.add(Kind.CONV, [x.node], where, node.name or node.output[0], conv.eval())
        return _Tensor(name, self.shape(node.output[0]) or (None,) * (spatial + 2))

    def per_channel(self, c: np.ndarray, channels: int, rank: int, axis: int, where: str) -> np.ndarray:
        """A constant that broadcasts along ``axis`` only (or is a scalar), as ``[channels]``."""
        if c.ndim > rank:
            raise ConversionError(f"{where}: a constant of shape {list(c.shape)} on a rank-{rank} tensor")
        _bounded(channels, where, f"a constant per channel ({channels} channels declared)")
        full = c.reshape((1,) * (rank - c.ndim) + c.shape)
        if any(s != 1 for i, s in enumerate(full.shape) if i != axis) or full.shape[axis] not in (1, channels):
            raise ConversionError(
                f"{where}: the constant of shape {list(c.shape)} is not one value per channel "
                f"({channels} channels along axis {axis}); it cannot be a bias"
            )
        return np.broadcast_to(full.reshape(-1), (channels,)).astype(np.float64)

    def op_BatchNormalization(self, node, a: dict, where: str) -> _Tensor:
        x = self.tensor(node, 0, where)
        if a.get("training_mode", 0):
            raise ConversionError(f"{where}: training_mode=1; export the model in inference mode")
        if not a.get("spatial", 1):
            raise ConversionError(f"{where}: spatial=0 (statistics per position) cannot be converted")
        rank = self.rank(x, where)
        if rank not in (2, 3, 4):
            raise ConversionError(f"{where}: batch normalization of a rank-{rank} tensor cannot be converted")
        gamma, beta, mean, var = (self.constant(node, i, where, what).reshape(-1) for i, what in
                                  ((1, "scale"), (2, "bias B"), (3, "mean"), (4, "variance")))
        bn = (torch.nn.BatchNorm2d if rank == 4 else torch.nn.BatchNorm1d)(len(mean), eps=float(a.get("epsilon", 1e-5)))
        with torch.no_grad():
            for target, value in ((bn.weight, gamma), (bn.bias, beta), (bn.running_mean, mean), (bn.running_var, var)):
                target.copy_(_float(value))
        name = self.add(Kind.BATCHNORM, [x.node], where, node.name or node.output[0], bn.eval())
        return _Tensor(name, x.shape)

    # -- activations ------------------------------------------------------------------
    def op_Relu(self, node, a: dict, where: str) -> _Tensor:
        x = self.tensor(node, 0, where)
        return _Tensor(self.add(Kind.RELU, [x.node], where, node.name or node.output[0]), x.shape)

    def op_Clip(self, node, a: dict, where: str) -> _Tensor:
        x = self.tensor(node, 0, where)
        if self.opset < 11:
            low, high = a.get("min"), a.get("max")
        else:
            low = self.constant(node, 1, where, "min", optional=True)
            high = self.constant(node, 2, where, "max", optional=True)
        low = None if low is None else float(np.asarray(low).reshape(()))
        high = None if high is None else float(np.asarray(high).reshape(()))
        if low != 0.0:
            raise ConversionError(
                f"{where}: Clip with min={low} is not a ReLU; only Clip(min=0[, max]) can be converted"
            )
        attrs = {} if high is None or not math.isfinite(high) or high >= 3.4e38 else {"max": high}
        if attrs and high <= 0:
            raise ConversionError(f"{where}: Clip(0, {high}) has an empty range")
        return _Tensor(self.add(Kind.RELU, [x.node], where, node.name or node.output[0], **attrs), x.shape)

    def drop_last(self, node, a: dict, where: str) -> _Tensor:
        """Softmax / LogSoftmax at the very end: dropped (the argmax is unchanged)."""
        x = self.tensor(node, 0, where)
        if node.output[0] != self.output_name:
            raise ConversionError(
                f"{where}: {node.op_type} is only supported as the model's last operator (it is dropped)"
            )
        rank = x.rank
        axis = a.get("axis", 1 if self.opset < 13 else -1)
        if rank is None or _axis(axis, rank, where) != rank - 1:
            raise ConversionError(
                f"{where}: {node.op_type} along axis {axis} (of rank {rank}); only the class (last) axis"
            )
        return x

    op_Softmax = drop_last
    op_LogSoftmax = drop_last

    # -- pooling ----------------------------------------------------------------------
    def pool(self, node, a: dict, where: str, maximum: bool) -> _Tensor:
        x = self.tensor(node, 0, where)
        if "kernel_shape" not in a:
            raise ConversionError(f"{where}: the kernel_shape attribute is missing")
        kernel = tuple(int(k) for k in a["kernel_shape"])
        spatial = len(kernel)
        if spatial not in (1, 2):
            raise ConversionError(f"{where}: {spatial}-d pooling cannot be converted (1-d and 2-d only)")
        strides = tuple(int(s) for s in a.get("strides", (1,) * spatial))
        dilations = tuple(int(d) for d in a.get("dilations", (1,) * spatial))
        padding = self.pads(a, kernel, strides, dilations, x, where)
        if any(2 * p > k for p, k in zip(padding, kernel)):
            raise ConversionError(f"{where}: padding {padding} exceeds half the kernel {kernel}")
        ceil = bool(a.get("ceil_mode", 0))
        if maximum:
            cls = torch.nn.MaxPool1d if spatial == 1 else torch.nn.MaxPool2d
            module = cls(kernel, strides, padding, dilations, ceil_mode=ceil)
        else:
            if any(d != 1 for d in dilations):
                raise ConversionError(f"{where}: average pooling with dilations {dilations} cannot be converted")
            cls = torch.nn.AvgPool1d if spatial == 1 else torch.nn.AvgPool2d
            include = bool(a.get("count_include_pad", 0))
            module = cls(kernel, strides, padding, ceil_mode=ceil, count_include_pad=include)
        name = self.add(Kind.MAXPOOL if maximum else Kind.AVGPOOL, [x.node], where, node.name or node.output[0], module)
        return _Tensor(name, self.shape(node.output[0]) or (None,) * (spatial + 2))

    def op_MaxPool(self, node, a: dict, where: str) -> _Tensor:
        return self.pool(node, a, where, maximum=True)

    def op_AveragePool(self, node, a: dict, where: str) -> _Tensor:
        return self.pool(node, a, where, maximum=False)

    def global_average(self, node, x: _Tensor, where: str, flatten: bool) -> _Tensor:
        """The mean over all spatial axes of ``x`` (of its node's output if ``x`` is a
        pending Transpose of it); with ``flatten`` the result is ``[N, C]``."""
        rank = self.rank(x, where)
        if rank not in (3, 4):
            raise ConversionError(f"{where}: global pooling of a rank-{rank} tensor (1-d and 2-d only)")
        module = torch.nn.AdaptiveAvgPool1d(1) if rank == 3 else torch.nn.AdaptiveAvgPool2d(1)
        name = self.add(Kind.AVGPOOL, [x.node], where, node.name or node.output[0], module)
        base = x.base_shape if x.permutation is not None else x.shape
        pooled = (base[0], base[1]) + (1,) * (rank - 2)
        if flatten:
            name = self.add(Kind.FLATTEN, [name], where, (node.name or node.output[0]) + "_flatten")
            return _Tensor(name, pooled[:2])
        if x.permutation is not None:
            return _Tensor(name, tuple(pooled[p] for p in x.permutation), x.permutation, pooled)
        return _Tensor(name, pooled)

    def op_GlobalAveragePool(self, node, a: dict, where: str) -> _Tensor:
        return self.global_average(node, self.tensor(node, 0, where), where, flatten=False)

    def op_GlobalMaxPool(self, node, a: dict, where: str) -> _Tensor:
        x = self.tensor(node, 0, where)
        rank = self.rank(x, where)
        size = x.shape[2:]
        if rank not in (3, 4) or not all(size):
            raise ConversionError(f"{where}: global max pooling needs a 1-d or 2-d input of known size, got {x.shape}")
        module = (torch.nn.MaxPool1d if rank == 3 else torch.nn.MaxPool2d)(tuple(size))
        name = self.add(Kind.MAXPOOL, [x.node], where, node.name or node.output[0], module)
        return _Tensor(name, (x.shape[0], x.shape[1]) + (1,) * (rank - 2))

    def op_ReduceMean(self, node, a: dict, where: str) -> _Tensor:
        x = self.tensor(node, 0, where, permuted=True)
        rank = self.rank(x, where)
        axes = self.axes(node, a, where)
        perm = x.permutation or tuple(range(rank))  # axis i of x is axis perm[i] of its node's output
        if rank < 3 or axes is None or sorted(perm[_axis(i, rank, where)] for i in axes) != list(range(2, rank)):
            raise ConversionError(
                f"{where}: ReduceMean over axes {axes} of a rank-{rank} tensor; only the mean over all "
                f"spatial axes (global average pooling) can be converted"
            )
        return self.global_average(node, x, where, flatten=not a.get("keepdims", 1))

    # -- reshaping --------------------------------------------------------------------
    def flatten(self, node, x: _Tensor, where: str) -> _Tensor:
        columns = x.columns
        if x.permutation is not None:
            base = x.base_shape
            if base is None or not all(base[1:]):
                raise ConversionError(
                    f"{where}: flattening a transposed tensor needs its shape, which the file does not give"
                )
            _bounded(math.prod(base[1:]), where, f"the feature order of the flattened shape {list(base)}")
            order = np.arange(math.prod(base[1:])).reshape(base[1:])
            columns = order.transpose([p - 1 for p in x.permutation[1:]]).reshape(-1)
        name = self.add(Kind.FLATTEN, [x.node], where, node.name or node.output[0])
        features = math.prod(x.shape[1:]) if x.shape is not None and all(x.shape[1:]) else None
        return _Tensor(name, (x.shape[0] if x.shape else None, features), columns=columns)

    def op_Flatten(self, node, a: dict, where: str) -> _Tensor:
        x = self.tensor(node, 0, where, permuted=True, columns=True)
        axis = a.get("axis", 1)
        if _axis(axis, x.rank, where) != 1:
            raise ConversionError(f"{where}: Flatten(axis={axis}); only axis=1 (keep the batch) can be converted")
        return self.flatten(node, x, where)

    def op_Reshape(self, node, a: dict, where: str) -> _Tensor:
        x = self.tensor(node, 0, where, permuted=True, columns=True)
        v = self.value(node.input[1], where) if len(node.input) > 1 else None
        if v is None or isinstance(v, _Tensor):
            raise ConversionError(f"{where}: the target shape must be a constant or computed from Shape")
        target = list(np.asarray(v).reshape(-1))
        shape = x.shape
        features = math.prod(shape[1:]) if shape is not None and all(shape[1:]) else None
        batch = shape[0] if shape is not None else None

        def is_int(t, value=None):
            return isinstance(t, (int, np.integer)) and (value is None or int(t) == value)

        if len(target) == 2:
            t0, t1 = target
            first = (t0 is _BATCH  # Shape(x)[0]
                     or (is_int(t0, 0) and not a.get("allowzero", 0))  # 0: copy the batch size
                     or (is_int(t0) and batch is not None and int(t0) == batch))  # the file's fixed batch size
            if first and (is_int(t1, -1) or (features is not None and is_int(t1, features))):
                return self.flatten(node, x, where)
            if is_int(t0, -1) and is_int(t1) and int(t1) >= 0:
                if features is None:
                    raise ConversionError(
                        f"{where}: Reshape to {target} flattens only if the input has {int(t1)} features per sample, "
                        f"and the file does not give the input's shape"
                    )
                if int(t1) == features:
                    return self.flatten(node, x, where)
        raise ConversionError(
            f"{where}: Reshape of {list(shape) if shape is not None else 'an unknown shape'} to {target}; only a "
            f"flatten to (N, -1), (0, -1) or (-1, features) can be converted"
        )

    def op_Squeeze(self, node, a: dict, where: str) -> _Tensor:
        x = self.tensor(node, 0, where)
        rank = self.rank(x, where)
        axes = self.axes(node, a, where)
        if axes is None and x.shape is not None and all(x.shape[1:]):
            axes = [i for i in range(1, rank) if x.shape[i] == 1]
        if rank < 3 or axes is None or sorted(_axis(i, rank, where) for i in axes) != list(range(2, rank)):
            raise ConversionError(
                f"{where}: Squeeze of axes {axes} of a rank-{rank} tensor; only removing all (size-1) spatial "
                f"axes, a flatten, can be converted"
            )
        return self.flatten(node, x, where)

    def op_Transpose(self, node, a: dict, where: str) -> _Tensor:
        x = self.tensor(node, 0, where, permuted=True)
        rank = self.rank(x, where)
        perm = tuple(int(p) for p in a.get("perm", range(rank - 1, -1, -1)))
        channels_first = (0, rank - 1) + tuple(range(1, rank - 1))
        out_shape = tuple(x.shape[p] for p in perm)
        if (x.node == self.input_node and x.permutation is None and rank in (3, 4) and perm == channels_first
                and self.uses.get(self.input_name, 0) == 1):
            self.nodes[0].attrs.update(layout="NWC" if rank == 3 else "NHWC", permute=perm)
            return _Tensor(x.node, out_shape)
        if perm[0] != 0:
            raise ConversionError(f"{where}: Transpose with perm {list(perm)} moves the batch axis")
        base = x.base_shape if x.permutation is not None else x.shape
        total = perm if x.permutation is None else tuple(x.permutation[p] for p in perm)
        if total == tuple(range(rank)):
            return _Tensor(x.node, out_shape)
        return _Tensor(x.node, out_shape, permutation=total, base_shape=base)

    # -- no-ops and joins -------------------------------------------------------------
    def op_Identity(self, node, a: dict, where: str) -> _Tensor:
        return self.tensor(node, 0, where, permuted=True, columns=True)

    op_Dropout = op_Identity

    def op_Cast(self, node, a: dict, where: str) -> _Tensor:
        if a.get("to") not in _FLOAT_TYPES:
            raise ConversionError(f"{where}: a cast of the activations to ONNX element type {a.get('to')} (float only)")
        return self.op_Identity(node, a, where)

    def op_Add(self, node, a: dict, where: str) -> _Tensor:
        left, right = (self.value(i, where) for i in node.input[:2])
        if isinstance(left, _Tensor) and isinstance(right, _Tensor):
            x, y = self.tensor(node, 0, where), self.tensor(node, 1, where)
            if x.shape is not None and y.shape is not None and None not in x.shape[1:] + y.shape[1:] \
                    and x.shape[1:] != y.shape[1:]:
                raise ConversionError(f"{where}: adds tensors of shapes {list(x.shape)} and {list(y.shape)}")
            return _Tensor(self.add(Kind.ADD, [x.node, y.node], where, node.name or node.output[0]), x.shape)
        index = 0 if isinstance(left, _Tensor) else 1
        x = self.tensor(node, index, where)
        c = self.constant(node, 1 - index, where, "constant term")
        producer = next(n for n in self.nodes if n.name == x.node)
        readers = sum(self.uses.get(t, 0) for t, v in self.values.items()
                      if isinstance(v, _Tensor) and v.node == x.node)
        if producer.kind not in (Kind.LINEAR, Kind.CONV) or readers != 1:
            raise ConversionError(
                f"{where}: adding a constant is only supported as the bias of the MatMul/Gemm/Conv right "
                f"before it (whose output nothing else reads)"
            )
        layer = producer.module
        channels = layer.weight.shape[0]
        rank = x.rank if x.rank is not None else (2 if producer.kind is Kind.LINEAR else layer.weight.dim())
        axis = rank - 1 if producer.kind is Kind.LINEAR else 1
        bias = self.per_channel(c.astype(np.float64), channels, rank, axis, where)
        with torch.no_grad():
            if layer.bias is None:
                layer.bias = torch.nn.Parameter(torch.zeros(channels))
            layer.bias.add_(_float(bias))
        return _Tensor(x.node, self.shape(node.output[0]) or x.shape)

    def op_Concat(self, node, a: dict, where: str) -> _Tensor:
        parts = [self.tensor(node, i, where) for i in range(len(node.input)) if node.input[i]]
        axis = _axis(int(a.get("axis", 1)), parts[0].rank, where)
        if axis == 0:
            raise ConversionError(f"{where}: concatenation along the batch axis cannot be converted")
        name = self.add(Kind.CAT, [p.node for p in parts], where, node.name or node.output[0], dim=axis)
        return _Tensor(name, self.shape(node.output[0]) or parts[0].shape)


def load_onnx(model: Union[str, os.PathLike, Any]) -> LayerGraph:
    """Import an ONNX model as a :class:`~spikeflow.convert.graph.LayerGraph`.

    Args:
        model: a path to a ``.onnx`` file or an ``onnx.ModelProto`` with one
            floating-point input ``[N, ...]`` and one output, made of the operators in
            :data:`SUPPORTED_ONNX` (see the module docstring for their mapping).

    Returns:
        the graph; ``graph.run(x)`` equals the ONNX model's output (before a final
        Softmax, which is dropped: the argmax is unchanged). For a channels-last model
        (a leading ``Transpose(perm=[0, 3, 1, 2])``, as Keras exports) the graph takes
        channels-first inputs and ``graph.nodes[0].attrs`` is ``{"layout": "NHWC",
        "permute": (0, 3, 1, 2)}``: feed ``x.permute(*permute)``. ``graph.input_shape``
        is the (channels-first) shape of one sample when the file fixes it.

    Raises:
        ImportError: the ``onnx`` package is missing (``pip install spikeflow[onnx]``).
        FileNotFoundError: no file at ``model``.
        ConversionError: the file is not an ONNX model, has several inputs or outputs,
            or an operator that cannot be converted (named with its place in the graph),
            or is malformed (corrupt protobuf, tensors whose data do not fit their
            dims, missing initializers, cycles, sizes it declares far beyond what it
            holds). Every message starts with the file (or "the ONNX model").

    Whatever the file holds, the import runs no code from it, never allocates much
    more than the tensors the file holds (at most :data:`MAX_DECLARED_ELEMENTS` elements
    for arrays whose size the file only declares), and raises nothing but the errors above.
    """
    onnx = _require_onnx()
    proto, source = _read(model, onnx)
    if not proto.HasField("graph") or (len(proto.graph.node) == 0 and len(proto.graph.input) == 0):
        raise ConversionError(f"{source} holds no ONNX graph (is it an ONNX model?)")
    try:
        return _Importer(proto, source, onnx).run()
    except ConversionError as exc:
        if source in str(exc):
            raise
        raise ConversionError(f"{source}: {exc}") from exc
    except Exception as exc:  # a malformed graph or tensor the checks above did not anticipate
        raise ConversionError(
            f"{source}: the ONNX graph is malformed ({type(exc).__name__}: {' '.join(str(exc).split())[:300]})"
        ) from exc
