"""The digits data, the training config and the training loop (spikeflow.train)."""

from __future__ import annotations

import json

import pytest
import torch

from spikeflow.data import load_digits
from spikeflow.train import (
    PRESETS,
    CheckpointError,
    TrainConfig,
    build_model,
    evaluate,
    load_checkpoint,
    load_config,
    train,
)

SMALL = dict(hidden=16, steps=4, quiet=True)


def small(tmp_path, **changes) -> TrainConfig:
    return TrainConfig(**{**SMALL, "epochs": 1, "out": str(tmp_path / "run"), **changes})


# ---------------------------------------------------------------------------- data


def test_load_digits_split():
    d = load_digits()
    assert d.x_train.shape == (1438, 64) and d.x_test.shape == (359, 64)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    for x in (d.x_train, d.x_test):
        assert x.min() == 0.0 and x.max() == 1.0
    # stratified: every class has 35-37 test samples (20% of 174-183)
    counts = torch.bincount(d.y_test, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37
    # the split is fixed, and no image is in both halves
    again = load_digits()
    assert all(torch.equal(a, b) for a, b in zip(d, again))
    # together the two halves are exactly scikit-learn's 1797 samples, each once
    from sklearn.datasets import load_digits as sk_load

    sk = sk_load()
    ours = sorted(zip(torch.cat([d.y_train, d.y_test]).tolist(), torch.cat([d.x_train, d.x_test]).tolist()))
    theirs = sorted(zip(sk.target.tolist(), (sk.data / 16.0).tolist()))
    assert ours == theirs
    other = load_digits(seed=1)
    assert not torch.equal(other.y_test, d.y_test) or not torch.equal(other.x_test, d.x_test)


def test_load_digits_fraction():
    d = load_digits(test_fraction=0.5)
    assert abs(len(d.y_test) - 1797 / 2) <= 10
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits(test_fraction=1.0)


def test_load_digits_without_scikit_learn_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "sklearn", None)  # makes `import sklearn` fail
    with pytest.raises(ImportError, match=r"pip install spikeflow\[cli\]"):
        load_digits()


# -------------------------------------------------------------------------- config


def test_config_defaults():
    config = TrainConfig()
    assert config.preset == "digits-mlp" and config.preset in PRESETS
    assert config.out.replace("\\", "/") == "runs/digits-mlp"
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert json.loads(json.dumps(config.to_dict())) == config.to_dict()  # plain values only


@pytest.mark.parametrize(
    "changes, error, match",
    [
        ({"epochs": 0}, ValueError, "epochs must be >= 1"),
        ({"epochs": 1.5}, TypeError, "epochs must be an integer"),
        ({"lr": -1.0}, ValueError, "lr must be > 0"),
        ({"optimizer": "rmsprop"}, ValueError, "optimizer must be one of adam, adamw, sgd"),
        ({"encoding": "morse"}, ValueError, "encoding must be one of"),
        ({"readout": "median"}, ValueError, "readout must be one of"),
        ({"surrogate": "nope"}, ValueError, "unknown surrogate 'nope'"),
        ({"backend": "magic"}, ValueError, "unknown backend 'magic'"),
        ({"beta": 1.5}, ValueError, r"beta must be in \[0, 1\]"),
        ({"resume": "yes"}, TypeError, "resume must be True or False"),
        ({"threads": -1}, ValueError, "threads must be >= 0"),
    ],
)
def test_config_validation(changes, error, match):
    with pytest.raises(error, match=match):
        TrainConfig(**changes)


def test_config_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown training config key.*hiden"):
        TrainConfig.from_dict({"hiden": 10})


def test_load_config_json_and_toml(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"epochs": 3, "hidden": 20}))
    assert load_config(tmp_path / "a.json") == TrainConfig(epochs=3, hidden=20)
    (tmp_path / "b.toml").write_text('[train]\nepochs = 4\nencoding = "rate"\n')
    assert load_config(tmp_path / "b.toml") == TrainConfig(epochs=4, encoding="rate")
    (tmp_path / "c.toml").write_text("lr = 0.01\n")
    assert load_config(tmp_path / "c.toml").lr == 0.01
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json is not valid JSON"):
        load_config(tmp_path / "bad.json")
    (tmp_path / "typo.json").write_text('{"epoch": 3}')
    with pytest.raises(ValueError, match="typo.json.*unknown training config key"):
        load_config(tmp_path / "typo.json")
    (tmp_path / "c.yaml").write_text("preset: seed004\nbatch-size: 32\n")
    assert load_config(tmp_path / "c.yaml") == TrainConfig(preset="seed004", batch_size=32)
    assert load_config(tmp_path / "c.yaml", epochs=2).epochs == 2  # overrides win
    (tmp_path / "bad.yaml").write_text("epochs: [3\n")
    with pytest.raises(ValueError, match="bad.yaml is not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 3\n")
    with pytest.raises(ValueError, match="must hold a mapping"):
        load_config(tmp_path / "list.yaml")
    (tmp_path / "c.ini").write_text("epochs=3")
    with pytest.raises(ValueError, match=r"\.yaml, \.yml, \.json or \.toml"):
        load_config(tmp_path / "c.ini")
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_config(tmp_path / "missing.json")


def test_digits_mlp_model_shapes():
    model = build_model(TrainConfig(hidden=12, steps=3))
    out, states = model(torch.rand(3, 5, 64))
    assert out.shape == (3, 5, 10)
    assert len(states) == 4
    counted = build_model(TrainConfig(hidden=12, readout="count"))
    out, _ = counted(torch.rand(3, 5, 64))
    assert set(out.unique().tolist()) <= {0.0, 1.0}


# ------------------------------------------------------------------------ training


def test_train_one_epoch_summary_and_checkpoints(tmp_path):
    summary = train(small(tmp_path))
    for key in ("test_accuracy", "train_time_s", "epochs", "mean_firing_rate", "preset", "seed"):
        assert key in summary
    assert summary["epochs"] == 1 and summary["preset"] == "digits-mlp" and summary["seed"] == 0
    assert 0.0 <= summary["test_accuracy"] <= 1.0
    assert 0.0 < summary["mean_firing_rate"] < 1.0
    assert summary["resumed_from_epoch"] is None
    assert len(summary["history"]) == 1
    json.dumps(summary)  # plain values only
    run = tmp_path / "run"
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "last.pt"]
    last = torch.load(run / "last.pt", weights_only=True)
    assert last["epoch"] == 1 and last["config"] == small(tmp_path).to_dict()
    assert set(last) >= {"model", "optimizer", "rng", "best_accuracy"}


def _weights(path):
    return load_checkpoint(path)["model"]


@pytest.mark.parametrize("encoding", ["direct", "rate"])
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, encoding):
    straight = train(small(tmp_path / "a", epochs=2, encoding=encoding))
    first = train(small(tmp_path / "b", epochs=1, encoding=encoding))
    resumed = train(small(tmp_path / "b", epochs=2, encoding=encoding, resume=True))
    assert first["epochs"] == 1 and resumed["epochs"] == 2 and resumed["resumed_from_epoch"] == 1
    a, b = _weights(tmp_path / "a" / "run" / "last.pt"), _weights(tmp_path / "b" / "run" / "last.pt")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    opt_a = load_checkpoint(tmp_path / "a" / "run" / "last.pt")["optimizer"]["state"]
    opt_b = load_checkpoint(tmp_path / "b" / "run" / "last.pt")["optimizer"]["state"]
    for index in opt_a:
        assert torch.equal(opt_a[index]["exp_avg_sq"], opt_b[index]["exp_avg_sq"])
    assert straight["test_accuracy"] == resumed["test_accuracy"]
    assert [h["test_accuracy"] for h in straight["history"]] == [h["test_accuracy"] for h in resumed["history"]]


def test_same_seed_same_run_and_other_seed_differs(tmp_path):
    a = train(small(tmp_path / "a"))
    b = train(small(tmp_path / "b"))
    c = train(small(tmp_path / "c", seed=1))
    wa, wb, wc = (_weights(tmp_path / n / "run" / "last.pt") for n in "abc")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)
    assert a["test_accuracy"] == b["test_accuracy"]


def test_resume_without_a_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothing to resume: .*last\.pt does not exist"):
        train(small(tmp_path, resume=True))


def test_resume_from_a_corrupt_checkpoint_names_the_file(tmp_path):
    train(small(tmp_path))
    last = tmp_path / "run" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"run/last\.pt is corrupt or truncated"):
        train(small(tmp_path, epochs=2, resume=True))


def test_resume_from_a_corrupt_last_falls_back_to_the_previous(tmp_path):
    straight = train(small(tmp_path / "a", epochs=3))
    train(small(tmp_path / "b", epochs=2))
    run = tmp_path / "b" / "run"
    assert load_checkpoint(run / "last.prev.pt")["epoch"] == 1
    last = run / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    with pytest.warns(UserWarning, match=r"run/last\.pt is corrupt or truncated.*previous checkpoint .*last\.prev\.pt"):
        resumed = train(small(tmp_path / "b", epochs=3, resume=True))
    assert resumed["resumed_from_epoch"] == 1
    assert [h["test_accuracy"] for h in resumed["history"]] == [h["test_accuracy"] for h in straight["history"]]
    a, b = _weights(tmp_path / "a" / "run" / "last.pt"), _weights(last)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the corrupt file was dropped, not kept as the fallback
    assert load_checkpoint(run / "last.prev.pt")["epoch"] == 2


def test_resume_with_both_checkpoints_corrupt_names_both(tmp_path):
    train(small(tmp_path, epochs=2))
    run = tmp_path / "run"
    for name in ("last.pt", "last.prev.pt"):
        (run / name).write_bytes(b"\0" * 100)
    with pytest.raises(CheckpointError, match=r"neither .*run/last\.pt nor the previous checkpoint .*run/last\.prev\.pt"):
        train(small(tmp_path, epochs=3, resume=True))


def test_a_new_run_clears_crash_leftovers_and_an_older_fallback(tmp_path):
    train(small(tmp_path, epochs=2))
    run = tmp_path / "run"
    (run / ".last.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    (run / ".last.prev.pt.999.tmp").write_bytes(b"a link cut short")
    train(small(tmp_path, epochs=1, seed=1))  # a new run, not a resume, in the same directory
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "last.pt"]  # no last.prev.pt of the old run


@pytest.mark.parametrize("changes", [{"encoding": "rate", "rate_reg": 0.1}, {"scheduler": "onecycle"}])
def test_a_run_stopped_inside_an_epoch_resumes_from_its_mid_epoch_checkpoint(tmp_path, monkeypatch, changes):
    from spikeflow.train import trainer

    straight = train(small(tmp_path / "a", epochs=2, **changes))
    arrivals = []

    def stop_in_batch_13_of_epoch_2(event, key=None, flush=None):
        if event == "mid-epoch":
            arrivals.append(key)
            if arrivals.count(2) == 13:
                raise KeyboardInterrupt  # a crash after the checkpoints of batches 5 and 10

    monkeypatch.setattr(trainer._faults, "point", stop_in_batch_13_of_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train(small(tmp_path / "b", epochs=2, checkpoint_every=5, **changes))
    monkeypatch.undo()
    saved = load_checkpoint(tmp_path / "b" / "run" / "last.pt")
    assert saved["epoch"] == 1 and saved["partial"]["batches"] == 10 and saved["partial"]["seen"] == 10 * 64
    assert load_checkpoint(tmp_path / "b" / "run" / "last.prev.pt")["partial"]["batches"] == 5

    resumed = train(small(tmp_path / "b", epochs=2, checkpoint_every=5, resume=True, **changes))
    a, b = (load_checkpoint(tmp_path / n / "run" / "last.pt") for n in "ab")
    assert b["partial"] is None and b["epoch"] == 2
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert torch.equal(a["rng"]["data"], b["rng"]["data"])
    without_times = lambda history: [{k: v for k, v in r.items() if k != "time_s"} for r in history]  # noqa: E731
    assert without_times(resumed["history"]) == without_times(straight["history"])  # firing rates included


def test_checkpoint_every_is_checked():
    with pytest.raises(ValueError, match="checkpoint_every must be >= 0"):
        TrainConfig(checkpoint_every=-1)
    with pytest.raises(TypeError, match="checkpoint_every must be an integer"):
        TrainConfig(checkpoint_every=2.5)


def test_resume_with_other_settings_is_refused(tmp_path):
    train(small(tmp_path))
    with pytest.raises(ValueError, match=r"cannot resume.*hidden=24 \(checkpoint: 16\)"):
        train(small(tmp_path, epochs=2, hidden=24, resume=True))


def test_resume_of_a_finished_run_trains_nothing(tmp_path):
    first = train(small(tmp_path))
    before = _weights(tmp_path / "run" / "last.pt")
    again = train(small(tmp_path, resume=True))
    assert again["epochs"] == 1 and again["test_accuracy"] == first["test_accuracy"]
    after = _weights(tmp_path / "run" / "last.pt")
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize(
    "changes",
    [
        {"encoding": "rate", "readout": "count"},
        {"encoding": "latency", "readout": "mean", "optimizer": "sgd", "lr": 0.05},
        {"readout": "last", "optimizer": "adamw", "weight_decay": 0.01, "surrogate": "atan", "surrogate_alpha": 2.0},
        {"readout": "sum", "backend": "reference"},
        {"encoding": "latency", "readout": "first-spike", "steps": 8, "latency_threshold": 0.2, "hidden": 64},
        {"encoding": "poisson", "readout": "max", "steps": 20, "lr": 0.02},
        {"readout": "count-mse", "steps": 8, "count_on": 6.0, "count_off": 1.0},
        {"encoding": "multiplicative", "readout": "sum"},
    ],
)
def test_other_settings_train(tmp_path, changes):
    summary = train(small(tmp_path, **changes))
    assert summary["epochs"] == 1
    assert summary["test_accuracy"] > 0.1  # better than chance after one epoch


def test_train_restores_the_thread_count(tmp_path):
    before = torch.get_num_threads()
    train(small(tmp_path, threads=1))
    assert torch.get_num_threads() == before


def test_progress_bar_unless_quiet(tmp_path, capsys):
    train(small(tmp_path, quiet=False))
    err = capsys.readouterr().err
    assert "epoch 1/1" in err and "loss=" in err and "acc=" in err and "rate=" in err and "test=" in err
    train(small(tmp_path / "q"))
    assert capsys.readouterr().err == ""


def test_on_epoch_callback(tmp_path):
    seen = []
    train(small(tmp_path, epochs=2), on_epoch=seen.append)
    assert [m["epoch"] for m in seen] == [1, 2]
    assert {"train_loss", "train_accuracy", "test_accuracy", "firing_rate"} <= set(seen[0])


def test_evaluate_is_deterministic_and_leaves_rng_alone():
    config = TrainConfig(hidden=16, steps=4, encoding="rate")
    torch.manual_seed(0)
    model = build_model(config)
    d = load_digits()
    state = torch.get_rng_state()
    first = evaluate(model, d.x_test, d.y_test, config)
    assert torch.equal(torch.get_rng_state(), state)
    assert evaluate(model, d.x_test, d.y_test, config) == first
    assert set(first) == {"loss", "accuracy", "firing_rate"}


def test_bad_arguments():
    with pytest.raises(TypeError, match="TrainConfig"):
        train({"epochs": 1})
    with pytest.raises(ValueError, match="unknown preset 'imagenet'"):
        train(TrainConfig(preset="imagenet"))


def test_defaults_reach_95_percent(tmp_path):
    """The documented default run (`spikeflow train`) reaches >= 95% on the test split."""
    summary = train(TrainConfig(out=str(tmp_path / "run"), quiet=True))
    assert summary["epochs"] == TrainConfig().epochs
    assert summary["test_accuracy"] >= 0.95, summary["test_accuracy"]


def test_a_diverged_loss_stops_before_the_weights_change(tmp_path, monkeypatch):
    from spikeflow.numerics import NonFiniteError
    from spikeflow.train import trainer

    real, seen = trainer._loss_of, {"epochs": 0, "batches": 0}

    def nan_at_epoch_two_batch_two(config, output, target):
        loss = real(config, output, target)
        if seen["epochs"] == 1:
            seen["batches"] += 1
            if seen["batches"] == 2:
                return loss * float("nan")
        return loss

    def on_epoch(record):
        seen["epochs"] += 1
        weights.update({k: v.clone() for k, v in load_checkpoint(tmp_path / "run" / "last.pt")["model"].items()})

    weights: dict = {}
    monkeypatch.setattr(trainer, "_loss_of", nan_at_epoch_two_batch_two)
    with pytest.raises(NonFiniteError, match=r"training diverged at epoch 2, batch 2: the loss is nan .* "
                                             r"the last checkpoint .*last.pt is intact"):
        train(small(tmp_path, epochs=2), on_epoch=on_epoch)
    saved = load_checkpoint(tmp_path / "run" / "last.pt")
    assert saved["epoch"] == 1
    assert all(torch.equal(saved["model"][k], v) for k, v in weights.items())
