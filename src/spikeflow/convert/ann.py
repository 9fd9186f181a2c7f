"""Training, measuring and saving the ANNs that the conversion presets convert.

:func:`fit_ann` is a plain supervised loop (Adam, cosine learning-rate decay,
optional random image shifts, seeded, a tqdm bar); :func:`ann_accuracy` measures a
model on ``[N, ...]`` data; :func:`save_ann` / :func:`load_ann` keep a trained ANN as
its preset name, settings and weights (tensors and plain values only, written
atomically, read with ``weights_only=True``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from ..train.checkpoint import CheckpointError, read_weights_only, save_weights_only
from ..train.trainer import translate

__all__ = ["ANN_FORMAT", "ann_accuracy", "fit_ann", "load_ann", "save_ann"]

#: The ``format`` entry of a saved ANN.
ANN_FORMAT = "spikeflow.ann/1"


@torch.no_grad()
def ann_accuracy(model: Any, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    """Fraction of ``x`` (``[N, ...]``) that ``model`` (a module or a ``LayerGraph``)
    classifies as ``y``."""
    if len(x) != len(y):
        raise ValueError(f"{len(x)} inputs but {len(y)} labels")
    if len(x) == 0:
        raise ValueError("no samples to measure the accuracy on")
    run = model.run if hasattr(model, "run") and not isinstance(model, torch.nn.Module) else model
    was_training = getattr(model, "training", False)
    if isinstance(model, torch.nn.Module):
        model.eval()
    correct = 0
    for start in range(0, len(x), batch_size):
        correct += int((run(x[start : start + batch_size]).argmax(1) == y[start : start + batch_size]).sum())
    if was_training:
        model.train()
    return correct / len(x)


def fit_ann(
    model: torch.nn.Module,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    *,
    epochs: int = 5,
    lr: float = 1e-3,
    batch_size: int = 64,
    weight_decay: float = 0.0,
    shift: int = 0,
    seed: int = 0,
    progress: bool = False,
    on_epoch: Optional[Callable[[int, float], None]] = None,
) -> list[float]:
    """Train ``model`` in place with cross-entropy; returns the mean loss per epoch.

    Args:
        epochs, lr, batch_size, weight_decay: Adam with a cosine decay of ``lr`` to 0
            over all steps.
        shift: random image translation of up to ``shift`` pixels (images only).
        seed: seeds the shuffling, the shifts and dropout.
        progress: show a tqdm bar.
        on_epoch: called as ``on_epoch(epoch, mean_loss)`` after each epoch.
    """
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    if len(x_train) != len(y_train):
        raise ValueError(f"{len(x_train)} training inputs but {len(y_train)} labels")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    per_epoch = -(-len(x_train) // batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * per_epoch)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs * per_epoch, desc="ANN", unit="batch", leave=False)
    losses = []
    model.train()
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(x_train), generator=generator)
        total = 0.0
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            x = x_train[index]
            if shift and x.dim() == 4:
                x = translate(x, shift, generator)
            loss = torch.nn.functional.cross_entropy(model(x), y_train[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(index)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{loss.item():.3f}")
        losses.append(total / len(x_train))
        if on_epoch is not None:
            on_epoch(epoch, losses[-1])
    if bar is not None:
        bar.close()
    model.eval()
    return losses


def save_ann(path: str | os.PathLike, model: torch.nn.Module, **settings: Any) -> Path:
    """Write ``model``'s weights and the plain ``settings`` that rebuild it (preset,
    input shape, classes, activation, ...) atomically to ``path``."""
    return save_weights_only(path, {"format": ANN_FORMAT, "settings": dict(settings), "state_dict": model.state_dict()})


def load_ann(path: str | os.PathLike, build: Callable[..., torch.nn.Module]) -> tuple[torch.nn.Module, dict]:
    """``(model, settings)`` from a file :func:`save_ann` wrote; ``build(**settings)``
    makes the architecture, then the weights are loaded (``weights_only=True``)."""
    payload = read_weights_only(path, what="ANN file")
    if not isinstance(payload, dict) or payload.get("format") != ANN_FORMAT:
        raise CheckpointError(f"{path} is not an ANN saved by spikeflow (expected format {ANN_FORMAT!r})")
    settings = payload["settings"]
    model = build(**settings)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: the weights do not fit the architecture {settings}: {exc}") from exc
    return model.eval(), settings
