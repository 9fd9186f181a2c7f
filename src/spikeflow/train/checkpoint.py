"""Checkpoints: written atomically, read without unpickling arbitrary objects.

A checkpoint is a ``torch.save`` file holding only tensors and plain Python values
(dict, list, tuple, str, int, float, bool, None), so :func:`load_checkpoint` reads
it with ``torch.load(..., weights_only=True)``: a checkpoint from an untrusted
source cannot run code. Writing goes to a temporary file in the same directory,
which is flushed, fsynced and then renamed over the target with ``os.replace``: a
crash leaves either the old or the new file, never half of one.

Contents (``FORMAT = "spikeflow.train/1"``)::

    format          str
    epoch           completed epochs (int)
    model           model state_dict
    optimizer       optimizer state_dict
    best_accuracy   best test accuracy so far (float), best_epoch (int)
    config          TrainConfig.to_dict()
    rng             random states (see capture_rng_state), tensors and ints only
    history         per-epoch metrics, a list of dicts of floats
"""

from __future__ import annotations

import io
import os
import pickle
import random
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

__all__ = [
    "FORMAT",
    "CheckpointError",
    "atomic_write_bytes",
    "capture_rng_state",
    "load_checkpoint",
    "read_weights_only",
    "save_weights_only",
    "restore_rng_state",
    "save_checkpoint",
]

FORMAT = "spikeflow.train/1"
REQUIRED_KEYS = ("format", "epoch", "model", "optimizer", "best_accuracy", "config", "rng")


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, corrupt, truncated or not a spikeflow checkpoint."""


def _fsync_directory(directory: Path) -> None:
    """Persist a rename on POSIX file systems (no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse
        pass
    finally:
        os.close(fd)


def _atomic_write(path: str | os.PathLike, write: Callable[[Any], None]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(path.parent)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file, fsync, ``os.replace``)."""
    return _atomic_write(path, lambda handle: handle.write(data))


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (tensors and plain values only) atomically to ``path``."""
    payload = {"format": FORMAT, **payload}
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing:
        raise ValueError(f"checkpoint payload lacks {', '.join(missing)}")
    return save_weights_only(path, payload)


def _reason(error: BaseException) -> str:
    """The first sentence of an error message (torch's loader messages run long)."""
    text = " ".join(str(error).split()) or type(error).__name__
    head, dot, _ = text.partition(". ")
    text = head + ("." if dot else "")
    return text if len(text) <= 160 else text[:157] + "..."


def read_weights_only(path: str | os.PathLike, map_location: Any = "cpu", what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)``; a missing, truncated or corrupt file, or
    one holding objects other than tensors and plain values, is a
    :class:`CheckpointError` naming ``what`` and the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, KeyError, OSError) as error:
        raise CheckpointError(
            f"{what} {path} is corrupt or truncated and cannot be read ({_reason(error)})"
            + ("; delete it or start a new run without resume" if what == "checkpoint" else "")
        ) from error


def save_weights_only(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (tensors and plain values only) atomically with ``torch.save``."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True)``.

    Raises:
        CheckpointError: the file does not exist, is truncated or corrupt, holds
            objects other than tensors and plain values, or is not a spikeflow
            training checkpoint. The message names the file.
    """
    path = Path(path)
    payload = read_weights_only(path, map_location)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(
            f"checkpoint {path} is not a spikeflow training checkpoint "
            f"(expected format {FORMAT!r}, found {found!r})"
        )
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {path} is incomplete: it lacks {', '.join(missing)}")
    return payload


def capture_rng_state(data_generator: Optional[torch.Generator] = None) -> dict[str, Any]:
    """Every random state a run uses, as tensors and ints (``weights_only``-safe).

    ``torch``: the global CPU generator; ``cuda``: every CUDA device's generator (when
    CUDA is initialised); ``data``: the run's own generator (shuffling, rate
    encoding); ``python`` and ``numpy``: the global ``random`` and NumPy states.
    """
    version, internal, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": {"version": int(version), "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "name": str(np_name),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    if data_generator is not None:
        state["data"] = data_generator.get_state()
    return state


def restore_rng_state(state: dict[str, Any], data_generator: Optional[torch.Generator] = None) -> None:
    """Restore what :func:`capture_rng_state` captured."""
    torch.set_rng_state(state["torch"].cpu())
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["internal"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state(
        (npy["name"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"], npy["gauss"])
    )
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    if data_generator is not None:
        if "data" not in state:
            raise CheckpointError("the checkpoint has no state for the data generator")
        data_generator.set_state(state["data"].cpu())
