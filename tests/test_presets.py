"""Training presets: resolved settings, networks equal to transcriptions of the
seeds, ANN twins, and the trainer options they use (schedules, clipping, mixed
precision, augmentation)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from spikeflow.train import PRESETS, TrainConfig, build_model, make_optimizer, make_scheduler, train, translate

F64 = torch.float64
SMALL = dict(hidden=16, steps=4, quiet=True, epochs=1)


# -------------------------------------------------------------------------- config


def test_fields_default_to_the_presets_choice_and_explicit_values_win():
    seed004 = TrainConfig(preset="seed004")
    assert (seed004.epochs, seed004.batch_size, seed004.lr, seed004.steps) == (20, 256, 0.01, 100)
    assert seed004.amsgrad and seed004.readout == "count-mse" and seed004.encoding == "latency"
    assert (seed004.count_on, seed004.count_off) == (100.0, 10.0)
    assert TrainConfig(preset="seed004", lr=0.5).lr == 0.5
    assert TrainConfig(preset="seed001").momentum == 0.5
    assert TrainConfig(preset="digits-mlp").momentum == 0.9  # the global default
    assert TrainConfig(preset="seed003").out.replace("\\", "/") == "runs/seed003"
    assert TrainConfig(preset="mnist-cnn", ann=True).out.replace("\\", "/") == "runs/mnist-cnn-ann"
    # a resolved config rebuilds itself
    for name in PRESETS:
        config = TrainConfig(preset=name)
        assert TrainConfig.from_dict(config.to_dict()) == config


def test_seed003_learning_rate_matches_its_loss_scaling():
    """Seed 003's batch loss is sum_b CE_b / C (C = 2 classes) with SGD(2e-2): the same
    update as the batch mean of CE_b with lr 2e-2 * B / C."""
    config = TrainConfig(preset="seed003")
    assert config.optimizer == "sgd" and config.momentum == 0.9
    torch.manual_seed(0)
    w = torch.randn(3, 2, requires_grad=True)
    x, y = torch.randn(config.batch_size, 3), torch.randint(2, (config.batch_size,))
    seed_loss = sum(F.cross_entropy((x[b] @ w)[None], y[b : b + 1]) / 2 for b in range(config.batch_size))
    (seed_grad,) = torch.autograd.grad(seed_loss, w)
    (our_grad,) = torch.autograd.grad(F.cross_entropy(x @ w, y), w)
    torch.testing.assert_close(config.lr * our_grad, 2e-2 * seed_grad)


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"preset": "randman", "encoding": "rate"}, "takes spike trains: use encoding 'none'"),
        ({"preset": "digits-mlp", "encoding": "none"}, "only for spike-train data sets"),
        ({"preset": "seed004", "readout": "max"}, "supports the readouts count, count-mse"),
        ({"preset": "seed001", "ann": True}, "has no ANN twin"),
        ({"preset": "mnist-mlp", "ann": True, "readout": "count"}, "membrane readout"),
        ({"scheduler": "warp"}, "scheduler must be one of"),
        ({"grad_clip": -1.0}, "grad_clip must be >= 0"),
        ({"init": "magic"}, "init must be one of"),
        ({"latency_threshold": 2.0}, r"latency_threshold must be in \[0, 1\]"),
    ],
)
def test_invalid_combinations_are_named(changes, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**changes)


# ------------------------------------------------------------------------ networks


def test_mnist_networks_and_their_ann_twins():
    x = torch.rand(3, 2, 1, 28, 28)
    for preset in ("mnist-mlp", "mnist-cnn"):
        snn_net = build_model(TrainConfig(preset=preset, hidden=8))
        out, _ = snn_net(x)
        assert out.shape == (3, 2, 10)
        ann = TrainConfig(preset=preset, hidden=8, ann=True)
        assert ann.time_steps == 1
        ann_net = build_model(ann)
        assert any(isinstance(m, torch.nn.ReLU) for m in ann_net.modules())
        from spikeflow.nn import LIF

        assert not any(isinstance(m, LIF) for m in ann_net.modules())
        # same parameters apart from the neurons': the twin is the same architecture
        shapes = lambda net: [p.shape for n, p in net.named_parameters()]  # noqa: E731
        assert shapes(ann_net) == shapes(snn_net)


def test_ann_twin_of_the_mlp_is_the_plain_relu_mlp():
    torch.manual_seed(1)
    net = build_model(TrainConfig(preset="mnist-mlp", hidden=20, ann=True))
    x = torch.rand(5, 1, 28, 28)
    out, _ = net(x.unsqueeze(0))
    lin1, lin2 = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    expected = lin2(torch.relu(lin1(x.flatten(1))))  # LI over one step from rest: v = input
    torch.testing.assert_close(out[0], expected)


def seed001_layer_loop(xs, fc, decay=0.9, threshold=2.0, penalty=2.5):
    """Seed 001's SpikingNeuronLayerRNN over the inputs xs (a list), returning the
    delayed (state, output) pairs of every step."""
    prev_inner = torch.zeros(xs[0].shape[0], fc.out_features, dtype=xs[0].dtype)
    prev_outer = torch.zeros_like(prev_inner)
    states, outputs = [], []
    for x in xs:
        inner = fc(x) + prev_inner * decay
        outer = F.relu(inner - threshold)
        gate = (outer > 0).float().to(inner.dtype)
        inner = inner - (penalty + outer) * gate
        states.append(prev_inner)
        outputs.append(prev_outer)
        prev_inner, prev_outer = inner, outer
    return states, outputs


def test_seed001_network_equals_the_seed_with_gradients():
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(F64)  # decay 0.9 stored in float64, as the seed's Python float
    try:
        net = build_model(TrainConfig(preset="seed001", steps=12))
    finally:
        torch.set_default_dtype(previous)
    T, B = 12, 4
    image = torch.rand(B, 1, 28, 28, dtype=F64) * 4 - 0.5  # bright enough to fire
    u = torch.rand(T, B, 784, dtype=F64)
    xs = [u[t] * image.flatten(1) for t in range(T)]  # the seed's random multiplicative input
    lin1, lin2 = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]

    _, out1 = seed001_layer_loop(xs, lin1)
    states2, _ = seed001_layer_loop(out1, lin2)
    seed_logits = torch.stack(states2).mean(0)  # OutputDataToSpikingPerceptronLayer(average_output=False)
    assert torch.stack(out1).gt(0).any(), "the hidden layer must fire for the test to mean something"
    seed_grads = torch.autograd.grad(F.cross_entropy(seed_logits, torch.arange(B) % 10), [lin1.weight, lin2.weight])

    out, _ = net(torch.stack(xs).view(T, B, 1, 28, 28))
    assert TrainConfig(preset="seed001").readout == "mean"
    logits = out.mean(0)  # the "mean" readout
    torch.testing.assert_close(logits, seed_logits)
    grads = torch.autograd.grad(F.cross_entropy(logits, torch.arange(B) % 10), [lin1.weight, lin2.weight])
    for ours, theirs in zip(grads, seed_grads):
        torch.testing.assert_close(ours, theirs)


def test_seed004_network_equals_the_seed_loop():
    torch.manual_seed(0)
    net = build_model(TrainConfig(preset="seed004", steps=30))
    w1, w2 = [m.weight for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert abs(float(w1.detach().std()) - 0.1) < 0.005 and all(
        m.bias is None for m in net.modules() if isinstance(m, torch.nn.Linear)
    )
    spikes_in = (torch.rand(30, 3, 784) < 0.05).float()

    def seed_layer(spikes, weight):  # seed 004's run_spiking_layer, time-major, exact leaks
        current = spikes @ weight.T
        v = torch.zeros(spikes.shape[1], weight.shape[0])
        i = torch.zeros_like(v)
        out = []
        for t in range(spikes.shape[0]):
            v = v * math.exp(-1 / 20)
            i = i * math.exp(-1 / 5) + current[t]
            v = v + i
            s = (v - 1.0 > 0).float()
            out.append(s)
            v = torch.where(v > 1.0, torch.zeros_like(v), v)
        return torch.stack(out)

    expected = seed_layer(seed_layer(spikes_in, w1), w2)
    out, _ = net(spikes_in.view(30, 3, 1, 28, 28))
    assert torch.equal(out, expected)
    assert expected.sum() > 0


def test_seed003_network_is_recurrent_current_lif_with_xavier_weights():
    torch.manual_seed(0)
    net = build_model(TrainConfig(preset="seed003"))
    from spikeflow.nn import CubaLIF

    layers = [m for m in net.modules() if isinstance(m, CubaLIF)]
    assert [layer.recurrent_weight.shape for layer in layers] == [(32, 32), (2, 2)]
    for layer in layers:
        assert float(layer.beta) == pytest.approx(0.95) and float(layer.alpha) == pytest.approx(0.9)
        assert layer.alpha_rec == 0.85 and layer.gain == 20.0 and layer.normalize
    lin1, lin2 = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert lin1.bias is None and float(lin1.weight.detach().abs().max()) <= math.sqrt(6 / (16 + 32))
    out, _ = net((torch.rand(100, 4, 16) < 0.02).float())
    assert out.shape == (100, 4, 2)


# ---------------------------------------------------------------- trainer options


def test_translate_moves_each_image_by_its_own_offset():
    x = torch.zeros(64, 1, 7, 7)
    x[:, 0, 3, 3] = 1.0  # one bright pixel in the centre
    moved = translate(x, 2, torch.Generator().manual_seed(0))
    assert moved.shape == x.shape
    rows, cols = moved[:, 0].nonzero()[:, 1], moved[:, 0].nonzero()[:, 2]
    assert len(rows) == 64  # the pixel survives every shift of <= 2 (no wrap-around)
    assert rows.min() >= 1 and rows.max() <= 5 and cols.min() >= 1 and cols.max() <= 5
    assert len(set(zip(rows.tolist(), cols.tolist()))) > 10  # offsets differ between images
    assert torch.equal(translate(x, 0), x)


def test_schedules():
    config = TrainConfig(epochs=8, scheduler="step", lr=1.0)
    layer = torch.nn.Linear(2, 2)
    optimizer = make_optimizer(config, layer.parameters())
    scheduler = make_scheduler(config, optimizer, batches_per_epoch=3)
    rates = []
    for _ in range(8):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx([1, 1, 1, 1, 0.1, 0.1, 0.01, 0.01])
    cosine = make_scheduler(config.replace(scheduler="cosine"), optimizer, 3)
    assert cosine.T_max == 8
    assert make_scheduler(config.replace(scheduler="none"), optimizer, 3) is None
    onecycle = make_scheduler(config.replace(scheduler="onecycle"), optimizer, 3)
    assert onecycle.total_steps == 24


def test_gradient_clipping_bounds_the_sgd_step(tmp_path):
    base = dict(SMALL, optimizer="sgd", momentum=0.0, lr=0.5, out=str(tmp_path / "a"))
    torch.manual_seed(0)
    initial = build_model(TrainConfig(**base)).state_dict()
    clipped = train(TrainConfig(**base, grad_clip=1e-6))
    weights = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["model"]
    steps = math.ceil(1438 / 64)
    moved = math.sqrt(sum(float((weights[k] - initial[k]).pow(2).sum()) for k in initial))
    assert moved <= 0.5 * 1e-6 * steps * 1.01  # each step moves the weights by <= lr * clip
    free = train(TrainConfig(**{**base, "out": str(tmp_path / "b")}))
    weights = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["model"]
    assert math.sqrt(sum(float((weights[k] - initial[k]).pow(2).sum()) for k in initial)) > 1e-2
    assert clipped["epochs"] == free["epochs"] == 1


def test_mixed_precision_and_schedule_train(tmp_path):
    summary = train(TrainConfig(**SMALL, amp=True, scheduler="onecycle", out=str(tmp_path / "run")))
    assert summary["test_accuracy"] > 0.1
    assert summary["history"][0]["lr"] < TrainConfig().lr  # onecycle ends far below its peak


def test_ctrl_c_then_resume_restores_the_schedule(tmp_path):
    config = dict(SMALL, scheduler="cosine", encoding="rate", epochs=3)
    straight = train(TrainConfig(**config, out=str(tmp_path / "a")))

    def interrupt(record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(**config, out=str(tmp_path / "b")), on_epoch=interrupt)
    resumed = train(TrainConfig(**config, out=str(tmp_path / "b"), resume=True))
    assert resumed["resumed_from_epoch"] == 2
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert a["scheduler"] == b["scheduler"]
    assert straight["history"][-1]["lr"] == resumed["history"][-1]["lr"]
    with pytest.raises(ValueError, match="schedule"):
        train(TrainConfig(**{**config, "epochs": 5}, out=str(tmp_path / "b"), resume=True))


def test_randman_preset_trains_on_spike_trains(tmp_path):
    summary = train(TrainConfig(preset="randman", epochs=1, steps=30, hidden=8, quiet=True, out=str(tmp_path)))
    assert summary["epochs"] == 1 and 0.0 <= summary["test_accuracy"] <= 1.0


@pytest.mark.parametrize("init", ["lsuv", "fluctuation"])
def test_data_driven_initialisation_runs_before_training(tmp_path, init):
    summary = train(TrainConfig(**SMALL, init=init, out=str(tmp_path / "run")))
    assert summary["test_accuracy"] > 0.1 and summary["mean_firing_rate"] > 0.0


def test_lsuv_wakes_up_the_silent_seed003_network(tmp_path):
    from spikeflow.train import load_data
    from spikeflow.train.trainer import _encode_batch, _initialize

    config = TrainConfig(preset="seed003", steps=100, init="lsuv", out=str(tmp_path))
    x_train = load_data(config)[0][:64]
    torch.manual_seed(0)
    model = build_model(config)
    xb = _encode_batch(config, x_train, None)
    before = model(xb)[0].sum()
    _initialize(config, model, x_train, torch.device("cpu"))
    after = model(xb)[0].sum()
    assert after > before  # the seed's default weights leave the output almost silent


def test_init_needs_a_sequential_network():
    with pytest.raises(ValueError, match="needs a spikeflow.nn.Sequential"):
        from spikeflow.train.trainer import _initialize

        config = TrainConfig(preset="seed001", init="lsuv")
        _initialize(config, build_model(config), torch.rand(4, 1, 28, 28) - 0.5, torch.device("cpu"))


def test_tensorboard_logs_scalars_rates_and_histograms(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    summary = train(TrainConfig(**{**SMALL, "epochs": 2}, tensorboard=True, out=str(tmp_path / "run")))
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"histograms": 0})
    events.Reload()
    tags = events.Tags()
    test_acc = [e.value for e in events.Scalars("test/accuracy")]
    assert test_acc == pytest.approx([r["test_accuracy"] for r in summary["history"]])
    assert [e.step for e in events.Scalars("train/train_loss")] == [1, 2]
    assert "firing_rate/1" in tags["scalars"]  # layer 1 of the Sequential is the LIF
    rate = events.Scalars("firing_rate/1")[-1].value
    assert rate == pytest.approx(summary["history"][-1]["firing_rate"], rel=1e-5)
    histogram = events.Histograms("spike_counts/1")[-1].histogram_value
    assert histogram.num == 16  # one count per hidden neuron
    # the counts sum to the spikes of the epoch: rate * entries (T * samples * neurons)
    assert histogram.sum == pytest.approx(rate * 4 * 1438 * 16, rel=1e-4)


def test_rate_regulariser_pulls_the_firing_rate_towards_its_bounds(tmp_path):
    free = train(TrainConfig(**SMALL, beta=0.99, out=str(tmp_path / "a")))
    held = train(TrainConfig(**SMALL, beta=0.99, rate_reg=50.0, out=str(tmp_path / "b")))
    assert free["history"][0]["firing_rate"] > 0.1  # above the ceiling
    assert held["history"][0]["firing_rate"] < free["history"][0]["firing_rate"]
