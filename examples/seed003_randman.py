"""Seed 003 rebuilt from spikeflow's building blocks: a recurrent current-based LIF
network on the Randman spike-timing task.

Randman: 2 classes, 16 input units, T = 100 steps, 2-D manifolds, one spike per unit,
alpha 2, 1000 samples per class (data seed 42), the first 80 % for training. Network
16-32-2: two current-based LIF layers with recurrent weights (membrane decay 0.95,
synaptic 0.9, recurrent 0.85, normalised currents, feed-forward current x 20, zero
reset with the reset detached, SuperSpike surrogate), no biases, Xavier-uniform
weights. Loss: the cross-entropy of the output spike counts of each sample divided by
the number of classes (the seed's per-sample ``one_hot_crossentropy`` under vmap),
summed over each batch of 48; SGD (lr 2e-2, momentum 0.9), 20 epochs.

The same run from the command line: ``spikeflow train --preset seed003``.
"""

import numpy as np
import torch

import spikeflow
from _common import accuracy, first, parse_args
from spikeflow import nn as snn
from spikeflow.data import make_spike_raster_dataset, time_major_batches
from spikeflow.loss import spike_count_cross_entropy

args = parse_args(__doc__, epochs=20)
torch.set_num_threads(1)  # layers this small run fastest on one thread (the preset does the same)
x, y = make_spike_raster_dataset(  # [2000, T, 16] sample-major, labels [2000]
    nb_classes=2, nb_units=16, nb_steps=100, dim_manifold=2, nb_spikes=1,
    nb_samples=1000, alpha=2.0, seed=42,
)
x_train, y_train = first(args, x[:1600], y[:1600])
x_test, y_test = first(args, x[1600:], y[1600:])


def lif(n: int) -> snn.CubaLIF:
    """Seed 003's ``lif_step`` for a layer of ``n`` neurons with recurrent weights."""
    return snn.CubaLIF(
        alpha=0.9, beta=0.95, alpha_rec=0.85, gain=20.0, normalize=True, order="membrane_first",
        reset="zero", detach_reset=True, surrogate=spikeflow.surrogate.superspike(10.0), recurrent=n,
    )


net = snn.Sequential(snn.Linear(16, 32, bias=False), lif(32), snn.Linear(32, 2, bias=False), lif(2))
for layer in (net[0], net[2]):  # the seed's U(-lim, lim), lim = sqrt(6 / (fan_in + fan_out));
    torch.nn.init.xavier_uniform_(layer.module.weight)  # recurrent=n draws the lateral weights so

optimizer = torch.optim.SGD(net.parameters(), lr=2e-2, momentum=0.9)
order = np.random.default_rng(args.seed)  # shuffles the training set, epoch by epoch


def counts(spikes: torch.Tensor) -> torch.Tensor:
    """Input spikes ``[T, B, 16]`` -> output spike counts ``[B, 2]`` (the logits)."""
    return net(spikes)[0].sum(0)


for epoch in range(1, args.epochs + 1):
    total, seen = 0.0, 0
    # like the seed, drop the last incomplete batch (1600 = 33 x 48 + 16)
    for spikes, labels in time_major_batches(x_train, y_train, 48, shuffle=True, seed=order, drop_last=True):
        output, _ = net(spikes)  # [T, B, 2] output spikes
        loss = spike_count_cross_entropy(output, labels) * len(labels) / 2  # the seed's scaling
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total, seen = total + loss.item(), seen + len(labels)
    acc = accuracy(counts, time_major_batches(x_test, y_test, 400))
    print(f"epoch {epoch}: train loss {total / max(seen, 1):.4f}, test accuracy {acc:.2%}")
