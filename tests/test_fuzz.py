"""Files from strangers: every parser returns a valid result or raises its documented
error class, with a message naming the file -- never another exception, a hang, a
large allocation or code execution (issue 8).

Each parser gets hypothesis strategies that start from a valid file (made by
``fuzz/samples.py``, shared with the atheris harness in ``fuzz/``) and damage it
where it matters: truncations at every boundary, byte flips, headers and fields
replaced by huge, negative or wrongly typed values, hostile YAML. The regression
tests at the end pin what the atheris runs found (``fuzz/RESULTS.md``).

``SPIKEFLOW_FUZZ_EXAMPLES`` scales the number of examples (default 1) for manual runs,
e.g. ``SPIKEFLOW_FUZZ_EXAMPLES=20 pytest tests/test_fuzz.py``.
"""

from __future__ import annotations

import functools
import gzip
import io
import json
import os
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fuzz"))
import samples  # noqa: E402

import spikeflow  # noqa: E402
from spikeflow.convert.ann import load_ann  # noqa: E402
from spikeflow.convert.network import SpikingNetwork  # noqa: E402
from spikeflow.data.idx import IdxError, read_idx  # noqa: E402
from spikeflow.saving import ModelFileError  # noqa: E402
from spikeflow.train.checkpoint import CheckpointError, load_checkpoint, read_weights_only  # noqa: E402

SCALE = max(1, int(os.environ.get("SPIKEFLOW_FUZZ_EXAMPLES", "1")))


def fuzz(examples: int):
    """Hypothesis settings: ``examples`` (times SPIKEFLOW_FUZZ_EXAMPLES), no deadline."""
    return settings(max_examples=examples * SCALE, deadline=None, derandomize=SCALE == 1,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.data_too_large, HealthCheck.large_base_example])


@functools.lru_cache(maxsize=None)
def sample(target: str) -> dict[str, bytes]:
    return samples.SAMPLES[target]()


class Box:
    """A fresh file per example inside one tmp folder (hypothesis reuses the fixture)."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.count = folder, 0

    def write(self, data: bytes, suffix: str) -> Path:
        self.count += 1
        path = self.folder / f"input{self.count}{suffix}"
        path.write_bytes(data)
        return path


@pytest.fixture
def box(tmp_path):
    return Box(tmp_path)


def parses_or_refuses(parse, path: Path, expected):
    """``parse(path)``, or None when it raised ``expected`` naming ``path``; any other
    exception propagates and fails the test."""
    try:
        return parse(path)
    except expected as error:
        message = str(error)
        assert message and str(path) in message, f"{type(error).__name__} does not name {path}: {message!r}"
        return None


# -- generic damage -----------------------------------------------------------------------
HUGE_INTS = st.sampled_from([0, 1, -1, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**63 - 1, 2**64, 10**12, -(2**63)])


@st.composite
def damaged(draw, blob: bytes, header: int = 64):
    """``blob`` truncated, with bytes flipped, a slice dropped or duplicated, or a
    4/8-byte integer written into its first ``header`` bytes."""
    data = bytearray(blob)
    kind = draw(st.sampled_from(["truncate", "flip", "drop", "duplicate", "int", "append"]))
    if kind == "truncate":
        return bytes(data[: draw(st.integers(0, max(len(data) - 1, 0)))])
    if kind == "flip":
        for _ in range(draw(st.integers(1, 8))):
            if data:
                data[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
        return bytes(data)
    if kind in ("drop", "duplicate"):
        start = draw(st.integers(0, len(data)))
        end = draw(st.integers(start, min(len(data), start + 64)))
        return bytes(data[:start] + data[end:]) if kind == "drop" else bytes(data[:end] + data[start:end] + data[end:])
    if kind == "append":
        return bytes(data) + draw(st.binary(min_size=1, max_size=64))
    width = draw(st.sampled_from([4, 8]))
    value = draw(HUGE_INTS) % (1 << (8 * width))
    at = draw(st.integers(0, max(min(header, len(data)) - width, 0)))
    order = draw(st.sampled_from(["little", "big"]))
    data[at:at + width] = value.to_bytes(width, order)
    return bytes(data[: max(len(blob), at + width)])


JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), HUGE_INTS, st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "Linear", "LIF", "SpikingNetwork", "x" * 200, "F32", "nan"]),
)
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(["type", "shape", "layers", "a"]), inner, max_size=3)),
    max_leaves=8)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, prefix + (index,))


@st.composite
def mutated_json(draw, value):
    """``value`` (JSON data) with one to three places replaced by hostile values, big
    numbers in particular, or removed."""
    value = json.loads(json.dumps(value))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(value) if p]
        if not paths:
            break
        where = draw(st.sampled_from(paths))
        parent = value
        for key in where[:-1]:
            parent = parent[key]
        if draw(st.integers(0, 5)) == 0:
            del parent[where[-1]]
        else:
            parent[where[-1]] = draw(st.one_of(HUGE_INTS, JSON_VALUES, st.lists(HUGE_INTS, min_size=1, max_size=3)))
    return value


# -- 1. IDX -------------------------------------------------------------------------------
@st.composite
def idx_files(draw):
    """A header with any type code and up to 5 dims (huge ones too), then some data,
    maybe gzip-compressed."""
    code = draw(st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x00, 0x0A, 0xFF]))
    dims = draw(st.lists(st.one_of(st.integers(0, 6), st.sampled_from([2**32 - 1, 2**31, 65536])), max_size=5))
    magic = draw(st.sampled_from([b"\x00\x00", b"\x00\x01", b"\x1f\x8b"]))
    header = magic + bytes([code, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)
    data = header + draw(st.binary(max_size=200))
    if draw(st.booleans()):
        data = gzip.compress(data, mtime=0)
    return data


@fuzz(200)
@given(data=st.one_of(idx_files(), st.sampled_from(list(sample("idx").values())).flatmap(damaged)))
def test_idx_reads_or_raises_idx_error(box, data):
    array = parses_or_refuses(read_idx, box.write(data, ".idx"), IdxError)
    if array is not None:
        assert array.flags.writeable and array.dtype.isnative


# -- 2. checkpoints -------------------------------------------------------------------------
PLAIN = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(), st.text(max_size=8),
              st.builds(torch.zeros, st.integers(0, 3))),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=10)


@fuzz(60)
@given(data=st.one_of(st.sampled_from(list(sample("checkpoint").values())).flatmap(lambda b: damaged(b, 4096)),
                      PLAIN.map(lambda v: _torch_bytes(v)),
                      PLAIN.map(lambda v: _torch_bytes({"format": "spikeflow.train/1", "epoch": v}))))
def test_checkpoint_loads_or_raises_checkpoint_error(box, data):
    path = box.write(data, ".pt")
    parses_or_refuses(load_checkpoint, path, CheckpointError)
    parses_or_refuses(lambda p: read_weights_only(p, what="weights file"), path, CheckpointError)


def _torch_bytes(payload) -> bytes:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


# -- 3. saved models --------------------------------------------------------------------------
def _split(blob: bytes) -> tuple[dict, bytes]:
    length = int.from_bytes(blob[:8], "little")
    return json.loads(blob[8:8 + length]), blob[8 + length:]


def _join(header: dict, data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return len(raw).to_bytes(8, "little") + raw + data


@st.composite
def model_files(draw):
    """A saved model whose safetensors header or architecture spec is mutated."""
    blob = draw(st.sampled_from(sorted(sample("model").values())))
    header, data = _split(blob)
    where = draw(st.sampled_from(["architecture", "tensors", "metadata", "bytes"]))
    if where == "bytes":
        return draw(damaged(blob, 512))
    if where == "architecture":
        arch = json.loads(header["__metadata__"]["architecture"])
        header["__metadata__"]["architecture"] = json.dumps(draw(mutated_json(arch)))
    elif where == "tensors":
        tensors = {k: v for k, v in header.items() if k != "__metadata__"}
        mutated = draw(mutated_json(tensors))
        header = {"__metadata__": header["__metadata__"], **(mutated if isinstance(mutated, dict) else {})}
    else:
        meta = header["__metadata__"]
        key = draw(st.sampled_from(sorted(meta)))
        meta[key] = draw(st.sampled_from(["", "{", "[]", "null", "[" * 5000, json.dumps({"a": 1}), "spikeflow.model/1"]))
    return _join(header, data)


def _load_model(path):
    spikeflow.saving.load_metadata(path)
    return spikeflow.load(path)


@fuzz(150)
@given(data=model_files())
def test_saved_model_loads_or_raises_model_file_error(box, data):
    model = parses_or_refuses(_load_model, box.write(data, ".safetensors"), ModelFileError)
    if model is not None:
        assert isinstance(model, torch.nn.Module) and not model.training


@st.composite
def network_files(draw):
    payload = torch.load(io.BytesIO(sample("network")["network.pt"]), weights_only=True)
    where = draw(st.sampled_from(["spec", "state", "format", "bytes"]))
    if where == "bytes":
        return draw(damaged(sample("network")["network.pt"], 4096))
    if where == "spec":
        payload["spec"] = json.dumps(draw(mutated_json(json.loads(payload["spec"]))))
    elif where == "state":
        key = draw(st.sampled_from(sorted(payload["state_dict"])))
        payload["state_dict"][key] = draw(st.one_of(
            st.builds(torch.zeros, st.lists(st.integers(0, 4), max_size=3)), PLAIN))
    else:
        payload[draw(st.sampled_from(["format", "spec", "state_dict"]))] = draw(PLAIN)
    return _torch_bytes(payload)


@fuzz(100)
@given(data=network_files())
def test_spiking_network_loads_or_raises_checkpoint_error(box, data):
    net = parses_or_refuses(SpikingNetwork.load, box.write(data, ".pt"), CheckpointError)
    assert net is None or isinstance(net, SpikingNetwork)


@fuzz(50)
@given(data=st.one_of(
    damaged(sample("ann")["ann.pt"], 4096),
    st.builds(lambda s, v: _torch_bytes({"format": "spikeflow.ann/1", "settings": s, "state_dict": v}),
              st.one_of(PLAIN, st.fixed_dictionaries({"inputs": HUGE_INTS})), st.one_of(PLAIN, st.just({})))))
def test_ann_loads_or_raises_checkpoint_error(box, data):
    parses_or_refuses(lambda p: load_ann(p, samples.ann_build), box.write(data, ".pt"), CheckpointError)


# -- 4. NIR -----------------------------------------------------------------------------------
def _nir_edit(blob: bytes, edit) -> bytes:
    h5py = pytest.importorskip("h5py")
    buffer = io.BytesIO(blob)
    with h5py.File(buffer, "r+") as handle:
        edit(handle, h5py)
    return buffer.getvalue()


def _datasets(handle, h5py) -> list[str]:
    names = []
    handle.visititems(lambda name, item: names.append(name) if isinstance(item, h5py.Dataset) else None)
    return sorted(names)


@st.composite
def nir_files(draw):
    """A NIR file with one dataset replaced (wrong dtype or shape, empty, huge declared
    shape stored in nothing, deleted), a link to elsewhere added, or bytes damaged."""
    blob = draw(st.sampled_from(sorted(sample("nir").values())))
    kind = draw(st.sampled_from(["replace", "huge", "delete", "link", "bytes"]))
    if kind == "bytes":
        return draw(damaged(blob, 2048))
    value = draw(st.one_of(
        st.builds(np.zeros, st.lists(st.integers(0, 3), max_size=3)),
        st.builds(np.full, st.lists(st.integers(1, 3), min_size=1, max_size=2), st.sampled_from([0.0, -1.0, np.nan, np.inf, 1e300])),
        st.sampled_from([b"LIF", b"Affine", b"NIRGraph", b"Input", b"Nope", b"", "\u00e9".encode()]),
        HUGE_INTS.map(lambda v: np.array(v % 2**63, dtype=np.int64)),
    ))
    pick = draw(st.integers(0, 10**6))

    def edit(handle, h5py):
        names = _datasets(handle, h5py)
        name = names[pick % len(names)]
        parent = handle[name].parent
        leaf = name.rsplit("/", 1)[-1]
        if kind == "link":
            parent[leaf + "_x"] = h5py.ExternalLink("/dev/zero", "/")
            return
        del parent[leaf]
        if kind == "replace":
            parent[leaf] = value
        elif kind == "huge":
            parent.create_dataset(leaf, shape=(10**6, 10**6), dtype="f8", chunks=(1, 1))

    return _nir_edit(blob, edit)


def _read_nir(path):
    from spikeflow import nir as snir

    snir.read(path)
    return snir.from_nir(path)


@fuzz(80)
@given(data=nir_files())
def test_nir_reads_or_raises_nir_error(box, data):
    pytest.importorskip("nir")
    from spikeflow.nir import NIRError

    parses_or_refuses(_read_nir, box.write(data, ".nir"), NIRError)


# -- 5. ONNX ----------------------------------------------------------------------------------
@st.composite
def onnx_files(draw):
    """An ONNX model with an initializer's dims or data, a node's inputs or type, or
    the input's declared shape changed, or its bytes damaged."""
    onnx = pytest.importorskip("onnx")
    blob = draw(st.sampled_from(sorted(sample("onnx").values())))
    kind = draw(st.sampled_from(["dims", "data", "drop_init", "cycle", "op", "input_shape", "bytes"]))
    if kind == "bytes":
        return draw(damaged(blob, 256))
    model = onnx.load_from_string(blob)
    graph = model.graph
    if kind in ("dims", "data", "drop_init") and graph.initializer:
        init = graph.initializer[draw(st.integers(0, len(graph.initializer) - 1))]
        if kind == "dims":
            init.dims[:] = draw(st.lists(st.sampled_from([0, 1, 3, 2**31, 10**6, 2**62]), max_size=4))
        elif kind == "data":
            raw = init.raw_data
            init.raw_data = raw[: draw(st.integers(0, len(raw)))] if raw else b"\x00" * 3
            init.data_type = draw(st.sampled_from([1, 7, 8, 10, 11, 0, 99]))
        else:
            graph.initializer.remove(init)
    elif kind == "cycle":
        node = graph.node[draw(st.integers(0, len(graph.node) - 1))]
        node.input[0] = node.output[0]
    elif kind == "op":
        node = graph.node[draw(st.integers(0, len(graph.node) - 1))]
        node.op_type = draw(st.sampled_from(["Add", "Mul", "Gather", "Reshape", "Flatten", "Conv", "Loop", ""]))
    elif kind == "input_shape":
        dims = graph.input[0].type.tensor_type.shape.dim
        for dim in dims[1:]:
            dim.dim_value = draw(st.sampled_from([1, 2**31, 10**9, 2**62]))
    return model.SerializeToString()


@fuzz(150)
@given(data=onnx_files())
def test_onnx_imports_or_raises_conversion_error(box, data):
    from spikeflow.convert import ConversionError
    from spikeflow.convert.onnx import load_onnx

    parses_or_refuses(load_onnx, box.write(data, ".onnx"), ConversionError)


# -- 6. settings files ------------------------------------------------------------------------
HOSTILE_YAML = [
    "!!python/object/apply:os.system ['echo pwned > /tmp/spikeflow-fuzz-pwned']",
    "epochs: !!python/object/new:subprocess.Popen [['true']]",
    "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
    "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nepochs: *e\n",
    "epochs: " + "[" * 5000 + "]" * 5000,
    "epochs: " + "9" * 10000,
    "epochs: .nan\nlr: .inf",
    "epochs: !!binary aGVsbG8=",
    "? [a, b]\n: 1",
    "epochs: 1\nepochs: 2",
    "\t- bad",
    "epochs: 2021-13-45",
    "lr: !!float nope",
]
HOSTILE_JSON = ['{"epochs": ' + "9" * 10000 + "}", "[" * 100000 + "]" * 100000, '{"lr": NaN, "epochs": Infinity}',
                '{"epochs": 1e999}', '{"epochs": 2, "epochs": "x"}', '{"\\ud800": 1}', "\ufeff{}"]
HOSTILE_TOML = ["epochs = " + "9" * 10000, "a = " + "[" * 5000 + "]" * 5000, "lr = nan\nepochs = inf",
                "x = {" * 500, "[train]\nepochs = 1\n[train]\nepochs = 2", "a = 1979-05-27T07:32:00Z"]


def _config_text(draw, data: dict, suffix: str) -> bytes:
    mutated = draw(mutated_json(data))
    if suffix == ".json":
        return json.dumps(mutated).encode()
    if suffix == ".yaml":
        yaml = pytest.importorskip("yaml")
        return yaml.safe_dump(mutated).encode()
    return samples._toml(mutated if isinstance(mutated, dict) else {"x": mutated}).encode()


@st.composite
def config_files(draw, target: str):
    """``(suffix, bytes)``: a valid settings file with mutated values, a hostile text,
    or damaged bytes."""
    suffix = draw(st.sampled_from([".yaml", ".json", ".toml"]))
    kind = draw(st.sampled_from(["mutate", "hostile", "bytes", "text"]))
    files = sample(target)
    if kind == "mutate":
        source = files[next(k for k in files if k.endswith(suffix))]
        if suffix == ".json":
            data = json.loads(source)
        elif suffix == ".yaml":
            data = pytest.importorskip("yaml").safe_load(source)
        else:
            import tomllib

            data = tomllib.loads(source.decode())
        return suffix, _config_text(draw, data, suffix)
    if kind == "hostile":
        pool = {".yaml": HOSTILE_YAML, ".json": HOSTILE_JSON, ".toml": HOSTILE_TOML}[suffix]
        return suffix, draw(st.sampled_from(pool)).encode()
    if kind == "text":
        return suffix, draw(st.text(max_size=80)).encode("utf-8", "surrogatepass")
    source = files[next(k for k in files if k.endswith(suffix))]
    return suffix, draw(damaged(source, 64))


def _config_parsers():
    from spikeflow.hardware.placement import load_hardware
    from spikeflow.train.config import load_config, read_config_file
    from spikeflow.tune import load_space

    return {
        "config": lambda p: (read_config_file(p), load_config(p)),
        "space": load_space,
        "hardware": load_hardware,
    }


@pytest.mark.parametrize("target", ["config", "space", "hardware"])
@fuzz(100)
@given(data=st.data())
def test_settings_files_load_or_raise_value_or_type_error(box, target, data):
    if target == "space":
        pytest.importorskip("optuna")
    suffix, blob = data.draw(config_files(target))
    if suffix == ".yaml":
        pytest.importorskip("yaml")
    parses_or_refuses(_config_parsers()[target], box.write(blob, suffix), (ValueError, TypeError))
    assert not Path("/tmp/spikeflow-fuzz-pwned").exists()


# -- regressions: what the atheris runs found -------------------------------------------------
def _hostile_model(tmp_path, in_features: int, out_features: int) -> Path:
    """A saved mlp sample whose first Linear claims ``in_features x out_features``."""
    header, data = _split(sample("model")["mlp.safetensors"])
    arch = json.loads(header["__metadata__"]["architecture"])
    linear = arch["layers"][0]["module"]
    assert linear["type"] == "Linear"
    linear.update(in_features=in_features, out_features=out_features)
    header["__metadata__"]["architecture"] = json.dumps(arch)
    path = tmp_path / "hostile.safetensors"
    path.write_bytes(_join(header, data))
    return path


def test_a_model_asking_for_a_huge_layer_fails_fast_naming_the_layer_and_sizes(tmp_path):
    path = _hostile_model(tmp_path, 10**6, 10**6)  # 10**12 weights in a file of a few dozen numbers
    start = time.perf_counter()
    with pytest.raises(ModelFileError) as info:
        spikeflow.load(path)
    assert time.perf_counter() - start < 5
    message = str(info.value)
    assert str(path) in message and "Linear" in message and "[1000000, 1000000]" in message
    header, _ = _split(sample("model")["mlp.safetensors"])
    held = sum(int(np.prod(e["shape"])) for k, e in header.items() if k != "__metadata__")
    assert held < 100 and f"the file's tensors hold {held} elements" in message


def test_a_model_asking_for_a_large_layer_allocates_nothing_large(tmp_path):
    """Linear(10**4, 10**4) (400 MB) could be built; it must be refused before it is:
    the peak memory of a fresh process loading the file stays far below 400 MB."""
    path = _hostile_model(tmp_path, 10**4, 10**4)
    script = textwrap.dedent(f"""
        import resource, spikeflow, torch
        from spikeflow.saving import ModelFileError
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            spikeflow.load({str(path)!r})
        except ModelFileError as error:
            print("refused:", error)
        print("grew_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120).stdout
    assert "refused:" in out and "Linear" in out, out
    grew_kb = int(out.rsplit("grew_kb", 1)[1])
    assert grew_kb < 100_000, f"loading grew the process by {grew_kb} kB"


def test_a_spiking_network_file_asking_for_a_huge_layer_is_refused(tmp_path):
    payload = torch.load(io.BytesIO(sample("network")["network.pt"]), weights_only=True)
    spec = json.loads(payload["spec"])
    spec["layers"]["fc"].update(in_features=10**6, out_features=10**6)
    payload["spec"] = json.dumps(spec)
    path = tmp_path / "net.pt"
    path.write_bytes(_torch_bytes(payload))
    with pytest.raises(CheckpointError, match=r"Linear layer asks for a tensor of shape \[1000000, 1000000\]") as info:
        SpikingNetwork.load(path)
    assert str(path) in str(info.value)


def test_a_safetensors_header_whose_sizes_do_not_match_its_shapes_is_refused(tmp_path):
    header, data = _split(sample("model")["mlp.safetensors"])
    key = next(k for k in header if k != "__metadata__")
    header[key]["shape"] = [10**6, 10**6]
    path = tmp_path / "m.safetensors"
    path.write_bytes(_join(header, data))
    with pytest.raises(ModelFileError, match=r"needs 4000000000000 bytes, its header gives it"):
        spikeflow.load(path)


@pytest.mark.parametrize("spec", ["[" * 100_000 + "]" * 100_000, json.dumps({"type": "Sequential", "layers": [
    {"type": "Identity"}] * 200_000})])
def test_deep_or_enormous_architectures_are_model_file_errors(tmp_path, spec):
    header, data = _split(sample("model")["mlp.safetensors"])
    header["__metadata__"]["architecture"] = spec
    path = tmp_path / "m.safetensors"
    path.write_bytes(_join(header, data))
    with pytest.raises(ModelFileError, match="architecture") as info:
        spikeflow.load(path)
    assert str(path) in str(info.value)


def _onnx_model(nodes, inits, in_shape, out_shape):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_onnx_constant_folding_cannot_blow_up(tmp_path):
    """Adding a [N, 1] and a [1, N] constant would make N**2 values from 2 N."""
    from onnx import helper, numpy_helper

    from spikeflow.convert import ConversionError
    from spikeflow.convert.onnx import load_onnx

    n = 100_000
    blob = _onnx_model(
        [helper.make_node("Add", ["a", "b"], ["c"]), helper.make_node("Reshape", ["x", "c"], ["y"])],
        [numpy_helper.from_array(np.zeros((n, 1), np.int64), "a"), numpy_helper.from_array(np.zeros((1, n), np.int64), "b")],
        ["N", 4], ["N", 4])
    path = tmp_path / "bomb.onnx"
    path.write_bytes(blob)
    with pytest.raises(ConversionError, match=r"10000000000 elements") as info:
        load_onnx(path)
    assert str(path) in str(info.value)


def test_onnx_declared_sizes_cannot_allocate(tmp_path):
    """A Flatten of a transposed tensor declared [N, 10**5, 10**5, 1] must not build
    an index of its 10**10 features."""
    from onnx import helper

    from spikeflow.convert import ConversionError
    from spikeflow.convert.onnx import load_onnx

    blob = _onnx_model(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Transpose", ["r"], ["t"], perm=[0, 3, 1, 2]),
         helper.make_node("Flatten", ["t"], ["y"])],
        [], ["N", 10**5, 10**5, 1], ["N", 10**10])
    path = tmp_path / "wide.onnx"
    path.write_bytes(blob)
    with pytest.raises(ConversionError, match=r"flattened shape") as info:
        load_onnx(path)
    assert str(path) in str(info.value)


def test_onnx_tensor_data_that_does_not_fit_its_dims_is_a_conversion_error(tmp_path):
    from onnx import helper, numpy_helper

    from spikeflow.convert import ConversionError
    from spikeflow.convert.onnx import load_onnx

    weight = numpy_helper.from_array(np.ones((4, 3), np.float32), "w")
    weight.dims[:] = [10**6, 10**6]
    blob = _onnx_model([helper.make_node("MatMul", ["x", "w"], ["y"])], [weight], ["N", 4], ["N", 3])
    path = tmp_path / "dims.onnx"
    path.write_bytes(blob)
    with pytest.raises(ConversionError, match="malformed") as info:
        load_onnx(path)
    assert str(path) in str(info.value)


def _nir_sample_with(tmp_path, edit) -> Path:
    path = tmp_path / "edited.nir"
    path.write_bytes(_nir_edit(sample("nir")["chain.nir"], edit))
    return path


def _first_weight(handle, h5py) -> str:
    return next(n for n in _datasets(handle, h5py) if n.endswith("/weight"))


@pytest.mark.parametrize("what", ["chunked", "external", "soft"])
def test_nir_files_cannot_declare_unstored_data_or_point_elsewhere(tmp_path, what):
    pytest.importorskip("nir")
    from spikeflow.nir import NIRError, read

    def edit(handle, h5py):
        name = _first_weight(handle, h5py)
        if what == "chunked":  # 8 TB declared, nothing stored
            del handle[name]
            handle.create_dataset(name, shape=(10**6, 10**6), dtype="f8", chunks=(1, 1))
        elif what == "external":
            handle["nodes/x"] = h5py.ExternalLink("/dev/zero", "/")
        else:
            handle["nodes/x"] = h5py.SoftLink("/")

    path = _nir_sample_with(tmp_path, edit)
    with pytest.raises(NIRError, match="declares shape|keeps its data|Link") as info:
        read(path)
    assert str(path) in str(info.value)


def test_nir_import_cannot_grow_arrays_from_declared_shapes(tmp_path):
    """An empty weight [10**6, 0] stores nothing, but its bias would be broadcast to
    its 10**6 declared rows."""
    nir = pytest.importorskip("nir")
    from spikeflow.nir import NIRError, from_nir, write

    node = nir.Affine(weight=np.zeros((10**6, 0)), bias=np.zeros(1))
    graph = nir.NIRGraph(nodes={"input": nir.Input(np.array([0])), "n": node, "output": nir.Output(np.array([10**6]))},
                         edges=[("input", "n"), ("n", "output")], type_check=False)
    path = write(tmp_path / "g.nir", graph)
    with pytest.raises(NIRError, match="empty weight") as info:
        from_nir(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("suffix, text, message", [
    (".json", '{"epochs": ' + "9" * 10000 + "}", "not valid JSON"),
    (".yaml", "epochs: " + "9" * 10000, "not valid YAML"),
    (".toml", "epochs = " + "9" * 10000, "not valid TOML"),
    (".json", "[" * 100000 + "]" * 100000, "not valid JSON"),
    (".yaml", "a: " + "[" * 5000 + "]" * 5000, "not valid YAML"),
    (".yaml", HOSTILE_YAML[2], "more than 100000 values"),
    (".yaml", "a: " + "[" * 40 + "]" * 40, "more than 32 deep"),
    (".yaml", HOSTILE_YAML[0], "not valid YAML"),
    (".json", b"\xff\xfe{}", "not UTF-8"),
])
def test_settings_file_findings_are_value_errors_naming_the_file(tmp_path, suffix, text, message):
    from spikeflow.train.config import read_config_file

    if suffix == ".yaml":
        pytest.importorskip("yaml")
    path = tmp_path / f"settings{suffix}"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ValueError, match=message) as info:
        read_config_file(path)
    assert str(path) in str(info.value)


def _zip_with_encrypted_flag(blob: bytes) -> bytes:
    """A torch.save archive whose first member claims to be encrypted."""
    data = bytearray(blob)
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        first = archive.infolist()[0]
    data[first.header_offset + 6] |= 1  # local header flag
    central = bytes(data).rfind(b"PK\x01\x02", 0, len(data))
    while central > 0:
        data[central + 8] |= 1  # central directory flag
        central = bytes(data).rfind(b"PK\x01\x02", 0, central)
    return bytes(data)


@pytest.mark.parametrize("damage", ["encrypted", "unpickler"])
def test_checkpoint_findings_are_checkpoint_errors(tmp_path, damage):
    blob = sample("checkpoint")["checkpoint.pt"]
    if damage == "encrypted":
        blob = _zip_with_encrypted_flag(blob)
    else:  # a legacy (non-zip) pickle that pops a mark it never pushed
        blob = b"\x80\x02e."
    path = tmp_path / "bad.pt"
    path.write_bytes(blob)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo (POSIX)")
def test_a_settings_path_that_is_a_pipe_or_folder_is_refused_without_blocking(tmp_path):
    from spikeflow.train.config import read_config_file

    pipe = tmp_path / "settings.yaml"
    os.mkfifo(pipe)  # reading it would block until a writer comes
    folder = tmp_path / "folder.json"
    folder.mkdir()
    for path in (pipe, folder):
        with pytest.raises(ValueError, match="is not a regular file") as info:
            read_config_file(path)
        assert str(path) in str(info.value)


@pytest.mark.parametrize("damage", ["encrypted", "unpickler"])
@pytest.mark.parametrize("target", ["network", "ann"])
def test_damaged_torch_files_are_checkpoint_errors_for_networks_and_anns(tmp_path, target, damage):
    """What torch.load's weights-only unpickler and the zip check let escape (IndexError,
    RuntimeError, ...) is a CheckpointError naming the file for SpikingNetwork.load and
    load_ann, whatever read_weights_only does."""
    blob = sample(target)[f"{target}.pt"]
    blob = _zip_with_encrypted_flag(blob) if damage == "encrypted" else b"\x80\x02e."
    path = tmp_path / "bad.pt"
    path.write_bytes(blob)
    load = SpikingNetwork.load if target == "network" else (lambda p: load_ann(p, samples.ann_build))
    with pytest.raises(CheckpointError) as info:
        load(path)
    assert str(path) in str(info.value)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the HDF5 probe runs in a forked child (POSIX)")
def test_a_nir_file_that_makes_hdf5_spin_is_refused_in_bounded_time(tmp_path, monkeypatch):
    """Found by atheris: a global-heap entry of a string whose size field says 65 for
    the 5 bytes of 'input' makes the HDF5 library loop forever reading the edges."""
    pytest.importorskip("nir")
    from spikeflow import nir as snir

    blob = bytearray(sample("nir")["chain.nir"])
    heap = blob.find(b"GCOL")
    data = blob.find(b"input\x00\x00\x00", heap)  # a heap object: index, refcount, reserved, size, data
    assert heap > 0 and data > heap and blob[data - 8:data] == (5).to_bytes(8, "little")
    blob[data - 8:data] = (65).to_bytes(8, "little")
    path = tmp_path / "spin.nir"
    path.write_bytes(bytes(blob))
    monkeypatch.setattr(snir, "PROBE_SECONDS", 2.0)
    start = time.perf_counter()
    with pytest.raises(snir.NIRError, match="did not finish reading it") as info:
        snir.read(path)
    assert time.perf_counter() - start < 10 and str(path) in str(info.value)
