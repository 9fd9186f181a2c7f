"""Long runs keep nothing they should not: a network streamed one step at a time
matches the multi-step run and holds a constant set of tensors; training holds the
same tensors after every epoch (no graphs or outputs kept across epochs).

The 10^6-step stream and the memory slopes are measured in benchmarks/long_runs.py;
these tests check the same properties on short runs by counting live tensors, which
is exact where resident memory is noisy."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch

import spikeflow
from spikeflow.train import TrainConfig, train


def _tensors() -> list:
    gc.collect()
    return [obj for obj in gc.get_objects() if issubclass(type(obj), torch.Tensor)]


# Tensors that existed before the test (other tests' leftovers, which caches such as
# torch.compile's may release at any time) are not counted: id -> weak reference.
_BEFORE: dict = {}


@pytest.fixture(autouse=True)
def _ignore_earlier_tensors():
    _BEFORE.update((id(t), weakref.ref(t)) for t in _tensors())
    yield
    _BEFORE.clear()


def _earlier(t: torch.Tensor) -> bool:
    ref = _BEFORE.get(id(t))
    return ref is not None and ref() is t


def live_tensors() -> int:
    """Tensors reachable by the garbage collector (parameters, buffers, kept outputs)
    that were made during this test."""
    return sum(1 for t in _tensors() if not _earlier(t))


def _network(seed: int = 0) -> spikeflow.nn.Sequential:
    torch.manual_seed(seed)
    return spikeflow.nn.Sequential(
        spikeflow.nn.LIF(beta=0.95), torch.nn.Linear(32, 10), spikeflow.nn.LI(beta=0.9)
    )


def test_streaming_matches_multi_step_and_holds_no_growing_state():
    net = _network()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3000, 2, 32, generator=g) * 0.3
    with torch.no_grad():
        full = net.record(x)
        hidden = torch.empty(3000, 2, 32)
        out = torch.empty(3000, 2, 10)
        state = None
        counts = {}
        for t in range(3000):
            recording = net.record(x[t : t + 1], state)
            state = recording.states
            hidden[t], out[t] = recording.outputs[0][0], recording.output[0]
            if t in (999, 2999):
                counts[t] = live_tensors()
    assert torch.equal(hidden, full.outputs[0])  # every hidden spike identical
    torch.testing.assert_close(out, full.output, rtol=0, atol=1e-5)  # GEMM of T*B rows vs B rows
    assert counts[999] == counts[2999]
    for a, b in zip(state[0], full.states[0]):
        assert torch.equal(a, b)


def test_training_holds_the_same_tensors_after_every_epoch(tmp_path):
    counts = []
    config = TrainConfig(hidden=16, steps=4, epochs=5, quiet=True, out=str(tmp_path / "run"), threads=1)
    train(config, on_epoch=lambda record: counts.append(live_tensors()))
    assert len(counts) == 5
    assert counts[1:] == [counts[1]] * 4, counts  # the first epoch creates optimizer state
