"""Small valid files for every spikeflow parser that reads files from strangers.

The seed corpora of the atheris harness (``make_corpus.py``) and the hypothesis
tests (``tests/test_fuzz.py``) start from these and mutate them: a fuzzer that
starts from a valid file reaches the checks behind the magic numbers.

Every function returns ``{name: bytes}``; the name's suffix is the one the
parser needs (``.gz``, ``.yaml``, ...). Nothing here is random: the same bytes
every run.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import torch

__all__ = ["SAMPLES", "all_samples"]


def _via_file(write, suffix: str) -> bytes:
    """The bytes a writer that takes a path produces."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"sample{suffix}"
        write(path)
        return path.read_bytes()


def idx_samples() -> dict[str, bytes]:
    from spikeflow.data.idx import write_idx

    arrays = {
        "u8": np.arange(60, dtype=np.uint8).reshape(3, 4, 5),
        "i8": np.arange(-4, 4, dtype=np.int8),
        "i16": np.arange(6, dtype=np.int16).reshape(2, 3),
        "i32": np.arange(4, dtype=np.int32).reshape(2, 2),
        "f32": np.linspace(-1, 1, 6, dtype=np.float32).reshape(3, 2),
        "f64": np.linspace(0, 1, 3, dtype=np.float64),
        "scalar": np.array(7, dtype=np.uint8),
        "empty": np.zeros((0, 3), dtype=np.uint8),
    }
    out = {}
    for name, array in arrays.items():
        out[f"{name}.idx"] = _via_file(lambda p, a=array: write_idx(p, a, compress=False), ".idx")
        out[f"{name}.idx.gz"] = _via_file(lambda p, a=array: write_idx(p, a, compress=True), ".gz")
    return out


def checkpoint_samples() -> dict[str, bytes]:
    from spikeflow.train.checkpoint import capture_rng_state, save_checkpoint

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    payload = {
        "epoch": 1, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "best_accuracy": 0.5, "best_epoch": 1, "config": {"epochs": 2, "lr": 0.001, "preset": "mlp"},
        "rng": capture_rng_state(), "history": [{"loss": 1.0, "accuracy": 0.5}],
    }
    return {"checkpoint.pt": _via_file(lambda p: save_checkpoint(p, payload), ".pt")}


def _small_models() -> dict[str, torch.nn.Module]:
    import spikeflow as sf
    from spikeflow.convert.network import SpikingNetwork, Step

    torch.manual_seed(0)
    mlp = sf.nn.Sequential(torch.nn.Linear(4, 3), sf.nn.LIF(beta=0.9), torch.nn.Linear(3, 2), sf.nn.LI(beta=0.8))
    conv = sf.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.BatchNorm2d(2), sf.nn.IF(),
        torch.nn.AvgPool2d(2), sf.nn.Flatten(), torch.nn.Linear(8, 2), sf.nn.CubaLIF(alpha=0.5, beta=0.9),
    )
    network = SpikingNetwork(
        [Step("input", "input", []), Step("fc", "layer", ["input"]), Step("lif", "layer", ["fc"]),
         Step("output", "output", ["lif"])],
        {"fc": torch.nn.Linear(4, 3), "lif": sf.nn.LIF(beta=0.9)},
        {"source": "fuzz sample"},
    )
    return {"mlp": mlp, "conv": conv, "network": network}


def model_samples() -> dict[str, bytes]:
    import spikeflow as sf

    return {
        f"{name}.safetensors": _via_file(lambda p, m=model: sf.save(m, p, metadata={"sample": name}), ".safetensors")
        for name, model in _small_models().items()
    }


def network_samples() -> dict[str, bytes]:
    network = _small_models()["network"]
    return {"network.pt": _via_file(network.save, ".pt")}


def ann_build(inputs: int = 4, hidden: int = 3, classes: int = 2) -> torch.nn.Module:
    """The architecture the ANN samples were saved from (``load_ann``'s ``build``)."""
    for value in (inputs, hidden, classes):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 4096:
            raise ValueError(f"ann_build takes sizes from 1 to 4096, got {value!r}")
    return torch.nn.Sequential(torch.nn.Linear(inputs, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, classes))


def ann_samples() -> dict[str, bytes]:
    from spikeflow.convert.ann import save_ann

    torch.manual_seed(0)
    model = ann_build()
    return {"ann.pt": _via_file(lambda p: save_ann(p, model, inputs=4, hidden=3, classes=2), ".pt")}


def nir_samples() -> dict[str, bytes]:
    import spikeflow as sf
    from spikeflow import nir as snir

    torch.manual_seed(0)
    chain = sf.nn.Sequential(torch.nn.Linear(4, 3), sf.nn.LIF(beta=0.9, reset="zero"),
                             torch.nn.Linear(3, 2), sf.nn.LI(beta=0.8))
    recurrent = sf.nn.Sequential(torch.nn.Linear(3, 2), sf.nn.LIF(beta=0.8, reset="zero", recurrent=2))
    out = {}
    for name, model, shape in (("chain", chain, (4,)), ("recurrent", recurrent, (3,))):
        graph = snir.to_nir(model.eval(), shape)
        out[f"{name}.nir"] = _via_file(lambda p, g=graph: snir.write(p, g), ".nir")
    return out


def onnx_samples() -> dict[str, bytes]:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def init(name, shape, dtype=np.float32):
        return numpy_helper.from_array(rng.standard_normal(shape).astype(dtype), name)

    def model(nodes, inits, in_shape, out_shape):
        graph = helper.make_graph(
            nodes, "sample", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], initializer=inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()

    mlp = model(
        [helper.make_node("Gemm", ["x", "w1", "b1"], ["h1"], transB=1), helper.make_node("Relu", ["h1"], ["h2"]),
         helper.make_node("MatMul", ["h2", "w2"], ["h3"]), helper.make_node("Add", ["h3", "b2"], ["y"])],
        [init("w1", (5, 4)), init("b1", (5,)), init("w2", (5, 3)), init("b2", (3,))], ["N", 4], ["N", 3])
    cnn = model(
        [helper.make_node("Conv", ["x", "cw", "cb"], ["c1"], pads=[1, 1, 1, 1]),
         helper.make_node("BatchNormalization", ["c1", "s", "bb", "m", "v"], ["c2"]),
         helper.make_node("Relu", ["c2"], ["c3"]), helper.make_node("MaxPool", ["c3"], ["c4"], kernel_shape=[2, 2], strides=[2, 2]),
         helper.make_node("Shape", ["c4"], ["sh"]), helper.make_node("Gather", ["sh", "zero"], ["n"], axis=0),
         helper.make_node("Unsqueeze", ["n", "ax"], ["n1"]), helper.make_node("Concat", ["n1", "minus"], ["target"], axis=0),
         helper.make_node("Reshape", ["c4", "target"], ["f"]), helper.make_node("Gemm", ["f", "fw", "fb"], ["g"], transB=1),
         helper.make_node("Softmax", ["g"], ["y"], axis=-1)],
        [init("cw", (2, 1, 3, 3)), init("cb", (2,)), numpy_helper.from_array(np.ones(2, np.float32), "s"),
         init("bb", (2,)), init("m", (2,)), numpy_helper.from_array(np.ones(2, np.float32), "v"),
         numpy_helper.from_array(np.array(0, np.int64), "zero"), numpy_helper.from_array(np.array([0], np.int64), "ax"),
         numpy_helper.from_array(np.array([-1], np.int64), "minus"), init("fw", (3, 8)), init("fb", (3,))],
        ["N", 1, 4, 4], ["N", 3])
    onnx.checker.check_model(onnx.load_from_string(mlp))
    onnx.checker.check_model(onnx.load_from_string(cnn))
    return {"mlp.onnx": mlp, "cnn.onnx": cnn}


_CONFIG = {"epochs": 2, "batch_size": 32, "lr": 0.001, "preset": "mlp", "steps": 10, "seed": 1}
_SPACE = {"task": "train", "metric": "accuracy", "base": {"epochs": 1},
          "params": {"lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
                     "batch_size": {"type": "categorical", "choices": [32, 64]}},
          "sampler": {"type": "random", "seed": 0}}
_HARDWARE = {"layers": "last", "hardware_aware": True, "levels": 16, "program_noise": 0.05}


def _toml(data: dict) -> str:
    """A tiny TOML writer for the flat/one-level sample tables above."""
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + "}"
        return repr(v)

    return "".join(f"{k} = {value(v)}\n" for k, v in data.items())


def _yaml(data: dict) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)


def _config_texts(stem: str, data: dict) -> dict[str, bytes]:
    return {
        f"{stem}.yaml": _yaml(data).encode(),
        f"{stem}.json": json.dumps(data, indent=1).encode(),
        f"{stem}.toml": _toml(data).encode(),
    }


def config_samples() -> dict[str, bytes]:
    out = _config_texts("config", _CONFIG)
    out["nested.yaml"] = _yaml({"train": _CONFIG}).encode()
    return out


def space_samples() -> dict[str, bytes]:
    return _config_texts("space", _SPACE)


def hardware_samples() -> dict[str, bytes]:
    return _config_texts("hardware", _HARDWARE)


#: target name -> sample maker.
SAMPLES = {
    "idx": idx_samples,
    "checkpoint": checkpoint_samples,
    "model": model_samples,
    "network": network_samples,
    "ann": ann_samples,
    "nir": nir_samples,
    "onnx": onnx_samples,
    "config": config_samples,
    "space": space_samples,
    "hardware": hardware_samples,
}


def all_samples() -> dict[str, dict[str, bytes]]:
    return {name: make() for name, make in SAMPLES.items()}


if __name__ == "__main__":  # pragma: no cover - a quick look
    for target, files in all_samples().items():
        print(target, {k: len(v) for k, v in files.items()})
