"""Seed 004 rebuilt from spikeflow's building blocks: a current-based LIF network on
latency-coded MNIST, trained towards target spike counts.

Each pixel spikes once, at ``t = round((1 - x) * 99)`` of T = 100 steps, if it
reaches the cut-off 0.25; the spike trains are encoded once and kept sparse
(``SparseSpikeDataset``), dense only one batch at a time. Network 784-128-10, no
biases, weights from N(0, 0.1^2), current-based LIF (tau_mem 20, tau_syn 5 steps,
zero reset with the reset detached, straight-through surrogate). Loss: the MSE
between output spike counts and targets of 100 (true class) and 10 (others). Adam
(lr 0.01, amsgrad), batches of 256, 20 epochs.

The same run from the command line: ``spikeflow train --preset seed004``.
"""

import torch

from _common import accuracy, mnist, parse_args
from spikeflow import encode
from spikeflow import nn as snn
from spikeflow.events import SparseSpikeDataset
from spikeflow.loss import spike_count_mse

args = parse_args(__doc__, epochs=20, mnist=True)
x_train, y_train, x_test, y_test = mnist(args)
T = 100


def latency(images: torch.Tensor) -> torch.Tensor:  # [B, 1, 28, 28] -> [T, B, 784] spikes
    return encode.latency(images.flatten(1), T, threshold=0.25)


train_set = SparseSpikeDataset.from_encoder(x_train, latency, y_train)
test_set = SparseSpikeDataset.from_encoder(x_test, latency, y_test)
print(f"training spikes: {train_set.nbytes / 2**20:.1f} MiB sparse, {train_set.dense_nbytes / 2**20:.0f} MiB dense")


def lif() -> snn.CubaLIF:
    return snn.CubaLIF(tau_mem=20.0, tau_syn=5.0, reset="zero", detach_reset=True, surrogate="straight_through")


net = snn.Sequential(snn.Linear(784, 128, bias=False), lif(), snn.Linear(128, 10, bias=False), lif())
for layer in (net[0], net[2]):  # snn.Linear wraps a torch.nn.Linear as .module
    torch.nn.init.normal_(layer.module.weight, mean=0.0, std=0.1)

optimizer = torch.optim.Adam(net.parameters(), lr=0.01, amsgrad=True)


def counts(spikes: torch.Tensor) -> torch.Tensor:
    """Input spikes ``[T, B, 784]`` -> output spike counts ``[B, 10]`` (the prediction)."""
    return net(spikes)[0].sum(0)


for epoch in range(1, args.epochs + 1):
    total = 0.0
    for spikes, labels in train_set.batches(256, shuffle=True):  # dense [T, B, 784] per batch
        output, _ = net(spikes)  # [T, B, 10] output spikes
        loss = spike_count_mse(output, labels, on=100.0, off=10.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item() * len(labels)
    acc = accuracy(counts, test_set.batches(1000))
    print(f"epoch {epoch}: train loss {total / len(train_set):.2f}, test accuracy {acc:.2%}")
