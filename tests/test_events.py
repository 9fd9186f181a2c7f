"""spikeflow.events: lossless event form of spike trains and the sparse dataset."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from spikeflow import encode
from spikeflow.events import SparseSpikeDataset, SpikeEvents, to_dense, to_events

# ----------------------------------------------------------------- strategies

_DTYPES = {
    torch.float32: st.floats(width=32, allow_nan=True, allow_infinity=True),
    torch.float64: st.floats(allow_nan=True, allow_infinity=True),
    torch.float16: st.floats(width=16, allow_nan=True, allow_infinity=True),
    torch.int64: st.integers(-(2**63), 2**63 - 1),
    torch.int16: st.integers(-(2**15), 2**15 - 1),
    torch.uint8: st.integers(0, 255),
    torch.bool: st.booleans(),
}


@st.composite
def sparse_tensors(draw, max_dims=4):
    """A tensor of any of the dtypes above, mostly zeros, any shape (empty included)."""
    dtype = draw(st.sampled_from(list(_DTYPES)))
    shape = tuple(draw(st.lists(st.integers(0, 3), min_size=0, max_size=max_dims)))
    n = 1
    for d in shape:
        n *= d
    zero = False if dtype is torch.bool else 0
    element = st.one_of(st.just(zero), _DTYPES[dtype])
    values = draw(st.lists(element, min_size=n, max_size=n))
    return torch.tensor(values, dtype=dtype).reshape(shape)


def _assert_identical(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape and a.dtype == b.dtype and a.device == b.device
    if a.is_floating_point():
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)
    else:
        assert torch.equal(a, b)


# ------------------------------------------------------------ to_events / to_dense


@given(sparse_tensors())
def test_round_trip_is_exact(x):
    events = to_events(x)
    assert events.indices.dtype == torch.int64 and events.indices.shape == (x.dim(), events.nnz)
    assert events.dtype == x.dtype and events.shape == x.shape
    _assert_identical(to_dense(events), x)


@given(sparse_tensors(max_dims=3))
def test_events_agree_with_torch_sparse_coo(x):
    if x.dim() == 0 or x.dtype is torch.float16:
        return  # torch.sparse needs >= 1 dim here; half to_dense is not needed for the check
    events = to_events(x)
    coo = torch.sparse_coo_tensor(events.indices, events.values, events.shape, check_invariants=True)
    _assert_identical(coo.to_dense(), x)


def test_to_events_hand_checked():
    x = torch.zeros(3, 1, 2)  # [T, B, N]
    x[0, 0, 1] = 1.0
    x[2, 0, 0] = -1.0  # an off spike
    x[2, 0, 1] = 0.5  # a graded spike
    events = to_events(x)
    assert events.indices.tolist() == [[0, 2, 2], [0, 0, 0], [1, 0, 1]]
    assert events.values.tolist() == [1.0, -1.0, 0.5]
    assert events.shape == (3, 1, 2) and events.dtype == torch.float32 and events.nnz == 3


def test_all_zero_empty_and_scalar_tensors():
    for x in (torch.zeros(4, 2, 3), torch.zeros(0, 5), torch.zeros(()), torch.tensor(2.5), torch.empty(3, 0, 2)):
        events = to_events(x)
        assert events.nnz == int((x != 0).sum())
        _assert_identical(to_dense(events), x)


def test_negative_zero_comes_back_as_zero():
    x = torch.tensor([0.0, -0.0, 1.0])
    back = to_dense(to_events(x))
    assert to_events(x).nnz == 1 and torch.equal(back, x)
    assert not torch.signbit(back[1])


def test_delta_spikes_round_trip():
    x = torch.randn(20, 3, 4, generator=torch.Generator().manual_seed(15))
    spikes = encode.delta(x, threshold=0.5)
    assert (spikes == -1).any()
    _assert_identical(to_dense(to_events(spikes)), spikes)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"indices": torch.zeros(2, 1, dtype=torch.int32)}, TypeError, "indices must be an int64 tensor"),
        ({"indices": torch.zeros(3, 1, dtype=torch.int64)}, ValueError, r"indices must have shape \[ndim, nnz\] = \[2, nnz\]"),
        ({"values": torch.ones(2)}, ValueError, r"values must have shape \[nnz\] = \(1,\)"),
        ({"values": torch.ones(1, dtype=torch.float64)}, TypeError, "values have dtype torch.float64 but dtype is torch.float32"),
        ({"indices": torch.tensor([[0], [5]])}, ValueError, r"indices of axis 1 must be in \[0, 3\).*max 5"),
        ({"indices": torch.tensor([[-1], [0]])}, ValueError, r"indices of axis 0 must be in \[0, 2\).*min -1"),
        ({"shape": (2, -3)}, ValueError, "shape must not be negative"),
        ({"dtype": "float32"}, TypeError, "dtype must be a torch.dtype"),
    ],
)
def test_spike_events_checks_its_fields(kwargs, error, match):
    fields = dict(indices=torch.tensor([[1], [2]]), values=torch.ones(1), shape=(2, 3), dtype=torch.float32)
    fields.update(kwargs)
    with pytest.raises(error, match=match):
        SpikeEvents(**fields)


def test_spike_events_rejects_duplicate_or_unsorted_indices():
    with pytest.raises(ValueError, match="unique and in strictly increasing row-major order"):
        SpikeEvents(torch.tensor([[0, 0], [1, 1]]), torch.ones(2), (2, 3), torch.float32)
    with pytest.raises(ValueError, match="unique and in strictly increasing row-major order"):
        SpikeEvents(torch.tensor([[1, 0], [0, 2]]), torch.ones(2), (2, 3), torch.float32)
    ok = SpikeEvents(torch.tensor([[0, 1], [2, 0]]), torch.tensor([3.0, 4.0]), (2, 3), torch.float32)
    assert to_dense(ok).tolist() == [[0.0, 0.0, 3.0], [4.0, 0.0, 0.0]]


def test_spike_events_is_frozen_and_bad_arguments_are_named():
    events = to_events(torch.eye(2))
    with pytest.raises(AttributeError):
        events.shape = (4,)
    with pytest.raises(TypeError, match="to_events: spikes must be a torch.Tensor"):
        to_events([[1.0]])
    with pytest.raises(TypeError, match="to_dense: events must be a SpikeEvents"):
        to_dense(torch.eye(2))
    with pytest.raises(TypeError, match="dense"):
        to_events(torch.eye(2).to_sparse())


# ------------------------------------------------------------- SparseSpikeDataset


def _digits(n, seed=16):
    """MNIST-like images [n, 28, 28]: dark background, a few bright strokes."""
    g = torch.Generator().manual_seed(seed)
    img = torch.zeros(n, 28, 28)
    for _ in range(6):
        rows = torch.randint(4, 24, (n,), generator=g)
        cols = torch.randint(4, 24, (n,), generator=g)
        for d in range(5):
            img[torch.arange(n), rows, (cols + d).clamp_max(27)] = torch.rand(n, generator=g) * 0.5 + 0.5
    return img


def test_latency_dataset_batch_equals_the_dense_encoding_and_is_small():
    images = _digits(120)
    labels = torch.randint(0, 10, (120,), generator=torch.Generator().manual_seed(17))
    dense = encode.latency(images, 100)  # [T, N, 28, 28], seed 004's encoding
    ds = SparseSpikeDataset.from_encoder(images, lambda xb: encode.latency(xb, 100), labels, chunk_size=64)
    assert len(ds) == 120 and ds.sample_shape == (100, 28, 28) and ds.num_steps == 100
    assert ds.dtype == torch.float32 and torch.equal(ds.labels, labels)
    assert ds.nnz == int(dense.sum())
    for index in (torch.arange(120), torch.tensor([5, 0, 119, 5]), torch.tensor([], dtype=torch.long)):
        _assert_identical(ds.batch(index), dense[:, index])
    # uint8 steps + int16 pixel indices, no stored values (binary): 3 bytes per spike.
    assert ds._times.dtype == torch.uint8 and ds._features.dtype == torch.int16 and ds._values is None
    assert ds.nbytes == 3 * ds.nnz + 8 * 121
    assert ds.dense_nbytes == 120 * 100 * 784 * 4
    assert ds.nbytes * 100 < ds.dense_nbytes


def test_chunked_and_one_shot_construction_agree():
    images = _digits(50, seed=18)
    a = SparseSpikeDataset.from_encoder(images, lambda xb: encode.latency(xb, 30), chunk_size=7)
    b = SparseSpikeDataset.from_dense(encode.latency(images, 30))
    assert a.labels is None and a.nnz == b.nnz
    assert torch.equal(a._offsets, b._offsets) and torch.equal(a._times, b._times)
    assert torch.equal(a._features, b._features)


def test_graded_and_signed_spikes_are_stored_with_values():
    g = torch.Generator().manual_seed(19)
    counts = encode.poisson(torch.rand(40, 6, generator=g), 12, f_max=2000.0, counts=True, generator=g)
    deltas = encode.delta(torch.randn(12, 40, 6, generator=g), threshold=0.7).double()
    for dense in (counts, deltas):
        ds = SparseSpikeDataset.from_dense(dense)
        assert ds._values is not None and ds._values.dtype == dense.dtype
        index = torch.randperm(40, generator=g)[:17]
        _assert_identical(ds.batch(index), dense[:, index])


@given(
    st.integers(1, 6),
    st.integers(0, 6),
    st.lists(st.integers(0, 3), min_size=0, max_size=2),
    st.integers(0, 2**31 - 1),
)
def test_dataset_round_trip_property(T, N, features, seed):
    g = torch.Generator().manual_seed(seed)
    dense = torch.randn(T, N, *features, generator=g, dtype=torch.float64)
    dense = dense * (torch.rand(dense.shape, generator=g, dtype=torch.float64) < 0.3)
    ds = SparseSpikeDataset.from_dense(dense)
    assert len(ds) == N
    index = torch.randint(0, max(N, 1), (5,), generator=g) if N else torch.zeros(0, dtype=torch.long)
    _assert_identical(ds.batch(index), dense[:, index])


def test_batches_cover_the_data_set_with_matching_labels():
    dense = (torch.rand(8, 23, 5, generator=torch.Generator().manual_seed(20)) < 0.2).float()
    labels = torch.arange(23) % 4
    ds = SparseSpikeDataset.from_dense(dense, labels)
    seen = []
    for spikes, y in ds.batches(5, shuffle=True, generator=torch.Generator().manual_seed(21)):
        assert spikes.shape[0] == 8 and spikes.shape[2:] == (5,) and y.shape == (spikes.shape[1],)
        for j in range(spikes.shape[1]):
            # find the sample by content and label
            matches = [n for n in range(23) if torch.equal(dense[:, n], spikes[:, j]) and labels[n] == y[j]]
            assert matches
        seen.append(y)
    assert sorted(torch.cat(seen).tolist()) == sorted(labels.tolist())
    sizes = [s.shape[1] for s, _ in ds.batches(5, drop_last=True)]
    assert sizes == [5, 5, 5, 5]
    ordered = torch.cat([s for s, _ in ds.batches(10)], dim=1)
    assert torch.equal(ordered, dense)


def test_dataset_batch_on_a_device_argument():
    dense = (torch.rand(4, 3, 2) < 0.5).float()
    ds = SparseSpikeDataset.from_dense(dense)
    assert torch.equal(ds.batch(torch.tensor([2, 1]), device=torch.device("cpu")), dense[:, [2, 1]])


def test_index_dtypes_grow_with_the_sizes():
    # T = 257 steps no longer fit uint8, 2^15 + 1 features no longer fit int16.
    dense = torch.zeros(257, 1, 2**15 + 1, dtype=torch.bool)
    dense[256, 0, 2**15] = True
    ds = SparseSpikeDataset.from_dense(dense)
    assert ds._times.dtype == torch.int16 and ds._features.dtype == torch.int32
    _assert_identical(ds.batch(torch.tensor([0])), dense)
    dense = torch.zeros(256, 1, 256)
    dense[255, 0, 255] = 1.0
    ds = SparseSpikeDataset.from_dense(dense)
    assert ds._times.dtype == torch.uint8 and ds._features.dtype == torch.uint8
    _assert_identical(ds.batch(torch.tensor([0])), dense)


def test_dataset_rejects_bad_indices():
    ds = SparseSpikeDataset.from_dense(torch.ones(3, 4, 2))
    with pytest.raises(ValueError, match=r"indices must be in \[0, 4\) for N = 4 samples, got min 0 and max 4"):
        ds.batch(torch.tensor([0, 4]))
    with pytest.raises(ValueError, match=r"got min -1"):
        ds.batch(torch.tensor([-1]))
    with pytest.raises(TypeError, match="integer sample indices"):
        ds.batch(torch.tensor([0.0]))
    with pytest.raises(ValueError, match=r"index must have shape \[B\]"):
        ds.batch(torch.tensor([[0, 1]]))
    with pytest.raises(TypeError, match="index must be a torch.Tensor"):
        ds.batch([0, 1])
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        next(ds.batches(0))


def test_dataset_rejects_bad_labels_and_chunks():
    with pytest.raises(ValueError, match=r"labels must have shape \[N\] = \(4,\) for 4 samples, got \(3,\)"):
        SparseSpikeDataset.from_dense(torch.ones(3, 4, 2), torch.zeros(3, dtype=torch.long))
    with pytest.raises(TypeError, match="integer class labels"):
        SparseSpikeDataset.from_dense(torch.ones(3, 4, 2), torch.zeros(4))
    with pytest.raises(ValueError, match=r"chunk 1 has \[T, \*features\] = \(3, 5\), chunk 0 had \(3, 2\)"):
        SparseSpikeDataset.from_chunks([torch.ones(3, 4, 2), torch.ones(3, 1, 5)])
    with pytest.raises(ValueError, match="chunk 1 has dtype torch.float64"):
        SparseSpikeDataset.from_chunks([torch.ones(3, 4, 2), torch.ones(3, 1, 2, dtype=torch.float64)])
    with pytest.raises(ValueError, match="no chunks given"):
        SparseSpikeDataset.from_chunks([])
    with pytest.raises(ValueError, match=r"chunk 0 must have shape \[T, b, \*features\]"):
        SparseSpikeDataset.from_dense(torch.ones(3))
    with pytest.raises(ValueError, match=r"b = 2 for a chunk of 2 samples, got \(5, 3, 4\)"):
        SparseSpikeDataset.from_encoder(torch.rand(2, 4), lambda xb: torch.zeros(5, 3, 4))
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        SparseSpikeDataset.from_encoder(torch.rand(2, 4), lambda xb: encode.latency(xb, 3), chunk_size=0)
    with pytest.raises(ValueError, match=r"labels must have shape \[N\] = \(2,\)"):
        SparseSpikeDataset.from_encoder(
            torch.rand(2, 4), lambda xb: encode.latency(xb, 3), torch.zeros(5, dtype=torch.long)
        )


def test_low_level_constructor_checks_that_the_arrays_fit():
    good = dict(
        offsets=torch.tensor([0, 2, 3]),
        times=torch.tensor([0, 1, 1], dtype=torch.uint8),
        features=torch.tensor([1, 0, 2], dtype=torch.uint8),
        values=None,
        sample_shape=(2, 3),
        dtype=torch.float32,
    )
    ds = SparseSpikeDataset(**good)
    assert ds.batch(torch.tensor([0, 1])).tolist() == [[[0, 1, 0], [0, 0, 0]], [[1, 0, 0], [0, 0, 1]]]
    for change, error, match in [
        ({"offsets": torch.tensor([0, 2, 4])}, ValueError, "offsets must rise from 0 to nnz"),
        ({"offsets": torch.tensor([0, 3, 2, 3])}, ValueError, "offsets must rise from 0 to nnz"),
        ({"offsets": torch.tensor([0.0, 3.0])}, TypeError, "offsets must be a 1-D int64"),
        ({"features": torch.tensor([1, 0])}, ValueError, "one length nnz"),
        ({"values": torch.ones(3, dtype=torch.float64)}, ValueError, "one length nnz"),
        ({"labels": torch.zeros(3, dtype=torch.long)}, ValueError, r"labels must have shape \[N\] = \(2,\)"),
    ]:
        with pytest.raises(error, match=match):
            SparseSpikeDataset(**{**good, **change})
