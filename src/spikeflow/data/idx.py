"""The IDX file format (MNIST, Fashion-MNIST, KMNIST), plain or gzip-compressed.

An IDX file is a header followed by the raw array, row-major, big-endian::

    bytes 0-1   0x00 0x00                      magic
    byte  2     type code (see below)
    byte  3     number of dimensions D (0..255)
    4*D bytes   the size of each dimension, big-endian uint32
    ...         prod(sizes) items of the type, big-endian

    type codes: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64

:func:`read_idx` checks everything a header claims against what the file holds
before it trusts it: the size of a plain file is known, so a header that promises
more data than the file has (truncated) or less (trailing bytes) is refused
without reading the data; a gzip file is decompressed in bounded chunks, so a
header claiming terabytes fails as soon as the stream ends, after reading only
what is really there (and a claim larger than deflate could ever expand the file
to is refused at once). No pickle, no ``eval``; nothing here can block on a pipe
(only regular files are opened). Every problem is an :class:`IdxError` (a
``ValueError``) whose message starts with the file's path; a missing file is a
``FileNotFoundError`` naming it.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

__all__ = ["IDX_TYPES", "IdxError", "read_idx", "write_idx"]

#: type code -> NumPy dtype of the items as stored (big-endian).
IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"
# Deflate expands at most about 1032:1; with slack for gzip framing this bounds what
# a compressed file of a given size can honestly decompress to.
_MAX_DEFLATE_RATIO = 1100
_CHUNK = 1 << 20  # decompress 1 MiB at a time


class IdxError(ValueError):
    """An IDX file is malformed: bad magic, unknown type, inconsistent sizes, truncated,
    trailing bytes, or a corrupt gzip stream. The message starts with the file's path."""


def _fail(path: Path, message: str) -> IdxError:
    return IdxError(f"{path}: {message}")


def _parse_magic(path: Path, head: bytes) -> tuple[np.dtype, int]:
    """``(dtype, ndim)`` from the first four bytes; IdxError for a bad magic or type."""
    if len(head) < 4:
        raise _fail(path, f"too short for an IDX header ({len(head)} bytes, need at least 4)")
    if head[0] != 0 or head[1] != 0:
        raise _fail(
            path,
            f"not an IDX file: magic starts with 0x{head[0]:02x} 0x{head[1]:02x}, "
            "expected 0x00 0x00",
        )
    code, ndim = head[2], head[3]
    if code not in IDX_TYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_TYPES)
        raise _fail(path, f"unknown IDX type code 0x{code:02X} (known: {known})")
    return IDX_TYPES[code], ndim


def _describe(dtype: np.dtype, shape: tuple[int, ...]) -> str:
    return f"shape [{', '.join(map(str, shape))}] {dtype.newbyteorder('=').name}"


def _read_exact(handle: BinaryIO, count: int) -> bytes:
    """Up to ``count`` bytes, in bounded chunks (fewer only at the end of the stream)."""
    parts = []
    left = count
    while left > 0:
        part = handle.read(min(left, _CHUNK))
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def _read_stream(path: Path, handle: BinaryIO, size_bound: int, compressed: bool) -> np.ndarray:
    """Read header and data from ``handle``; ``size_bound`` is the most bytes the
    stream can hold (exact for a plain file, a deflate bound for gzip)."""
    head = _read_exact(handle, 4)
    dtype, ndim = _parse_magic(path, head)
    size_bytes = _read_exact(handle, 4 * ndim)
    if len(size_bytes) < 4 * ndim:
        raise _fail(
            path,
            f"truncated header: {ndim} dimensions need {4 * ndim} bytes of sizes, "
            f"the file has {len(size_bytes)}",
        )
    shape = tuple(int(s) for s in np.frombuffer(size_bytes, dtype=">u4"))
    n_bytes = math.prod(shape) * dtype.itemsize  # Python int: no overflow
    header = 4 + 4 * ndim
    what = _describe(dtype, shape)
    if compressed:
        if n_bytes > size_bound:
            raise _fail(
                path,
                f"header declares {what} ({n_bytes} bytes), more than a gzip file of "
                f"this size can hold (at most about {size_bound} bytes); refusing to read it",
            )
    else:
        held = size_bound - header
        if n_bytes > held:
            raise _fail(
                path,
                f"truncated or oversized header: it declares {what} ({n_bytes} bytes of "
                f"data), the file holds {held}",
            )
        if n_bytes < held:
            raise _fail(
                path,
                f"{held - n_bytes} trailing bytes after the data ({what}, {n_bytes} bytes) "
                f"the header declares",
            )
    data = _read_exact(handle, n_bytes)
    if len(data) < n_bytes:
        raise _fail(
            path,
            f"truncated: the header declares {what} ({n_bytes} bytes of data), "
            f"the {'decompressed ' if compressed else ''}file holds {len(data)}",
        )
    if compressed:
        # Also reads to the end of the gzip stream, which verifies its CRC and length.
        extra = len(_read_exact(handle, _CHUNK))
        if extra:
            raise _fail(
                path,
                f"trailing bytes after the data ({what}, {n_bytes} bytes) the header declares "
                f"(at least {extra} more in the decompressed stream)",
            )
    try:
        array = np.frombuffer(data, dtype=dtype).reshape(shape)
    except ValueError:  # an empty array whose other sizes overflow NumPy's index type
        raise _fail(path, f"header declares {what}, a shape NumPy cannot represent") from None
    return array.astype(dtype.newbyteorder("="), copy=True)  # native order, writable


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (plain, or gzip-compressed: detected from its content).

    Args:
        path: the file; ``.gz`` or not, the first two bytes decide.

    Returns:
        A new, writable NumPy array in native byte order with the declared shape and
        type (uint8, int8, int16, int32, float32 or float64). For a tensor use
        ``torch.from_numpy(read_idx(path))``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        IdxError: (a ``ValueError``) the file is not a regular file, has a bad magic
            or an unknown type code, declares more data than the file holds
            (truncated, or an absurd size) or less (trailing bytes), or its gzip
            stream is corrupt. The message starts with the path.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such IDX file: {path}")
    if not path.is_file():
        raise _fail(path, "not a regular file")
    file_size = path.stat().st_size
    with open(path, "rb") as raw:
        magic = raw.read(2)
        raw.seek(0)
        if magic != _GZIP_MAGIC:
            return _read_stream(path, raw, file_size, compressed=False)
        bound = _MAX_DEFLATE_RATIO * file_size + 1024
        try:
            with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                return _read_stream(path, stream, bound, compressed=True)
        except IdxError:
            raise
        except (gzip.BadGzipFile, EOFError, zlib.error) as error:
            raise _fail(path, f"corrupt gzip stream ({type(error).__name__}: {error})") from None


def _type_code(dtype: np.dtype) -> int:
    for code, idx_dtype in IDX_TYPES.items():
        if idx_dtype.newbyteorder("=") == dtype.newbyteorder("="):
            return code
    known = ", ".join(d.newbyteorder("=").name for d in IDX_TYPES.values())
    raise ValueError(f"IDX cannot store dtype {dtype.name}; use one of {known}")


def write_idx(path: str | os.PathLike, array, *, compress: bool | None = None) -> Path:
    """Write ``array`` (NumPy array or CPU tensor) as an IDX file.

    Args:
        path: the file to write; parent folders must exist.
        array: uint8, int8, int16, int32, float32 or float64 data, at most 255 dims,
            each size below 2**32.
        compress: gzip the file; by default, when ``path`` ends in ``.gz``.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    if hasattr(array, "detach"):  # a torch tensor
        array = array.detach().cpu().numpy()
    array = np.asarray(array)
    code = _type_code(array.dtype)
    if array.ndim > 255:
        raise ValueError(f"IDX holds at most 255 dimensions, got {array.ndim}")
    if any(s >= 2**32 for s in array.shape):
        raise ValueError(f"IDX sizes must be below 2**32, got shape {array.shape}")
    path = Path(path)
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload = header + np.ascontiguousarray(array, dtype=IDX_TYPES[code]).tobytes()
    if compress is None:
        compress = path.suffix == ".gz"
    if compress:
        payload = gzip.compress(payload, mtime=0)
    path.write_bytes(payload)
    return path
