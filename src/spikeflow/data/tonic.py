"""Event-camera and spiking-audio datasets (Tonic's format) as time-major spike tensors.

`Tonic <https://tonic.readthedocs.io>`_ stores a recording as a NumPy *structured
array* of events, one row per event:

- cameras (N-MNIST, DVS Gesture, ...): fields ``x``, ``y`` (pixel), ``t`` (time stamp,
  microseconds) and ``p`` (polarity); ``sensor_size = (W, H, P)``, e.g. ``(34, 34, 2)``
  for N-MNIST.
- audio (SHD, SSC): fields ``x`` (channel), ``t`` and ``p``; ``sensor_size = (X, 1, P)``,
  e.g. ``(700, 1, 1)`` for SHD.

:func:`events_to_frames` bins such an array into a dense tensor ``[T, ...]`` of event
counts, :class:`TonicAdapter` (or :func:`frames_dataset`) turns any map-style dataset
of ``(events, label)`` pairs into ``(frames, label)`` pairs, and
:func:`collate_time_major` batches them into ``[T, B, ...]`` for a
:class:`torch.utils.data.DataLoader`. None of these needs Tonic: they work on plain
NumPy arrays. Tonic itself is an optional dependency, imported only by
:func:`tonic_dataset`, which builds one of its datasets by name.
"""

from __future__ import annotations

import importlib
import inspect
import math
import numbers
from typing import Any, Optional, Sequence

import numpy as np
import torch

__all__ = [
    "TonicAdapter",
    "collate_time_major",
    "events_to_frames",
    "frames_dataset",
    "tonic_dataset",
]


def _check_sensor_size(sensor_size: Any) -> tuple[int, int, int]:
    if isinstance(sensor_size, (str, bytes)) or not isinstance(sensor_size, Sequence) and not isinstance(
        sensor_size, np.ndarray
    ):
        raise ValueError(f"sensor_size must be a tuple (W, H, P) of three positive ints, got {sensor_size!r}")
    values = list(sensor_size)
    if len(values) != 3 or any(
        isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1 for v in values
    ):
        raise ValueError(f"sensor_size must be a tuple (W, H, P) of three positive ints, got {sensor_size!r}")
    return int(values[0]), int(values[1]), int(values[2])


def _integer_field(events: np.ndarray, name: str) -> np.ndarray:
    values = events[name]
    if values.dtype == np.bool_:
        return values.astype(np.int64)
    if np.issubdtype(values.dtype, np.integer):
        return values.astype(np.int64)
    if np.issubdtype(values.dtype, np.floating):
        if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)):
            raise ValueError(f"events field {name!r} must hold integers, got non-integer values")
        return values.astype(np.int64)
    raise ValueError(f"events field {name!r} must be integer, got dtype {values.dtype}")


def _check_range(values: np.ndarray, size: int, name: str, axis: str) -> None:
    if values.size and (values.min() < 0 or values.max() >= size):
        bad = values[(values < 0) | (values >= size)]
        raise ValueError(
            f"events outside the sensor: {name} must lie in [0, {size}) (sensor_size {axis}), "
            f"got {bad[:5].tolist()}"
        )


def _check_time(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite time >= 0 (microseconds), got {value!r}")
    return value


def events_to_frames(
    events: np.ndarray,
    sensor_size: Sequence[int],
    *,
    n_time_bins: Optional[int] = None,
    time_window: Optional[float] = None,
    start_time: Optional[float] = None,
    end_time: Optional[float] = None,
    binary: bool = False,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Count events per time bin and sensor position: a dense time-major tensor.

    **Layout.** Camera events (with a ``y`` field): ``[T, P, H, W]``, entry
    ``[k, p, y, x]`` (as Tonic's ``ToFrame``). Audio-like events (no ``y`` field,
    ``sensor_size = (X, 1, P)``): ``[T, X]`` when ``P == 1`` (SHD, SSC: ready for a
    ``Linear(X, ...)``), else ``[T, P, X]``. A single-channel sensor (``P == 1``) counts
    every event in channel 0 whatever its ``p``; with ``P > 1``, ``p`` must lie in
    ``[0, P)`` (booleans count as 0/1).

    **Binning** (times in the unit of ``t``, microseconds for Tonic). The span starts at
    ``t0 = start_time`` (default: the earliest event). Bins are half-open,
    bin ``k = [t0 + k w, t0 + (k+1) w)``:

    - ``time_window = w``: ``k = floor((t - t0) / w)``. With ``end_time`` the span is
      ``[t0, end_time)`` and ``T = ceil((end_time - t0) / w)``; without it,
      ``T = floor((t_last - t0) / w) + 1``, so the last event is always included (the
      last bin may be partly beyond it).
    - ``n_time_bins = T``: ``w = (t1 - t0) / T`` and ``k = floor(T (t - t0) / (t1 - t0))``
      (exact in integers for integer times). With ``end_time``, ``t1 = end_time`` is
      exclusive; without it, ``t1`` is the last event's time and the last bin is closed,
      ``[t0 + (T-1) w, t1]``, so the last event is included. If all events share one
      time stamp they fall in bin 0.

    Events before ``start_time`` or at/after ``end_time`` are dropped (cropping). An
    empty ``events`` gives zeros: ``n_time_bins`` bins, or for ``time_window``
    ``ceil((end_time - t0) / w)`` bins with ``end_time`` (``t0 = start_time`` or 0), else
    one bin. Events need not be sorted.

    Differences from ``tonic.transforms.ToFrame`` (same layout and counting): Tonic's
    ``n_time_bins`` uses the window ``(t_last - t0) // T`` (floor division) and so drops
    the last event(s); Tonic's ``time_window`` drops the last incomplete window unless
    ``include_incomplete=True``, and even then drops the events at ``t_last`` when the
    span is a whole number of windows. Here no event in the span is ever dropped.

    Args:
        events: NumPy structured array with integer (or boolean) fields ``x``, ``t``,
            ``p`` and, for a camera, ``y``; ``t`` may also be float (e.g. seconds), >= 0.
        sensor_size: ``(W, H, P)``; ``H`` must be 1 for events without ``y``.
        n_time_bins: number of bins (give exactly one of ``n_time_bins`` / ``time_window``).
        time_window: bin width, > 0, in the unit of ``t``.
        start_time: start of the span (>= 0); default the earliest event.
        end_time: exclusive end of the span (> ``start_time``); default: up to and
            including the last event.
        binary: clip counts to 1 (binary spikes).
        dtype: floating dtype of the result.

    Returns:
        Counts as ``dtype``, ``[T, P, H, W]``, ``[T, X]`` or ``[T, P, X]`` (see above).

    Raises:
        TypeError: ``events`` is not a structured NumPy array; ``dtype`` not floating.
        ValueError: a missing field; events outside the sensor (``x``, ``y`` or ``p``
            out of range); negative or non-finite times; a bad ``sensor_size``; neither
            or both of ``n_time_bins`` / ``time_window``, or bad values for them or for
            ``start_time`` / ``end_time``.
    """
    if not isinstance(events, np.ndarray) or events.dtype.names is None:
        raise TypeError(
            "events must be a NumPy structured array with fields x, t, p (and y for a camera), "
            f"as Tonic datasets return; got {type(events).__name__}"
            + (f" of dtype {events.dtype}" if isinstance(events, np.ndarray) else "")
        )
    if events.ndim != 1:
        raise ValueError(f"events must be a 1-D structured array (one row per event), got shape {events.shape}")
    width, height, polarities = _check_sensor_size(sensor_size)
    names = events.dtype.names
    missing = [f for f in ("x", "t", "p") if f not in names]
    if missing:
        raise ValueError(
            f"events lack the field(s) {', '.join(missing)}: expected x, t, p (and y for a "
            f"camera), got fields {', '.join(names)}"
        )
    camera = "y" in names
    if not camera and height != 1:
        raise ValueError(
            f"events without a 'y' field are 1-D (audio-like) and need sensor_size (X, 1, P), "
            f"got {tuple(sensor_size)}; add the 'y' field for camera events"
        )
    if (n_time_bins is None) == (time_window is None):
        raise ValueError("give exactly one of n_time_bins and time_window")
    if n_time_bins is not None and (
        isinstance(n_time_bins, bool) or not isinstance(n_time_bins, numbers.Integral) or n_time_bins < 1
    ):
        raise ValueError(f"n_time_bins must be a positive int, got {n_time_bins!r}")
    if time_window is not None and (
        isinstance(time_window, bool)
        or not isinstance(time_window, numbers.Real)
        or not math.isfinite(time_window)
        or time_window <= 0
    ):
        raise ValueError(f"time_window must be a finite number > 0, got {time_window!r}")
    if start_time is not None:
        _check_time("start_time", start_time)
    if end_time is not None:
        _check_time("end_time", end_time)
        if start_time is not None and end_time <= start_time:
            raise ValueError(f"end_time ({end_time!r}) must be after start_time ({start_time!r})")
    if not isinstance(binary, bool):
        raise TypeError(f"binary must be True or False, got {binary!r}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")

    x = _integer_field(events, "x")
    _check_range(x, width, "x", "W")
    if camera:
        y = _integer_field(events, "y")
        _check_range(y, height, "y", "H")
    else:
        y = np.zeros_like(x)
    if polarities == 1:
        p = np.zeros_like(x)
    else:
        p = _integer_field(events, "p")
        _check_range(p, polarities, "p", "P")

    t_raw = events["t"]
    if t_raw.dtype == np.bool_ or not np.issubdtype(t_raw.dtype, np.number):
        raise ValueError(f"events field 't' must be numeric, got dtype {t_raw.dtype}")
    integer_times = np.issubdtype(t_raw.dtype, np.integer)
    t = t_raw.astype(np.int64 if integer_times else np.float64)
    if not integer_times and not np.all(np.isfinite(t)):
        raise ValueError("events have non-finite times t")
    if t.size and t.min() < 0:
        raise ValueError(f"events have negative times t (min {t.min()}); times must be >= 0")

    # the span [t0, t1) (or [t0, t1] when t1 is the last event)
    t0 = start_time if start_time is not None else (t.min() if t.size else 0)
    keep = t >= t0
    if end_time is not None:
        if end_time <= t0:
            raise ValueError(f"end_time ({end_time!r}) must be after the start of the span ({t0!r})")
        keep &= t < end_time
    if not keep.all():
        x, y, p, t = x[keep], y[keep], p[keep], t[keep]
    exact = integer_times and float(t0) == int(t0)
    if exact:
        t0 = int(t0)

    if time_window is not None:
        w = time_window
        integral_w = exact and float(w) == int(w)
        if end_time is not None:
            n_bins = math.ceil((end_time - t0) / w)
        elif t.size:
            span = t.max() - t0
            n_bins = (int(span) // int(w) if integral_w else math.floor(span / w)) + 1
        else:
            n_bins = 1
        if integral_w:
            k = (t - t0) // int(w)
        else:
            k = np.floor((t - t0) / w).astype(np.int64)
    else:
        n_bins = int(n_time_bins)
        if end_time is not None:
            t1, closed = end_time, False
        else:
            t1, closed = (t.max() if t.size else t0), True
        span = t1 - t0
        if span <= 0:
            k = np.zeros_like(t, dtype=np.int64)
        elif exact and float(t1) == int(t1):
            k = ((t - t0) * n_bins) // int(span)
        else:
            k = np.floor((t - t0) * (n_bins / span)).astype(np.int64)
        if closed:
            k = np.minimum(k, n_bins - 1)  # the last event belongs to the last bin
    k = np.clip(k, 0, n_bins - 1)  # guards float rounding at the edges only

    flat = ((k * polarities + p) * height + y) * width + x
    counts = np.bincount(flat, minlength=n_bins * polarities * height * width)
    frames = torch.from_numpy(counts).reshape(n_bins, polarities, height, width).to(dtype)
    if binary:
        frames.clamp_(max=1)
    if camera:
        return frames
    frames = frames[:, :, 0, :]  # [T, P, X]
    return frames[:, 0, :] if polarities == 1 else frames


def _label(value: Any, index: int) -> int:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    elif isinstance(value, np.ndarray) and value.size == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"sample {index}: the label must be an integer class index, got {value!r}")
    return int(value)


class TonicAdapter(torch.utils.data.Dataset):
    """A map-style dataset of ``(events, label)`` as ``(frames, label)`` pairs.

    Works with a Tonic dataset (``tonic.datasets.NMNIST(...)``, ``SHD(...)``) created
    without a frame transform, or any object with ``__len__`` and ``__getitem__``
    returning a structured event array and an integer label (a plain list works).
    Each item is converted by :func:`events_to_frames` when it is read.

    Args:
        dataset: the map-style dataset.
        sensor_size: ``(W, H, P)``; default ``dataset.sensor_size`` (Tonic datasets have it).
        **frame_options: keyword arguments of :func:`events_to_frames`
            (``n_time_bins`` or ``time_window``, ``start_time``, ``end_time``,
            ``binary``, ``dtype``).

    Items: ``(frames, label)`` with ``frames`` as :func:`events_to_frames` returns and
    ``label`` a Python int.

    Raises:
        TypeError: ``dataset`` is not map-style; an item is not an ``(events, label)``
            pair; a label is not an integer; an unknown frame option.
        ValueError: no ``sensor_size`` given nor found on the dataset; an empty
            dataset; bad options (checked on construction by converting an empty
            recording).
    """

    _OPTIONS = ("n_time_bins", "time_window", "start_time", "end_time", "binary", "dtype")

    def __init__(self, dataset: Any, sensor_size: Optional[Sequence[int]] = None, **frame_options: Any) -> None:
        if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise TypeError(
                f"dataset must be map-style (with __len__ and __getitem__), got {type(dataset).__name__}"
            )
        unknown = sorted(set(frame_options) - set(self._OPTIONS))
        if unknown:
            raise TypeError(
                f"unknown frame option(s) {', '.join(unknown)}; events_to_frames takes "
                f"{', '.join(self._OPTIONS)}"
            )
        if sensor_size is None:
            sensor_size = getattr(dataset, "sensor_size", None)
            if sensor_size is None:
                raise ValueError(
                    f"give sensor_size=(W, H, P): {type(dataset).__name__} has no sensor_size attribute"
                )
        self.sensor_size = _check_sensor_size(sensor_size)
        if len(dataset) == 0:
            raise ValueError(f"dataset is empty: {type(dataset).__name__} has 0 recordings; expected at least one")
        self.dataset = dataset
        self.frame_options = dict(frame_options)
        # check the options once, on an empty recording
        empty = np.zeros(0, dtype=[("x", np.int64), ("y", np.int64), ("t", np.int64), ("p", np.int64)])
        events_to_frames(empty, self.sensor_size, **self.frame_options)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        item = self.dataset[index]
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise TypeError(
                f"sample {index}: the dataset must return (events, label) pairs, got "
                f"{type(item).__name__}" + (f" of length {len(item)}" if isinstance(item, (tuple, list)) else "")
            )
        events, label = item
        frames = events_to_frames(events, self.sensor_size, **self.frame_options)
        return frames, _label(label, index)


def frames_dataset(dataset: Any, sensor_size: Optional[Sequence[int]] = None, **frame_options: Any) -> TonicAdapter:
    """``TonicAdapter(dataset, sensor_size, **frame_options)``: ``(events, label)`` items as
    ``(frames, label)``; see :class:`TonicAdapter` and :func:`events_to_frames`."""
    return TonicAdapter(dataset, sensor_size, **frame_options)


def collate_time_major(batch: Sequence[tuple[torch.Tensor, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch ``(frames [T_i, *features], label)`` pairs into ``([T, B, *features], [B])``.

    Shorter sequences are padded at the end with zeros (no events) to the longest
    ``T = max T_i``; labels become a ``torch.long`` tensor. Use it as a DataLoader's
    ``collate_fn``::

        loader = DataLoader(frames_dataset(ds, time_window=1000), batch_size=32,
                            collate_fn=collate_time_major)
        for x, y in loader:            # x: [T, B, P, H, W], y: [B]
            out, _ = net(x)

    Args:
        batch: a non-empty sequence of ``(frames, label)``; all frames of one dtype
            and device with the same feature shape.

    Returns:
        ``(x, labels)``: ``x`` ``[T, B, *features]``, ``labels`` ``[B]`` (long).

    Raises:
        TypeError: an item is not a ``(tensor, label)`` pair, a label is not an
            integer, or dtypes/devices differ.
        ValueError: an empty batch, a frame tensor without a time axis, or differing
            feature shapes.
    """
    if not isinstance(batch, Sequence) or len(batch) == 0:
        raise ValueError("collate_time_major needs a non-empty batch of (frames, label) pairs")
    frames, labels = [], []
    for index, item in enumerate(batch):
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise TypeError(f"batch item {index} must be a (frames, label) pair, got {type(item).__name__}")
        x, label = item
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"batch item {index}: frames must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() < 1:
            raise ValueError(f"batch item {index}: frames need a leading time axis [T, ...], got a scalar")
        frames.append(x)
        labels.append(_label(label, index))
    first = frames[0]
    for index, x in enumerate(frames[1:], start=1):
        if x.shape[1:] != first.shape[1:]:
            raise ValueError(
                f"batch item {index} has features {tuple(x.shape[1:])} but item 0 has "
                f"{tuple(first.shape[1:])}; every sample needs the same sensor layout"
            )
        if x.dtype != first.dtype or x.device != first.device:
            raise TypeError(
                f"batch item {index} is {x.dtype} on {x.device} but item 0 is {first.dtype} on {first.device}"
            )
    steps = max(x.shape[0] for x in frames)
    out = first.new_zeros((steps, len(frames)) + tuple(first.shape[1:]))
    for b, x in enumerate(frames):
        out[: x.shape[0], b] = x
    return out, torch.tensor(labels, dtype=torch.long)


_TONIC_DATASETS = ("NMNIST", "SHD", "SSC", "DVSGesture", "POKERDVS", "CIFAR10DVS", "ASLDVS")


def tonic_dataset(name: str, save_to: str, *, train: bool = True, **frame_options: Any) -> TonicAdapter:
    """A Tonic dataset by name, as ``(frames, label)`` (:class:`TonicAdapter`).

    Imports Tonic (``pip install tonic``) only here. Tonic downloads the files into
    ``save_to`` the first time. The split is chosen from ``train`` for datasets that
    have one: ``train=train`` (N-MNIST, SHD, DVS Gesture, POKER-DVS) or
    ``split="train"`` / ``"test"`` (SSC); datasets without a split (CIFAR10-DVS, ...)
    need ``train=True``.

    Args:
        name: the class name in ``tonic.datasets``, e.g. ``"NMNIST"`` or ``"SHD"``.
        save_to: folder for the files.
        train: the training split (else the test split).
        **frame_options: as for :class:`TonicAdapter` (``n_time_bins`` or ``time_window``,
            ``sensor_size`` for a dataset without one, ...).

    Returns:
        A :class:`TonicAdapter` over the dataset.

    Raises:
        ImportError: Tonic is not installed.
        ValueError: ``name`` is not a Tonic dataset, or ``train=False`` for a dataset
            without a test split.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be the name of a tonic.datasets class such as 'NMNIST', got {name!r}")
    if not isinstance(train, bool):
        raise TypeError(f"train must be True or False, got {train!r}")
    try:
        tonic = importlib.import_module("tonic")
    except ImportError as error:
        raise ImportError(
            "tonic_dataset needs the optional dependency Tonic: pip install tonic "
            "(events_to_frames, TonicAdapter and collate_time_major work without it)"
        ) from error
    cls = getattr(tonic.datasets, name, None)
    if not isinstance(cls, type):
        raise ValueError(f"tonic.datasets has no dataset {name!r}; for example {', '.join(_TONIC_DATASETS)}")
    parameters = inspect.signature(cls).parameters
    if "train" in parameters:
        split = {"train": train}
    elif "split" in parameters:
        split = {"split": "train" if train else "test"}
    elif train:
        split = {}
    else:
        raise ValueError(f"tonic.datasets.{name} has no train/test split; use train=True")
    sensor_size = frame_options.pop("sensor_size", None)
    return TonicAdapter(cls(save_to=save_to, **split), sensor_size, **frame_options)
