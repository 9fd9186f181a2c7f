"""Checkpoints: atomic writes, weights_only loading, clear errors, RNG state round trips."""

from __future__ import annotations

import errno
import os
import pickle
import random
import warnings

import numpy as np
import pytest
import torch

from spikeflow.train import CheckpointError, load_checkpoint, save_checkpoint
from spikeflow.train import checkpoint as checkpoint_module
from spikeflow.train.checkpoint import (
    FORMAT,
    _atomic_write,
    atomic_write_bytes,
    capture_rng_state,
    load_latest,
    previous_path,
    restore_rng_state,
    save_keeping_previous,
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


# --- keeping the previous checkpoint, falling back to it, disk full -------------------


def _epoch(path) -> int:
    return load_checkpoint(path)["epoch"]


def test_previous_path():
    assert previous_path("runs/a/last.pt").as_posix() == "runs/a/last.prev.pt"
    assert previous_path("best.ckpt").name == "best.prev.ckpt"
    assert previous_path("checkpoint").name == "checkpoint.prev"


def test_save_keeping_previous_keeps_the_replaced_file(tmp_path):
    path = tmp_path / "last.pt"
    save_keeping_previous(path, _payload(epoch=1))
    assert sorted(os.listdir(tmp_path)) == ["last.pt"]  # nothing to keep yet
    first = path.read_bytes()
    save_keeping_previous(path, _payload(epoch=2))
    assert sorted(os.listdir(tmp_path)) == ["last.prev.pt", "last.pt"]  # no temporary file left
    assert (tmp_path / "last.prev.pt").read_bytes() == first
    assert (_epoch(path), _epoch(tmp_path / "last.prev.pt")) == (2, 1)
    save_keeping_previous(path, _payload(epoch=3))
    assert (_epoch(path), _epoch(tmp_path / "last.prev.pt")) == (3, 2)
    assert not os.path.samefile(path, tmp_path / "last.prev.pt")  # two files, not two names of one


def test_there_is_never_a_moment_without_the_latest_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_keeping_previous(path, _payload(epoch=1))
    seen = []
    real_replace, real_link = os.replace, os.link

    def watch(name):
        def call(*args, **kwargs):
            seen.append((name, path.is_file()))
            return (real_replace if name == "replace" else real_link)(*args, **kwargs)
        return call

    monkeypatch.setattr(os, "replace", watch("replace"))
    monkeypatch.setattr(os, "link", watch("link"))
    save_keeping_previous(path, _payload(epoch=2))
    monkeypatch.undo()
    assert [name for name, _ in seen] == ["link", "replace", "replace"]
    assert all(exists for _, exists in seen)
    assert (_epoch(path), _epoch(tmp_path / "last.prev.pt")) == (2, 1)


def test_without_hard_links_the_previous_file_is_copied(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_keeping_previous(path, _payload(epoch=1))

    def no_links(*args, **kwargs):
        raise OSError(errno.EPERM, "hard links not supported")

    monkeypatch.setattr(os, "link", no_links)
    save_keeping_previous(path, _payload(epoch=2))
    assert (_epoch(path), _epoch(tmp_path / "last.prev.pt")) == (2, 1)
    assert sorted(os.listdir(tmp_path)) == ["last.prev.pt", "last.pt"]


def _two_checkpoints(tmp_path):
    path = tmp_path / "last.pt"
    save_keeping_previous(path, _payload(epoch=1))
    save_keeping_previous(path, _payload(epoch=2))
    return path


def test_load_latest_reads_a_good_latest_without_a_warning(tmp_path):
    path = _two_checkpoints(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        payload, source = load_latest(path)
    assert (payload["epoch"], source) == (2, path)


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip_tensor_bytes(path):
    """Invert 8 bytes inside the stored model weights: the zip structure and the
    pickle stay valid, only the CRC-32 of one part no longer matches."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if "/data/" in i.filename and i.file_size >= 16)
    data = bytearray(path.read_bytes())
    header = info.header_offset
    start = header + 30 + int.from_bytes(data[header + 26 : header + 28], "little") + int.from_bytes(
        data[header + 28 : header + 30], "little")  # past the local file header
    for i in range(start, start + 8):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_truncate, _flip_tensor_bytes, os.remove], ids=["truncated", "flipped", "missing"])
def test_a_bad_latest_falls_back_to_the_previous_with_a_warning(tmp_path, damage):
    path = _two_checkpoints(tmp_path)
    damage(path)
    with pytest.warns(UserWarning) as caught:
        payload, source = load_latest(path)
    assert (payload["epoch"], source) == (1, tmp_path / "last.prev.pt")
    (message,) = [str(w.message) for w in caught]
    assert str(path) in message and str(tmp_path / "last.prev.pt") in message


def test_flipped_bytes_in_tensor_data_are_detected(tmp_path):
    path = save_checkpoint(tmp_path / "last.pt", _payload())
    _flip_tensor_bytes(path)
    with pytest.raises(CheckpointError, match=r"last\.pt is corrupt: .*CRC-32"):
        load_checkpoint(path)


def test_both_unreadable_is_an_error_naming_both(tmp_path):
    path = _two_checkpoints(tmp_path)
    _truncate(path)
    _flip_tensor_bytes(tmp_path / "last.prev.pt")
    with pytest.raises(CheckpointError) as info:
        load_latest(path)
    message = str(info.value)
    assert str(path) in message and str(tmp_path / "last.prev.pt") in message
    assert "truncated" in message and "CRC-32" in message


def test_load_latest_without_a_previous_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"last\.pt does not exist"):
        load_latest(tmp_path / "last.pt")
    path = save_keeping_previous(tmp_path / "last.pt", _payload(epoch=1))
    _truncate(path)
    with pytest.raises(CheckpointError, match=r"last\.pt is corrupt or truncated"):
        load_latest(path)


def test_load_latest_with_another_reader(tmp_path):
    path = _two_checkpoints(tmp_path)
    read = []

    def reader(p):
        read.append(p.name)
        if p == path:
            raise CheckpointError(f"{p} is not what I wanted")
        return "previous"

    with pytest.warns(UserWarning, match="not what I wanted"):
        assert load_latest(path, reader) == ("previous", tmp_path / "last.prev.pt")
    assert read == ["last.pt", "last.prev.pt"]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_disk_full_names_the_file_and_keeps_the_previous(tmp_path, monkeypatch, code):
    path = _two_checkpoints(tmp_path)
    before = {name: (tmp_path / name).read_bytes() for name in ("last.pt", "last.prev.pt")}
    real_write = checkpoint_module._atomic_write

    def full_halfway(target, write, keep_previous=False):
        def write_until_full(handle):
            handle.write(b"x" * 1000)
            raise OSError(code, os.strerror(code))
        return real_write(target, write_until_full, keep_previous=keep_previous)

    monkeypatch.setattr(checkpoint_module, "_atomic_write", full_halfway)
    with pytest.raises(OSError) as info:
        save_keeping_previous(path, _payload(epoch=3))
    monkeypatch.undo()
    assert info.value.errno == code
    assert f"no space left on the device while writing {path}; the previous last.pt is intact" in str(info.value)
    assert {name: (tmp_path / name).read_bytes() for name in before} == before  # both untouched
    assert sorted(os.listdir(tmp_path)) == ["last.prev.pt", "last.pt"]  # no temporary file left
    assert load_latest(path)[0]["epoch"] == 2


def test_disk_full_at_fsync_and_on_a_first_write(tmp_path, monkeypatch):
    """Delayed allocation: the space can run out only when the data is flushed."""
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint_module.os, "fsync", full)
    with pytest.raises(OSError, match=r"while writing .*best\.pt; nothing was written"):
        save_checkpoint(tmp_path / "best.pt", _payload())
    assert os.listdir(tmp_path) == []


def test_other_write_errors_are_not_reworded(tmp_path):
    def denied(handle):
        raise OSError(errno.EACCES, "Permission denied")

    with pytest.raises(OSError, match="^\\[Errno 13\\] Permission denied$"):
        _atomic_write(tmp_path / "x.pt", denied)


def test_written_files_get_ordinary_permissions(tmp_path):
    from spikeflow.train.checkpoint import _UMASK

    fresh = atomic_write_bytes(tmp_path / "new.pt", b"x")
    assert fresh.stat().st_mode & 0o777 == 0o666 & ~_UMASK  # not mkstemp's 0600
    (tmp_path / "shared.pt").write_bytes(b"old")
    os.chmod(tmp_path / "shared.pt", 0o640)
    atomic_write_bytes(tmp_path / "shared.pt", b"new")
    assert (tmp_path / "shared.pt").stat().st_mode & 0o777 == 0o640  # the replaced file's mode
