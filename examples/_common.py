"""What the three example scripts share: their command line, the MNIST split and an
accuracy loop. Nothing spiking happens here; read the scripts first."""

from __future__ import annotations

import argparse
import sys

import torch

from spikeflow.data import load_mnist_splits


def parse_args(doc: str, *, epochs: int, mnist: bool = False) -> argparse.Namespace:
    """``--epochs``, ``--limit``, ``--seed`` (and ``--data-dir`` for MNIST); seeds torch."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=epochs, help=f"training epochs (default {epochs})")
    if mnist:
        parser.add_argument(
            "--data-dir", default=None, help="MNIST folder (default: $SPIKEFLOW_DATA)"
        )
    parser.add_argument("--limit", type=int, default=None, help="use only the first N training and test samples")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    return args


def first(args: argparse.Namespace, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Each tensor cut to its first ``args.limit`` entries (all of it without --limit)."""
    return tuple(t[: args.limit] for t in tensors)


def mnist(args: argparse.Namespace) -> tuple[torch.Tensor, ...]:
    """``(x_train, y_train, x_test, y_test)``: images ``[N, 1, 28, 28]`` in [0, 1]; the
    t10k files give the fixed split train = 0..7999, test = 8000..9999."""
    try:
        x_train, y_train, x_test, y_test = load_mnist_splits(args.data_dir)
    except FileNotFoundError as error:
        sys.exit(f"error: {error}")
    return first(args, x_train, y_train) + first(args, x_test, y_test)


@torch.no_grad()
def accuracy(logits, batches) -> float:
    """The share of ``(x, y)`` in ``batches`` where ``logits(x) [B, C]`` peaks at ``y``."""
    correct = total = 0
    for x, y in batches:
        correct += int((logits(x).argmax(dim=1) == y).sum())
        total += len(y)
    return correct / total
