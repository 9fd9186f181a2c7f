"""Checkpoints: written atomically, read without unpickling arbitrary objects.

A checkpoint is a ``torch.save`` file holding only tensors and plain Python values
(dict, list, tuple, str, int, float, bool, None), so :func:`load_checkpoint` reads
it with ``torch.load(..., weights_only=True)``: a checkpoint from an untrusted
source cannot run code. Reading first checks the CRC-32 checksums of the
archive's parts (``torch.load`` does not), so flipped bits are an error rather than
wrong weights. Writing goes to a temporary file in the same directory,
which is flushed, fsynced and then renamed over the target with ``os.replace``: a
crash leaves either the old or the new file, never half of one.

:func:`save_keeping_previous` also keeps the file it replaces as ``<name>.prev<suffix>``
(``last.pt`` -> ``last.prev.pt``), and :func:`load_latest` reads the newest good one:
a latest checkpoint that is corrupt (a disk that lost blocks, a copy cut short) is
skipped with a warning and the previous one is used. A write that fails (disk
full, a crash) leaves both files as they were: the new bytes go to a temporary file
first and only a complete, fsynced file is renamed into place.

Contents (``FORMAT = "spikeflow.train/1"``)::

    format          str
    epoch           completed epochs (int)
    model           model state_dict
    optimizer       optimizer state_dict
    best_accuracy   best test accuracy so far (float), best_epoch (int)
    config          TrainConfig.to_dict()
    rng             random states (see capture_rng_state), tensors and ints only
    history         per-epoch metrics, a list of dicts of floats
    partial         None, or for a mid-epoch checkpoint (``checkpoint_every``) the next
                    epoch's part done: its order, batches, loss/correct/seen sums and
                    spike counts (absent in files from before it existed)
"""

from __future__ import annotations

import errno
import io
import os
import pickle
import random
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from . import _faults

__all__ = [
    "FORMAT",
    "CheckpointError",
    "atomic_write_bytes",
    "capture_rng_state",
    "is_dict_of",
    "load_checkpoint",
    "load_latest",
    "previous_path",
    "read_payload",
    "read_weights_only",
    "save_weights_only",
    "restore_rng_state",
    "save_checkpoint",
    "save_keeping_previous",
]

FORMAT = "spikeflow.train/1"
_ADVICE = "; delete it or start a new run without resume"  # after a bad checkpoint's message
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


def previous_path(path: str | os.PathLike) -> Path:
    """Where :func:`save_keeping_previous` keeps the file it replaced: ``last.pt`` ->
    ``last.prev.pt``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def _no_space(error: OSError) -> bool:
    return error.errno in (errno.ENOSPC, errno.EDQUOT)


def _file_mode(path: Path) -> int:
    """The permissions of the file being replaced, else those ``open()`` would give a new
    file (0666 less the umask)."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        return 0o666 & ~_UMASK


def _current_umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def _atomic_write(path: str | os.PathLike, write: Callable[[Any], None], keep_previous: bool = False) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _file_mode(path))  # mkstemp makes 0600; a checkpoint is an ordinary file
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        if keep_previous and path.exists():
            _keep_as_previous(path)
        os.replace(tmp_name, path)
    except BaseException as error:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        if isinstance(error, OSError) and _no_space(error):
            raise OSError(
                error.errno,
                f"no space left on the device while writing {path}; "
                + (f"the previous {path.name} is intact" if path.exists() else "nothing was written"),
            ) from error
        raise
    _fsync_directory(path.parent)
    return path


def _keep_as_previous(path: Path) -> None:
    """Make ``previous_path(path)`` a copy of ``path`` without ever leaving ``path`` missing:
    a hard link under a temporary name, renamed over the previous file (a copy where
    the file system has no hard links)."""
    previous = previous_path(path)
    link = previous.with_name(f".{previous.name}.{os.getpid()}.tmp")
    try:
        try:
            os.link(path, link)
        except OSError:
            import shutil

            shutil.copyfile(path, link)
        os.replace(link, previous)
    except BaseException:
        try:
            os.unlink(link)
        except FileNotFoundError:
            pass
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file, fsync, ``os.replace``)."""
    return _atomic_write(path, lambda handle: handle.write(data))


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any], *, keep_previous: bool = False) -> Path:
    """Write ``payload`` (tensors and plain values only) atomically to ``path``."""
    payload = {"format": FORMAT, **payload}
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing:
        raise ValueError(f"checkpoint payload lacks {', '.join(missing)}")
    return save_weights_only(path, payload, keep_previous=keep_previous)


def _reason(error: BaseException, limit: int = 160) -> str:
    """The first sentence of an error message (torch's loader messages run long)."""
    text = " ".join(str(error).split()) or type(error).__name__
    head, dot, _ = text.partition(". ")
    text = head + ("." if dot else "")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _damaged_member(path: Path) -> Optional[str]:
    """Why a ``torch.save`` zip archive is damaged: a part whose bytes fail its CRC-32, or
    one that cannot be decompressed or checked at all (None: all intact, or not a zip
    archive, left to ``torch.load`` to judge). ``torch.load`` does not check the
    checksums, so flipped bits in tensor data would load silently."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError):
        return None
    except Exception as error:  # zlib.error, "File ... is encrypted" (a flipped flag bit), ...
        return f"a part cannot be checked ({type(error).__name__}: {_reason(error)})"
    return None if bad is None else f"the bytes of its part {bad} do not match their stored CRC-32 checksum"


def read_weights_only(path: str | os.PathLike, map_location: Any = "cpu", what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)``; a missing, truncated or corrupt file, or
    one holding objects other than tensors and plain values, is a
    :class:`CheckpointError` naming ``what`` and the file. Whatever the loader raises on
    a damaged file (its weights-only unpickler raises ``IndexError``, ``TypeError``,
    ``struct.error``, ... on broken pickles) becomes that error: the file comes from
    outside, so no exception escapes as a bug of ours."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} {path} does not exist")
    advice = _ADVICE if what == "checkpoint" else ""
    damaged = _damaged_member(path)
    if damaged is not None:
        raise CheckpointError(f"{what} {path} is corrupt: {damaged}{advice}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except MemoryError:
        raise
    except Exception as error:
        raise CheckpointError(
            f"{what} {path} is corrupt or truncated and cannot be read ({type(error).__name__}: {_reason(error)})"
            + advice
        ) from error


def save_weights_only(path: str | os.PathLike, payload: dict[str, Any], *, keep_previous: bool = False) -> Path:
    """Write ``payload`` (tensors and plain values only) atomically with ``torch.save``;
    with ``keep_previous`` the file it replaces stays as :func:`previous_path`."""
    name = Path(path).name
    _faults.point("before-checkpoint", name)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = memoryview(buffer.getbuffer())
    half = len(data) // 2

    def write(handle: Any) -> None:
        handle.write(data[:half])
        _faults.point("checkpoint-write", name, flush=handle)  # a crash test's kill, half written
        handle.write(data[half:])

    written = _atomic_write(path, write, keep_previous=keep_previous)
    _faults.point("after-checkpoint", name)
    return written


def save_keeping_previous(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """:func:`save_checkpoint`, keeping the checkpoint it replaces as ``<name>.prev<suffix>``
    for :func:`load_latest` to fall back on."""
    return save_checkpoint(path, payload, keep_previous=True)


def load_latest(
    path: str | os.PathLike,
    load: Callable[[Path], Any] | None = None,
) -> tuple[Any, Path]:
    """Read ``path`` or, where it is missing or corrupt, the previous one kept by
    :func:`save_keeping_previous`, with a :class:`UserWarning` naming both files.

    Args:
        path: the latest checkpoint (``last.pt``).
        load: the reader, ``load(path) -> payload`` raising :class:`CheckpointError`
            for a bad file (default: :func:`load_checkpoint`).

    Returns:
        ``(payload, path it came from)``.

    Raises:
        FileNotFoundError: neither file exists.
        CheckpointError: no file could be read (the message gives each reason).
    """
    path = Path(path)
    load = load_checkpoint if load is None else load
    previous = previous_path(path)
    if not path.exists() and not previous.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return load(path), path
    except CheckpointError as error:
        if not previous.exists():
            raise
        latest_problem = CheckpointError(str(error).replace(_ADVICE, ""))
    try:
        payload = load(previous)
    except CheckpointError as error:
        raise CheckpointError(
            f"neither {path} nor the previous checkpoint {previous} can be read: "
            f"{_reason(latest_problem, 400)}; {_reason(CheckpointError(str(error).replace(_ADVICE, '')), 400)}"
        ) from error
    warnings.warn(
        f"{_reason(latest_problem, 400)}; resuming from the previous checkpoint {previous}",
        UserWarning,
        stacklevel=2,
    )
    return payload, previous


def is_dict_of(value: Any, value_type: type | tuple[type, ...]) -> bool:
    """Whether ``value`` (read from a file) is a dict of str keys and ``value_type`` values,
    as a ``state_dict`` is (``is_dict_of(x, torch.Tensor)``)."""
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, value_type) for k, v in value.items()
    )


def read_payload(
    path: str | os.PathLike,
    form: str,
    keys: tuple[str, ...],
    *,
    what: str = "checkpoint",
    kind: str = "spikeflow training checkpoint",
    map_location: Any = "cpu",
) -> dict[str, Any]:
    """:func:`read_weights_only`, then check that the payload is a dict with ``format``
    ``form`` and every one of ``keys``.

    Raises:
        CheckpointError: the file cannot be read, is not a ``kind`` (another format),
            or lacks some of ``keys``; the message starts with ``what`` and the file.
    """
    path = Path(path)
    payload = read_weights_only(path, map_location, what=what)
    if not isinstance(payload, dict) or payload.get("format") != form:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{what} {path} is not a {kind} (expected format {form!r}, found {found!r})")
    missing = [key for key in keys if key not in payload]
    if missing:
        raise CheckpointError(f"{what} {path} is incomplete: it lacks {', '.join(missing)}")
    return payload


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a training checkpoint with ``torch.load(weights_only=True)``.

    Raises:
        CheckpointError: the file does not exist, is truncated or corrupt, holds
            objects other than tensors and plain values, or is not a spikeflow
            training checkpoint. The message names the file.
    """
    return read_payload(path, FORMAT, REQUIRED_KEYS, map_location=map_location)


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
