"""Atheris (libFuzzer) targets for every spikeflow parser of files from strangers.

Usage (see README.md)::

    python fuzz/parsers.py TARGET [libFuzzer flags] [corpus dir ...]
    python fuzz/parsers.py idx -max_total_time=180 -rss_limit_mb=2048 -timeout=20 fuzz/corpus/idx

Each input is written to a file and handed to the parser. The parser must either
return or raise its documented error class (see ``TARGETS``) with a message that
names the file. Anything else -- another exception, a message without the path, a
hang (libFuzzer's ``-timeout``), memory beyond ``-rss_limit_mb``, an interpreter
crash -- is a finding: libFuzzer stops and writes the input to ``crash-*`` /
``timeout-*`` / ``oom-*``. Rerun one input with ``python fuzz/parsers.py TARGET FILE``.

Targets whose parser picks the format from the file name (``config``, ``space``,
``hardware``) use the first input byte to choose the suffix (``.yaml``, ``.json``,
``.toml``) and the rest as the file. ``model_arch`` and ``network_spec`` keep a valid
file and fuzz only its JSON architecture text (the first is a saved model's
``architecture`` metadata, the second a SpikingNetwork file's ``spec``).
"""

from __future__ import annotations

import io
import json
import os
import sys
import tempfile
import traceback
import warnings
from pathlib import Path
from typing import Callable

import atheris

import torch  # not instrumented: too large (atheris instruments whole top-level packages)

with atheris.instrument_imports(include=["spikeflow", "yaml", "nir", "tomllib", "safetensors"]):
    import yaml  # noqa: F401  (instrumented before spikeflow imports it lazily)

    import spikeflow
    from spikeflow import nir as snir
    from spikeflow.convert.ann import load_ann
    from spikeflow.convert.graph import ConversionError
    from spikeflow.convert.network import SpikingNetwork
    from spikeflow.convert.onnx import load_onnx
    from spikeflow.data.idx import IdxError, read_idx
    from spikeflow.hardware.placement import load_hardware
    from spikeflow.saving import ModelFileError
    from spikeflow.train.checkpoint import CheckpointError, load_checkpoint, read_weights_only
    from spikeflow.train.config import load_config, read_config_file
    from spikeflow.tune import load_space

sys.path.insert(0, str(Path(__file__).resolve().parent))
import samples  # noqa: E402

CONFIG_SUFFIXES = (".yaml", ".json", ".toml")


class Finding(AssertionError):
    """A parser broke its contract on this input."""


def _check(path: Path, error: BaseException, expected: tuple[type, ...]) -> None:
    """Re-raise ``error`` as a finding unless it is an expected, informative error."""
    if not isinstance(error, expected):
        origin = traceback.extract_tb(error.__traceback__)[-1]
        raise Finding(
            f"unexpected {type(error).__name__} (expected {[e.__name__ for e in expected]}) from "
            f"{origin.filename}:{origin.lineno} ({origin.name}): {error}"
        ) from error
    message = str(error)
    if str(path) not in message:
        raise Finding(f"{type(error).__name__} does not name the file {path}: {message!r}") from error


#: Functions or files (comma-separated names) whose unexpected errors are known findings that
#: belong to someone else's fix: an error raised through one of them is counted in
#: ``known-TARGET.txt`` and not reported, so the run goes on to look for others.
KNOWN = {name for name in os.environ.get("SPIKEFLOW_FUZZ_KNOWN", "").split(",") if name}
_known_seen: set[str] = set()


def _known(error: BaseException) -> bool:
    if not KNOWN:
        return False
    tb, names = error.__traceback__, []
    while tb is not None:
        code = tb.tb_frame.f_code
        names += [code.co_name, Path(code.co_filename).name]
        tb = tb.tb_next
    hit = next((n for n in names if n in KNOWN), None)
    if hit is None:
        return False
    key = f"{hit}: {type(error).__name__}: {' '.join(str(error).split())[:200]}"
    if key not in _known_seen:
        _known_seen.add(key)
        with open(f"known-{os.environ.get('SPIKEFLOW_FUZZ_TARGET', 'target')}.txt", "a") as log:
            log.write(key + "\n")
    return True


def _idx(path: Path) -> None:
    array = read_idx(path)
    assert array.flags.writeable and array.dtype.isnative


def _checkpoint(path: Path) -> None:
    payload = load_checkpoint(path)
    assert isinstance(payload, dict)


def _weights(path: Path) -> None:
    read_weights_only(path, what="weights file")


def _model(path: Path) -> None:
    spikeflow.saving.load_metadata(path)
    model = spikeflow.load(path)
    assert isinstance(model, torch.nn.Module)


def _network(path: Path) -> None:
    assert isinstance(SpikingNetwork.load(path), SpikingNetwork)


def _ann(path: Path) -> None:
    model, settings = load_ann(path, samples.ann_build)
    assert isinstance(model, torch.nn.Module) and isinstance(settings, dict)


def _nir(path: Path) -> None:
    snir.read(path)
    snir.from_nir(path)


def _onnx(path: Path) -> None:
    load_onnx(path)


def _config(path: Path) -> None:
    read_config_file(path)
    load_config(path)


def _space(path: Path) -> None:
    load_space(path)


def _hardware(path: Path) -> None:
    load_hardware(path)


#: name -> (parser, expected error classes, file suffixes).
TARGETS: dict[str, tuple[Callable[[Path], None], tuple[type, ...], tuple[str, ...]]] = {
    "idx": (_idx, (IdxError,), (".idx",)),
    "checkpoint": (_checkpoint, (CheckpointError,), (".pt",)),
    "weights": (_weights, (CheckpointError,), (".pt",)),
    "model": (_model, (ModelFileError,), (".safetensors",)),
    "model_arch": (_model, (ModelFileError,), (".safetensors",)),
    "network": (_network, (CheckpointError,), (".pt",)),
    "network_spec": (_network, (CheckpointError,), (".pt",)),
    "ann": (_ann, (CheckpointError,), (".pt",)),
    "nir": (_nir, (snir.NIRError,), (".nir",)),
    "onnx": (_onnx, (ConversionError,), (".onnx",)),
    "config": (_config, (ValueError, TypeError), CONFIG_SUFFIXES),
    "space": (_space, (ValueError, TypeError), CONFIG_SUFFIXES),
    "hardware": (_hardware, (ValueError, TypeError), CONFIG_SUFFIXES),
}


class _Builders:
    """File contents for the targets that fuzz one field of an otherwise valid file."""

    _model_parts = None
    _network_parts = None

    @classmethod
    def model_arch(cls, data: bytes) -> bytes:
        from safetensors.torch import save

        if cls._model_parts is None:
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / "m.safetensors"
                path.write_bytes(samples.model_samples()["mlp.safetensors"])
                from safetensors import safe_open

                with safe_open(str(path), "pt") as handle:
                    tensors = {k: handle.get_tensor(k) for k in handle.keys()}
                    meta = handle.metadata()
            cls._model_parts = tensors, meta
        tensors, meta = cls._model_parts
        return save(tensors, metadata={**meta, "architecture": data.decode("utf-8", "replace")})

    @classmethod
    def network_spec(cls, data: bytes) -> bytes:
        if cls._network_parts is None:
            cls._network_parts = samples._small_models()["network"].state_dict()
        buffer = io.BytesIO()
        torch.save({"format": "spikeflow.spiking-network/1", "spec": data.decode("utf-8", "replace"),
                    "state_dict": cls._network_parts}, buffer)
        return buffer.getvalue()


def seed_inputs(target: str) -> dict[str, bytes]:
    """The seed corpus of ``target``: fuzzer inputs (not files) by name."""
    if target == "model_arch":  # the architecture JSON of every saved-model sample
        specs = {}
        for name, blob in samples.model_samples().items():
            header = json.loads(blob[8:8 + int.from_bytes(blob[:8], "little")])
            specs[Path(name).stem] = header["__metadata__"]["architecture"]
        return {f"{k}.json": v.encode() for k, v in specs.items()}
    if target == "network_spec":  # the spec JSON of the SpikingNetwork sample
        payload = torch.load(io.BytesIO(samples.network_samples()["network.pt"]), weights_only=True)
        return {"network.json": payload["spec"].encode()}
    sample_target = {"weights": "checkpoint"}.get(target, target)
    files = samples.SAMPLES[sample_target]()
    if target == "weights":
        files = {**files, **samples.network_samples(), **samples.ann_samples()}
    suffixes = TARGETS[target][2]
    if len(suffixes) > 1:  # the first byte picks the suffix
        return {name: bytes([suffixes.index(Path(name).suffix)]) + blob for name, blob in files.items()}
    return files


def make_one_input(target: str) -> Callable[[bytes], None]:
    """The libFuzzer callback of ``target``."""
    parse, expected, suffixes = TARGETS[target]
    folder = Path(tempfile.mkdtemp(prefix=f"spikeflow-fuzz-{target}-"))

    def one_input(data: bytes) -> None:
        if len(suffixes) > 1:
            if not data:
                return
            suffix, data = suffixes[data[0] % len(suffixes)], data[1:]
        else:
            suffix = suffixes[0]
        if target in ("model_arch", "network_spec"):
            data = getattr(_Builders, target)(data)
        path = folder / f"input{suffix}"
        path.write_bytes(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                parse(path)
            except Finding:
                raise
            except Exception as error:  # noqa: BLE001 - sorted by _check
                if not isinstance(error, expected) and _known(error):
                    return
                _check(path, error, expected)

    return one_input


def main(argv: list[str]) -> None:
    if len(argv) >= 2 and argv[1] in TARGETS:
        target = argv.pop(1)
        os.environ["SPIKEFLOW_FUZZ_TARGET"] = target  # for the workers of -fork=N, started without it
    elif os.environ.get("SPIKEFLOW_FUZZ_TARGET") in TARGETS:
        target = os.environ["SPIKEFLOW_FUZZ_TARGET"]
    else:
        sys.exit(f"usage: {argv[0]} TARGET [libFuzzer flags] [corpus dir ...]; targets: {', '.join(TARGETS)}")
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    atheris.Setup(argv, make_one_input(target))
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
