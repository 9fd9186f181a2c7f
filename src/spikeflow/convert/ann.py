"""Training, measuring and saving the ANNs that the conversion presets convert.

:func:`fit_ann` is a plain supervised loop (Adam, cosine learning-rate decay,
optional random image shifts, seeded, a tqdm bar); :func:`ann_accuracy` measures a
model on ``[N, ...]`` data; :func:`save_ann` / :func:`load_ann` keep a trained ANN as
its preset name, settings and weights (tensors and plain values only, written
atomically, read with ``weights_only=True``).

With ``checkpoint=``, :func:`fit_ann` writes a training checkpoint after every
epoch (model, optimizer, learning-rate schedule, losses, every random state; the
one it replaces kept as ``<name>.prev.pt``), and with ``resume=True`` it continues
from it: the ANN it ends with is bit-identical to that of an uninterrupted run.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from ..train import _faults
from ..train.checkpoint import (
    CheckpointError,
    capture_rng_state,
    is_dict_of,
    load_latest,
    read_payload,
    read_weights_only,
    restore_rng_state,
    save_weights_only,
)
from ..train.trainer import translate

__all__ = ["ANN_CHECKPOINT_FORMAT", "ANN_FORMAT", "ann_accuracy", "fit_ann", "load_ann", "save_ann"]

#: The ``format`` entry of a saved ANN.
ANN_FORMAT = "spikeflow.ann/1"
#: The ``format`` entry of an ANN training checkpoint (:func:`fit_ann`'s ``checkpoint``).
ANN_CHECKPOINT_FORMAT = "spikeflow.ann-checkpoint/1"


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
    checkpoint: Optional[str | os.PathLike] = None,
    resume: bool = False,
) -> list[float]:
    """Train ``model`` in place with cross-entropy; returns the mean loss per epoch.

    Args:
        epochs, lr, batch_size, weight_decay: Adam with a cosine decay of ``lr`` to 0
            over all steps.
        shift: random image translation of up to ``shift`` pixels (images only).
        seed: seeds the shuffling, the shifts and dropout.
        progress: show a tqdm bar.
        on_epoch: called as ``on_epoch(epoch, mean_loss)`` after each epoch (after
            its checkpoint is written).
        checkpoint: a file written atomically after every epoch with the completed
            epochs, the model, optimizer and schedule states, the losses, every random
            state and the training settings; the file it replaces is kept as
            ``<name>.prev.pt``.
        resume: continue from ``checkpoint`` where it exists: its epochs are not
            trained again (a finished checkpoint only loads the weights), and the
            weights and losses are bit-identical to an uninterrupted run's. A corrupt
            latest checkpoint falls back to the previous one with a warning; where
            neither can be read, training starts from the first epoch with a warning.

    Raises:
        ValueError: a bad setting, or ``resume`` from a checkpoint of other training
            settings (naming them).
        CheckpointError: the checkpoint does not fit ``model``.
        OSError: a checkpoint could not be written (the disk full: the previous
            checkpoint stays intact).
    """
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    if len(x_train) != len(y_train):
        raise ValueError(f"{len(x_train)} training inputs but {len(y_train)} labels")
    settings = {
        "epochs": int(epochs), "lr": float(lr), "batch_size": int(batch_size), "weight_decay": float(weight_decay),
        "shift": int(shift), "seed": int(seed), "samples": len(x_train),
    }
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    per_epoch = -(-len(x_train) // batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * per_epoch)
    losses: list[float] = []
    start_epoch = 0
    saved = _read_ann_checkpoint(checkpoint, settings) if checkpoint is not None and resume else None
    if saved is not None:
        source = saved.pop("_source")
        try:
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            schedule.load_state_dict(saved["schedule"])
            restore_rng_state(saved["rng"], generator)
        except (RuntimeError, KeyError, ValueError, TypeError, AttributeError) as error:
            raise CheckpointError(f"ANN checkpoint {source} does not fit this model: {error}") from error
        start_epoch = int(saved["epoch"])
        losses = [float(v) for v in saved["losses"]]
    bar = None
    if progress and start_epoch < epochs:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs * per_epoch, initial=start_epoch * per_epoch, desc="ANN", unit="batch", leave=False)
    model.train()
    for epoch in range(start_epoch + 1, epochs + 1):
        order = torch.randperm(len(x_train), generator=generator)
        total = 0.0
        for start in range(0, len(order), batch_size):
            _faults.point("mid-epoch", epoch)
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
        if checkpoint is not None:
            save_weights_only(
                checkpoint,
                {
                    "format": ANN_CHECKPOINT_FORMAT, "epoch": epoch, "settings": settings, "losses": list(losses),
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(), "rng": capture_rng_state(generator),
                },
                keep_previous=True,
            )
        if on_epoch is not None:
            on_epoch(epoch, losses[-1])
    if bar is not None:
        bar.close()
    model.eval()
    return losses


_ANN_CHECKPOINT_KEYS = ("epoch", "settings", "losses", "model", "optimizer", "schedule", "rng")


def _load_ann_checkpoint(path: Path) -> dict[str, Any]:
    return read_payload(
        path, ANN_CHECKPOINT_FORMAT, _ANN_CHECKPOINT_KEYS, what="ANN checkpoint",
        kind="spikeflow ANN training checkpoint",
    )


def _read_ann_checkpoint(path: str | os.PathLike, settings: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The newest readable checkpoint at ``path`` (or its ``.prev``), None where there is
    none; refuses one written with other training settings."""
    try:
        payload, source = load_latest(path, load=_load_ann_checkpoint)
    except FileNotFoundError:
        return None
    except CheckpointError as error:
        warnings.warn(f"{error}; training the ANN from the first epoch", UserWarning, stacklevel=3)
        return None
    saved = payload["settings"] if isinstance(payload["settings"], dict) else {}
    changed = [f"{k}={v!r} (checkpoint: {saved.get(k)!r})" for k, v in settings.items() if saved.get(k) != v]
    if changed:
        raise ValueError(
            f"cannot resume ANN training from {source}: it was started with different settings: "
            f"{'; '.join(changed)}. Use the original settings, or start again without resume"
        )
    if not 1 <= int(payload["epoch"]) <= settings["epochs"]:
        raise CheckpointError(f"ANN checkpoint {source} holds epoch {payload['epoch']} of {settings['epochs']}")
    return {**payload, "_source": source}


def save_ann(path: str | os.PathLike, model: torch.nn.Module, **settings: Any) -> Path:
    """Write ``model``'s weights and the plain ``settings`` that rebuild it (preset,
    input shape, classes, activation, ...) atomically to ``path``."""
    return save_weights_only(path, {"format": ANN_FORMAT, "settings": dict(settings), "state_dict": model.state_dict()})


def load_ann(path: str | os.PathLike, build: Callable[..., torch.nn.Module]) -> tuple[torch.nn.Module, dict]:
    """``(model, settings)`` from a file :func:`save_ann` wrote; ``build(**settings)``
    makes the architecture, then the weights are loaded (``weights_only=True``: nothing
    but tensors and plain values is unpickled).

    ``build`` receives the file's settings: it should check them (sizes in a sane
    range) before it allocates anything, since the file may come from a stranger.

    Raises:
        CheckpointError: a missing, truncated or corrupt file, one that is not a saved
            ANN (format, settings or state_dict of the wrong kind), settings that
            ``build`` refuses (its ``TypeError`` or ``ValueError``), or weights that do
            not fit the architecture. The message names the file.
    """
    payload = read_weights_only(path, what="ANN file")
    if not isinstance(payload, dict) or payload.get("format") != ANN_FORMAT:
        raise CheckpointError(f"{path} is not an ANN saved by spikeflow (expected format {ANN_FORMAT!r})")
    settings = payload.get("settings")
    if not isinstance(settings, dict) or not all(isinstance(k, str) for k in settings):
        raise CheckpointError(
            f"{path}: the ANN settings must be a dict of named values, found {type(settings).__name__}"
        )
    state = payload.get("state_dict")
    if not is_dict_of(state, torch.Tensor):
        raise CheckpointError(f"{path}: the ANN state_dict must be a dict of tensors, found {type(state).__name__}")
    try:
        model = build(**settings)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: its settings {_brief(settings)} do not build an ANN: {exc}") from exc
    try:
        model.load_state_dict(state)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: the weights do not fit the architecture {_brief(settings)}: {exc}") from exc
    return model.eval(), settings


def _brief(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
