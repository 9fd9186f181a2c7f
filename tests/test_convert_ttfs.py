"""Time-to-first-spike conversion (seed 002): plain TTFS, TTFS with a dynamic
threshold, TTFS with clamped ReLUs; their neurons, first-spike max pooling, window
delays and readout, saving."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import spikeflow.nn as snn
from spikeflow import scan
from spikeflow.convert import (
    ConversionError,
    Kind,
    SpikingMaxPool,
    SpikingNetwork,
    calibrate,
    fold_batchnorm,
    simulate,
    trace,
)
from spikeflow.convert.graph import apply_ann
from spikeflow.convert.ttfs import (
    DynamicTTFSNeuron,
    FirstSpikeMaxPool,
    StepCurrent,
    TTFSNeuron,
    WindowDelay,
    WindowReadout,
    clamp_activations,
    ttfs_clamped_network,
    ttfs_dynamic_network,
    ttfs_network,
)


# -- reference ANNs -----------------------------------------------------------------------
def _scale(lam: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return lam.view((-1,) + (1,) * (like.dim() - 2)) if lam.dim() == 1 else lam


def _run(graph, x, activation):
    """The graph as an ANN with every activation node's function replaced."""
    values = {}
    for node in graph.nodes:
        args = [values[i] for i in node.inputs]
        if node.kind is Kind.INPUT:
            y = x
        elif node.kind is Kind.OUTPUT:
            y = args[0]
        elif node.kind is Kind.RELU:
            y = activation(node, args[0])
        else:
            y = apply_ann(node, args)
        values[node.name] = y
    return y


def _quantized(graph, scales, x, K, offset=0.5):
    """Q_K(z) = lambda clip(floor(K z / lambda + o), 0, K) / K at every ReLU."""

    def q(node, z):
        lam = _scale(scales[node.name], z)
        return lam * torch.clamp(torch.floor(K * z / lam + offset), 0, K) / K

    return _run(graph, x, q)


def _clipped(graph, scales, x):
    return _run(graph, x, lambda node, z: torch.minimum(torch.relu(z), _scale(scales[node.name], z)))


def _error_bound(graph, scales, x, K):
    """Per-output bound on |Q_K network - clipped network|: an activation adds at most
    lambda / 2K (rounding) to the error of its input (clip is 1-Lipschitz); a layer
    with weights W maps an error e to at most |W| e, a max pooling to max(e)."""
    e = {}
    for node in graph.nodes:
        args = [e[i] for i in node.inputs]
        k = node.kind
        if k is Kind.INPUT:
            y = torch.zeros_like(x)
        elif k is Kind.OUTPUT:
            y = args[0]
        elif k is Kind.RELU:
            y = args[0] + _scale(scales[node.name], args[0]) / (2 * K)
        elif k is Kind.LINEAR:
            y = F.linear(args[0], node.module.weight.abs())
        elif k is Kind.CONV:
            m = node.module
            y = F.conv2d(args[0], m.weight.abs(), None, m.stride, m.padding, m.dilation, m.groups)
        elif k in (Kind.MAXPOOL, Kind.FLATTEN, Kind.CAT, Kind.ADD):
            y = apply_ann(node, args)  # max of errors, flatten, cat, sum of errors
        else:  # pragma: no cover - the test networks use nothing else
            raise AssertionError(k)
        e[node.name] = y
    return y


# -- test networks ------------------------------------------------------------------------
def _mlp(sizes=(12, 24, 16, 5), seed=0) -> torch.nn.Module:
    torch.manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers += [torch.nn.Linear(a, b)] + ([torch.nn.ReLU()] if i < len(sizes) - 2 else [])
    return torch.nn.Sequential(*layers).eval()


class SmallCNN(torch.nn.Module):
    """conv + relu + max pool, conv + max pool *before* its relu (swapped), linear."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.c2 = torch.nn.Conv2d(4, 6, 3)
        self.fc = torch.nn.Linear(6 * 2 * 2, 5)

    def forward(self, x):
        x = F.max_pool2d(torch.relu(self.c1(x)), 2)
        x = torch.relu(F.max_pool2d(self.c2(x), 2))
        return self.fc(x.flatten(1))


class ClampedCNN(SmallCNN):
    """SmallCNN trained with activations clamped to [0, 1]."""

    def forward(self, x):
        x = F.max_pool2d(torch.clamp(self.c1(x), 0, 1), 2)
        x = torch.clamp(F.max_pool2d(self.c2(x), 2), 0, 1)
        return self.fc(x.flatten(1))


class PoolAfterReLU(SmallCNN):
    """SmallCNN with its second max pooling after the relu (what the builders make of
    it); the node names are those of SmallCNN's graph."""

    def forward(self, x):
        x = F.max_pool2d(torch.relu(self.c1(x)), 2)
        x = F.max_pool2d(torch.relu(self.c2(x)), 2)
        return self.fc(x.flatten(1))


class Branches(torch.nn.Module):
    """A residual add across one neuron layer and a concatenation across two."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = torch.nn.Conv2d(2, 4, 3, padding=1)
        self.c2 = torch.nn.Conv2d(4, 4, 3, padding=1)
        self.c3 = torch.nn.Conv2d(4, 4, 3, padding=1)
        self.fc = torch.nn.Linear(8 * 4 * 4, 3)

    def forward(self, x):
        a = torch.relu(self.c1(x))
        y = torch.relu(self.c3(torch.relu(self.c2(a))) + a)
        return self.fc(torch.cat([y, a], 1).flatten(1))


def _graph(model, x, **options):
    graph = fold_batchnorm(trace(model))
    return graph, calibrate(graph, x, **options)


def _logits(net, x):
    total = net.info["total_steps"]
    return simulate(net, x, [total])[total]


# -- neurons ------------------------------------------------------------------------------
def test_ttfs_neuron_spikes_once_when_the_membrane_first_exceeds_the_threshold():
    """Constant current z, threshold 1: h[n] = (n + 1) z > 1 first at n = floor(1 / z)."""
    z = torch.tensor([0.3, 0.25, 2.0, 0.0, -1.0])
    neuron = TTFSNeuron(1.0)
    out, state = neuron(z.expand(8, 1, 5).contiguous())
    assert torch.equal(neuron.record(z.expand(8, 1, 5).contiguous()).output, out)
    times = [int(t) if c else None for t, c in zip(out[:, 0].argmax(0), out[:, 0].sum(0))]
    assert times == [3, 4, 0, None, None]  # 1.2 > 1 at n = 3; 1.0 is not above 1, 1.25 is
    assert out.sum(0).max() == 1
    assert state.fired[0].tolist() == [1, 1, 1, 0, 0]
    # it is the first spike of the IF neuron with the same threshold
    x = torch.randn(30, 6, 7) * 0.3 + 0.05
    ttfs, _ = TTFSNeuron(0.8)(x)
    spikes, _ = snn.IF(threshold=0.8, reset="zero")(x)
    first = spikes * (torch.cumsum(spikes, 0) == 1)
    assert torch.equal(ttfs, first)


@pytest.mark.parametrize("offset", [0.5, 0.0])
def test_dynamic_neuron_spike_time_by_hand(offset):
    """K = 4, phase 1, lambda = 2: integrates steps 4..7, fires in steps 8..11 at
    k = K - floor(K z / lambda + o); currents outside window 1 are ignored."""
    K, lam = 4, 2.0
    z = torch.tensor([1.0, 0.3, 0.1, 3.0, -1.0, 0.7])
    x = torch.full((16, 1, 6), 5.0)
    x[4:8] = z
    neuron = DynamicTTFSNeuron(lam, window=K, phase=1, offset=offset)
    out, state = neuron(x)
    q = torch.floor(K * z / lam + offset)  # o = .5: [2, 1, 0, 6, -2, 1]; o = 0: [2, 0, 0, 6, -2, 1]
    expected = torch.zeros(16, 1, 6)
    for i, qi in enumerate(q.tolist()):
        if qi >= 1:
            expected[8 + max(K - int(qi), 0), 0, i] = 1
    assert torch.equal(out, expected)
    assert torch.equal(neuron.record(x).output, expected)  # the step function agrees, ties included
    assert (out[8:12].sum() == out.sum()) and out.sum(0).max() == 1
    torch.testing.assert_close(state.v[0], K * z)
    assert state.t.eq(16).all()
    if offset == 0.5:  # z = 1: v = 4 >= theta = 2 (4 - 2 - .5) = 3 at k = 2, not 5 at k = 1
        assert out[10, 0, 0] == 1


@pytest.mark.parametrize("cls, options", [(TTFSNeuron, {}), (DynamicTTFSNeuron, {"window": 5, "phase": 1})])
def test_neuron_forward_in_closed_form_equals_its_step_function(cls, options):
    """forward computes all steps at once; record / scan loops the step function."""
    threshold = torch.rand(3, 1) + 0.5
    neuron = cls(threshold, shape=(3, 1), **options)
    x = torch.randn(20, 4, 3, 7) * 0.4
    reference = scan(neuron.neuron_params(), x, backend="reference")
    assert reference.output.sum() > 10
    for cut in (1, 7, 12):
        a, state = neuron(x[:cut])
        b, state = neuron(x[cut:], state)
        assert torch.equal(torch.cat([a, b]), reference.output)
        for mine, theirs in zip(state, reference.state):
            torch.testing.assert_close(mine, theirs)


# -- layers -------------------------------------------------------------------------------
def test_first_spike_max_pool_fires_once_at_the_earliest_input_spike():
    # window 1 (left 2x2): B and C spike at n = 1, A at n = 3; window 2 (right 2x2) silent
    x = torch.zeros(5, 1, 1, 2, 4)
    x[3, 0, 0, 0, 0] = 1  # A
    x[1, 0, 0, 0, 1] = 1  # B
    x[1, 0, 0, 1, 0] = 1  # C
    pool = FirstSpikeMaxPool(torch.nn.MaxPool2d(2))
    y, fired = pool(x)
    assert y[:, 0, 0, 0].tolist() == [[0, 0], [1, 0], [0, 0], [0, 0], [0, 0]]
    assert fired.flatten().tolist() == [1, 0]
    a, s = pool(x[:2])
    b, s = pool(x[2:], s)
    assert torch.equal(torch.cat([a, b]), y)
    # the rate coding's gated pooling passes a second spike: D (first in the window)
    # catches up with B at n = 2 and wins the tie
    x2 = torch.zeros(3, 1, 1, 2, 2)
    x2[1, 0, 0, 0, 1] = 1  # B
    x2[2, 0, 0, 0, 0] = 1  # D
    assert SpikingMaxPool(torch.nn.MaxPool2d(2))(x2)[0].sum() == 2
    assert pool(x2)[0].flatten().tolist() == [0, 1, 0]
    with pytest.raises(ValueError, match="0 or 1"):
        pool(x * 0.5)
    with pytest.raises(ValueError, match="expects"):
        pool(torch.zeros(3, 2, 4))


def test_step_current_window_readout_and_delay_by_hand():
    s = torch.tensor([0.0, 1.0, 0.0, 0.0])[:, None, None]
    current, total = StepCurrent()(s)
    assert current.flatten().tolist() == [0, 1, 1, 1] and total.item() == 1
    x = torch.arange(1.0, 9.0)[:, None, None]  # 1..8 at steps 0..7
    readout = WindowReadout(window=2, source=1)  # steps 2, 3: (3 + 4) / 2
    y, _ = readout(x)
    assert y.flatten().tolist() == [0, 0, 1.5, 3.5, 3.5, 3.5, 3.5, 3.5]
    delay = WindowDelay(window=2, source=1, delay=2)  # into steps 6, 7
    y, _ = delay(x)
    assert y.flatten().tolist() == [0, 0, 0, 0, 0, 0, 3.5, 3.5]
    a, state = delay(x[:3])
    b, state = delay(x[3:], state)
    assert torch.equal(torch.cat([a, b]), y)
    with pytest.raises(ValueError, match="delay"):
        WindowDelay(window=2, source=0, delay=0)
    with pytest.raises(ValueError, match="state"):
        StepCurrent()(s, torch.zeros(2, 1))


# -- networks -----------------------------------------------------------------------------
def test_plain_ttfs_network_decodes_a_spike_time_as_its_remaining_time():
    """Linear (w = 1) -> clipped ReLU (lambda = 1) -> Linear (w = 2, b = 0.1), input
    z = 0.3: the neuron fires at n = 3, so the mean output over T = 10 steps is
    2 * 1 * (10 - 3) / 10 + 0.1 = 1.5."""
    first, last = torch.nn.Linear(1, 1, bias=False), torch.nn.Linear(1, 1)
    with torch.no_grad():
        first.weight.fill_(1.0)
        last.weight.fill_(2.0)
        last.bias.fill_(0.1)
    graph = trace(torch.nn.Sequential(first, torch.nn.Hardtanh(0.0, 1.0), last))
    net = ttfs_network(graph, calibrate(graph, None))
    assert net.info["readout"] == "mean" and net.info["coding"] == "ttfs"
    out = simulate(net, torch.tensor([[0.3]]), [10, 2])
    torch.testing.assert_close(out[10], torch.tensor([[1.5]]))
    torch.testing.assert_close(out[2], torch.tensor([[0.1]]))  # no spike yet


def _spike_steps(net):
    kinds = (TTFSNeuron, DynamicTTFSNeuron, FirstSpikeMaxPool)
    return [(name, m) for name, m in net.named_layers() if isinstance(m, kinds)]


@pytest.mark.parametrize("coding", ["ttfs", "ttfs-dynamic", "ttfs-clamped"])
def test_every_neuron_and_pooling_window_spikes_at_most_once(coding):
    model = (ClampedCNN() if coding == "ttfs-clamped" else SmallCNN()).eval()
    x = torch.rand(16, 1, 12, 12)
    graph, calibration = _graph(model, x, method="max")
    build = {"ttfs": ttfs_network, "ttfs-dynamic": ttfs_dynamic_network, "ttfs-clamped": ttfs_clamped_network}
    options = {} if coding == "ttfs" else {"window": 8}
    net = build[coding](graph, calibration, **options)
    steps = net.info.get("total_steps", 40)
    _, _, values = net.run(x.unsqueeze(0).expand(steps, *x.shape), keep=True)
    found = _spike_steps(net)
    assert len(found) == 4 and len(net.neurons()) == 2
    for name, module in found:
        s = values[name]
        assert ((s == 0) | (s == 1)).all(), name
        assert s.sum(0).max() <= 1, name
        assert s.sum() > 0, name
        if isinstance(module, DynamicTTFSNeuron):  # only in its firing window
            p, K = module.phase, module.window
            assert s[: (p + 1) * K].sum() == 0 and s[(p + 2) * K :].sum() == 0


@pytest.mark.parametrize("per_channel", [False, True])
def test_dynamic_mlp_equals_the_quantized_ann_and_approaches_the_clipped_ann(per_channel):
    model = _mlp()
    x = torch.rand(64, 12)
    graph, calibration = _graph(model, x, percentile=99.0, per_channel=per_channel)
    clipped = _clipped(graph, calibration.scales, x)
    errors = {}
    for K in (4, 64):
        net = ttfs_dynamic_network(graph, calibration, window=K)
        assert net.info["total_steps"] == 3 * K and net.info["readout"] == "last"
        out = _logits(net, x)
        torch.testing.assert_close(out, _quantized(graph, calibration.scales, x, K), atol=1e-5, rtol=0)
        bound = _error_bound(graph, calibration.scales, x, K)
        assert ((out - clipped).abs() <= bound + 1e-5).all()
        errors[K] = (out - clipped).abs().max().item()
    assert errors[64] < errors[4] / 4
    agree = (_logits(net, x).argmax(1) == clipped.argmax(1)).float().mean().item()
    assert agree >= 0.95


def test_dynamic_cnn_with_max_pooling_equals_the_quantized_ann():
    torch.manual_seed(1)
    model = SmallCNN().eval()
    x = torch.rand(32, 1, 12, 12)
    graph, calibration = _graph(model, x, method="max", per_channel=True)
    K = 32
    net = ttfs_dynamic_network(graph, calibration, window=K)
    out = _logits(net, x)
    swapped = PoolAfterReLU()
    swapped.load_state_dict(model.state_dict())
    swapped = trace(swapped)
    torch.testing.assert_close(out, _quantized(swapped, calibration.scales, x, K), atol=1e-5, rtol=0)
    ann = model(x)  # max calibration: clipping changes nothing on these inputs
    assert ((out - ann).abs() <= _error_bound(swapped, calibration.scales, x, K) + 1e-5).all()
    assert (out.argmax(1) == ann.argmax(1)).float().mean() >= 0.9
    assert sum(isinstance(m, FirstSpikeMaxPool) for _, m in net.named_layers()) == 2


def test_residual_add_and_concatenation_are_delayed_into_the_latest_window():
    torch.manual_seed(2)
    model = Branches().eval()
    x = torch.rand(16, 2, 4, 4)
    graph, calibration = _graph(model, x, method="max")
    net = ttfs_dynamic_network(graph, calibration, window=16)
    delays = {name: (m.source, m.delay) for name, m in net.named_layers() if isinstance(m, WindowDelay)}
    assert delays == {"add.delay1": (1, 1), "cat.delay1": (1, 2)}
    assert net.info["total_steps"] == 4 * 16
    torch.testing.assert_close(_logits(net, x), _quantized(graph, calibration.scales, x, 16), atol=1e-5, rtol=0)
    # fed in chunks, with the state carried: the same
    total = net.info["total_steps"]
    torch.testing.assert_close(simulate(net, x, [total], chunk=7)[total], _logits(net, x))


def test_clamped_network_needs_no_data_and_uses_the_clamps_as_scales():
    torch.manual_seed(3)
    model = torch.nn.Sequential(
        torch.nn.Linear(6, 10), torch.nn.Hardtanh(0.0, 1.0), torch.nn.Linear(10, 8), torch.nn.ReLU6(),
        torch.nn.Linear(8, 3),
    ).eval()
    graph = fold_batchnorm(trace(model))
    net = ttfs_clamped_network(graph, window=16)  # no calibration at all
    assert net.info["coding"] == "ttfs-clamped"
    thresholds = [m.threshold.item() for _, m in net.neurons()]
    assert thresholds == [1.0, 6.0]
    x = torch.randn(32, 6)
    scales = {"1": torch.tensor(1.0), "3": torch.tensor(6.0)}
    torch.testing.assert_close(_logits(net, x), _quantized(graph, scales, x, 16), atol=1e-5, rtol=0)
    with pytest.raises(ConversionError, match="clamp_activations"):
        ttfs_clamped_network(fold_batchnorm(trace(_mlp())), window=4)


class QuantizedClip(torch.nn.Module):
    """A QCFS-style conversion activation: lambda clip(floor(L x / lambda + 1/2), 0, L) / L."""

    conversion_activation = True

    def __init__(self, scale: float, levels: int) -> None:
        super().__init__()
        self.scale, self.levels = scale, levels

    def forward(self, x):
        return self.scale * torch.clamp(torch.floor(x * self.levels / self.scale + 0.5), 0, self.levels) / self.levels


def test_a_quantized_clip_activation_with_l_levels_converts_exactly_with_window_l():
    torch.manual_seed(5)
    model = torch.nn.Sequential(
        torch.nn.Linear(6, 12), QuantizedClip(0.8, 4), torch.nn.Linear(12, 8), QuantizedClip(0.5, 4),
        torch.nn.Linear(8, 3),
    ).eval()
    x = torch.randn(64, 6)
    graph = fold_batchnorm(trace(model))
    for build in (ttfs_dynamic_network, ttfs_clamped_network):
        net = build(graph, calibrate(graph, None), window=4)
        torch.testing.assert_close(_logits(net, x), model(x), atol=1e-5, rtol=0)


def test_clamp_activations_replaces_relu_modules_on_a_copy():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Sequential(torch.nn.ReLU()))
    clamped = clamp_activations(model, 2.0)
    assert isinstance(model[1], torch.nn.ReLU)  # the original is untouched
    assert [type(m).__name__ for m in clamped.modules()].count("Hardtanh") == 2
    x = torch.tensor([[-1.0, 0.5, 3.0]])
    assert clamped[2][0](x).tolist() == [[0.0, 0.5, 2.0]]
    assert [n.attrs.get("max") for n in trace(clamped).nodes if n.kind is Kind.RELU] == [2.0, 2.0]
    # a functional relu is not a module: left as it is, and ttfs-clamped says so
    functional = clamp_activations(SmallCNN())
    with pytest.raises(ConversionError, match="unclamped ReLU"):
        ttfs_clamped_network(fold_batchnorm(trace(functional)))
    with pytest.raises(ValueError, match="maximum"):
        clamp_activations(model, 0.0)


@pytest.mark.parametrize("builder", [ttfs_network, ttfs_dynamic_network])
def test_save_and_load_round_trip(tmp_path, builder):
    torch.manual_seed(4)
    x = torch.rand(8, 2, 4, 4)
    graph, calibration = _graph(Branches().eval(), x, method="max", per_channel=True)
    net = builder(graph, calibration, **({"window": 8} if builder is ttfs_dynamic_network else {}))
    path = net.save(tmp_path / "snn.pt")
    loaded = SpikingNetwork.load(path)
    assert loaded.info == net.info
    assert [type(m) for _, m in loaded.named_layers()] == [type(m) for _, m in net.named_layers()]
    steps = net.info.get("total_steps", 24)
    torch.testing.assert_close(simulate(loaded, x, [steps])[steps], simulate(net, x, [steps])[steps])
    torch.load(path, weights_only=True)  # tensors and plain values only
    # the CNN's first-spike pooling too
    graph, calibration = _graph(SmallCNN().eval(), torch.rand(4, 1, 12, 12), method="max")
    net = builder(graph, calibration, **({"window": 4} if builder is ttfs_dynamic_network else {}))
    loaded = SpikingNetwork.load(net.save(tmp_path / "cnn.pt"))
    y = torch.rand(4, 1, 12, 12)
    torch.testing.assert_close(simulate(loaded, y, [12])[12], simulate(net, y, [12])[12])


def test_errors_name_the_problem():
    x = torch.rand(8, 12)
    graph, calibration = _graph(_mlp(), x, method="max")
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="window"):
            ttfs_dynamic_network(graph, calibration, window=bad)
    with pytest.raises(ValueError, match="threshold_offset"):
        ttfs_dynamic_network(graph, calibration, window=4, threshold_offset=1.0)
    with pytest.raises(ValueError, match="threshold"):
        TTFSNeuron(-1.0)
    with pytest.raises(ValueError, match="phase"):
        DynamicTTFSNeuron(1.0, window=4, phase=-1)

    class PoolTwice(torch.nn.Module):  # a max pooling of a current, read by a relu and an add
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 2, 3)
            self.pool = torch.nn.MaxPool2d(2)

        def forward(self, x):
            p = self.pool(self.conv(torch.relu(x)))
            return torch.relu(p) + p

    model = PoolTwice()
    graph, calibration = _graph(model, torch.rand(4, 1, 6, 6), method="max")
    for builder in (ttfs_network, ttfs_dynamic_network):
        with pytest.raises(ConversionError, match="'pool'.*max pooling of a current"):
            builder(graph, calibration)
