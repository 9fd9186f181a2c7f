"""The fused CPU backend ``"cpu"``: one generic C++/OpenMP scan kernel.

The kernel (``_kernels/scan.cpp``) walks the whole sequence once forward and once
in reverse for the backward pass, with every neuron expressed as a small C++
struct holding its step and its vector-Jacobian product. Spikes are bitwise
identical to the reference backend: the kernel evaluates each step in exactly the
reference's order and grouping and is compiled without FMA contraction or
fast-math.

Build at first use: the source is compiled with ``$CXX`` (default ``g++``) into
``$SPIKEFLOW_CACHE_DIR`` (default ``~/.cache/spikeflow/kernels``) under a name
that hashes the source, the flags, the compiler version and the CPU (the build
uses ``-march=native`` where the CPU model and feature flags can be read), and is
loaded with :mod:`ctypes` (no torch headers: a build takes seconds). The library
is written to a temporary file and renamed into place, so parallel processes
never load a partial file. A failed build makes :func:`available` return the
reason with the compiler's output; an explicit ``backend="cpu"`` then raises it,
and ``backend="auto"`` warns once and uses the next backend.

Supported: ``lif``, ``cuba_lif`` (without ``alpha_rec``), ``asn``, ``graded_lif``,
``li``; float32 and float64; CPU tensors; recurrent weights through
:mod:`.cpu_recurrent` (the product inside the time loop). Gradients reach the
input, every initial-state field and every numeric parameter tensor that requires
grad (ASN parameters are fixed configuration).

The backward recomputes every step from the state before it. Saved for it,
besides the input and the initial state: with ``record``, the trajectory that is
returned anyway (every state); otherwise only checkpoints, the state before every
K-th step (K = 4..64, see :func:`_checkpoint_interval`), from which the backward
recomputes each segment of K steps (bit for bit) before walking it in reverse.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shlex
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Optional, Sequence

import torch

from ..neurons._base import NeuronModel
from ._fused import (
    CFG_SIZE,
    NEURONS,
    FusedKernels,
    FusedNeuron,
    contiguous_grad,
    fields_of,
    register_fused,
)

__all__ = ["available", "library_path"]

SOURCE = Path(__file__).with_name("_kernels") / "scan.cpp"
ABI_VERSION = 2

# -O3 with the vectorizer; no FMA contraction and no fast-math, so that every
# operation rounds exactly as the reference's torch ops do. -fno-trapping-math only
# lets gcc speculate arithmetic (if-conversion of the branch-free selects); it does
# not change any value.
BASE_FLAGS = (
    "-O3",
    "-std=c++17",
    "-ffp-contract=off",
    "-fno-trapping-math",
    "-fopenmp",
    "-shared",
    "-fPIC",
)


# ---------------------------------------------------------------------------
# Build and load


class BuildError(RuntimeError):
    """The kernel library could not be built or loaded (``str()`` is the reason)."""


@dataclass
class _Library:
    lib: Optional[ctypes.CDLL]
    path: Optional[Path]
    compiled: bool  # built by this process (False: loaded from the cache)
    error: Optional[str]


_lock = threading.Lock()
_loaded: Optional[_Library] = None


def cache_dir() -> Path:
    """Where built kernels are kept: ``$SPIKEFLOW_CACHE_DIR`` or ``~/.cache/spikeflow/kernels``."""
    env = os.environ.get("SPIKEFLOW_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "spikeflow" / "kernels"


def _cpu_identity() -> Optional[str]:
    """The CPU model and feature flags (what ``-march=native`` depends on), or None."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return None
    model = flags = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = " ".join(sorted(value.split()))
        if model and flags:
            break
    if not (model or flags):
        return None
    return f"{model}|{flags}"


def _flags() -> tuple[list[str], str]:
    """Compiler flags and the machine identity they are valid for."""
    cpu = _cpu_identity()
    if cpu is not None and platform.machine() in ("x86_64", "AMD64", "aarch64", "arm64"):
        # Tuned for this CPU; the cache key includes its model and feature flags.
        return [*BASE_FLAGS, "-march=native"], f"{platform.machine()}|{cpu}"
    return list(BASE_FLAGS), platform.machine()


def _compiler() -> list[str]:
    return shlex.split(os.environ.get("CXX") or "g++")


def _describe_failure(what: str, cxx: list[str], output: str, log: Optional[Path]) -> str:
    output = output.strip()
    limit = 4000
    if len(output) > limit:
        where = f"; full log: {log}" if log is not None else ""
        output = output[:1000] + "\n[...]\n" + output[-(limit - 1000):] + where
    cmd = " ".join(cxx)
    message = (
        f"{what} (compiler: CXX={cmd!r}; set CXX to a working C++17 compiler with OpenMP, "
        f"or use backend='reference')"
    )
    return f"{message}:\n{output}" if output else message


def _build(rebuild: bool = False) -> tuple[Path, bool]:
    """Compile (or find in the cache) the kernel library; returns (path, compiled).

    ``rebuild`` replaces a cached file (one that exists but does not load)."""
    cxx = _compiler()
    if not cxx:
        raise BuildError(_describe_failure("no C++ compiler", cxx, "", None))
    try:
        version = subprocess.run(cxx + ["--version"], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as exc:
        raise BuildError(_describe_failure("cannot run the C++ compiler", cxx, str(exc), None)) from None
    if version.returncode != 0:
        raise BuildError(
            _describe_failure(
                f"the C++ compiler does not work ('--version' exited with {version.returncode})",
                cxx,
                version.stdout + version.stderr,
                None,
            )
        )
    source = SOURCE.read_bytes()
    flags, machine = _flags()
    key = hashlib.sha256()
    for part in (source, " ".join(flags).encode(), version.stdout.encode(), " ".join(cxx).encode(),
                 machine.encode()):
        key.update(part)
        key.update(b"\0")
    digest = key.hexdigest()[:20]
    directory = cache_dir()
    path = directory / f"spikeflow_scan_{digest}.so"
    if path.exists() and not rebuild:
        return path, False
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BuildError(f"cannot create the kernel cache directory {directory}: {exc}") from None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".so.tmp", dir=directory)
    os.close(fd)
    # The source goes in on stdin: what is compiled is exactly what was hashed.
    cmd = cxx + flags + ["-x", "c++", "-", "-o", tmp]
    try:
        result = subprocess.run(cmd, input=source, capture_output=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as exc:
        _remove(tmp)
        raise BuildError(_describe_failure("cannot run the C++ compiler", cxx, str(exc), None)) from None
    if result.returncode != 0:
        _remove(tmp)
        output = (result.stderr + result.stdout).decode(errors="replace")
        log = directory / f"spikeflow_scan_{digest}.log"
        try:
            log.write_text(" ".join(cmd) + "\n" + output)
        except OSError:
            log = None
        raise BuildError(
            _describe_failure(
                f"the C++ compiler failed to build the cpu kernels (exit {result.returncode})",
                cxx,
                output,
                log,
            )
        )
    try:
        os.chmod(tmp, 0o755)  # mkstemp made it private; a shared cache must be readable
    except OSError:
        pass
    os.replace(tmp, path)  # atomic: a parallel process sees the whole file or none
    return path, True


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _declare(lib: ctypes.CDLL) -> None:
    """The C signatures of scan.cpp's entry points (every pointer, and array of
    pointers, is passed as a void pointer)."""
    i32, i64, ptr = ctypes.c_int, ctypes.c_int64, ctypes.c_void_p
    lib.sf_abi_version.restype = i32
    lib.sf_abi_version.argtypes = []
    lib.sf_forward.restype = i32
    # neuron, dtype, T, M, x, init[], prm[], pstride[], cfg[], out, post[], ckpt[], K, fin[],
    # threads
    lib.sf_forward.argtypes = [i32, i32, i64, i64, ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr, i64, ptr,
                               i32]
    lib.sf_backward.restype = i32
    # neuron, dtype, T, M, x, init[], post[], ckpt[], K, prm[], pstride[], cfg[], g_out,
    # g_fin[], g_traj[], g_x, g_init[], g_prm[], threads
    lib.sf_backward.argtypes = [i32, i32, i64, i64, ptr, ptr, ptr, ptr, i64, ptr, ptr, ptr, ptr,
                                ptr, ptr, ptr, ptr, ptr, i32]


def _load() -> _Library:
    global _loaded
    if _loaded is not None:
        return _loaded
    with _lock:
        if _loaded is not None:
            return _loaded
        try:
            path, compiled = _build()
            try:
                lib = ctypes.CDLL(str(path))
            except OSError as exc:
                if compiled:
                    raise BuildError(f"cannot load the cpu kernel library {path}: {exc}") from None
                # A damaged cache entry (the name is a hash of what it was built from):
                # build it again once.
                path, compiled = _build(rebuild=True)
                try:
                    lib = ctypes.CDLL(str(path))
                except OSError as exc:
                    raise BuildError(f"cannot load the cpu kernel library {path}: {exc}") from None
            _declare(lib)
            if lib.sf_abi_version() != ABI_VERSION:
                raise BuildError(f"the cpu kernel library {path} has the wrong ABI version")
            _loaded = _Library(lib, path, compiled, None)
        except BuildError as exc:
            _loaded = _Library(None, None, False, str(exc))
        return _loaded


@torch.compiler.assume_constant_result  # torch.compile calls it once while tracing
def available() -> Optional[str]:
    """None when the cpu kernels are built and loaded, else why not (builds at first call)."""
    return _load().error


def library_path() -> Optional[Path]:
    """The loaded kernel library (None when unavailable)."""
    return _load().path


def _lib() -> ctypes.CDLL:
    loaded = _load()
    if loaded.lib is None:
        raise RuntimeError(f"spikeflow cpu backend unavailable: {loaded.error}")
    return loaded.lib


# ---------------------------------------------------------------------------
# Per-neuron description (must match the structs in scan.cpp)

_DTYPE_CODE = {torch.float32: 0, torch.float64: 1}


# ---------------------------------------------------------------------------
# Kernel calls


def _ptr(t: Optional[torch.Tensor]) -> Optional[int]:
    return None if t is None else t.data_ptr()


def _ptrs(tensors: Sequence[Optional[torch.Tensor]]) -> ctypes.Array:
    return (ctypes.c_void_p * max(1, len(tensors)))(*[_ptr(t) for t in tensors])


_HUGE_PAGE = 2 << 20
_MADV_HUGEPAGE = 14  # Linux
_libc = None


def _empty_large(like: torch.Tensor) -> torch.Tensor:
    """``torch.empty_like(like)``, asking Linux to back it with transparent huge pages.

    A fresh [T, B, N] buffer of tens of MB is mapped anew by the allocator on every
    call, and first touching it costs one page fault per 4 KiB page: on the machines
    measured that was as long as the kernel itself. ``madvise(MADV_HUGEPAGE)`` on the
    buffer's 2 MiB-aligned interior (only this buffer: nothing global changes, as with
    PyTorch's own ``THP_MEM_ALLOC_ENABLE``) cuts those faults 512-fold. Where THP is
    off or this is not Linux the hint is a no-op.
    """
    global _libc
    out = torch.empty_like(like, memory_format=torch.contiguous_format)
    nbytes = out.numel() * out.element_size()
    if nbytes < 2 * _HUGE_PAGE or not platform.system() == "Linux":
        return out
    if _libc is None:
        try:
            _libc = ctypes.CDLL(None, use_errno=True)
            _libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        except (OSError, AttributeError):  # pragma: no cover - exotic libc
            _libc = False
    if _libc:
        start = -(-out.data_ptr() // _HUGE_PAGE) * _HUGE_PAGE
        end = (out.data_ptr() + nbytes) // _HUGE_PAGE * _HUGE_PAGE
        if end > start:
            _libc.madvise(start, end - start, _MADV_HUGEPAGE)
    return out


class _Call(NamedTuple):
    """Everything static about one scan call."""

    neuron: FusedNeuron
    dtype: int
    cfg: Any  # ctypes double array
    no_grad_fields: frozenset
    record: bool
    interval: int  # checkpoint interval K (see _checkpoint_interval)


def _checkpoint_interval(n_fields: int, itemsize: int) -> int:
    """Steps between the states the forward keeps for the backward (without ``record``).

    The backward recomputes K steps of a block of up to 1024 elements into a
    per-thread buffer of K * n_fields * 1024 values; about 256 KiB keeps it in cache.
    """
    return max(4, min(64, (256 * 1024) // (n_fields * 1024 * itemsize)))


def _param_arrays(params: Sequence[torch.Tensor], feature_shape: torch.Size):
    """Per-element parameter arrays (scalars stay one value, read with stride 0)."""
    arrays, strides = [], []
    for p in params:
        p = p.detach()
        if p.numel() == 1:
            arrays.append(p.reshape(1))
            strides.append(0)
        else:
            arrays.append(p.expand(feature_shape).contiguous())
            strides.append(1)
    return arrays, (ctypes.c_int64 * max(1, len(strides)))(*strides)


def _forward(call: _Call, x: torch.Tensor, states: Sequence[torch.Tensor],
             params: Sequence[torch.Tensor], checkpoints: bool):
    """Run the forward kernel: (output, trajectory or None, checkpoints or None, final).

    The trajectory (every state, ``[T, B, ...]`` per field) is made with ``record``;
    checkpoints (the state before every K-th step, ``[ceil(T / K), B, ...]`` per
    field) when asked for, which the backward needs when there is no trajectory.
    """
    T, M = x.shape[0], x[0].numel()
    ns = len(call.neuron.fields)
    out = _empty_large(x)
    post = [_empty_large(x) for _ in range(ns)] if call.record else None
    ckpt = None
    if checkpoints and post is None:
        rows = -(-T // call.interval)
        ckpt = [x.new_empty((rows, *x.shape[1:])) for _ in range(ns)]
    fin = [torch.empty_like(s) for s in states]
    arrays, strides = _param_arrays(params, x.shape[1:])
    rc = _lib().sf_forward(
        call.neuron.code, call.dtype, T, M, x.data_ptr(), _ptrs(states), _ptrs(arrays), strides,
        call.cfg, out.data_ptr(), None if post is None else _ptrs(post),
        None if ckpt is None else _ptrs(ckpt), call.interval, _ptrs(fin), torch.get_num_threads(),
    )
    if rc != 0:  # pragma: no cover - codes are fixed by this module
        raise RuntimeError(f"spikeflow cpu kernel failed (forward, code {rc})")
    return out, post, ckpt, fin


def _backward(call: _Call, x: torch.Tensor, states: Sequence[torch.Tensor],
              kept: Sequence[torch.Tensor], params: Sequence[torch.Tensor],
              g_out: Optional[torch.Tensor], g_fin: Sequence[Optional[torch.Tensor]],
              g_traj: Sequence[Optional[torch.Tensor]], needs: Sequence[bool]):
    """Run the backward kernel: (grad x, [grad initial state], [grad params]), None where
    not needed. ``kept`` is the trajectory (``record``) or the checkpoints; ``needs`` says
    which of (x, *states, *params) want a gradient."""
    neuron = call.neuron
    ns = len(neuron.fields)
    post, ckpt = (kept, None) if call.record else (None, kept)
    g_fin = [contiguous_grad(g) for g in g_fin]
    g_traj = [contiguous_grad(g) for g in g_traj] if call.record else [None] * ns
    g_x = _empty_large(x) if needs[0] else None
    g_init = [
        torch.empty_like(s) if needs[1 + k] and k not in call.no_grad_fields else None
        for k, s in enumerate(states)
    ]
    g_prm = [
        torch.empty_like(x[0]) if k < neuron.learnable and needs[1 + ns + k] else None
        for k in range(len(params))
    ]
    T, M = x.shape[0], x[0].numel()
    arrays, strides = _param_arrays(params, x.shape[1:])
    g_out = contiguous_grad(g_out)
    rc = _lib().sf_backward(
        neuron.code, call.dtype, T, M, x.data_ptr(), _ptrs(states),
        None if post is None else _ptrs(post), None if ckpt is None else _ptrs(ckpt),
        call.interval, _ptrs(arrays), strides, call.cfg, _ptr(g_out), _ptrs(g_fin),
        _ptrs(g_traj), _ptr(g_x), _ptrs(g_init), _ptrs(g_prm[: neuron.learnable]),
        torch.get_num_threads(),
    )
    if rc != 0:  # pragma: no cover
        raise RuntimeError(f"spikeflow cpu kernel failed (backward, code {rc})")
    g_params = [None if g is None else g.sum_to_size(p.shape) for g, p in zip(g_prm, params)]
    return g_x, g_init, g_params


def _call_from(neuron: str, cfg: Sequence[float], record: bool, interval: int, mask: int,
               dtype: torch.dtype) -> _Call:
    spec = NEURONS[neuron]
    return _Call(spec, _DTYPE_CODE[dtype], (ctypes.c_double * CFG_SIZE)(*cfg),
                 fields_of(mask, len(spec.fields)), record, interval)


def _kept_shapes(neuron: str, x: torch.Tensor, record: bool, interval: int) -> list:
    rows = x.shape[0] if record else -(-x.shape[0] // interval)
    return [(rows, *x.shape[1:])] * len(NEURONS[neuron].fields)


_KERNELS = FusedKernels(
    "cpu", devices=frozenset({"cpu"}), dtypes=frozenset(_DTYPE_CODE), make_call=_call_from,
    forward=_forward, backward=_backward, kept_shapes=_kept_shapes,
    interval=lambda neuron, x: _checkpoint_interval(len(neuron.fields), x.element_size()),
)


# ---------------------------------------------------------------------------
# The backend


def run_cpu(model: NeuronModel, values: Any, x: torch.Tensor, state: NamedTuple,
            recurrent: Any, record: bool):
    """Run ``model`` over ``x`` with the fused kernel (see the module docstring)."""
    if recurrent is not None:
        if torch.compiler.is_compiling():
            # The per-step kernel calls of a recurrent layer are not traceable; the
            # reference loop computes the same values and traces.
            from .reference import run_reference

            return run_reference(model, values, x, state, recurrent, record)
        from .cpu_recurrent import run_recurrent

        return run_recurrent(model, values, x, state, recurrent, record)
    return _KERNELS.run(model, values, x, state, record)


register_fused("cpu", run_cpu, dtypes=frozenset(_DTYPE_CODE), devices=frozenset({"cpu"}),
               recurrent=True, available=available, priority=10)
