"""Sparse event form of spike trains.

Spike trains are mostly zeros: a latency-coded MNIST digit (seed 004) has about 150
spikes in ``100 x 784`` steps and pixels, so storing only the events saves two to
three orders of magnitude of memory (seed 004 keeps the whole data set as a sparse
COO array for that reason).

======================  ===========================================================
name                    what it is
======================  ===========================================================
SpikeEvents             one tensor as COO events: ``indices [ndim, nnz]``,
                        ``values [nnz]``, ``shape``, ``dtype``
to_events / to_dense    tensor -> events -> the same tensor, exactly
SparseSpikeDataset      N spike trains ``[T, *features]`` stored as events with
                        small index dtypes; ``batch(index)`` gives dense
                        time-major ``[T, B, *features]``
======================  ===========================================================

The round trip is lossless for any values (graded spikes, ``-1`` off spikes of
:func:`spikeflow.encode.delta`, counts): every non-zero element is stored with its
value, in the tensor's dtype. Only zeros are dropped, so a ``-0.0`` comes back as
``+0.0`` (equal under ``==`` and ``torch.equal``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, List, Optional, Tuple

import torch

__all__ = ["SparseSpikeDataset", "SpikeEvents", "to_dense", "to_events"]


def _shape_str(shape) -> str:
    return str(tuple(shape))


@dataclass(frozen=True)
class SpikeEvents:
    """A tensor as coordinate-format (COO) events.

    ``dense[tuple(indices[:, k])] = values[k]`` for every event ``k``; every other
    element is zero.

    Attributes:
        indices: int64 ``[ndim, nnz]``, one row per axis of ``shape`` (the layout
            of ``torch.sparse_coo_tensor``), columns unique and in strictly
            increasing row-major (C) order, as :func:`to_events` makes them.
        values: ``[nnz]`` the non-zero values, of ``dtype``.
        shape: the dense shape.
        dtype: the dense dtype (equal to ``values.dtype``).

    Raises:
        TypeError: a field has the wrong type or dtype.
        ValueError: shapes, devices or index ranges are inconsistent, or indices
            are not in strictly increasing row-major order.
    """

    indices: torch.Tensor
    values: torch.Tensor
    shape: torch.Size
    dtype: torch.dtype

    def __post_init__(self) -> None:
        if not isinstance(self.indices, torch.Tensor) or self.indices.dtype != torch.int64:
            got = self.indices.dtype if isinstance(self.indices, torch.Tensor) else type(self.indices).__name__
            raise TypeError(f"SpikeEvents: indices must be an int64 tensor [ndim, nnz], got {got}")
        if not isinstance(self.values, torch.Tensor):
            raise TypeError(f"SpikeEvents: values must be a torch.Tensor [nnz], got {type(self.values).__name__}")
        if not isinstance(self.dtype, torch.dtype):
            raise TypeError(f"SpikeEvents: dtype must be a torch.dtype, got {type(self.dtype).__name__}")
        try:
            shape = torch.Size(self.shape)
        except TypeError:
            raise TypeError(f"SpikeEvents: shape must be a sequence of ints, got {self.shape!r}") from None
        if any(n < 0 for n in shape):
            raise ValueError(f"SpikeEvents: shape must not be negative, got {_shape_str(shape)}")
        object.__setattr__(self, "shape", shape)
        ndim = len(shape)
        if self.indices.dim() != 2 or self.indices.shape[0] != ndim:
            raise ValueError(
                f"SpikeEvents: indices must have shape [ndim, nnz] = [{ndim}, nnz] for "
                f"shape {_shape_str(shape)}, got {_shape_str(self.indices.shape)}"
            )
        nnz = self.indices.shape[1]
        if self.values.shape != (nnz,):
            raise ValueError(
                f"SpikeEvents: values must have shape [nnz] = ({nnz},) to match indices, "
                f"got {_shape_str(self.values.shape)}"
            )
        if self.values.dtype != self.dtype:
            raise TypeError(f"SpikeEvents: values have dtype {self.values.dtype} but dtype is {self.dtype}")
        if self.values.device != self.indices.device:
            raise ValueError(
                f"SpikeEvents: values are on {self.values.device} but indices on {self.indices.device}"
            )
        if nnz == 0:
            return
        bounds = torch.tensor(list(shape), dtype=torch.int64, device=self.indices.device)
        low = self.indices.amin(dim=1)
        high = self.indices.amax(dim=1)
        bad = (low < 0) | (high >= bounds)
        if bool(bad.any()):
            axis = int(bad.nonzero()[0])
            raise ValueError(
                f"SpikeEvents: indices of axis {axis} must be in [0, {shape[axis]}) for shape "
                f"{_shape_str(shape)}, got min {int(low[axis])} and max {int(high[axis])}"
            )
        if nnz > 1:
            strides = torch.tensor(_row_major_strides(shape), dtype=torch.int64, device=self.indices.device)
            flat = (self.indices * strides.unsqueeze(1)).sum(dim=0)
            if not bool((flat.diff() > 0).all()):
                raise ValueError(
                    "SpikeEvents: indices must be unique and in strictly increasing row-major "
                    "order (as to_events makes them)"
                )

    @property
    def nnz(self) -> int:
        """The number of stored (non-zero) events."""
        return self.indices.shape[1]

    @property
    def device(self) -> torch.device:
        """The device of ``indices`` and ``values``."""
        return self.indices.device


def _row_major_strides(shape: Tuple[int, ...]) -> List[int]:
    strides = [1] * len(shape)
    for axis in range(len(shape) - 2, -1, -1):
        strides[axis] = strides[axis + 1] * shape[axis + 1]
    return strides


def to_events(spikes: torch.Tensor) -> SpikeEvents:
    """The events of a tensor: the coordinates and values of its non-zero elements.

    ``indices = nonzero(spikes).T`` (row-major order) and ``values =
    spikes[indices]``; ``to_dense(to_events(s))`` equals ``s`` exactly, in values,
    dtype, shape and device, for any dtype and any values (NaN and infinities are
    non-zero and kept; ``-0.0`` is zero and comes back as ``+0.0``).

    Args:
        spikes: a tensor of any shape (usually ``[T, B, *features]``) and dtype.

    Returns:
        :class:`SpikeEvents` on ``spikes``' device. No gradient.

    Raises:
        TypeError: ``spikes`` is not a tensor, or is sparse.
    """
    if not isinstance(spikes, torch.Tensor):
        raise TypeError(f"to_events: spikes must be a torch.Tensor, got {type(spikes).__name__}")
    if spikes.layout != torch.strided:
        raise TypeError(f"to_events: spikes must be a dense (strided) tensor, got layout {spikes.layout}")
    spikes = spikes.detach()
    indices = spikes.nonzero().t().contiguous()  # [ndim, nnz]
    values = spikes[tuple(indices)] if spikes.dim() > 0 else spikes.reshape(1)[: indices.shape[1]]
    return SpikeEvents(indices, values, spikes.shape, spikes.dtype)


def to_dense(events: SpikeEvents) -> torch.Tensor:
    """The dense tensor of :class:`SpikeEvents`: zeros of ``events.shape`` and
    ``events.dtype`` with ``values`` at ``indices``.

    Args:
        events: the events, as made by :func:`to_events` (or built by hand in
            the same form; :class:`SpikeEvents` checks it).

    Returns:
        A tensor of ``events.shape`` and ``events.dtype`` on ``events.device``.

    Raises:
        TypeError: ``events`` is not a :class:`SpikeEvents`.
    """
    if not isinstance(events, SpikeEvents):
        raise TypeError(f"to_dense: events must be a SpikeEvents, got {type(events).__name__}")
    out = torch.zeros(events.shape, dtype=events.dtype, device=events.device)
    if events.nnz:
        if len(events.shape) == 0:
            out.fill_(events.values[0])
        else:
            out[tuple(events.indices)] = events.values
    return out


def _index_dtype(size: int) -> torch.dtype:
    """The smallest integer dtype holding ``0 .. size - 1``."""
    if size <= 1 << 8:
        return torch.uint8
    if size <= 1 << 15:
        return torch.int16
    if size <= 1 << 31:
        return torch.int32
    return torch.int64


class SparseSpikeDataset:
    """``N`` spike trains of shape ``[T, *features]`` stored as events, with labels.

    Sample ``n``'s events are ``offsets[n] .. offsets[n+1] - 1`` of three flat
    arrays, sorted by sample, then step, then feature:

    ======== ==================================== ====================================
    array    content                              dtype
    ======== ==================================== ====================================
    offsets  ``[N + 1]`` start of each sample     int64
    times    ``[nnz]`` step ``t`` in ``[0, T)``   smallest holding ``T`` values
                                                  (uint8 for ``T <= 256``)
    features ``[nnz]`` flat (row-major) feature   smallest holding ``prod(features)``
             index                                values (int16 for MNIST's 784)
    values   ``[nnz]`` the values, or None when   the spikes' dtype
             every stored value is 1 (binary
             spikes: nothing to store)
    ======== ==================================== ====================================

    A binary latency-coded MNIST digit (about 150 spikes) then takes about
    ``150 * 3`` bytes instead of ``100 * 784 * 4``: :attr:`nbytes` vs
    :attr:`dense_nbytes`.

    Build it with :meth:`from_dense`, :meth:`from_chunks` or :meth:`from_encoder`
    (which encodes a data set chunk by chunk, so only one dense chunk exists at a
    time), and read it with :meth:`batch` (dense, time-major) or :meth:`batches`.

    Raises:
        TypeError, ValueError: from the constructors, for spikes or labels of the
            wrong type, dtype or shape.
    """

    def __init__(
        self,
        *,
        offsets: torch.Tensor,
        times: torch.Tensor,
        features: torch.Tensor,
        values: Optional[torch.Tensor],
        sample_shape: Tuple[int, ...],
        dtype: torch.dtype,
        labels: Optional[torch.Tensor] = None,
    ) -> None:
        """Wrap already-built arrays (see the class docstring); prefer the
        ``from_*`` constructors, which build them. Checks that the arrays fit
        together (not their contents beyond the offsets)."""
        if not isinstance(offsets, torch.Tensor) or offsets.dtype != torch.int64 or offsets.dim() != 1:
            raise TypeError("SparseSpikeDataset: offsets must be a 1-D int64 tensor [N + 1]")
        nnz = times.shape[0] if isinstance(times, torch.Tensor) else -1
        if (
            not isinstance(times, torch.Tensor)
            or not isinstance(features, torch.Tensor)
            or times.shape != (nnz,)
            or features.shape != (nnz,)
            or (values is not None and (values.shape != (nnz,) or values.dtype != dtype))
        ):
            raise ValueError(
                "SparseSpikeDataset: times, features (and values, of dtype) must be 1-D tensors of one length nnz"
            )
        if (
            offsets.shape[0] < 1
            or int(offsets[0]) != 0
            or int(offsets[-1]) != nnz
            or bool((offsets.diff() < 0).any())
        ):
            raise ValueError("SparseSpikeDataset: offsets must rise from 0 to nnz")
        self._offsets = offsets
        self._times = times
        self._features = features
        self._values = values
        self._sample_shape = torch.Size(sample_shape)
        self._dtype = dtype
        self._labels = labels
        n = offsets.shape[0] - 1
        if labels is not None and labels.shape != (n,):
            raise ValueError(
                f"SparseSpikeDataset: labels must have shape [N] = ({n},), got {_shape_str(labels.shape)}"
            )

    # ------------------------------------------------------------------ building

    @classmethod
    def from_chunks(
        cls,
        chunks: Iterable[torch.Tensor],
        labels: Optional[torch.Tensor] = None,
    ) -> "SparseSpikeDataset":
        """Build from consecutive chunks of samples, each dense time-major
        ``[T, b, *features]`` (``b`` may differ between chunks; ``T``, the feature
        shape and the dtype may not).

        Args:
            chunks: an iterable of ``[T, b, *features]`` tensors (at least one).
            labels: ``[N]`` integer labels for the ``N = sum b`` samples, or None.

        Returns:
            The dataset, on the CPU.

        Raises:
            TypeError: a chunk is not a tensor, or ``labels`` are not integers.
            ValueError: no chunks, a chunk is not ``[T, b, ...]``, chunks disagree
                on ``T``, features or dtype, or ``labels`` do not have ``N``
                entries.
        """
        sample_shape: Optional[torch.Size] = None
        dtype: Optional[torch.dtype] = None
        counts: List[torch.Tensor] = []
        times: List[torch.Tensor] = []
        feats: List[torch.Tensor] = []
        vals: List[torch.Tensor] = []
        binary = True
        for i, chunk in enumerate(chunks):
            if not isinstance(chunk, torch.Tensor):
                raise TypeError(
                    f"SparseSpikeDataset: chunk {i} must be a torch.Tensor [T, b, *features], "
                    f"got {type(chunk).__name__}"
                )
            if chunk.dim() < 2:
                raise ValueError(
                    f"SparseSpikeDataset: chunk {i} must have shape [T, b, *features], got "
                    f"{_shape_str(chunk.shape)}"
                )
            shape = torch.Size((chunk.shape[0], *chunk.shape[2:]))
            if sample_shape is None:
                sample_shape, dtype = shape, chunk.dtype
                if sample_shape[0] < 1:
                    raise ValueError(f"SparseSpikeDataset: T must be >= 1, got chunk shape {_shape_str(chunk.shape)}")
                time_dtype = _index_dtype(sample_shape[0])
                feat_dtype = _index_dtype(max(1, math.prod(sample_shape[1:])))
            elif shape != sample_shape:
                raise ValueError(
                    f"SparseSpikeDataset: chunk {i} has [T, *features] = {_shape_str(shape)}, "
                    f"chunk 0 had {_shape_str(sample_shape)}"
                )
            elif chunk.dtype != dtype:
                raise ValueError(f"SparseSpikeDataset: chunk {i} has dtype {chunk.dtype}, chunk 0 had {dtype}")
            chunk = chunk.detach().cpu()
            b = chunk.shape[1]
            # [b, T, F]: nonzero() then comes sorted by sample, step, feature.
            per_sample = chunk.movedim(1, 0).reshape(b, sample_shape[0], math.prod(sample_shape[1:]))
            nz = per_sample.nonzero()  # [nnz, 3]
            v = per_sample[nz[:, 0], nz[:, 1], nz[:, 2]]
            binary = binary and bool((v == 1).all())
            counts.append(torch.bincount(nz[:, 0], minlength=b))
            times.append(nz[:, 1].to(time_dtype))
            feats.append(nz[:, 2].to(feat_dtype))
            vals.append(v)
        if sample_shape is None:
            raise ValueError("SparseSpikeDataset: no chunks given; need at least one [T, b, *features] tensor")
        offsets = torch.zeros(sum(c.shape[0] for c in counts) + 1, dtype=torch.int64)
        torch.cumsum(torch.cat(counts), dim=0, out=offsets[1:])
        return cls(
            offsets=offsets,
            times=torch.cat(times),
            features=torch.cat(feats),
            values=None if binary else torch.cat(vals),
            sample_shape=tuple(sample_shape),
            dtype=dtype,
            labels=_check_labels(labels, offsets.shape[0] - 1),
        )

    @classmethod
    def from_dense(cls, spikes: torch.Tensor, labels: Optional[torch.Tensor] = None) -> "SparseSpikeDataset":
        """Build from dense time-major spikes ``[T, N, *features]`` (one chunk).

        Args:
            spikes: ``[T, N, *features]``, any dtype and values.
            labels: ``[N]`` integer labels, or None.

        Returns:
            The dataset, on the CPU.

        Raises:
            See :meth:`from_chunks`.
        """
        return cls.from_chunks([spikes], labels)

    @classmethod
    def from_encoder(
        cls,
        x: torch.Tensor,
        encoder: Callable[[torch.Tensor], torch.Tensor],
        labels: Optional[torch.Tensor] = None,
        *,
        chunk_size: int = 1024,
    ) -> "SparseSpikeDataset":
        """Encode a data set chunk by chunk: ``encoder(x[i : i + chunk_size])`` must
        return ``[T, b, *features]`` spikes, and only one such dense chunk exists at
        a time. For seed 004's latency-coded MNIST::

            ds = SparseSpikeDataset.from_encoder(
                images, lambda xb: encode.latency(xb, 100), labels)

        Args:
            x: ``[N, *input_features]`` inputs (N >= 1).
            encoder: maps ``[b, *input_features]`` to ``[T, b, *features]``.
            labels: ``[N]`` integer labels, or None.
            chunk_size: samples per chunk (>= 1).

        Returns:
            The dataset, on the CPU.

        Raises:
            TypeError: ``x`` is not a tensor, ``encoder`` not callable, or
                ``chunk_size`` not an int.
            ValueError: ``x`` is empty, ``chunk_size < 1``, the encoder returns a
                different batch size than it was given, or see :meth:`from_chunks`.
        """
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"SparseSpikeDataset: x must be a torch.Tensor [N, *features], got {type(x).__name__}")
        if x.dim() < 1 or x.shape[0] < 1:
            raise ValueError(f"SparseSpikeDataset: x must have shape [N, *features] with N >= 1, got {_shape_str(x.shape)}")
        if not callable(encoder):
            raise TypeError(f"SparseSpikeDataset: encoder must be callable, got {type(encoder).__name__}")
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int):
            raise TypeError(f"SparseSpikeDataset: chunk_size must be an int, got {type(chunk_size).__name__}")
        if chunk_size < 1:
            raise ValueError(f"SparseSpikeDataset: chunk_size must be >= 1, got {chunk_size}")
        _check_labels(labels, x.shape[0])

        def chunks() -> Iterator[torch.Tensor]:
            for start in range(0, x.shape[0], chunk_size):
                xb = x[start : start + chunk_size]
                out = encoder(xb)
                if isinstance(out, torch.Tensor) and (out.dim() < 2 or out.shape[1] != xb.shape[0]):
                    raise ValueError(
                        f"SparseSpikeDataset: the encoder must return [T, b, *features] with "
                        f"b = {xb.shape[0]} for a chunk of {xb.shape[0]} samples, got "
                        f"{_shape_str(out.shape)}"
                    )
                yield out

        return cls.from_chunks(chunks(), labels)

    # ------------------------------------------------------------------ reading

    def __len__(self) -> int:
        """The number of samples ``N``."""
        return self._offsets.shape[0] - 1

    def __repr__(self) -> str:
        return (
            f"SparseSpikeDataset(N={len(self)}, sample_shape={tuple(self._sample_shape)}, "
            f"dtype={self._dtype}, nnz={self.nnz}, nbytes={self.nbytes}, dense_nbytes={self.dense_nbytes})"
        )

    @property
    def sample_shape(self) -> torch.Size:
        """``[T, *features]``, the shape of one sample."""
        return self._sample_shape

    @property
    def num_steps(self) -> int:
        """``T``, the number of time steps."""
        return self._sample_shape[0]

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the dense spikes."""
        return self._dtype

    @property
    def labels(self) -> Optional[torch.Tensor]:
        """``[N]`` int64 labels, or None."""
        return self._labels

    @property
    def nnz(self) -> int:
        """The number of stored events over all samples."""
        return self._times.shape[0]

    @property
    def nbytes(self) -> int:
        """Bytes held for the spike trains: offsets, times, features and values
        (labels not included)."""
        arrays = [self._offsets, self._times, self._features]
        if self._values is not None:
            arrays.append(self._values)
        return sum(a.numel() * a.element_size() for a in arrays)

    @property
    def dense_nbytes(self) -> int:
        """Bytes the same spike trains take dense: ``N * T * prod(features) *
        itemsize``."""
        itemsize = torch.empty((), dtype=self._dtype).element_size()
        return len(self) * math.prod(self._sample_shape) * itemsize

    def batch(self, index: torch.Tensor, *, device: Optional[torch.device] = None) -> torch.Tensor:
        """The dense, time-major spike trains of the samples ``index``.

        ``out[:, j] = sample[index[j]]`` (as ``[T, *features]``), so ``out`` is
        exactly the dense tensor the dataset was built from, at those samples.
        Indices may repeat.

        Args:
            index: ``[B]`` integer sample indices in ``[0, N)`` (B may be 0).
            device: where to build the batch; None means the CPU.

        Returns:
            ``[T, B, *features]`` of the dataset's dtype.

        Raises:
            TypeError: ``index`` is not an integer tensor.
            ValueError: ``index`` is not 1-D, or an index is outside ``[0, N)``.
        """
        index = self._check_index(index)
        n_steps, feat_shape = self._sample_shape[0], self._sample_shape[1:]
        n_feat = math.prod(feat_shape)
        b = index.shape[0]
        start = self._offsets[index]  # [B]
        count = self._offsets[index + 1] - start  # [B]
        total = int(count.sum())
        # Positions of the selected events in the flat arrays, and their batch slot.
        slot = torch.repeat_interleave(torch.arange(b), count)  # [total]
        first = torch.cumsum(count, 0) - count  # [B] where each sample's events begin in the batch
        pos = start[slot] + (torch.arange(total) - first[slot])  # [total]
        out = torch.zeros((n_steps * b * n_feat,), dtype=self._dtype)
        flat = (self._times[pos].long() * b + slot) * n_feat + self._features[pos].long()
        if self._values is None:
            out[flat] = 1
        else:
            out[flat] = self._values[pos]
        out = out.view(n_steps, b, *feat_shape)
        return out if device is None else out.to(device)

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        generator: Optional[torch.Generator] = None,
        drop_last: bool = False,
    ) -> Iterator[Tuple[torch.Tensor, Optional[torch.Tensor]]]:
        """Iterate over the data set in batches.

        Args:
            batch_size: samples per batch (>= 1).
            shuffle: visit the samples in a random order (``torch.randperm``).
            generator: the random generator for the order; None uses torch's
                global generator.
            drop_last: skip a last batch smaller than ``batch_size``.

        Yields:
            ``(spikes [T, B, *features], labels [B] or None)``.

        Raises:
            TypeError, ValueError: ``batch_size`` is not an int >= 1.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int):
            raise TypeError(f"batches: batch_size must be an int, got {type(batch_size).__name__}")
        if batch_size < 1:
            raise ValueError(f"batches: batch_size must be >= 1, got {batch_size}")
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        for start in range(0, n, batch_size):
            index = order[start : start + batch_size]
            if drop_last and index.shape[0] < batch_size:
                break
            labels = None if self._labels is None else self._labels[index]
            yield self.batch(index), labels

    def _check_index(self, index: object) -> torch.Tensor:
        if not isinstance(index, torch.Tensor):
            raise TypeError(f"batch: index must be a torch.Tensor of sample indices [B], got {type(index).__name__}")
        if index.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
            raise TypeError(f"batch: index must hold integer sample indices, got dtype {index.dtype}")
        if index.dim() != 1:
            raise ValueError(f"batch: index must have shape [B], got {_shape_str(index.shape)}")
        index = index.to(device="cpu", dtype=torch.int64)
        n = len(self)
        if index.numel():
            lo, hi = int(index.min()), int(index.max())
            if lo < 0 or hi >= n:
                raise ValueError(f"batch: indices must be in [0, {n}) for N = {n} samples, got min {lo} and max {hi}")
        return index


def _check_labels(labels: object, n: int) -> Optional[torch.Tensor]:
    if labels is None:
        return None
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"SparseSpikeDataset: labels must be a torch.Tensor [N], got {type(labels).__name__}")
    if labels.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise TypeError(f"SparseSpikeDataset: labels must hold integer class labels, got dtype {labels.dtype}")
    if labels.shape != (n,):
        raise ValueError(
            f"SparseSpikeDataset: labels must have shape [N] = ({n},) for {n} samples, "
            f"got {_shape_str(labels.shape)}"
        )
    return labels.detach().to(device="cpu", dtype=torch.int64)
