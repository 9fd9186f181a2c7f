"""``spikeflow convert --resume``: an interrupted conversion run loses nothing.

Real ``spikeflow convert`` processes are killed with ``SIGKILL`` at fault points
(``SPIKEFLOW_FAULT``, :mod:`spikeflow.train._faults`) and at random moments, then
resumed until done; each must end with the spiking network, the ANN and the
accuracy tables of an uninterrupted run with the same seed, bit for bit. Corrupt
files fall back to the previous one (or are recomputed) with a warning; a full
disk leaves the previous file intact.
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
import types
from pathlib import Path

import pytest
import torch

from spikeflow.convert import SpikingNetwork
from spikeflow.train.checkpoint import read_weights_only

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")

#: The smallest run with every stage: 3 ANN epochs, a calibration, two windows evaluated.
SETTINGS = dict(
    coding="ttfs-dynamic", timesteps=(2, 4), epochs=3, lr=0.003, batch_size=16, test_samples=40,
    calibration_samples=100, plot=False, threads=1, quiet=True,
)
ARGS = [
    "convert", "--coding", "ttfs-dynamic", "--timesteps", "2,4", "--epochs", "3", "--lr", "0.003",
    "--batch-size", "16", "--test-samples", "40", "--calibration-samples", "100", "--no-plot",
    "--threads", "1", "--quiet",
]
#: Summary entries that differ between runs of the same computation.
VARYING = {"config", "train_time_s", "total_time_s", "snn_path", "resumed", "plot"}
KILLED = -signal.SIGKILL


def _command(out: Path, resume: bool) -> list[str]:
    return [sys.executable, "-m", "spikeflow.cli", *ARGS, "--out", str(out), "--json", str(out / "summary.json"),
            *(["--resume"] if resume else [])]


def _env(fault: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SPIKEFLOW_FAULT"}
    if fault is not None:
        env["SPIKEFLOW_FAULT"] = fault
    return env


def _run(out: Path, resume: bool, fault: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(_command(out, resume), env=_env(fault), capture_output=True, text=True, timeout=600)


def _result(out: Path) -> dict:
    """What must not depend on interruptions: the summary's metrics and the saved networks."""
    summary = json.loads((out / "summary.json").read_text())
    net = SpikingNetwork.load(out / "snn.pt")
    return {
        "summary": {k: v for k, v in summary.items() if k not in VARYING},
        "snn": net.state_dict(),
        "snn_info": net.info,
        "ann": read_weights_only(out / "ann.pt")["state_dict"],
    }


def _assert_same(result: dict, reference: dict) -> None:
    assert result["summary"] == reference["summary"]
    assert result["snn_info"] == reference["snn_info"]
    for part in ("snn", "ann"):
        assert list(result[part]) == list(reference[part])
        for name, tensor in reference[part].items():
            assert torch.equal(result[part][name], tensor), f"{part} {name} differs"


def _corrupt(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """An uninterrupted run (read-only for the tests)."""
    out = tmp_path_factory.mktemp("reference")
    done = _run(out, resume=False)
    assert done.returncode == 0, done.stderr
    result = _result(out)
    # a meaningful comparison: the ANN learned something and the SNN answers
    assert result["summary"]["ann_accuracy"] > 0.2 and set(result["summary"]["snn_accuracy"]) == {"10", "20"}
    return result


#: One run killed at each step, each resumed by the next: (SPIKEFLOW_FAULT, file to corrupt
#: after the kill, what the next run's stderr must say).
CHAIN = [
    ("mid-epoch:1:3", None, None),                             # during the first ANN epoch
    ("checkpoint-write:ann.last.pt:1", None, None),            # half of epoch 1's checkpoint written
    ("after-checkpoint:ann.last.pt:2", "ann.last.pt", None),   # after epoch 2's checkpoint; it is then corrupted
    ("checkpoint-write:ann.pt:1", None, "ann.last.prev.pt"),   # falls back to epoch 1; killed writing ann.pt
    ("after-checkpoint:ann.pt:1", None, None),                 # ann.pt written, run.json not yet updated
    ("checkpoint-write:calibration.pt:1", None, None),         # during the calibration's write
    ("after-checkpoint:calibration.pt:1", "calibration.pt", None),  # after it; it is then corrupted
    ("mid-evaluation:4:1", "ann.pt", "calibration.pt is corrupt"),  # measured again; window 2 evaluated
    ("checkpoint-write:evaluation.pt:1", None, "restoring the ANN from its training checkpoint"),  # window 4
    ("checkpoint-write:snn.pt:1", "evaluation.pt", None),      # both windows saved, snn.pt half written
    (None, None, "evaluation.prev.pt"),                        # falls back to window 2 only, and finishes
]


def test_a_run_killed_at_every_stage_and_resumed_ends_as_an_uninterrupted_run(tmp_path, reference):
    out = tmp_path / "run"
    for step, (fault, corrupt, expected) in enumerate(CHAIN):
        done = _run(out, resume=step > 0, fault=fault)
        if expected is not None:
            assert expected in done.stderr, f"step {step} ({fault}): {done.stderr}"
        if fault is None:
            assert done.returncode == 0, done.stderr
        else:
            assert done.returncode == KILLED, f"{fault} was not reached: {done.stderr}"
        if corrupt is not None:
            _corrupt(out / corrupt)
    _assert_same(_result(out), reference)
    resumed = json.loads((out / "summary.json").read_text())["resumed"]
    assert resumed == {"ann_epochs_trained": [], "ann_reused": True, "calibration_reused": True,
                       "evaluations_reused": ["window 2"]}
    assert not list(out.glob(".*.tmp"))  # the half-written files of killed writes are gone


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_run_killed_at_a_random_moment_and_resumed_ends_as_an_uninterrupted_run(tmp_path, reference, seed):
    """Killed a random delay after its first ANN checkpoint (before it, a run only loads
    libraries and data): in training, in a write, in calibration or evaluation."""
    out = tmp_path / "run"
    delay = random.Random(seed).uniform(0.0, 0.3)
    process = subprocess.Popen(_command(out, resume=False), env=_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    while process.poll() is None and not (out / "ann.last.pt").exists():
        time.sleep(0.005)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=600) == KILLED, "the run ended before the kill: nothing was tested"
    left = sorted(path.name for path in out.iterdir())
    done = _run(out, resume=True)
    if done.returncode != 0:
        assert "nothing to resume" in done.stderr, done.stderr  # killed before it wrote anything
        done = _run(out, resume=False)
    assert done.returncode == 0, f"killed with {left}: {done.stderr}"
    _assert_same(_result(out), reference)


# -- in-process: disk full, refused resumes, fingerprints ------------------------------------------------------------
@pytest.fixture
def torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _full_disk_on(monkeypatch, name: str, write: int) -> None:
    """The ``write``-th atomic write of file ``name`` goes to ``/dev/full``: the kernel's
    "no space left on device"."""
    from spikeflow.train import checkpoint

    real = checkpoint.tempfile.mkstemp
    seen = []

    def mkstemp(prefix: str = "", **kwargs):
        fd, tmp = real(prefix=prefix, **kwargs)
        if prefix.startswith(f".{name}."):
            seen.append(tmp)
            if len(seen) == write:
                os.close(fd)
                fd = os.open("/dev/full", os.O_WRONLY)
        return fd, tmp

    monkeypatch.setattr(checkpoint, "tempfile", types.SimpleNamespace(mkstemp=mkstemp))


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("name", ["ann.last.pt", "evaluation.pt"])
def test_a_full_disk_keeps_the_previous_file_and_the_run_resumes(tmp_path, monkeypatch, reference, torch_threads, name):
    from spikeflow.convert.experiment import ConvertConfig, run_experiment

    out = tmp_path / "run"
    config = ConvertConfig(out=str(out), **SETTINGS)
    with monkeypatch.context() as patch:
        _full_disk_on(patch, name, write=2)
        with pytest.raises(OSError, match=f"no space left on the device while writing .*{name}; the previous {name} is intact"):
            run_experiment(config)
    before = (out / name).read_bytes()
    assert not list(out.glob(".*.tmp"))
    first = read_weights_only(out / name)
    if name == "ann.last.pt":
        assert first["epoch"] == 1
    else:
        assert list(first["reports"]) == ["window 2"]
    summary = run_experiment(ConvertConfig(out=str(out), resume=True, **SETTINGS))
    assert (out / name).read_bytes() != before  # written again, complete
    net = SpikingNetwork.load(out / "snn.pt")
    _assert_same(
        {"summary": {k: v for k, v in json.loads(json.dumps(summary)).items() if k not in VARYING},
         "snn": net.state_dict(), "snn_info": net.info, "ann": read_weights_only(out / "ann.pt")["state_dict"]},
        reference,
    )
    expected_epochs = [2, 3] if name == "ann.last.pt" else []
    assert summary["resumed"]["ann_epochs_trained"] == expected_epochs


def test_resume_needs_a_run_and_the_same_settings(tmp_path, monkeypatch, torch_threads):
    from spikeflow.convert.experiment import ConvertConfig, run_experiment
    from spikeflow.train import _faults

    out = tmp_path / "run"
    with pytest.raises(FileNotFoundError, match=r"nothing to resume: .*run\.json does not exist"):
        run_experiment(ConvertConfig(out=str(out), resume=True, **SETTINGS))

    class Stop(Exception):
        pass

    def stop(event, key=None, flush=None):
        if event == "mid-epoch":
            raise Stop

    with monkeypatch.context() as patch:
        patch.setattr(_faults, "point", stop)
        with pytest.raises(Stop):
            run_experiment(ConvertConfig(out=str(out), **SETTINGS))
    changed = {**SETTINGS, "timesteps": (2, 3), "percentile": 99.0, "quiet": False}  # quiet may change
    with pytest.raises(ValueError) as refused:
        run_experiment(ConvertConfig(out=str(out), resume=True, **changed))
    message = str(refused.value)
    assert "run.json" in message and "timesteps=(2, 3) (run: [2, 4])" in message and "percentile=99.0" in message
    assert "quiet" not in message


def test_a_saved_calibration_is_reused_only_for_the_same_ann_and_settings(tmp_path):
    from spikeflow.convert.experiment import ConvertConfig, _calibration, _model_fingerprint
    from spikeflow.convert.presets import build_ann, load_images

    x_train = load_images("digits")[0][:64]
    torch.manual_seed(0)
    ann = build_ann("lenet5", tuple(x_train.shape[1:]), 10).eval()
    config = ConvertConfig(out=str(tmp_path), calibration_samples=64, resume=True)
    print_ = _model_fingerprint(ann)
    notes = {}
    first, _ = _calibration(ann, print_, x_train, config, tmp_path, notes)  # nothing saved yet: measured
    assert not notes and (tmp_path / "calibration.pt").is_file()
    second, _ = _calibration(ann, print_, x_train, config, tmp_path, notes)
    assert notes == {"calibration_reused": True}
    assert all(torch.equal(first.scales[n], second.scales[n]) for n in first.scales)
    other = ConvertConfig(out=str(tmp_path), calibration_samples=64, resume=True, percentile=99.0)
    notes = {}
    with pytest.warns(UserWarning, match=r"calibration\.pt was measured for percentile=99\.0 \(calibration\.pt: 99\.99\)"):
        _calibration(ann, print_, x_train, other, tmp_path, notes)
    assert not notes
    with torch.no_grad():
        next(ann.parameters()).add_(0.01)
    with pytest.warns(UserWarning, match="measured for another ANN"):
        _calibration(ann, _model_fingerprint(ann), x_train, other, tmp_path, notes)
    assert not notes


@pytest.mark.parametrize("coding,options", [("rate", {}), ("ttfs-dynamic", {"window": 3}), ("ttfs-clamped", {"window": 3})])
def test_a_network_from_a_saved_calibration_is_the_one_convert_builds(coding, options):
    """The experiment converts in two steps (to save the calibration between them): the
    result must stay that of :func:`spikeflow.convert.convert`."""
    from spikeflow.convert import Calibration, convert
    from spikeflow.convert.experiment import UNCALIBRATED, ConvertConfig, _build_snn, _measure_calibration, activation_for
    from spikeflow.convert.presets import build_ann, load_images

    x_train = load_images("digits")[0][:64]
    torch.manual_seed(0)
    ann = build_ann("lenet5", tuple(x_train.shape[1:]), 10, activation_for(coding)).eval()
    config = ConvertConfig(coding=coding, calibration_samples=64, percentile=99.0)
    calibration = None if coding in UNCALIBRATED else _measure_calibration(ann, x_train, config)
    if calibration is not None:  # through the saved form
        calibration = Calibration.from_payload(calibration.to_payload())
    ours = _build_snn(ann, calibration, config, **options)
    theirs = convert(ann, x_train, coding=coding, percentile=99.0, max_samples=64, **options)
    assert ours.info == theirs.info
    mine, expected = ours.state_dict(), theirs.state_dict()
    assert list(mine) == list(expected) and all(torch.equal(mine[k], expected[k]) for k in expected)


def test_fit_ann_resumes_bit_identically_and_refuses_other_settings(tmp_path):
    from spikeflow.convert.ann import fit_ann

    x, y = torch.randn(40, 6), torch.randint(0, 3, (40,))

    def model():
        torch.manual_seed(1)
        return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Dropout(0.3), torch.nn.Linear(8, 3))

    whole = model()
    losses = fit_ann(whole, x, y, epochs=3, batch_size=8, lr=0.01)
    part, path = model(), tmp_path / "ann.last.pt"

    def stop_after_two(epoch, _loss):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit_ann(part, x, y, epochs=3, batch_size=8, lr=0.01, checkpoint=path, on_epoch=stop_after_two)
    resumed = model()
    epochs = []
    assert fit_ann(resumed, x, y, epochs=3, batch_size=8, lr=0.01, checkpoint=path, resume=True,
                   on_epoch=lambda e, _l: epochs.append(e)) == losses
    assert epochs == [3]
    assert all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()))
    with pytest.raises(ValueError, match=r"cannot resume ANN training from .*ann\.last\.pt.*lr=0\.02 \(checkpoint: 0\.01\)"):
        fit_ann(model(), x, y, epochs=3, batch_size=8, lr=0.02, checkpoint=path, resume=True)
