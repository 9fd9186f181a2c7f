"""Checkpoints: atomic writes, weights_only loading, clear errors, RNG state round trips."""

from __future__ import annotations

import os
import pickle
import random

import numpy as np
import pytest
import torch

from spikeflow.train import CheckpointError, load_checkpoint, save_checkpoint
from spikeflow.train.checkpoint import (
    FORMAT,
    _atomic_write,
    atomic_write_bytes,
    capture_rng_state,
    restore_rng_state,
)


def _payload(**extra):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    return {
        "epoch": 3,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "best_accuracy": 0.5,
        "best_epoch": 2,
        "config": {"preset": "digits-mlp", "lr": 0.01, "quiet": True},
        "rng": capture_rng_state(torch.Generator().manual_seed(0)),
        "history": [{"epoch": 1, "test_accuracy": 0.25}],
        **extra,
    }


def test_round_trip_with_weights_only(tmp_path):
    payload = _payload()
    path = save_checkpoint(tmp_path / "ck" / "last.pt", payload)
    assert path == tmp_path / "ck" / "last.pt"
    # Plain torch.load with weights_only=True reads it: no arbitrary objects inside.
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == FORMAT
    loaded = load_checkpoint(path)
    assert loaded["epoch"] == 3 and loaded["config"] == payload["config"]
    for key, value in payload["model"].items():
        assert torch.equal(loaded["model"][key], value)
    assert loaded["optimizer"]["state"][0]["exp_avg"].shape == (2, 3)
    assert os.listdir(tmp_path / "ck") == ["last.pt"]  # no temporary file left behind


def test_overwrite_replaces_the_file(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, _payload(epoch=1))
    save_checkpoint(path, _payload(epoch=2))
    assert load_checkpoint(path)["epoch"] == 2
    assert os.listdir(tmp_path) == ["last.pt"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "last.pt"
    atomic_write_bytes(path, b"old contents")

    def fail_halfway(handle):
        handle.write(b"half of the new")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        _atomic_write(path, fail_halfway)
    assert path.read_bytes() == b"old contents"
    assert os.listdir(tmp_path) == ["last.pt"]


def test_a_failed_save_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, _payload(epoch=1))

    def broken_replace(src, dst):
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="simulated crash"):
        save_checkpoint(path, _payload(epoch=2))
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert os.listdir(tmp_path) == ["last.pt"]


def test_missing_keys_are_refused_when_saving(tmp_path):
    payload = _payload()
    del payload["rng"]
    with pytest.raises(ValueError, match="lacks rng"):
        save_checkpoint(tmp_path / "x.pt", payload)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_truncated_checkpoint_names_the_file(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, _payload())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"last\.pt is corrupt or truncated"):
        load_checkpoint(path)


@pytest.mark.parametrize("contents", [b"", b"garbage" * 10, bytes(range(256))])
def test_corrupt_checkpoint_names_the_file(tmp_path, contents):
    path = tmp_path / "best.pt"
    path.write_bytes(contents)
    with pytest.raises(CheckpointError, match=str(path).replace(".", r"\.")):
        load_checkpoint(path)


class _Exploit:
    """Unpickling this would create a file (code execution)."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_arbitrary_objects_are_never_unpickled(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    with open(path, "wb") as handle:
        torch.save({"format": FORMAT, "payload": _Exploit(str(marker))}, handle, pickle_protocol=2)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_checkpoint(path)
    assert not marker.exists()


def test_a_foreign_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"weight": torch.ones(2)}, path)
    with pytest.raises(CheckpointError, match="not a spikeflow training checkpoint"):
        load_checkpoint(path)
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match="not a spikeflow training checkpoint"):
        load_checkpoint(path)


def test_an_incomplete_checkpoint_is_refused(tmp_path):
    path = tmp_path / "last.pt"
    torch.save({"format": FORMAT, "epoch": 1}, path)
    with pytest.raises(CheckpointError, match="incomplete.*model"):
        load_checkpoint(path)


def test_rng_state_round_trip_through_a_checkpoint(tmp_path):
    payload = _payload()  # builds a model: draws from the global generator first
    generator = torch.Generator().manual_seed(123)
    torch.manual_seed(1)
    random.seed(2)
    np.random.seed(3)
    torch.rand(3), random.random(), np.random.rand(), torch.rand(2, generator=generator)
    payload["rng"] = capture_rng_state(generator)
    save_checkpoint(tmp_path / "last.pt", payload)
    expected = (torch.rand(5), random.random(), np.random.rand(4), torch.rand(5, generator=generator))

    other = torch.Generator().manual_seed(999)
    torch.manual_seed(42), random.seed(42), np.random.seed(42)
    restore_rng_state(load_checkpoint(tmp_path / "last.pt")["rng"], other)
    got = (torch.rand(5), random.random(), np.random.rand(4), torch.rand(5, generator=other))
    assert torch.equal(got[0], expected[0])
    assert got[1] == expected[1]
    assert np.array_equal(got[2], expected[2])
    assert torch.equal(got[3], expected[3])


def test_rng_state_is_plain_data():
    state = capture_rng_state(torch.Generator())
    # Nothing but tensors and plain values: a weights_only pickle of it round-trips.
    import io

    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    torch.load(buffer, weights_only=True)
    with pytest.raises(CheckpointError, match="data generator"):
        restore_rng_state({k: v for k, v in state.items() if k != "data"}, torch.Generator())


def test_pickle_module_is_not_used_for_loading(monkeypatch, tmp_path):
    """load_checkpoint goes through torch's restricted unpickler, never pickle.load."""
    path = save_checkpoint(tmp_path / "last.pt", _payload())

    def forbidden(*args, **kwargs):  # pragma: no cover - must not be called
        raise AssertionError("pickle.load was called")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    assert load_checkpoint(path)["epoch"] == 3
