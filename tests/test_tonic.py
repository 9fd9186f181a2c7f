"""spikeflow.data.tonic: events -> frames, the dataset adapter and time-major collation.

Events are small structured arrays built by hand with Tonic's dtypes; expected counts
are worked out by hand in the comments. Tonic itself is only needed by the last tests
(skipped without it).
"""

from __future__ import annotations

import sys
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from spikeflow.data.tonic import (
    TonicAdapter,
    collate_time_major,
    events_to_frames,
    frames_dataset,
    tonic_dataset,
)

# tonic.datasets.NMNIST.dtype and tonic.datasets.SHD.dtype (tonic 1.x)
CAMERA = np.dtype([("x", "<i8"), ("y", "<i8"), ("t", "<i8"), ("p", "<i8")])
AUDIO = np.dtype([("t", "<i8"), ("x", "<i8"), ("p", "<i8")])


def camera(rows) -> np.ndarray:
    return np.array([tuple(r) for r in rows], dtype=CAMERA)


def audio(rows) -> np.ndarray:
    return np.array([tuple(r) for r in rows], dtype=AUDIO)


# (x, y, t, p) on a W=3, H=2, P=2 sensor
EVENTS = camera([(0, 0, 0, 0), (2, 1, 5, 1), (2, 1, 9, 1), (1, 0, 10, 0), (1, 0, 10, 0)])
SENSOR = (3, 2, 2)


def test_time_window_counts_by_hand():
    # t0 = 0, w = 5: T = floor(10 / 5) + 1 = 3; bins [0,5) [5,10) [10,15)
    frames = events_to_frames(EVENTS, SENSOR, time_window=5)
    assert frames.shape == (3, 2, 2, 3) and frames.dtype == torch.float32
    expected = torch.zeros(3, 2, 2, 3)
    expected[0, 0, 0, 0] = 1  # t=0
    expected[1, 1, 1, 2] = 2  # t=5, t=9
    expected[2, 0, 0, 1] = 2  # t=10 twice: the last events are included
    assert torch.equal(frames, expected)
    binary = events_to_frames(EVENTS, SENSOR, time_window=5, binary=True)
    assert torch.equal(binary, expected.clamp(max=1))


def test_n_time_bins_counts_by_hand():
    # t0 = 0, t1 = 10: k = floor(3 t / 10) -> t=0:0, 5:1, 9:2, 10:3 -> last bin 2 (closed)
    frames = events_to_frames(EVENTS, SENSOR, n_time_bins=3, dtype=torch.float64)
    assert frames.shape == (3, 2, 2, 3) and frames.dtype == torch.float64
    assert frames[0, 0, 0, 0] == 1 and frames[0].sum() == 1
    assert frames[1, 1, 1, 2] == 1 and frames[1].sum() == 1
    assert frames[2, 1, 1, 2] == 1 and frames[2, 0, 0, 1] == 2 and frames[2].sum() == 3
    # two bins: [0,5) and [5,10]
    two = events_to_frames(EVENTS, SENSOR, n_time_bins=2)
    assert two[0].sum() == 1 and two[1].sum() == 4


def test_start_and_end_time_crop_half_open():
    # end_time is exclusive: [0, 10) in bins of 5 -> T = 2, the t=10 events dropped
    frames = events_to_frames(EVENTS, SENSOR, time_window=5, end_time=10)
    assert frames.shape[0] == 2 and frames.sum() == 3
    # start at 5: t=0 dropped; T = floor((10 - 5) / 5) + 1 = 2: t=5,9 -> 0; t=10 -> 1
    frames = events_to_frames(EVENTS, SENSOR, time_window=5, start_time=5)
    assert frames.shape[0] == 2
    assert frames[0, 1, 1, 2] == 2 and frames[1, 0, 0, 1] == 2 and frames.sum() == 4
    # a span longer than the recording: empty bins at the end; ceil(13 / 4) = 4 bins
    frames = events_to_frames(EVENTS, SENSOR, time_window=4, end_time=13)
    assert frames.shape[0] == 4 and [int(f.sum()) for f in frames] == [1, 1, 3, 0]
    # n_time_bins over [0, 20): width 10 -> t < 10 in bin 0, t = 10 in bin 1
    frames = events_to_frames(EVENTS, SENSOR, n_time_bins=2, end_time=20)
    assert [int(f.sum()) for f in frames] == [3, 2]


def test_audio_events_are_time_by_channel():
    # SHD-like: sensor (X=5, 1, P=1); w = 4: T = floor(7 / 4) + 1 = 2
    events = audio([(0, 4, 0), (3, 0, 0), (3, 0, 1), (7, 2, 0)])
    frames = events_to_frames(events, (5, 1, 1), time_window=4)
    assert frames.shape == (2, 5)
    expected = torch.tensor([[2.0, 0, 0, 0, 1], [0, 0, 1, 0, 0]])  # P=1 merges polarities
    assert torch.equal(frames, expected)
    two = events_to_frames(events, (5, 1, 2), time_window=4)
    assert two.shape == (2, 2, 5)
    assert two[0, 0, 0] == 1 and two[0, 1, 0] == 1 and two[0, 0, 4] == 1 and two[1, 0, 2] == 1


def test_unsorted_float_and_bool_fields():
    order = np.array([4, 0, 3, 1, 2])
    assert torch.equal(events_to_frames(EVENTS[order], SENSOR, time_window=5),
                       events_to_frames(EVENTS, SENSOR, time_window=5))
    # float time stamps (e.g. seconds) and boolean polarity, as older tonic dtypes
    dtype = np.dtype([("x", "<i2"), ("y", "<i2"), ("t", "<f8"), ("p", "?")])
    events = np.array([(0, 0, 0.0, False), (1, 1, 0.5, True), (2, 0, 1.0, True)], dtype=dtype)
    frames = events_to_frames(events, SENSOR, time_window=0.5)
    assert frames.shape == (3, 2, 2, 3)
    assert frames[0, 0, 0, 0] == 1 and frames[1, 1, 1, 1] == 1 and frames[2, 1, 0, 2] == 1


def test_empty_recording():
    empty = np.zeros(0, dtype=CAMERA)
    assert torch.equal(events_to_frames(empty, SENSOR, n_time_bins=4), torch.zeros(4, 2, 2, 3))
    assert events_to_frames(empty, SENSOR, time_window=10).shape == (1, 2, 2, 3)
    assert events_to_frames(empty, SENSOR, time_window=10, end_time=35).shape == (4, 2, 2, 3)


def _reference_bin(t: int, t0: int, t1: int, n: int) -> int:
    """The bin of t by exact rational comparison with the edges t0 + k (t1 - t0) / n."""
    if t1 == t0:
        return 0
    for k in range(n):
        upper = Fraction(t0) + Fraction(k + 1) * Fraction(t1 - t0, n)
        if Fraction(t) < upper:
            return k
    return n - 1  # t == t1, the closed last bin


@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2), st.integers(0, 10_000), st.integers(0, 1)),
             min_size=1, max_size=40),
    st.integers(1, 9),
)
def test_every_event_counted_once_in_its_exact_bin(rows, n_bins):
    events = camera(rows)
    frames = events_to_frames(events, (4, 3, 2), n_time_bins=n_bins)
    assert frames.shape == (n_bins, 2, 3, 4)
    expected = torch.zeros_like(frames)
    t0, t1 = int(events["t"].min()), int(events["t"].max())
    for x, y, t, p in rows:
        expected[_reference_bin(t, t0, t1, n_bins), p, y, x] += 1
    assert torch.equal(frames, expected)
    assert frames.sum() == len(rows)


@pytest.mark.parametrize(
    "events, sensor, kwargs, error, match",
    [
        (EVENTS[["x", "y", "t"]], SENSOR, {"time_window": 5}, ValueError, "field.*p"),
        (audio([(0, 1, 0)])[["t", "p"]], (5, 1, 1), {"time_window": 5}, ValueError, "field.*x"),
        (camera([(3, 0, 0, 0)]), SENSOR, {"time_window": 5}, ValueError, "outside the sensor.*x"),
        (camera([(0, -1, 0, 0)]), SENSOR, {"time_window": 5}, ValueError, "outside the sensor.*y"),
        (camera([(0, 0, 0, 2)]), SENSOR, {"time_window": 5}, ValueError, "outside the sensor.*p"),
        (camera([(0, 0, -3, 0)]), SENSOR, {"time_window": 5}, ValueError, "negative times"),
        (EVENTS, (3, 2), {"time_window": 5}, ValueError, "sensor_size"),
        (EVENTS, (3, 0, 2), {"time_window": 5}, ValueError, "sensor_size"),
        (EVENTS, (3.0, 2, 2), {"time_window": 5}, ValueError, "sensor_size"),
        (EVENTS, "34x34", {"time_window": 5}, ValueError, "sensor_size"),
        (audio([(0, 1, 0)]), (5, 2, 1), {"time_window": 5}, ValueError, r"\(X, 1, P\)"),
        (EVENTS, SENSOR, {}, ValueError, "exactly one"),
        (EVENTS, SENSOR, {"time_window": 5, "n_time_bins": 2}, ValueError, "exactly one"),
        (EVENTS, SENSOR, {"time_window": 0}, ValueError, "time_window"),
        (EVENTS, SENSOR, {"n_time_bins": 0}, ValueError, "n_time_bins"),
        (EVENTS, SENSOR, {"time_window": 5, "start_time": 8, "end_time": 8}, ValueError, "end_time"),
        (EVENTS, SENSOR, {"time_window": 5, "start_time": -1}, ValueError, "start_time"),
        (EVENTS, SENSOR, {"time_window": 5, "dtype": torch.int64}, TypeError, "dtype"),
        (np.zeros((5, 4)), SENSOR, {"time_window": 5}, TypeError, "structured"),
    ],
)
def test_bad_input_raises_clear_errors(events, sensor, kwargs, error, match):
    with pytest.raises(error, match=match):
        events_to_frames(events, sensor, **kwargs)


# ---- adapter and collation ---------------------------------------------------------


class _Recordings:
    """A map-style dataset like a tonic one: (events, label) items and a sensor_size."""

    sensor_size = SENSOR

    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


def test_adapter_converts_items_and_reads_sensor_size():
    data = _Recordings([(EVENTS, np.int64(3)), (EVENTS[:2], 1)])
    ds = TonicAdapter(data, time_window=5)
    assert len(ds) == 2 and ds.sensor_size == SENSOR
    frames, label = ds[0]
    assert torch.equal(frames, events_to_frames(EVENTS, SENSOR, time_window=5)) and label == 3
    frames, label = ds[1]
    assert frames.shape == (2, 2, 2, 3) and label == 1  # t in {0, 5}: T = 2
    plain = frames_dataset([(EVENTS, 0)], SENSOR, n_time_bins=4, binary=True)
    frames, label = plain[0]
    assert frames.shape == (4, 2, 2, 3) and frames.max() == 1 and label == 0


def test_adapter_errors():
    with pytest.raises(ValueError, match="sensor_size"):
        TonicAdapter([(EVENTS, 0)], time_window=5)
    with pytest.raises(TypeError, match="unknown frame option"):
        TonicAdapter([(EVENTS, 0)], SENSOR, window=5)
    with pytest.raises(ValueError, match="n_time_bins"):
        TonicAdapter([(EVENTS, 0)], SENSOR, n_time_bins=-1)
    with pytest.raises(TypeError, match="map-style"):
        TonicAdapter(iter([(EVENTS, 0)]), SENSOR, time_window=5)
    with pytest.raises(TypeError, match=r"\(events, label\)"):
        TonicAdapter([EVENTS], SENSOR, time_window=5)[0]
    with pytest.raises(TypeError, match="label"):
        TonicAdapter([(EVENTS, "three")], SENSOR, time_window=5)[0]


def test_collate_pads_to_longest_and_stacks_time_major():
    a = torch.arange(2 * 3, dtype=torch.float32).reshape(2, 3) + 1
    b = torch.arange(4 * 3, dtype=torch.float32).reshape(4, 3) + 1
    x, labels = collate_time_major([(a, 1), (b, 7)])
    assert x.shape == (4, 2, 3)
    assert torch.equal(x[:2, 0], a) and torch.equal(x[2:, 0], torch.zeros(2, 3))
    assert torch.equal(x[:, 1], b)
    assert labels.dtype == torch.long and labels.tolist() == [1, 7]


def test_collate_with_a_dataloader():
    data = [(EVENTS, 0), (EVENTS[:3], 1), (EVENTS[:1], 2)]  # T = 3, 2, 1
    loader = torch.utils.data.DataLoader(
        frames_dataset(data, SENSOR, time_window=5), batch_size=3, collate_fn=collate_time_major
    )
    x, labels = next(iter(loader))
    assert x.shape == (3, 3, 2, 2, 3) and labels.tolist() == [0, 1, 2]
    assert [int(x[:, b].sum()) for b in range(3)] == [5, 3, 1]
    assert x[1:, 2].sum() == 0  # padding


def test_collate_errors():
    with pytest.raises(ValueError, match="non-empty"):
        collate_time_major([])
    with pytest.raises(ValueError, match="features"):
        collate_time_major([(torch.zeros(2, 3), 0), (torch.zeros(2, 4), 1)])
    with pytest.raises(TypeError, match="torch.Tensor"):
        collate_time_major([(np.zeros((2, 3)), 0)])
    with pytest.raises(TypeError, match="pair"):
        collate_time_major([torch.zeros(2, 3)])
    with pytest.raises(TypeError, match="float64"):
        collate_time_major([(torch.zeros(2, 3), 0), (torch.zeros(2, 3, dtype=torch.float64), 1)])


def test_tonic_dataset_without_tonic_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tonic", None)  # makes `import tonic` fail
    with pytest.raises(ImportError, match="pip install tonic"):
        tonic_dataset("NMNIST", "/nonexistent", time_window=1000)


# ---- against Tonic itself ------------------------------------------------------------


def _tonic():
    return pytest.importorskip("tonic", reason="tonic is not installed (an optional extra)")


def _random_camera(rng, n, t_max, t_min=0):
    events = np.zeros(n, dtype=CAMERA)
    events["x"] = rng.integers(0, 34, n)
    events["y"] = rng.integers(0, 34, n)
    events["t"] = np.sort(rng.integers(t_min, t_max, n))
    events["p"] = rng.integers(0, 2, n)
    return events


def test_matches_tonic_to_frame_time_window():
    tonic = _tonic()
    events = _random_camera(np.random.default_rng(0), 400, 50_003)
    span = int(events["t"][-1] - events["t"][0])
    assert span % 1000 != 0  # then Tonic with include_incomplete keeps every event too
    theirs = tonic.transforms.ToFrame((34, 34, 2), time_window=1000, include_incomplete=True)(events.copy())
    mine = events_to_frames(events, (34, 34, 2), time_window=1000)
    assert mine.shape == theirs.shape
    assert np.array_equal(mine.numpy(), theirs)


def test_matches_tonic_to_frame_n_time_bins_except_the_last_event():
    tonic = _tonic()
    events = _random_camera(np.random.default_rng(1), 300, 100 + 7 * 5000, t_min=100)
    events["t"][0], events["t"][-1] = 100, 100 + 7 * 5000  # a span that 7 bins divide
    theirs = tonic.transforms.ToFrame((34, 34, 2), n_time_bins=7)(events.copy())
    mine = events_to_frames(events, (34, 34, 2), n_time_bins=7)
    last = events[events["t"] == events["t"][-1]]
    # Tonic's bins are half-open up to t_last, so it leaves out the events at t_last
    extra = events_to_frames(last, (34, 34, 2), n_time_bins=1)[0]
    assert np.array_equal(mine.numpy()[:-1], theirs[:-1])
    assert np.array_equal(mine.numpy()[-1] - theirs[-1], extra.numpy())


def test_matches_tonic_on_audio_events():
    tonic = _tonic()
    rng = np.random.default_rng(2)
    events = np.zeros(200, dtype=AUDIO)
    events["t"] = np.sort(rng.integers(0, 20_501, 200))
    events["x"] = rng.integers(0, 700, 200)
    theirs = tonic.transforms.ToFrame((700, 1, 1), time_window=1000, include_incomplete=True)(events.copy())
    mine = events_to_frames(events, (700, 1, 1), time_window=1000)
    assert theirs.shape == (mine.shape[0], 1, 700)
    assert np.array_equal(mine.numpy(), theirs[:, 0])
