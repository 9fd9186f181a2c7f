"""spikeflow.train.activity.LayerActivity: hooks on the spiking layers, counts
against a manual computation, kept outputs with their graph, hook removal."""

from __future__ import annotations

import pytest
import torch

from spikeflow import ScanResult
from spikeflow import nn as snn
from spikeflow.train.activity import LayerActivity, spiking_layers


class Relay(snn.Neuron):
    """A 'neuron' layer whose spikes are its input: lets a test choose the spikes."""

    def forward(self, x, state=None):
        return x, state

    def record(self, x, state=None):
        return ScanResult(x, state, None)


def _hand_made(T: int, B: int, N: int, p: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, N, generator=g) < p).float()


def test_counts_of_hand_made_spikes_equal_a_manual_count():
    # Relay -> Linear -> LIF -> Linear -> LI: the relay's spikes are the input.
    net = snn.Sequential(Relay(), snn.Linear(5, 4), snn.LIF(beta=0.5, threshold=0.3), snn.Linear(4, 2), snn.LI())
    batches = [_hand_made(6, 3, 5, 0.3, seed) for seed in range(3)]
    with LayerActivity(net) as activity:
        assert activity.names == ("0", "2")  # the LIF, not the LI readout
        lif_out = []
        for xb in batches:
            recording = net.record(xb)  # record bypasses hooks: the reference outputs
            lif_out.append(recording.outputs[2])
            out, _ = net(xb)
            torch.testing.assert_close(out, recording.output)
        relay = torch.cat(batches, dim=1)
        lif = torch.cat(lif_out, dim=1)
        assert lif.sum() > 0 and lif.sum() < lif.numel()  # the test means something

        counts = activity.counts()
        assert counts["0"].dtype == torch.int64 and counts["0"].device.type == "cpu"
        assert torch.equal(counts["0"], relay.sum(dim=(0, 1)).long())
        assert torch.equal(counts["2"], lif.sum(dim=(0, 1)).long())
        assert activity.spikes() == {"0": int(relay.sum()), "2": int(lif.sum())}
        assert activity.entries() == {"0": relay.numel(), "2": lif.numel()}
        rates = activity.rates()
        assert rates["0"] == int(relay.sum()) / relay.numel()
        assert rates["2"] == int(lif.sum()) / lif.numel()
        overall = int(relay.sum() + lif.sum()) / (relay.numel() + lif.numel())
        assert activity.overall_rate == overall
        assert activity.rate == activity.overall_rate

        activity.reset()
        assert activity.counts() == {} and activity.rates() == {} and activity.overall_rate == 0.0


def test_multi_dimensional_features_and_graded_outputs():
    # Per-neuron counts keep the feature shape; any nonzero output is a spike.
    spikes = torch.zeros(4, 2, 2, 3)
    spikes[0, 0, 1, 2] = 0.5
    spikes[3, 1, 1, 2] = 2.0
    spikes[1, 1, 0, 0] = -1.0
    net = snn.Sequential(Relay())
    with LayerActivity(net) as activity:
        net(spikes)
        expected = torch.tensor([[1, 0, 0], [0, 0, 2]])
        assert torch.equal(activity.counts()["0"], expected)
        assert activity.rates()["0"] == 3 / spikes.numel()


def test_module_paths_nested_and_plain_torch_containers():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.features = snn.Sequential(snn.Linear(3, 3), snn.Sequential(snn.LIF(), snn.Linear(3, 3), snn.IF()))
            self.head = snn.LIF()
            self.readout = snn.LI()

    names = list(spiking_layers(Net()))
    assert names == ["features.1.0", "features.1.2", "head"]
    assert list(spiking_layers(snn.LIF())) == ["model"]
    assert list(spiking_layers(torch.nn.Linear(2, 2))) == []


def test_model_without_spiking_layers_counts_nothing():
    net = snn.Sequential(snn.Linear(3, 2), snn.LI())
    with LayerActivity(net) as activity:
        net(torch.ones(2, 1, 3))
        assert activity.names == () and activity.rates() == {} and activity.overall_rate == 0.0


def test_close_removes_the_hooks():
    net = snn.Sequential(Relay(), snn.LIF())
    hooks_before = [dict(m._forward_hooks) for m in net.modules()]
    pre_before = dict(net._forward_pre_hooks)
    activity = LayerActivity(net, keep_outputs=True)
    assert len(net[0]._forward_hooks) == 1 and len(net[1]._forward_hooks) == 1 and len(net._forward_pre_hooks) == 1
    x = torch.ones(2, 1, 3)
    net(x)
    counted = activity.counts()
    activity.close()
    assert [dict(m._forward_hooks) for m in net.modules()] == hooks_before
    assert dict(net._forward_pre_hooks) == pre_before
    net(x)  # not counted any more
    assert all(torch.equal(activity.counts()[k], counted[k]) for k in counted)
    activity.close()  # harmless twice
    assert "closed" in repr(activity)


def test_context_manager_removes_hooks_on_error():
    net = snn.Sequential(Relay())
    with pytest.raises(KeyError):
        with LayerActivity(net):
            raise KeyError("boom")
    assert len(net[0]._forward_hooks) == 0


def test_kept_outputs_carry_the_graph_and_give_the_regulariser_gradient():
    torch.manual_seed(1)
    net = snn.Sequential(snn.Linear(4, 6), snn.LIF(beta=0.8, threshold=0.5), snn.Linear(6, 2), snn.LI())
    x = torch.rand(5, 3, 4) * 2
    activity = LayerActivity(net, keep_outputs=True)
    out, _ = net(x)
    kept = activity.outputs()
    assert list(kept) == ["1"] and kept["1"].requires_grad
    recording = net.record(x)
    torch.testing.assert_close(kept["1"], recording.outputs[1])
    # The gradient of a penalty on the kept spikes equals that on the recorded ones.
    weight = net[0].module.weight
    (g_kept,) = torch.autograd.grad(kept["1"].sum(), weight)
    (g_ref,) = torch.autograd.grad(recording.outputs[1].sum(), weight)
    assert g_ref.abs().sum() > 0
    torch.testing.assert_close(g_kept, g_ref)

    net(x[:2])  # a new forward replaces the kept outputs
    assert activity.outputs()["1"].shape[0] == 2
    activity.clear_outputs()
    assert activity.outputs() == {}
    net(x)
    activity.reset()
    assert activity.outputs() == {}
    activity.close()


def test_outputs_without_keep_outputs_is_an_error():
    with LayerActivity(snn.Sequential(snn.LIF())) as activity:
        with pytest.raises(RuntimeError, match="keep_outputs=True"):
            activity.outputs()


def test_update_adds_counts_and_checks_shapes():
    net = snn.Sequential(Relay())
    spikes = _hand_made(3, 2, 4, 0.5, 7)
    with LayerActivity(net) as activity:
        net(spikes)
        extra = torch.tensor([1, 2, 3, 4])
        activity.update({"0": extra}, {"0": 100})
        assert torch.equal(activity.counts()["0"], spikes.sum(dim=(0, 1)).long() + extra)
        assert activity.entries()["0"] == spikes.numel() + 100
        with pytest.raises(ValueError, match="changed its number of neurons"):
            activity.update({"0": torch.zeros(5)}, {"0": 1})
        with pytest.raises(ValueError, match="same layer names|has layers"):
            activity.update({"0": extra}, {})
        with pytest.raises(ValueError, match="changed its number of neurons"):
            net(torch.ones(1, 1, 6))


def test_ddp_like_wrapper_is_looked_through():
    net = snn.Sequential(snn.Linear(2, 2), snn.LIF())
    wrapped = torch.nn.DataParallel(net)  # CPU: a plain wrapper with .module
    assert list(spiking_layers(wrapped)) == ["1"]


def test_not_a_module_is_a_type_error():
    with pytest.raises(TypeError, match="torch.nn.Module"):
        LayerActivity("model")
