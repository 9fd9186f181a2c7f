"""Seed 001 rebuilt from spikeflow's building blocks: the graded-LIF ``SpikingNet``
on MNIST.

784-100-10 fully connected, both layers graded LIF (beta 0.9, threshold 2, reset
penalty 2.5, one-step output delay), Xavier-uniform weights. Every step feeds the
image (normalised to x - 0.5) times fresh uniform noise; the logits are the output
layer's membrane, delayed one step, averaged over T = 128 steps (the seed's
``average_output=False`` means average). SGD (lr 0.1, momentum
0.5), batches of 1000, 8 epochs.

The same run from the command line: ``spikeflow train --preset seed001``.
"""

import torch
from torch.utils.data import DataLoader, TensorDataset

from _common import accuracy, mnist, parse_args
from spikeflow import encode
from spikeflow import nn as snn
from spikeflow.loss import membrane_cross_entropy

args = parse_args(__doc__, epochs=8, mnist=True)
x_train, y_train, x_test, y_test = mnist(args)
x_train, x_test = x_train - 0.5, x_test - 0.5  # the seed's Normalize((0.5,), (1.0,))
T = 128

net = snn.Sequential(
    snn.Flatten(),
    snn.Linear(784, 100),
    snn.GradedLIF(beta=0.9, threshold=2.0, penalty=2.5),
    snn.Linear(100, 10),
    snn.GradedLIF(beta=0.9, threshold=2.0, penalty=2.5),
)
for layer in (net[1], net[3]):  # snn.Linear wraps a torch.nn.Linear as .module
    torch.nn.init.xavier_uniform_(layer.module.weight)


def delayed_membrane(images: torch.Tensor) -> torch.Tensor:
    """``[B, 1, 28, 28]`` -> the output layer's membrane ``v[t - 1]``, ``[T, B, 10]``
    (``v[-1] = 0``)."""
    x = encode.multiplicative(images, T)  # [T, B, 1, 28, 28]: u[t] * image, u ~ U[0, 1)
    v = net.record(x).trajectories[-1].v  # the last layer's membrane after every step
    return torch.cat([torch.zeros_like(v[:1]), v[:-1]])


optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.5)
train_set = DataLoader(TensorDataset(x_train, y_train), batch_size=1000, shuffle=True)
test_set = DataLoader(TensorDataset(x_test, y_test), batch_size=1000)

for epoch in range(1, args.epochs + 1):
    total = 0.0
    for images, labels in train_set:
        loss = membrane_cross_entropy(delayed_membrane(images), labels, reduce="mean")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item() * len(labels)
    acc = accuracy(lambda images: delayed_membrane(images).mean(0), test_set)
    print(f"epoch {epoch}: train loss {total / len(x_train):.4f}, test accuracy {acc:.2%}")
