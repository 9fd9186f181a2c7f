"""Nothing lost: a training run killed with SIGKILL at any moment and resumed with
``--resume`` ends with the same weights and metrics as an uninterrupted run.

Every run here is the real command line in a subprocess (``python -m spikeflow.cli
train``) on a small digits-mlp (6 epochs, hidden 32, T 8, rate encoding so the data
generator's state matters, a cosine schedule so the scheduler's state matters, one
thread). The kills:

* deterministic fault points, injected by the child itself through
  ``SPIKEFLOW_FAULT`` (:mod:`spikeflow.train._faults`): half-way through a
  checkpoint write, right after one, before one, mid-epoch, between ``best.pt`` and
  ``last.pt``;
* ``os.kill(pid, SIGKILL)`` from this process after delays drawn from a seeded
  generator, several kills in a row on one run.

A kill that lands before the first ``last.pt`` exists leaves nothing to resume: the
run is then started again without ``--resume`` (that is what a user does, and
``--resume`` without a checkpoint is an error). Otherwise it is resumed, killed
again if the scenario says so, until a run exits 0. The result must equal the
reference bit for bit: every tensor of the final ``last.pt`` (model, optimizer,
scheduler, random states) and of ``best.pt``, and the JSON summary and per-epoch
history, except wall times. A corrupt latest checkpoint (truncated, or bytes flipped
in a tensor) is resumed from ``last.prev.pt`` with a warning and ends the same; both
corrupt is a one-line error naming both; a full disk (ENOSPC injected in-process)
leaves the previous checkpoint intact.

The fault-point scenarios run side by side in threads (each a subprocess of its own,
one torch thread) when the machine has the cores.
"""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from spikeflow.train import CheckpointError, load_checkpoint
from spikeflow.train import _faults
from spikeflow.train.checkpoint import previous_path

ARGS = ["--preset", "digits-mlp", "--epochs", "6", "--hidden", "32", "--steps", "8", "--encoding", "rate",
        "--scheduler", "cosine", "--threads", "1", "--quiet"]
EPOCHS = 6
# Summary keys that are wall times or name this run's own files and flags.
VOLATILE = {"train_time_s", "epoch_time_s", "resumed_from_epoch", "checkpoints", "config"}
SRC = str(Path(__file__).parents[1] / "src")


def _env(fault: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != _faults.ENV}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p)
    env["OMP_NUM_THREADS"] = "1"
    if fault is not None:
        env[_faults.ENV] = fault
    return env


def _start(out: Path, fault: str | None = None, extra: tuple = ()) -> subprocess.Popen:
    """``spikeflow train`` into ``out``, resuming when a checkpoint is there to resume."""
    resume = ["--resume"] if (out / "last.pt").exists() or previous_path(out / "last.pt").exists() else []
    command = [sys.executable, "-m", "spikeflow.cli", "train", *ARGS, *extra, "--out", str(out),
               "--json", str(out.parent / f"{out.name}.json"), *resume]
    return subprocess.Popen(command, env=_env(fault), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen) -> tuple[int, str]:
    _, err = process.communicate(timeout=300)
    return process.returncode, err


def _epoch_of(out: Path) -> int:
    """The epoch a resume would start after (0: nothing to resume)."""
    try:
        return int(load_checkpoint(out / "last.pt")["epoch"])
    except CheckpointError:
        return 0


def _wait_for_epoch(process: subprocess.Popen, out: Path, epoch: int, timeout: float = 300) -> None:
    """Until last.pt holds ``epoch`` or more, or ``process`` has ended (reading last.pt
    only when its modification time changed)."""
    deadline, stamp = time.monotonic() + timeout, None
    while process.poll() is None and time.monotonic() < deadline:
        try:
            changed = (out / "last.pt").stat().st_mtime_ns
        except FileNotFoundError:
            changed = None
        if changed != stamp:
            stamp = changed
            if _epoch_of(out) >= epoch:
                return
        time.sleep(0.002)


def _partial_batches(out: Path) -> int:
    """The batches of the next epoch a mid-epoch last.pt holds (0: none)."""
    try:
        partial = load_checkpoint(out / "last.pt").get("partial")
    except CheckpointError:
        return 0
    return 0 if partial is None else int(partial["batches"])


def _summary(out: Path) -> dict:
    summary = json.loads((out.parent / f"{out.name}.json").read_text())
    for record in summary["history"]:
        record.pop("time_s")
    # settings that do not change the result (checkpoint_every: how often last.pt is written)
    config = {k: v for k, v in summary["config"].items() if k not in ("out", "resume", "checkpoint_every")}
    return {**{k: v for k, v in summary.items() if k not in VOLATILE}, "config": config}


def _tensors(value, prefix=""):
    """Every tensor and plain value of a checkpoint, by path."""
    if isinstance(value, dict):
        items = {}
        for key, item in value.items():
            items.update(_tensors(item, f"{prefix}/{key}"))
        return items
    if isinstance(value, (list, tuple)):
        items = {}
        for key, item in enumerate(value):
            items.update(_tensors(item, f"{prefix}/{key}"))
        return items
    return {prefix: value}


def _differences(out: Path, reference: Path) -> list[str]:
    """What differs between two finished runs (empty: identical)."""
    found = []
    for name in ("last.pt", "best.pt"):
        got, want = load_checkpoint(out / name), load_checkpoint(reference / name)
        for payload in (got, want):
            payload.pop("config")
            for record in payload["history"]:
                record.pop("time_s")
        got, want = _tensors(got), _tensors(want)
        if got.keys() != want.keys():
            found.append(f"{name}: keys {sorted(got.keys() ^ want.keys())}")
            continue
        for key in want:
            a, b = got[key], want[key]
            same = torch.equal(a, b) if isinstance(b, torch.Tensor) else a == b
            if not same:
                found.append(f"{name}{key}")
    got, want = _summary(out), _summary(reference)
    found += [f"summary {key}" for key in want if got.get(key) != want[key]]
    leftovers = sorted(p.name for p in out.iterdir() if p.name.endswith(".tmp"))
    if leftovers:
        found.append(f"temporary files left: {leftovers}")
    return found


class _Reference(type(Path())):
    """The reference run's directory, with the time from its start to its first
    last.pt and the median time of an epoch."""

    first_checkpoint_s: float
    epoch_s: float


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted run."""
    out = _Reference(tmp_path_factory.mktemp("reference") / "run")
    started = time.monotonic()
    process = _start(out)
    _wait_for_epoch(process, out, 1)
    out.first_checkpoint_s = time.monotonic() - started
    code, err = _finish(process)
    assert code == 0, err
    summary = json.loads((out.parent / "run.json").read_text())
    out.epoch_s = summary["epoch_time_s"]  # the median
    history = _summary(out)["history"]
    assert [r["epoch"] for r in history] == list(range(1, EPOCHS + 1))
    return out


def _an_improving_epoch(reference: Path) -> int:
    """An epoch after the first whose test accuracy beat every earlier one (so it
    writes best.pt and then last.pt)."""
    accuracy = [r["test_accuracy"] for r in _summary(reference)["history"]]
    improving = [e for e in range(2, EPOCHS + 1) if accuracy[e - 1] > max(accuracy[: e - 1])]
    assert improving, f"no epoch after the first improved on {accuracy}: pick other settings"
    return improving[0]


# --- deterministic fault points --------------------------------------------------------

FAULTS = {
    # name: (SPIKEFLOW_FAULT, the epoch of last.pt the resume starts after; None: not fixed)
    "first-write-of-best": ("checkpoint-write:best.pt:1", 0),  # nothing to resume: a fresh start
    "before-first-last": ("before-checkpoint:last.pt:1", 0),  # best.pt written, no last.pt yet
    "first-batch": ("mid-epoch:1:1", 0),
    "mid-write-of-last": ("checkpoint-write:last.pt:3", 2),
    "third-checkpoint-write": ("checkpoint-write:3", None),  # any file: depends on which epochs improve
    "after-last": ("after-checkpoint:last.pt:2", 2),
    "mid-epoch": ("mid-epoch:4:5", 3),  # before batch 5 of epoch 4
    "last-batch-of-the-run": ("mid-epoch:6:23", 5),
    "between-best-and-last": (None, None),  # before-checkpoint:last.pt:E for an epoch E that improved
}


def _flip_bytes(path: Path) -> None:
    """Invert 16 bytes in the middle of the largest tensor: the archive and its pickle
    stay readable, only that part's CRC-32 no longer matches."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        info = max(archive.infolist(), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    header = info.header_offset  # the local header: 30 bytes, then the name and the extra field
    start = header + 30 + int.from_bytes(data[header + 26 : header + 28], "little") + int.from_bytes(
        data[header + 28 : header + 30], "little")
    middle = start + info.file_size // 2
    data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:1000])


def _truncate_latest(out: Path) -> None:
    _truncate(out / "last.pt")


def _flip_latest(out: Path) -> None:
    _flip_bytes(out / "last.pt")


def _damage_both(out: Path) -> None:
    _truncate(out / "last.pt")
    _flip_bytes(out / "last.prev.pt")


# name: (SPIKEFLOW_FAULT, damage done to the checkpoints before the resume)
DAMAGED = {
    "truncated-latest": ("after-checkpoint:last.pt:3", _truncate_latest),
    "flipped-latest": ("after-checkpoint:last.pt:3", _flip_latest),
    "both-damaged": ("after-checkpoint:last.pt:2", _damage_both),
}


def _kill_then_resume(out: Path, fault: str, damage=None, extra: tuple = ()) -> dict:
    """One run killed by ``fault``, the checkpoints ``damage``d, one more run (resuming
    where there is a checkpoint), both with the options ``extra``: what happened, for
    the tests to judge."""
    code, err = _finish(_start(out, fault, extra))
    seen = {"kill_exit": code, "kill_stderr": err, "last_epoch": _epoch_of(out),
            "best_epoch": load_checkpoint(out / "best.pt")["epoch"] if (out / "best.pt").exists() else None,
            "partial_batches": _partial_batches(out)}
    if damage is not None:
        damage(out)
    code, err = _finish(_start(out, extra=extra))
    return {**seen, "exit": code, "stderr": err}


def _workers() -> int:
    """Scenarios run side by side, one thread each (every run is one thread)."""
    return max(1, min(4, (os.cpu_count() or 1) - 1))


@pytest.fixture(scope="module")
def scenarios(reference, tmp_path_factory) -> dict:
    """Every fault point and damage scenario, run in parallel once: name -> (out, seen)."""
    from concurrent.futures import ThreadPoolExecutor

    root = tmp_path_factory.mktemp("scenarios")
    jobs = {name: (fault, None, ()) for name, (fault, _) in FAULTS.items()}
    jobs["between-best-and-last"] = (f"before-checkpoint:last.pt:{_an_improving_epoch(reference)}", None, ())
    jobs.update({name: (fault, damage, ()) for name, (fault, damage) in DAMAGED.items()})
    jobs["inside-an-epoch"] = ("mid-epoch:4:13", None, ("--checkpoint-every", "5"))
    with ThreadPoolExecutor(_workers()) as pool:
        futures = {name: pool.submit(_kill_then_resume, root / name / "run", *job) for name, job in jobs.items()}
        return {name: (root / name / "run", future.result()) for name, future in futures.items()}


def _ran(name: str, scenarios: dict) -> tuple[Path, dict]:
    out, seen = scenarios[name]
    assert seen["kill_exit"] == -signal.SIGKILL, f"the fault did not kill the run (exit {seen['kill_exit']}): {seen['kill_stderr']}"
    return out, seen


@pytest.mark.parametrize("name", [name for name in FAULTS if name != "between-best-and-last"])
def test_killed_at_a_fault_point_and_resumed_is_identical(name, scenarios, reference):
    out, seen = _ran(name, scenarios)
    resumes_after = FAULTS[name][1]
    if resumes_after is not None:
        assert seen["last_epoch"] == resumes_after
    assert seen["exit"] == 0, seen["stderr"]
    assert _differences(out, reference) == []


def test_killed_between_best_and_last_is_identical(scenarios, reference):
    """best.pt holds epoch E, last.pt still E - 1: the resume redoes epoch E from
    last.pt, whose best accuracy and epoch predate E, and writes both again."""
    out, seen = _ran("between-best-and-last", scenarios)
    epoch = _an_improving_epoch(reference)
    assert (seen["best_epoch"], seen["last_epoch"]) == (epoch, epoch - 1)
    assert seen["exit"] == 0, seen["stderr"]
    assert _differences(out, reference) == []


def test_killed_inside_an_epoch_resumes_from_its_mid_epoch_checkpoint(scenarios, reference):
    """With --checkpoint-every 5, a kill before batch 13 of epoch 4 loses only batches
    11 and 12: the resume starts inside epoch 4 after batch 10 and still ends exactly
    as the reference, which wrote checkpoints only at the ends of epochs."""
    out, seen = _ran("inside-an-epoch", scenarios)
    assert (seen["last_epoch"], seen["partial_batches"]) == (3, 10)
    assert seen["exit"] == 0, seen["stderr"]
    assert _differences(out, reference) == []


# --- kills from outside after random delays --------------------------------------------




@pytest.mark.parametrize("seed", [0, 1, 2])
def test_killed_from_outside_after_random_delays_is_identical(seed, reference, tmp_path):
    """Three SIGKILLs in a row from this process at points drawn from a seeded
    generator: the first after a delay from the start of the process of up to the
    reference's time to its first checkpoint (it may land while Python starts or in
    epoch 1: the run then starts afresh), the others in a randomly drawn epoch still
    to train (once last.pt holds the epoch before it) after a random part of an
    epoch's time (mid-batch, during evaluation, mid-write, between files). Then the
    run goes to the end. Where each kill landed (the epoch of last.pt afterwards) is
    printed, not asserted: timing decides that."""
    rng = random.Random(seed)
    out = tmp_path / "run"
    landed: list = []
    finished = False
    for kill in range(3):
        if kill > 0 and _epoch_of(out) >= EPOCHS:
            break  # the last kill landed after the final checkpoint: no epoch left to kill in
        process = _start(out)
        if kill == 0:
            time.sleep(rng.uniform(0.0, reference.first_checkpoint_s))
        else:
            target = rng.randint(_epoch_of(out) + 1, EPOCHS)
            _wait_for_epoch(process, out, target - 1)
            time.sleep(rng.uniform(0.0, reference.epoch_s))
        process.send_signal(signal.SIGKILL)
        code, err = _finish(process)
        if code == 0:  # it finished first: the remaining kills would find nothing to kill
            landed.append("finished")
            finished = True
            break
        assert code == -signal.SIGKILL, err
        landed.append(_epoch_of(out))
    if not finished:  # resume to the end (after a kill past the final checkpoint, only the summary is left)
        code, err = _finish(_start(out))
        assert code == 0, err
    print(f"seed {seed}: after each kill, last.pt held epoch {landed}")
    assert _differences(out, reference) == []


# --- a corrupt latest checkpoint -------------------------------------------------------


@pytest.mark.parametrize("name", ["truncated-latest", "flipped-latest"])
def test_corrupt_latest_falls_back_to_the_previous_and_ends_identical(name, scenarios, reference):
    """last.pt (epoch 3) truncated, or 16 bytes in its middle inverted (caught by the
    CRC-32 check: torch.load alone would load the flipped tensors): the resume warns,
    naming both files, goes on from last.prev.pt (epoch 2) and ends as the reference."""
    out, seen = _ran(name, scenarios)
    assert seen["exit"] == 0, seen["stderr"]
    warning = [line for line in seen["stderr"].splitlines() if line.startswith("Warning: ")]  # the CLI's one line
    assert len(warning) == 1 and "UserWarning" not in seen["stderr"], seen["stderr"]
    assert str(out / "last.pt") in warning[0]
    assert f"resuming from the previous checkpoint {out / 'last.prev.pt'}" in warning[0]
    assert json.loads((out.parent / "run.json").read_text())["resumed_from_epoch"] == 2  # last.prev.pt's epoch
    assert _differences(out, reference) == []
    # the corrupt file was not kept as the fallback: last.prev.pt is a good epoch 5
    assert load_checkpoint(out / "last.prev.pt")["epoch"] == EPOCHS - 1


def test_both_checkpoints_corrupt_is_a_one_line_error_naming_both(scenarios):
    out, seen = _ran("both-damaged", scenarios)
    assert seen["exit"] == 1
    lines = [line for line in seen["stderr"].splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: neither"), seen["stderr"]
    assert str(out / "last.pt") in lines[0] and str(out / "last.prev.pt") in lines[0]


# --- disk full -------------------------------------------------------------------------


def test_disk_full_during_a_checkpoint_write_keeps_the_previous(tmp_path, monkeypatch):
    """In-process (no small file system to fill here): the third write of last.pt
    fails with ENOSPC half-way; the error names the file and says the previous one is
    intact; last.pt and last.prev.pt still load as epochs 2 and 1; a resume then ends
    like a run that never failed."""
    from spikeflow.train import TrainConfig, train
    from spikeflow.train import checkpoint as checkpoint_module

    settings = dict(preset="digits-mlp", epochs=3, hidden=16, steps=4, encoding="rate", threads=1, quiet=True)
    real = checkpoint_module._atomic_write
    writes = []

    def fill_up(path, write, keep_previous=False):
        writes.append(Path(path).name)
        if writes.count("last.pt") == 3 and Path(path).name == "last.pt":
            def half_then_full(handle):
                handle.write(b"\0" * 512)
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(path, half_then_full, keep_previous)
        return real(path, write, keep_previous)

    monkeypatch.setattr(checkpoint_module, "_atomic_write", fill_up)
    out = tmp_path / "run"
    with pytest.raises(OSError) as info:
        train(TrainConfig(**settings, out=str(out)))
    monkeypatch.undo()
    assert info.value.errno == errno.ENOSPC
    assert f"no space left on the device while writing {out / 'last.pt'}; the previous last.pt is intact" in str(info.value)
    assert (load_checkpoint(out / "last.pt")["epoch"], load_checkpoint(out / "last.prev.pt")["epoch"]) == (2, 1)
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]

    resumed = train(TrainConfig(**settings, out=str(out), resume=True))
    straight = train(TrainConfig(**settings, out=str(tmp_path / "straight")))
    assert resumed["resumed_from_epoch"] == 2
    a, b = load_checkpoint(out / "last.pt")["model"], load_checkpoint(tmp_path / "straight" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in b)
    assert [r["test_accuracy"] for r in resumed["history"]] == [r["test_accuracy"] for r in straight["history"]]


def test_the_comparison_sees_a_one_bit_difference(reference, tmp_path):
    """_differences is not vacuous: one changed weight, one changed metric, a stray
    temporary file are each reported."""
    import shutil

    from spikeflow.train.checkpoint import save_checkpoint

    out = tmp_path / "run"
    shutil.copytree(reference, out)
    shutil.copy(reference.parent / "run.json", tmp_path / "run.json")
    assert _differences(out, reference) == []
    payload = load_checkpoint(out / "last.pt")
    name, weight = next(iter(payload["model"].items()))
    weight.view(-1)[0] = torch.nextafter(weight.view(-1)[0], torch.tensor(float("inf")))
    save_checkpoint(out / "last.pt", payload)
    summary = json.loads((tmp_path / "run.json").read_text())
    summary["history"][2]["test_loss"] += 1e-12
    (tmp_path / "run.json").write_text(json.dumps(summary))
    (out / ".last.pt.x.tmp").write_bytes(b"")
    assert _differences(out, reference) == [f"last.pt/model/{name}", "summary history",
                                            "temporary files left: ['.last.pt.x.tmp']"]


# --- the fault switch itself -----------------------------------------------------------


def test_fault_specs():
    assert _faults._parse(None) is None and _faults._parse("") is None
    assert _faults._parse("checkpoint-write:3") == ("checkpoint-write", None, 3)
    assert _faults._parse("mid-epoch:2:5") == ("mid-epoch", "2", 5)
    assert _faults._parse("before-checkpoint:last.pt:1") == ("before-checkpoint", "last.pt", 1)
    for bad in ("mid-epoch", "mid-epoch:x", "after-trial:0"):
        with pytest.raises(ValueError, match=f"SPIKEFLOW_FAULT={bad!r}"):
            _faults._parse(bad)


def test_unset_fault_points_do_nothing():
    assert _faults._FAULT is None  # the test process itself never has the variable set
    _faults.point("mid-epoch", 1)
    _faults.point("checkpoint-write", "last.pt")
