"""NIR export and import: spikeflow networks to and from the Neuromorphic
Intermediate Representation (the ``nir`` package, ``pip install spikeflow[nir]``).

NIR describes neurons as continuous-time ODEs; spikeflow steps them in discrete
time. The mapping is forward Euler with a step ``dt`` (seconds; 1e-4 by default,
snnTorch's convention; Norse uses 1e-3 and takes it as an argument):

- LIF ``tau dv/dt = (v_leak - v) + r I``: ``beta = 1 - dt / tau`` and an input gain
  ``g = r dt / tau``. Export writes ``tau = dt / (1 - beta)``, ``r = tau / dt`` (gain 1),
  ``v_leak = 0``, ``v_reset = 0``; import puts a ``Scale(g)`` before the neuron when
  ``g != 1``.
- IF ``dv/dt = r I``: gain ``r dt`` (export: ``r = 1 / dt``).
- CubaLIF ``tau_syn dI/dt = -I + w_in S``, ``tau_mem dv/dt = (v_leak - v) + r I``:
  ``alpha = 1 - dt / tau_syn``, ``beta = 1 - dt / tau_mem``, the input scaled by
  ``w_in dt / tau_syn`` and the current by ``r dt / tau_mem`` (spikeflow's ``gain``), in
  the order ``current_first`` (the order snnTorch and Norse both simulate NIR in).
- LI (non-spiking readout): like LIF; ``normalize=True`` is ``r = 1``.
- Spikes: ``v > v_threshold``; NIR resets to ``v_reset``, which is spikeflow's
  ``reset="zero"``. A neuron resetting by subtraction has no NIR form: export raises
  unless ``subtract_reset="as_zero"`` accepts the change.
- Recurrent weights are a cycle ``neuron -> Linear -> neuron`` (the drive reaches the
  neuron one step later, as in spikeflow and snnTorch's RLeaky).

Norse ignores ``r`` when it reads a LIF node; ``unit_resistance=True`` folds every
``r`` into the weights feeding the neuron so that the graph has ``r = 1`` and means the
same to every reader.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from .convert.layers import Scale
from .nn import CubaLIF, IF, LI, LIF, Sequential
from .nn._layers import Flatten, TimeDistributed

__all__ = ["NIRError", "from_nir", "read", "to_nir", "write"]

DEFAULT_DT = 1e-4


class NIRError(ValueError):
    """A network part with no NIR form, or a NIR graph spikeflow cannot run."""


def _nir():
    try:
        import nir
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("NIR support needs the nir package: pip install spikeflow[nir]") from None
    return nir


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().to(torch.float64).numpy()


def _full(value: torch.Tensor, shape: tuple) -> np.ndarray:
    return np.broadcast_to(_np(value), shape).copy()


# -- export ---------------------------------------------------------------------------
def _flat_layers(model: torch.nn.Module, prefix: str = "") -> list[tuple[str, torch.nn.Module]]:
    if isinstance(model, Sequential):
        out = []
        for i, layer in enumerate(model.layers):
            out += _flat_layers(layer, f"{prefix}{i}.")
        return out
    if getattr(model, "stateful", None) is None:  # a plain torch layer given alone
        model = TimeDistributed(model)
    return [(prefix.rstrip(".") or type(model).__name__.lower(), model)]


def _reset_ok(name: str, module: torch.nn.Module, subtract_reset: str) -> None:
    reset = module.reset.value
    if reset == "zero" or (reset == "subtract" and subtract_reset == "as_zero"):
        return
    raise NIRError(
        f"layer {name} ({type(module).__name__}) resets by {reset!r}; NIR neurons reset to v_reset "
        f"(spikeflow's reset='zero'): build it with reset='zero', or pass subtract_reset='as_zero' "
        f"to export it as a reset to zero anyway"
    )


def _neuron_node(name: str, module: torch.nn.Module, shape: tuple, dt: float, subtract_reset: str):
    nir = _nir()
    if type(module) in (LIF, IF):
        _reset_ok(name, module, subtract_reset)
        thr = _full(module.threshold, shape)
        beta = _full(module.beta, shape)
        if np.all(beta == 1.0):
            return nir.IF(r=np.full(shape, 1.0 / dt), v_threshold=thr, v_reset=np.zeros(shape))
        if np.any(beta >= 1.0):
            raise NIRError(f"layer {name}: a LIF with beta = 1 on some neurons only has no NIR form")
        tau = dt / (1.0 - beta)
        return nir.LIF(tau=tau, r=tau / dt, v_leak=np.zeros(shape), v_threshold=thr, v_reset=np.zeros(shape))
    if type(module) is CubaLIF:
        _reset_ok(name, module, subtract_reset)
        if module.order.value != "current_first":
            raise NIRError(f"layer {name}: CubaLIF order {module.order.value!r} has no NIR form; use 'current_first'")
        if module.alpha_rec is not None:
            raise NIRError(f"layer {name}: CubaLIF with a separate recurrent current (alpha_rec) has no NIR form")
        alpha, beta = _full(module.alpha, shape), _full(module.beta, shape)
        if np.any(alpha >= 1.0) or np.any(beta >= 1.0):
            raise NIRError(f"layer {name}: CubaLIF with alpha or beta = 1 has no NIR form")
        tau_syn, tau_mem = dt / (1.0 - alpha), dt / (1.0 - beta)
        a_i = (1.0 - alpha) if module.normalize else np.ones(shape)
        a_v = (1.0 - beta) if module.normalize else np.ones(shape)
        return nir.CubaLIF(
            tau_syn=tau_syn, tau_mem=tau_mem, r=a_v * float(module.gain) * tau_mem / dt, v_leak=np.zeros(shape),
            v_threshold=_full(module.threshold, shape), v_reset=np.zeros(shape), w_in=a_i * tau_syn / dt,
        )
    if type(module) is LI:
        beta = _full(module.beta, shape)
        if np.any(beta >= 1.0):
            if np.all(beta == 1.0) and not module.normalize:
                return nir.I(r=np.full(shape, 1.0 / dt))
            raise NIRError(f"layer {name}: an LI with beta = 1 on some neurons only has no NIR form")
        tau = dt / (1.0 - beta)
        r = np.ones(shape) if module.normalize else tau / dt
        return nir.LI(tau=tau, r=r, v_leak=np.zeros(shape))
    return None


def _layer_node(name: str, module: torch.nn.Module, in_shape: tuple):
    nir = _nir()
    if isinstance(module, torch.nn.Linear) and type(module) is torch.nn.Linear:
        if module.bias is None:
            return nir.Linear(weight=_np(module.weight))
        return nir.Affine(weight=_np(module.weight), bias=_np(module.bias))
    if type(module) in (torch.nn.Conv1d, torch.nn.Conv2d):
        if module.padding_mode != "zeros":
            raise NIRError(f"layer {name}: padding_mode {module.padding_mode!r} has no NIR form")
        bias = _np(module.bias) if module.bias is not None else np.zeros(module.out_channels)
        one = type(module) is torch.nn.Conv1d
        cls = nir.Conv1d if one else nir.Conv2d
        pick = (lambda v: v[0]) if one else tuple
        padding = module.padding if isinstance(module.padding, str) else pick(module.padding)
        return cls(
            input_shape=in_shape[1] if one else tuple(in_shape[1:]), weight=_np(module.weight),
            stride=pick(module.stride), padding=padding, dilation=pick(module.dilation),
            groups=module.groups, bias=bias,
        )
    if isinstance(module, Flatten) or (type(module) is torch.nn.Flatten and module.start_dim == 1 and module.end_dim == -1):
        return nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=0, end_dim=-1)
    if type(module) is torch.nn.AvgPool2d:
        if module.divisor_override not in (None,) or module.ceil_mode or (module.padding not in (0, (0, 0)) and not module.count_include_pad):
            raise NIRError(f"layer {name}: this AvgPool2d configuration has no NIR form")
        pair = lambda v: np.array(v if isinstance(v, (tuple, list)) else (v, v))  # noqa: E731
        return nir.AvgPool2d(kernel_size=pair(module.kernel_size), stride=pair(module.stride or module.kernel_size),
                             padding=pair(module.padding))
    if type(module) is Scale:
        with torch.no_grad():  # per-feature factors, broadcast as the layer itself does
            return nir.Scale(scale=_np(module(torch.ones((1, 1) + in_shape))[0, 0]))
    if type(module) in (torch.nn.Dropout, torch.nn.Identity):
        return "skip"
    return None


def to_nir(
    model: torch.nn.Module,
    input_shape: tuple,
    *,
    dt: float = DEFAULT_DT,
    subtract_reset: str = "error",
    unit_resistance: bool = False,
    nest_recurrent: bool = True,
):
    """The NIR graph of a spikeflow network.

    Args:
        model: a :class:`spikeflow.nn.Sequential` (or a single layer, or a converted
            :class:`~spikeflow.convert.network.SpikingNetwork` with adds) of Linear, Conv1d,
            Conv2d, Flatten, AvgPool2d, Scale, Dropout and LIF / IF / CubaLIF / LI
            neurons (recurrent ones included).
        input_shape: the features of one time step of one sample, e.g. ``(784,)`` or
            ``(1, 28, 28)``.
        dt: the Euler step in seconds the time constants are written for.
        subtract_reset: ``"error"`` (default) or ``"as_zero"``: export neurons that
            reset by subtraction as resetting to zero (their spikes may then differ).
        unit_resistance: fold each neuron's ``r`` (and CubaLIF's ``w_in``) into the
            weights feeding it, so every ``r`` and ``w_in`` is 1 (for Norse).
        nest_recurrent: write each recurrent layer as a subgraph ``input -> lif <->
            w_rec -> output`` (what snnTorch writes and reads back correctly: its
            reader of a flat cycle routes the layer's input through ``w_rec``); False
            writes the cycle ``<layer> <-> <layer>.rec`` in the top graph (always
            so with ``unit_resistance``, which scales ``<layer>.rec`` too).

    Returns:
        a ``nir.NIRGraph`` with nodes ``input``, one per layer (named by its index in the
        Sequential) and ``output``.

    Raises:
        NIRError: a layer with no NIR form (its path and class named): ASN, GradedLIF,
            max pooling, BatchNorm, crossbar layers, ...
    """
    nir = _nir()
    if not isinstance(dt, (int, float)) or not dt > 0:
        raise ValueError(f"dt must be a positive number of seconds, got {dt!r}")
    if subtract_reset not in ("error", "as_zero"):
        raise ValueError(f"subtract_reset must be 'error' or 'as_zero', got {subtract_reset!r}")
    shape = tuple(int(s) for s in input_shape)
    from .convert.network import SpikingNetwork

    if isinstance(model, SpikingNetwork):
        graph = _network_graph(model, shape, dt, subtract_reset, nest_recurrent and not unit_resistance)
        if unit_resistance:
            _fold_resistance(graph)
        return graph
    nodes: dict[str, Any] = {"input": nir.Input(input_type={"input": np.array(shape)})}
    edges: list[tuple[str, str]] = []
    previous = "input"
    x = torch.zeros((1, 1) + shape)
    for name, module in _flat_layers(model):
        in_shape = tuple(x.shape[2:])
        with torch.no_grad():
            y = module(x)[0] if getattr(module, "stateful", False) else module(x)
        out_shape = tuple(y.shape[2:])
        x = y
        if _add_layer(nodes, edges, name, module, in_shape, out_shape, [previous], dt, subtract_reset,
                      nest_recurrent and not unit_resistance):
            previous = name
    nodes["output"] = nir.Output(output_type={"output": np.array(tuple(x.shape[2:]))})
    edges.append((previous, "output"))
    graph = nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)
    if unit_resistance:
        _fold_resistance(graph)
    return graph


def _add_layer(nodes: dict, edges: list, name: str, module: torch.nn.Module, in_shape: tuple, out_shape: tuple,
               sources: list, dt: float, subtract_reset: str, nest: bool) -> bool:
    """Add ``module``'s node (and its recurrent weights) fed by ``sources``; False for a
    layer NIR leaves out (Dropout, Identity)."""
    nir = _nir()
    if isinstance(module, TimeDistributed):
        module = module.module
    stateful = getattr(module, "stateful", False)
    node = _neuron_node(name, module, out_shape, dt, subtract_reset) if stateful else _layer_node(name, module, in_shape)
    if node is None:
        raise NIRError(
            f"layer {name} ({type(module).__name__}) has no NIR form; exportable: Linear, Conv1d, Conv2d, "
            f"Flatten, AvgPool2d, Scale, Dropout, LIF, IF, CubaLIF, LI"
        )
    if isinstance(node, str):
        return False
    rec = getattr(module, "recurrent_weight", None)
    if rec is not None and nest:  # the form snnTorch writes and reads
        n = np.array(out_shape)
        node = nir.NIRGraph(
            nodes={"input": nir.Input(input_type={"input": n}), "lif": node,
                   "w_rec": nir.Linear(weight=_np(rec)), "output": nir.Output(output_type={"output": n})},
            edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
            type_check=False,
        )
    elif rec is not None:
        nodes[f"{name}.rec"] = nir.Linear(weight=_np(rec))
        edges += [(name, f"{name}.rec"), (f"{name}.rec", name)]
    nodes[name] = node
    edges += [(src, name) for src in sources]
    return True


def _network_graph(net, shape: tuple, dt: float, subtract_reset: str, nest: bool):
    """A converted :class:`~spikeflow.convert.network.SpikingNetwork` as a NIR graph: an
    ``add`` step is a unit ``Scale`` node that its inputs' edges sum into."""
    nir = _nir()
    with torch.no_grad():
        _, _, values = net.run(torch.zeros((1, 1) + shape), keep=True)
    nodes: dict[str, Any] = {}
    edges: list[tuple[str, str]] = []
    source: dict[str, str] = {}  # step name -> the node that carries its value
    for step in net.steps:
        feature = tuple(values[step.name].shape[2:])
        inputs = [source[i] for i in step.inputs]
        if step.op == "input":
            nodes["input"] = nir.Input(input_type={"input": np.array(feature)})
            source[step.name] = "input"
        elif step.op == "layer":
            if step.attrs.get("initial_membrane", 0.0):
                raise NIRError(f"layer {step.name}: a membrane starting at {step.attrs['initial_membrane']} x "
                               f"threshold has no NIR form (NIR neurons start at rest)")
            in_shape = tuple(values[step.inputs[0]].shape[2:])
            kept = _add_layer(nodes, edges, step.name, net.layer(step.name), in_shape, feature, inputs, dt,
                              subtract_reset, nest)
            source[step.name] = step.name if kept else inputs[0]
        elif step.op == "add":
            nodes[step.name] = nir.Scale(scale=np.ones(feature))
            edges += [(i, step.name) for i in inputs]
            source[step.name] = step.name
        elif step.op == "cat":
            raise NIRError(f"step {step.name}: concatenation has no NIR form")
        else:
            nodes["output"] = nir.Output(output_type={"output": np.array(feature)})
            edges.append((inputs[0], "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def _input_gain(node) -> Optional[np.ndarray]:
    """The factor by which a neuron node's resistance scales its input (None: none)."""
    nir = _nir()
    if isinstance(node, nir.CubaLIF):
        return node.w_in * node.r
    if isinstance(node, (nir.LIF, nir.LI, nir.IF, nir.I)):
        return node.r
    return None


def _fold_resistance(graph) -> None:
    """Move every neuron's ``r`` (and ``w_in``) into the weight nodes feeding it."""
    nir = _nir()
    for name, node in graph.nodes.items():
        gain = _input_gain(node)
        if gain is None or np.allclose(gain, 1.0, rtol=1e-12, atol=0):
            continue
        feeders = [src for src, dst in graph.edges if dst == name]
        for src in feeders:
            w = graph.nodes[src]
            if isinstance(w, (nir.Affine, nir.Linear)):
                g = np.broadcast_to(gain, (w.weight.shape[0],))
                w.weight = w.weight * g[:, None]
                if isinstance(w, nir.Affine):
                    w.bias = w.bias * g
            elif isinstance(w, (nir.Conv1d, nir.Conv2d)):
                g = np.asarray(gain)
                per_channel = g.reshape(g.shape[0], -1)
                if not np.all(per_channel == per_channel[:, :1]):
                    raise NIRError(f"node {name}: a resistance that varies within a channel cannot be folded into {src}")
                g = per_channel[:, 0]
                w.weight = w.weight * g.reshape((-1,) + (1,) * (w.weight.ndim - 1))
                w.bias = w.bias * g
            else:
                raise NIRError(f"node {name}: its resistance cannot be folded into {src} ({type(w).__name__})")
        if isinstance(node, nir.CubaLIF):
            node.w_in, node.r = np.ones_like(node.w_in), np.ones_like(node.r)
        else:
            node.r = np.ones_like(node.r)


def write(path: str | os.PathLike, graph) -> Path:
    """Write ``graph`` (a NIR graph, or a spikeflow model: pass it through
    :func:`to_nir` first) to a ``.nir`` (HDF5) file."""
    _nir().write(str(path), graph)
    return Path(path)


#: The most HDF5 groups and datasets a NIR file may hold, and how deep they may nest.
MAX_NIR_OBJECTS = 50_000
MAX_NIR_DEPTH = 64

#: The most nodes and edges :func:`from_nir` imports (its graph walks are quadratic).
MAX_NIR_NODES = 4096

#: How far a dataset may expand beyond the bytes the file stores for it (deflate
#: expands at most about 1032:1), plus a fixed allowance for small unwritten datasets.
_EXPANSION = 1100
_SLACK = 1 << 24


def _check_hdf5(path: Path) -> None:
    """NIRError unless the HDF5 file at ``path`` is self-contained and bounded: no
    external or soft links, no external or virtual dataset storage (they would read
    other files, ``/dev/zero`` or a pipe included), a tree (no object linked twice: hard
    links to one group can make a small file expand to millions of reads, or a cycle)
    of at most :data:`MAX_NIR_OBJECTS` objects nested at most :data:`MAX_NIR_DEPTH`
    deep, and datasets that do not declare more data than the file can hold (a chunked
    dataset can declare terabytes that it never stores)."""
    import h5py

    budget = _EXPANSION * path.stat().st_size + _SLACK
    declared = 0
    count = 0
    seen: dict[Any, str] = {}
    with h5py.File(path, "r") as handle:
        stack = [(handle, "", 0)]
        while stack:
            group, prefix, depth = stack.pop()
            if depth > MAX_NIR_DEPTH:
                raise NIRError(f"{path}: its groups nest more than {MAX_NIR_DEPTH} deep (at {prefix or '/'})")
            for name in group:
                full = f"{prefix}/{name}"
                count += 1
                if count > MAX_NIR_OBJECTS:
                    raise NIRError(f"{path}: it holds more than {MAX_NIR_OBJECTS} HDF5 objects")
                link = group.get(name, getlink=True)
                if not isinstance(link, h5py.HardLink):
                    raise NIRError(f"{path}: {full} is a {type(link).__name__}; a NIR file holds its data itself")
                item = group[name]
                if item.id in seen:
                    raise NIRError(f"{path}: {full} is the same HDF5 object as {seen[item.id]}; a NIR file is a tree")
                seen[item.id] = full
                if isinstance(item, h5py.Group):
                    stack.append((item, full, depth + 1))
                    continue
                if not isinstance(item, h5py.Dataset):
                    raise NIRError(f"{path}: {full} is a {type(item).__name__}, not a group or dataset")
                if item.external or item.is_virtual:
                    raise NIRError(f"{path}: dataset {full} keeps its data in other files")
                size = item.size * item.dtype.itemsize if item.shape is not None else 0
                stored = item.id.get_storage_size()
                declared += size
                if size > _EXPANSION * stored + _SLACK or declared > budget:
                    raise NIRError(
                        f"{path}: dataset {full} declares shape {list(item.shape)} ({size} bytes) but the file "
                        f"stores {stored} bytes for it; refusing to read it"
                    )


def read(path: str | os.PathLike):
    """Read a ``.nir`` file.

    No code runs (HDF5 datasets only, read with ``h5py``), and the file is checked
    before it is read (:func:`_check_hdf5`): no links or storage outside the file,
    a bounded number of objects, no dataset declaring more data than the file holds;
    the check and a first full read run in a child process (:func:`_probe_hdf5`), so
    that a corrupt file that makes the HDF5 library hang or crash is refused.

    Raises:
        FileNotFoundError: no such file.
        NIRError: (a ``ValueError``) anything else wrong with the file; the message
            starts with the path.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"NIR file {path} does not exist")
    try:
        _probe_hdf5(path)
        return _nir().read(str(path))
    except NIRError:
        raise
    except Exception as exc:  # h5py raises OSError, KeyError, ValueError, ... on bad files
        raise NIRError(f"{path} is not a readable NIR file: {type(exc).__name__}: {_short(exc)}") from None


#: How long the HDF5 library may take to read a NIR file in the probe (seconds, plus
#: one per 10 MB of file) before the file is refused as corrupt.
PROBE_SECONDS = 10.0


def _read_everything(path: Path) -> None:
    """:func:`_check_hdf5`, then read every dataset the way ``nir.read`` does."""
    import h5py

    _check_hdf5(path)
    with h5py.File(path, "r") as handle:
        stack = [handle]
        while stack:
            group = stack.pop()
            for name in group:
                item = group[name]
                if isinstance(item, h5py.Group):
                    stack.append(item)
                else:
                    item[()]


def _probe_hdf5(path: Path) -> None:
    """Check and read the whole file in a forked child process first: the HDF5 C
    library can loop forever or crash on a corrupt file (a damaged global-heap entry
    of a string makes it spin), which no Python ``try`` stops. The child's verdict
    comes back through a pipe; a child that does not finish within
    :data:`PROBE_SECONDS` is killed and the file refused. Where ``os.fork`` is missing
    (Windows) the checks run in this process."""
    if not hasattr(os, "fork"):  # pragma: no cover - Windows
        _read_everything(path)
        return
    import signal
    import time

    reader, writer = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns that forking a multi-threaded process (torch's thread pool)
        # may deadlock the child: this child only reads the file with h5py, whose lock
        # no other thread holds here, and leaves with os._exit.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: report and leave without running any cleanup of the parent's state
        status = 0
        try:
            os.close(reader)
            try:
                _read_everything(path)
                message = b""
            except NIRError as exc:
                status, message = 1, str(exc).encode("utf-8", "replace")
            except BaseException as exc:  # noqa: BLE001 - reported to the parent
                status, message = 2, f"{type(exc).__name__}: {_short(exc)}".encode("utf-8", "replace")
            os.write(writer, message[:4000])
        finally:
            os._exit(status)
    os.close(writer)
    limit = PROBE_SECONDS + path.stat().st_size / 1e7
    deadline = time.monotonic() + limit
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise NIRError(f"{path}: the HDF5 library did not finish reading it in {limit:.0f} s; the file is corrupt")
            time.sleep(0.002)
        with os.fdopen(reader, "rb") as pipe:
            reader = None
            message = pipe.read().decode("utf-8", "replace")
    finally:
        if reader is not None:
            os.close(reader)
    if os.WIFSIGNALED(status):
        raise NIRError(f"{path}: the HDF5 library crashed reading it (signal {os.WTERMSIG(status)}); the file is corrupt")
    code = os.WEXITSTATUS(status)
    if code == 1:
        raise NIRError(message)
    if code != 0:
        raise NIRError(f"{path} is not a readable NIR file: {message}")


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- import ---------------------------------------------------------------------------
def _inline(graph, prefix: str = "") -> tuple[dict, list]:
    """Nodes and edges of ``graph`` with nested graphs inlined (their Input and Output
    nodes kept as pass-through nodes)."""
    nir = _nir()
    nodes: dict[str, Any] = {}
    edges: list[tuple[str, str]] = []
    entry: dict[str, str] = {}
    exit_: dict[str, str] = {}
    for name, node in graph.nodes.items():
        full = prefix + name
        if isinstance(node, nir.NIRGraph):
            sub_nodes, sub_edges = _inline(node, full + ".")
            nodes.update(sub_nodes)
            edges += sub_edges
            ins = [k for k, v in node.nodes.items() if isinstance(v, nir.Input)]
            outs = [k for k, v in node.nodes.items() if isinstance(v, nir.Output)]
            if len(ins) != 1 or len(outs) != 1:
                raise NIRError(f"subgraph {full} must have one input and one output")
            entry[full], exit_[full] = f"{full}.{ins[0]}", f"{full}.{outs[0]}"
        else:
            nodes[full] = node
    for src, dst in graph.edges:
        src, dst = prefix + src, prefix + dst
        edges.append((exit_.get(src, src), entry.get(dst, dst)))
    return nodes, edges


def _remove_passthrough(nodes: dict, edges: list, keep: set) -> None:
    nir = _nir()
    for name in [n for n, v in nodes.items() if isinstance(v, (nir.Input, nir.Output)) and n not in keep]:
        ins = [s for s, d in edges if d == name]
        outs = [d for s, d in edges if s == name]
        edges[:] = [e for e in edges if name not in e] + [(s, d) for s in ins for d in outs]
        del nodes[name]


def _check_zero(name: str, node, field: str) -> None:
    value = getattr(node, field, None)
    if value is not None and not np.allclose(value, 0.0):
        raise NIRError(f"node {name} ({type(node).__name__}): a non-zero {field} has no spikeflow form")


def _param(values: np.ndarray) -> tuple[Any, tuple]:
    """A scalar when every neuron shares the value, else a per-neuron tensor."""
    values = np.asarray(values, dtype=np.float64)
    flat = values.reshape(-1)
    if flat.size and np.all(flat == flat[0]):
        return float(flat[0]), ()
    return torch.tensor(values, dtype=torch.float32), tuple(values.shape)


def _gain_layer(gain: np.ndarray) -> Optional[torch.nn.Module]:
    gain = np.asarray(gain, dtype=np.float64)
    if np.allclose(gain, 1.0, rtol=1e-6, atol=0):
        return None
    value, _ = _param(gain)
    return Scale(torch.as_tensor(value, dtype=torch.float32))


_NEURON_FIELDS = ("tau", "tau_syn", "tau_mem", "r", "w_in", "v_threshold", "v_leak", "v_reset")


def _check_neuron_shapes(name: str, node) -> None:
    """NIRError unless the neuron's parameters broadcast together without growing
    (``[N, 1]`` against ``[1, N]`` would make ``N**2`` values out of ``2 N``)."""
    arrays = [np.asarray(getattr(node, f)) for f in _NEURON_FIELDS if getattr(node, f, None) is not None]
    if not arrays:
        return
    try:
        shape = np.broadcast_shapes(*(a.shape for a in arrays))
    except ValueError:
        raise NIRError(
            f"node {name} ({type(node).__name__}): its parameters have shapes that do not fit together: "
            f"{[list(a.shape) for a in arrays]}"
        ) from None
    if int(np.prod(shape, dtype=object)) > max(a.size for a in arrays):
        raise NIRError(
            f"node {name} ({type(node).__name__}): its parameters of shapes {[list(a.shape) for a in arrays]} "
            f"broadcast to {list(shape)}, larger than any of them; per-neuron values must have one shape"
        )


def _neuron_module(name: str, node, dt: float) -> tuple[Optional[np.ndarray], Optional[torch.nn.Module]]:
    """``(input gain, module)`` for a NIR neuron node, or ``(None, None)``."""
    nir = _nir()
    if isinstance(node, (nir.LIF, nir.IF, nir.CubaLIF, nir.LI, nir.I)):
        _check_neuron_shapes(name, node)
    if isinstance(node, nir.LIF):
        _check_zero(name, node, "v_leak")
        _check_zero(name, node, "v_reset")
        beta, shape1 = _param(1.0 - dt / np.asarray(node.tau, dtype=np.float64))
        thr, shape2 = _param(node.v_threshold)
        return node.r * dt / node.tau, LIF(beta=beta, threshold=thr, reset="zero", shape=max(shape1, shape2, key=len))
    if isinstance(node, nir.IF):
        _check_zero(name, node, "v_reset")
        thr, shape = _param(node.v_threshold)
        return np.asarray(node.r) * dt, IF(threshold=thr, reset="zero", shape=shape)
    if isinstance(node, nir.CubaLIF):
        _check_zero(name, node, "v_leak")
        _check_zero(name, node, "v_reset")
        alpha, s1 = _param(1.0 - dt / np.asarray(node.tau_syn, dtype=np.float64))
        beta, s2 = _param(1.0 - dt / np.asarray(node.tau_mem, dtype=np.float64))
        thr, s3 = _param(node.v_threshold)
        gain = (node.w_in * dt / node.tau_syn) * (node.r * dt / node.tau_mem)  # i is linear in x: one input gain
        return gain, CubaLIF(alpha=alpha, beta=beta, threshold=thr, reset="zero", order="current_first",
                             shape=max(s1, s2, s3, key=len))
    if isinstance(node, nir.LI):
        _check_zero(name, node, "v_leak")
        beta, shape = _param(1.0 - dt / np.asarray(node.tau, dtype=np.float64))
        return node.r * dt / node.tau, LI(beta=beta, shape=shape)
    if isinstance(node, nir.I):
        return np.asarray(node.r) * dt, LI(beta=1.0)
    return None, None


def _conv_argument(value: Any) -> Any:
    """A NIR convolution setting as torch takes it: "same"/"valid", an int or a tuple."""
    if isinstance(value, str):
        return value
    return tuple(int(v) for v in np.atleast_1d(value)) if np.ndim(value) else int(value)


def _stateless_module(name: str, node) -> Optional[torch.nn.Module]:
    nir = _nir()
    weight = getattr(node, "weight", None)
    if weight is not None and 0 in np.shape(weight):
        raise NIRError(f"node {name} ({type(node).__name__}): an empty weight of shape {list(np.shape(weight))}")
    if isinstance(node, (nir.Affine, nir.Linear)):
        w = torch.tensor(np.asarray(node.weight), dtype=torch.float32)
        if w.dim() != 2:
            raise NIRError(f"node {name}: only 2-d weights are supported, got shape {tuple(w.shape)}")
        bias = isinstance(node, nir.Affine) and node.bias is not None
        layer = torch.nn.Linear(w.shape[1], w.shape[0], bias=bias)
        with torch.no_grad():
            layer.weight.copy_(w)
            if bias:
                layer.bias.copy_(torch.tensor(np.broadcast_to(node.bias, (w.shape[0],)), dtype=torch.float32))
        return layer
    if isinstance(node, (nir.Conv1d, nir.Conv2d)):
        w = torch.tensor(np.asarray(node.weight), dtype=torch.float32)
        cls = torch.nn.Conv1d if isinstance(node, nir.Conv1d) else torch.nn.Conv2d
        layer = cls(w.shape[1] * node.groups, w.shape[0], tuple(w.shape[2:]), stride=_conv_argument(node.stride),
                    padding=_conv_argument(node.padding), dilation=_conv_argument(node.dilation), groups=node.groups, bias=True)
        with torch.no_grad():
            layer.weight.copy_(w)
            layer.bias.copy_(torch.tensor(np.broadcast_to(node.bias, (w.shape[0],)), dtype=torch.float32))
        return layer
    if isinstance(node, nir.Flatten):
        if node.start_dim == 0 and node.end_dim == -1:
            return Flatten()
        return torch.nn.Flatten(node.start_dim + 1, node.end_dim if node.end_dim < 0 else node.end_dim + 1)
    if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
        k, s, p = (tuple(int(v) for v in np.broadcast_to(a, (2,))) for a in (node.kernel_size, node.stride, node.padding))
        divisor = 1 if isinstance(node, nir.SumPool2d) else None
        return torch.nn.AvgPool2d(k, s, p, divisor_override=divisor)
    if isinstance(node, nir.Scale):
        value, shape = _param(node.scale)
        if len(shape) > 1:  # [C, H, W] (or [C, 1, 1]): spikeflow's Scale holds one factor per channel
            per_channel = value.reshape(shape[0], -1)
            if not torch.equal(per_channel, per_channel[:, :1].expand_as(per_channel)):
                raise NIRError(f"node {name} (Scale): a scale of shape {list(shape)} that varies within a channel "
                               f"has no spikeflow form")
            value = per_channel[:, 0].clone()
        return Scale(torch.as_tensor(value, dtype=torch.float32))
    return None


def _node_modules(name: str, nodes: dict, recurrent: dict, dt: float) -> list[torch.nn.Module]:
    """The spikeflow modules of one NIR node: ``[module]``, or ``[Scale, neuron]`` for a
    neuron whose input gain is not 1."""
    nir = _nir()
    node = nodes[name]
    gain, neuron = _neuron_module(name, node, dt)
    if neuron is None:
        module = _stateless_module(name, node)
        if module is None:
            raise NIRError(
                f"node {name} ({type(node).__name__}) has no spikeflow form; importable: Affine, Linear, Conv1d, "
                f"Conv2d, Flatten, AvgPool2d, SumPool2d, Scale, LIF, IF, CubaLIF, LI, I"
            )
        return [module]
    scale = _gain_layer(gain)
    if name in recurrent:
        w_node = nodes[recurrent[name]]
        if isinstance(w_node, nir.Affine) and not np.allclose(w_node.bias, 0.0):
            raise NIRError(f"node {recurrent[name]}: a recurrent bias has no spikeflow form")
        w = np.asarray(w_node.weight, dtype=np.float64)
        if w.ndim != 2 or w.shape[0] != w.shape[1] or w.shape[0] == 0:
            raise NIRError(f"node {recurrent[name]}: a recurrent weight must be a non-empty square matrix, "
                           f"got shape {list(w.shape)}")
        if scale is not None:  # the recurrent drive enters behind the Scale: give it the gain
            w = w * np.broadcast_to(np.asarray(gain, dtype=np.float64), (w.shape[0],))[:, None]
        neuron._add_recurrent(w.shape[0])
        with torch.no_grad():
            neuron.recurrent_weight.copy_(torch.tensor(w))
    return [neuron] if scale is None else [scale, neuron]


def _branching_network(nodes: dict, edges: list, recurrent: dict, first: str, last: str, dt: float):
    """A :class:`~spikeflow.convert.network.SpikingNetwork` for a graph that branches:
    a node with several inputs reads their sum (an ``add`` step per extra input)."""
    import graphlib

    from .convert.network import SpikingNetwork, Step

    order = graphlib.TopologicalSorter({n: [s_ for s_, d in edges if d == n] for n in nodes if n not in recurrent.values()})
    try:
        names = list(order.static_order())
    except graphlib.CycleError as exc:
        raise NIRError(f"the graph has a cycle other than a recurrent weight loop: {exc.args[1]}") from None
    steps, layers, value = [], {}, {}
    for name in names:
        preds = [value[s_] for s_, d in edges if d == name]
        if name == first:
            steps.append(Step("input", "input", []))
            value[name] = "input"
            continue
        if not preds:
            raise NIRError(f"node {name} is not reached from the input")
        current = preds[0]
        for k, other in enumerate(preds[1:]):
            steps.append(Step(f"{name}.sum{k}", "add", [current, other]))
            current = f"{name}.sum{k}"
        if name == last:
            steps.append(Step("output", "output", [current]))
            break
        modules = _node_modules(name, nodes, recurrent, dt)
        for k, module in enumerate(modules):
            step = name if k == len(modules) - 1 else f"{name}.gain"
            steps.append(Step(step, "layer", [current]))
            layers[step] = module
            current = step
        value[name] = current
    return SpikingNetwork(steps, layers, {"source": "nir"}).eval()


def from_nir(graph, *, dt: float = DEFAULT_DT) -> torch.nn.Module:
    """A :class:`spikeflow.nn.Sequential` (a chain) or a
    :class:`~spikeflow.convert.network.SpikingNetwork` (a graph that branches) running a
    NIR graph.

    Args:
        graph: a ``nir.NIRGraph`` (or a path to a ``.nir`` file) from one input to one
            output, nested graphs allowed, with recurrent cycles ``neuron ->
            Linear/Affine(bias 0) -> neuron``; a node with several inputs sums them.
        dt: the Euler step in seconds (1e-4 for graphs written by snnTorch and by
            :func:`to_nir`'s default; Norse writes for 1e-3).

    Returns:
        the network (eval mode); ``net(x)`` with ``x`` ``[T, B, *input]``.

    Raises:
        NIRError: a node type or setting with no spikeflow form (named), or another
            kind of cycle; for a path, also any problem with the file (see
            :func:`read`), every message starting with the path.
        FileNotFoundError: no file at the path.
    """
    nir = _nir()
    if isinstance(graph, (str, os.PathLike)):
        path = Path(graph)
        graph = read(path)
        try:
            return _from_graph(graph, dt)
        except NIRError as exc:
            raise NIRError(f"{path}: {exc}") from None
        except Exception as exc:  # a malformed node the checks did not anticipate is still a bad file
            raise NIRError(f"{path}: the NIR graph cannot be imported: {type(exc).__name__}: {_short(exc)}") from None
    if not isinstance(graph, nir.NIRGraph):
        raise TypeError(f"from_nir takes a nir.NIRGraph or a path, got {type(graph).__name__}")
    return _from_graph(graph, dt)


def _from_graph(graph, dt: float) -> torch.nn.Module:
    nir = _nir()
    if not isinstance(graph, nir.NIRGraph):
        raise NIRError(f"the file holds a {type(graph).__name__}, not a NIR graph")
    nodes, edges = _inline(graph)
    if len(nodes) > MAX_NIR_NODES or len(edges) > MAX_NIR_NODES:
        raise NIRError(f"the graph has {len(nodes)} nodes and {len(edges)} edges; at most {MAX_NIR_NODES} of each "
                       f"can be imported")
    inputs = [n for n in graph.nodes if isinstance(graph.nodes[n], nir.Input)]
    outputs = [n for n in graph.nodes if isinstance(graph.nodes[n], nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise NIRError(f"the graph must have one input and one output node, found {len(inputs)} and {len(outputs)}")
    _remove_passthrough(nodes, edges, keep={inputs[0], outputs[0]})
    edges = list(dict.fromkeys(edges))
    # recurrent cycles: neuron -> W -> neuron
    recurrent: dict[str, str] = {}
    for src, dst in list(edges):
        if (dst, src) in edges and isinstance(nodes.get(dst), (nir.Linear, nir.Affine)) and _input_gain(nodes[src]) is not None:
            recurrent[src] = dst
    for neuron, w in recurrent.items():
        edges = [e for e in edges if e not in ((neuron, w), (w, neuron))]
        if any(w in e for e in edges):
            raise NIRError(f"node {w} closes a recurrent loop on {neuron} and is also used elsewhere")
    others = [n for n in nodes if n not in recurrent.values()]
    if any(sum(1 for s_, d in edges if d == n) > 1 or sum(1 for s_, d in edges if s_ == n) > 1 for n in others):
        return _branching_network(nodes, edges, recurrent, inputs[0], outputs[0], dt)
    layers: list[torch.nn.Module] = []
    current, seen = inputs[0], {inputs[0]}
    while current != outputs[0]:
        nexts = [d for s, d in edges if s == current]
        if len(nexts) != 1 or sum(1 for _, d in edges if d == nexts[0]) != 1:
            raise NIRError(f"node {current}: only chains of nodes (one input, one consumer each) can be imported")
        current = nexts[0]
        if current in seen:
            raise NIRError(f"node {current}: a cycle other than a recurrent weight loop")
        seen.add(current)
        if current == outputs[0]:
            break
        layers += _node_modules(current, nodes, recurrent, dt)
    missing = set(nodes) - seen - set(recurrent.values())
    if missing:
        raise NIRError(f"nodes not on the path from input to output: {sorted(missing)}")
    return Sequential(*layers).eval()
