"""QCFS activation and its conversion (Bu et al. 2022)."""

from __future__ import annotations

import pytest
import torch

from spikeflow.convert import ConversionError, convert, simulate, trace
from spikeflow.convert.qcfs import QCFS, qcfs_model


def test_qcfs_values_by_hand():
    act = QCFS(levels=4, scale=2.0)  # steps of 0.5, rounded
    x = torch.tensor([-1.0, 0.2, 0.3, 0.74, 0.76, 1.9, 5.0])
    # x*L/lam + 1/2 = x*2 + 0.5 -> floor: -2, 0, 1, 1, 2, 4, 10 -> clip [0, 4] / 4 * 2
    assert act(x).tolist() == pytest.approx([0.0, 0.0, 0.5, 0.5, 1.0, 2.0, 2.0])


def test_qcfs_straight_through_gradients():
    act = QCFS(levels=4, scale=2.0)
    x = torch.tensor([-1.0, 0.3, 0.76, 5.0], requires_grad=True)
    act(x).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 0.0]  # 1 inside the clip, 0 outside
    # d/d lam with the floor's derivative taken as 1: q - x / lam inside the clip
    # (0.25 - 0.15 and 0.5 - 0.38), 1 above it, 0 below
    assert act.lam.grad.item() == pytest.approx(0.0 + 0.10 + 0.12 + 1.0)


def test_if_neuron_reproduces_qcfs_in_L_steps():
    """The theorem: threshold lam, subtractive reset, v0 = lam/2, T = L steps."""
    levels, lam = 8, 1.5
    fc = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        fc.weight.fill_(1.0)
    model = torch.nn.Sequential(fc, QCFS(levels, lam), torch.nn.Linear(1, 1))
    net = convert(model, coding="qcfs")
    x = torch.rand(500, 1, generator=torch.Generator().manual_seed(0)) * 2.5 - 0.5
    _, _, values = net.run(x.unsqueeze(0).expand(levels, *x.shape), keep=True)
    spikes = values[net.neurons()[0][0]].sum(0)
    expected = model[1](x) * levels / lam
    assert torch.equal(spikes, torch.round(expected))


def test_qcfs_network_matches_the_ann_at_L_steps():
    torch.manual_seed(0)
    model = qcfs_model(torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 16),
        torch.nn.ReLU(), torch.nn.Linear(16, 5),
    ), levels=4, scale=1.0).eval()
    x = torch.rand(64, 1, 8, 8)
    ann = model(x)
    out = simulate(convert(model, coding="qcfs"), x, [2, 4, 8])
    agree = {t: (o.argmax(1) == ann.argmax(1)).float().mean().item() for t, o in out.items()}
    error = {t: (o - ann).abs().mean().item() for t, o in out.items()}
    # the SNN equals the quantized ANN best at T = L (4): better than before or after
    assert agree[4] >= 0.95
    assert error[4] < error[2] / 4 and error[4] < error[8] / 4


def test_qcfs_model_and_errors():
    model = qcfs_model(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU()), levels=2)
    assert isinstance(model[1], QCFS) and model[1].levels == 2
    with pytest.raises(ValueError, match="no torch.nn.ReLU modules"):
        qcfs_model(torch.nn.Sequential(torch.nn.Linear(2, 2)))
    with pytest.raises(ValueError, match="levels must be a positive integer"):
        QCFS(levels=0)
    with pytest.raises(ConversionError, match="needs every activation to be a QCFS"):
        convert(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU()), torch.rand(4, 2), coding="qcfs")
