"""The training loop: :func:`train` (what ``spikeflow train`` runs) and :func:`evaluate`.

One epoch shuffles the training split with the run's own generator, encodes each
mini-batch into ``[T, B, *features]`` (:mod:`spikeflow.encode`), runs the model,
takes the loss of the readout (:mod:`spikeflow.loss`) and steps the optimizer; then
the test split is evaluated, and ``last.pt`` (and ``best.pt`` when the test
accuracy improved) are written atomically (:mod:`.checkpoint`); the ``last.pt`` a
write replaces is kept as ``last.prev.pt``, which a resume falls back on when
``last.pt`` is corrupt. Given the seed the run is deterministic, and a resumed run
continues exactly where the checkpoint stopped: N epochs in one go and N - k epochs
after a resume give the same weights, however the first process ended (tests kill it
with SIGKILL at many points, see ``_faults``).
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from .. import encode as _encode
from .. import loss as _loss
from ..numerics import NonFiniteError
from . import _faults
from .checkpoint import (
    CheckpointError,
    capture_rng_state,
    load_latest,
    previous_path,
    restore_rng_state,
    save_checkpoint,
)
from .config import RESUMABLE_CHANGES, TrainConfig
from .activity import LayerActivity
from .distributed import DistributedContext
from .tensorboard import TensorBoardLogger
from .presets import Preset, get_preset

__all__ = ["evaluate", "make_optimizer", "make_scheduler", "seed_everything", "train"]

LAST = "last.pt"
BEST = "best.pt"
_EVAL_BATCH = 512
_STOCHASTIC = frozenset({"rate", "poisson", "multiplicative"})


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def make_optimizer(config: TrainConfig, parameters) -> torch.optim.Optimizer:
    """The optimizer ``config.optimizer`` with ``config.lr``, ``config.weight_decay``
    and, for SGD, ``config.momentum`` (Adam/AdamW: ``config.amsgrad``)."""
    params = list(parameters)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay, amsgrad=config.amsgrad)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, amsgrad=config.amsgrad)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def make_scheduler(
    config: TrainConfig, optimizer: torch.optim.Optimizer, batches_per_epoch: int
) -> Optional[torch.optim.lr_scheduler.LRScheduler]:
    """The learning-rate schedule ``config.scheduler`` (None for ``"none"``); see
    :data:`~spikeflow.train.config.SCHEDULERS`. ``onecycle`` steps per batch, the
    others per epoch."""
    sched = torch.optim.lr_scheduler
    if config.scheduler == "cosine":
        return sched.CosineAnnealingLR(optimizer, T_max=config.epochs)
    if config.scheduler == "step":
        milestones = sorted({max(1, config.epochs // 2), max(1, (3 * config.epochs) // 4)})
        return sched.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
    if config.scheduler == "onecycle":
        return sched.OneCycleLR(optimizer, max_lr=config.lr, epochs=config.epochs, steps_per_epoch=batches_per_epoch)
    return None


def _device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; use 'cpu', 'cuda' or 'cuda:N'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was requested but CUDA is not available; use --device cpu")
    return device


def _encode_batch(config: TrainConfig, x: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
    """A batch of the data set (on the CPU) -> the network's input ``[T, B, *features]``.

    Static inputs ``x [B, *features]`` are encoded by ``config.encoding`` over
    ``config.time_steps`` steps (an ANN twin: one direct step); spike-train data
    ``x [B, T, *features]`` (encoding ``none``) is made time-major.
    """
    if config.encoding == "none":
        return x.transpose(0, 1)
    steps = config.time_steps
    if config.ann or config.encoding == "direct":
        return _encode.direct(x, steps)
    if config.encoding == "rate":
        return _encode.rate(x, steps, generator=generator)
    if config.encoding == "poisson":
        return _encode.poisson(x, steps, generator=generator)
    if config.encoding == "multiplicative":
        return _encode.multiplicative(x, steps, generator=generator)
    return _encode.latency(x, steps, threshold=config.latency_threshold)


def translate(x: torch.Tensor, shift: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Images ``x [B, C, H, W]`` each moved by its own random offset of up to ``shift``
    pixels along each axis (uniform in ``-shift .. shift``), filled with zeros."""
    if shift == 0:
        return x
    B, C, H, W = x.shape
    padded = torch.nn.functional.pad(x, (shift, shift, shift, shift))
    dy, dx = torch.randint(0, 2 * shift + 1, (2, B, 1), generator=generator)
    rows = (dy + torch.arange(H))[:, None, :, None]  # [B, 1, H, 1]
    cols = (dx + torch.arange(W))[:, None, None, :]  # [B, 1, 1, W]
    return padded[torch.arange(B)[:, None, None, None], torch.arange(C)[None, :, None, None], rows, cols]


def _logits(config: TrainConfig, output: torch.Tensor) -> torch.Tensor:
    if config.readout == "first-spike":
        return -_loss.first_spike_times(output)
    if config.readout in ("count", "count-mse"):
        return output.sum(dim=0)
    return _loss.reduce_time(output, config.readout)


def _loss_of(config: TrainConfig, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    output = output.float()  # mixed precision: the loss in float32
    if config.readout == "count":
        return _loss.spike_count_cross_entropy(output, target)
    if config.readout == "count-mse":
        return _loss.spike_count_mse(output, target, on=config.count_on, off=config.count_off)
    if config.readout == "first-spike":
        return _loss.first_spike_time_loss(output, target)
    return _loss.membrane_cross_entropy(output, target, reduce=config.readout)


def _autocast(config: TrainConfig, device: torch.device | str):
    """Mixed precision for ``config.amp``: bfloat16 on the CPU, float16 on CUDA."""
    device = torch.device(device)
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype, enabled=config.amp)


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    config: TrainConfig,
    *,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Loss, accuracy and mean firing rate of ``model`` on ``(x [N, ...], y [N])``.

    Stochastic encodings draw from a generator seeded with ``config.seed + 1``, so an
    evaluation is deterministic and leaves every random state untouched.
    """
    was_training = model.training
    model.eval()
    rates = LayerActivity(model)
    generator = torch.Generator().manual_seed(config.seed + 1) if config.encoding in _STOCHASTIC else None
    total_loss, correct = 0.0, 0
    try:
        for start in range(0, len(x), _EVAL_BATCH):
            xb = x[start : start + _EVAL_BATCH]
            yb = y[start : start + _EVAL_BATCH].to(device)
            with _autocast(config, device):
                output, _ = model(_encode_batch(config, xb, generator).to(device))  # [T, B, C]
            total_loss += _loss_of(config, output, yb).item() * len(yb)
            correct += int((_logits(config, output).argmax(dim=1) == yb).sum())
    finally:
        rates.close()
        model.train(was_training)
    n = max(len(x), 1)
    return {"loss": total_loss / n, "accuracy": correct / n, "firing_rate": rates.rate}


def _progress(total: int, desc: str, disable: bool):
    """A tqdm bar, or a stand-in without tqdm (the ``cli`` extra)."""
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is in the cli extra
        tqdm = None
    if tqdm is not None:
        return tqdm(total=total, desc=desc, disable=disable, leave=True, dynamic_ncols=True, unit="batch")
    return _NoBar(desc, disable)


class _NoBar:  # pragma: no cover - used only without tqdm
    def __init__(self, desc: str, disable: bool) -> None:
        self.desc, self.disable, self.postfix = desc, disable, {}

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, values=None, refresh: bool = True, **kwargs) -> None:
        self.postfix = dict(values or {}, **kwargs)

    def close(self) -> None:
        if not self.disable:
            items = ", ".join(f"{k}={v}" for k, v in self.postfix.items())
            print(f"{self.desc}: {items}", file=sys.stderr)


def _check_resumable(saved: dict[str, Any], config: TrainConfig, path: Path) -> None:
    saved_epochs = saved.get("epochs")
    try:
        # The fields a resume may change are taken from the new config (a backend that
        # existed when the checkpoint was written need not exist now).
        saved = {**saved, **{name: getattr(config, name) for name in RESUMABLE_CHANGES}}
        saved_config = TrainConfig.from_dict(saved)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"checkpoint {path} holds an invalid config: {error}") from None
    changed = [
        f"{name}={getattr(config, name)!r} (checkpoint: {getattr(saved_config, name)!r})"
        for name in TrainConfig.__dataclass_fields__
        if name not in RESUMABLE_CHANGES and getattr(config, name) != getattr(saved_config, name)
    ]
    if config.scheduler != "none" and config.epochs != saved_epochs:
        changed.append(
            f"epochs={config.epochs} (checkpoint: {saved_epochs}; the {config.scheduler} schedule is laid "
            f"over the epochs of the run, so a scheduled run cannot be extended)"
        )
    if changed:
        raise ValueError(
            f"cannot resume from {path}: the run was started with different settings: "
            f"{'; '.join(changed)}. Use the original settings, or start a new run in another --out"
        )


_INIT_BATCH = 256


def _initialize(config: TrainConfig, model: torch.nn.Module, x_train: torch.Tensor, device: torch.device) -> None:
    """``config.init`` on the first ``_INIT_BATCH`` training inputs (encoded as in training).

    ``lsuv`` sets every spiking layer's free membrane to mean 0 and standard deviation
    0.5 thresholds on that batch (:func:`spikeflow.init.lsuv_`); ``fluctuation`` draws
    the weights for the measured mean input per step as the input rate of every layer
    (:func:`spikeflow.init.fluctuation_init_`).
    """
    from .. import init as _init
    from ..nn import Sequential

    if not isinstance(model, Sequential):
        raise ValueError(
            f"init={config.init!r} needs a spikeflow.nn.Sequential network; preset {config.preset!r} builds a "
            f"{type(model).__name__}: use init='default'"
        )
    generator = torch.Generator().manual_seed(config.seed + 2)
    xb = _encode_batch(config, x_train[:_INIT_BATCH], generator).to(device)
    if config.init == "lsuv":
        _init.lsuv_(model, xb, generator=generator)
    else:
        rate = float(xb.detach().abs().mean().clamp(min=1e-3))
        _init.fluctuation_init_(model, rate=rate, generator=generator)


RATE_FLOOR = 0.01
"""Per-neuron floor of the firing-rate regulariser, in spikes per step."""
RATE_CEILING = 0.1
"""Population ceiling of the firing-rate regulariser, in spikes per step."""


def _rate_penalty(config: TrainConfig, activity: LayerActivity) -> torch.Tensor:
    """The sum over the hidden spiking layers of :func:`spikeflow.loss.rate_regularizer`
    with a floor of ``RATE_FLOOR * T`` spikes per neuron and a ceiling of
    ``RATE_CEILING * T`` spikes on the population mean (the output layer is left
    to the loss)."""
    outputs = list(activity.outputs().values())
    activity.clear_outputs()
    if config.readout in ("count", "count-mse", "first-spike"):
        outputs = outputs[:-1]  # the spiking output layer
    total = 0.0
    for spikes in outputs:
        steps = spikes.shape[0]
        total = total + _loss.rate_regularizer(spikes.float(), lower=RATE_FLOOR * steps, upper=RATE_CEILING * steps)
    return total


def _remove_temporaries(out_dir: Path) -> None:
    """Delete the half-written temporary files of checkpoint writes a crash cut short
    (``.last.pt.*.tmp`` and the like); only this run writes to ``out_dir``."""
    for name in (LAST, BEST, previous_path(LAST).name):
        for stale in out_dir.glob(f".{name}.*.tmp"):
            try:
                stale.unlink()
            except OSError:  # pragma: no cover - already gone, or not ours to delete
                pass


def _stop_if_diverged(loss: float, epoch: int, batch: int, ctx: DistributedContext, last_path: Path) -> None:
    """Stop before a NaN or Inf loss reaches the weights (and, through them, the next
    checkpoint). Under torchrun every rank learns of it, so none waits forever."""
    bad = not math.isfinite(loss)
    if ctx.world_size > 1:
        bad = ctx.all_reduce_sum([float(bad)])[0] > 0
    if bad:
        kept = f"the last checkpoint {last_path} is intact" if last_path.exists() else "no checkpoint was written yet"
        raise NonFiniteError(
            f"training diverged at epoch {epoch}, batch {batch}: the loss is {loss} (on this or another rank); "
            f"the weights were not updated and {kept}. Start again with a lower --lr, --grad-clip, "
            f"or without --amp"
        )


def _payload(
    config, model, optimizer, scheduler, epoch, best_accuracy, best_epoch, history, generator, partial=None,
    scaler=None,
) -> dict:
    """A checkpoint after ``epoch`` completed epochs; ``partial``: the state of the next
    epoch, part done (a ``checkpoint_every`` checkpoint), else None; ``scaler``: the
    mixed-precision loss scaler, kept when it is in use (CUDA float16)."""
    return {
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "best_accuracy": float(best_accuracy),
        "best_epoch": int(best_epoch),
        "config": config.to_dict(),
        "rng": capture_rng_state(generator),
        "history": list(history),
        "partial": partial,
    }


def train(config: TrainConfig | None = None, *, on_epoch: Optional[Callable[[dict], None]] = None) -> dict[str, Any]:
    """Train ``config.preset`` and return a summary.

    Args:
        config: the run's :class:`TrainConfig` (None: the defaults).
        on_epoch: called after every epoch with that epoch's metrics.

    Returns:
        A dict of plain values: ``preset``, ``seed``, ``epochs`` (completed),
        ``test_accuracy`` (after the last epoch), ``best_test_accuracy``,
        ``best_epoch``, ``train_accuracy`` and ``train_loss`` (last epoch),
        ``mean_firing_rate`` (spiking layers, on the test split after the last
        epoch), ``train_time_s`` (wall time of this call), ``resumed_from_epoch``,
        ``checkpoints`` (paths), ``config`` and ``history`` (per-epoch metrics).

    Raises:
        FileNotFoundError: ``resume`` is set but there is no ``last.pt`` in ``out``.
        CheckpointError: both ``last.pt`` and the previous ``last.prev.pt`` are corrupt
            or truncated (a corrupt ``last.pt`` alone: a ``UserWarning``, and the run
            resumes from ``last.prev.pt``).
        ValueError: an invalid setting, or a resume with different settings.
    """
    started = time.perf_counter()
    config = TrainConfig() if config is None else config
    if not isinstance(config, TrainConfig):
        raise TypeError(f"train() takes a TrainConfig, got {type(config).__name__}")
    preset = get_preset(config.preset)
    device = _device(config.device)
    threads = config.threads
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    ctx = DistributedContext.from_env(device).setup()  # a plain run unless launched by torchrun
    try:
        return _train(config, preset, ctx.device, started, on_epoch, ctx)
    finally:
        ctx.teardown()
        if threads:
            torch.set_num_threads(previous_threads)


def _train(
    config: TrainConfig, preset: Preset, device: torch.device, started: float,
    on_epoch: Optional[Callable[[dict], None]], ctx: DistributedContext,
) -> dict[str, Any]:
    out_dir = config.out_dir
    last_path, best_path = out_dir / LAST, out_dir / BEST

    checkpoint, source = None, last_path
    if config.resume:
        if not last_path.exists() and not previous_path(last_path).exists():
            raise FileNotFoundError(
                f"nothing to resume: {last_path} does not exist; run without --resume to start training"
            )
        # last.pt, or last.prev.pt with a warning when last.pt is corrupt
        try:
            checkpoint, source = load_latest(last_path)
        except CheckpointError as error:
            if not previous_path(last_path).exists():  # the message already says what to do
                raise
            raise CheckpointError(f"{error}; delete both, or start the run afresh without resume") from error
        _check_resumable(checkpoint["config"], config, source)
    if ctx.is_main:
        _remove_temporaries(out_dir)
        if checkpoint is None:  # a new run: an older run's last.prev.pt is no fallback for it
            previous_path(last_path).unlink(missing_ok=True)
    # The last.pt a write replaces is kept as last.prev.pt, except a corrupt last.pt that
    # the run fell back from (last.prev.pt stays the good one) and an older run's.
    keep_previous = checkpoint is not None and source == last_path

    seed_everything(config.seed)
    x_train, y_train, x_test, y_test = preset.load_data(config)
    model = preset.build(config).to(device)
    if config.hardware is not None:
        from ..hardware import HardwareSpec, to_crossbar

        to_crossbar(model, HardwareSpec.from_dict(config.hardware))
    generator = torch.Generator().manual_seed(config.seed)  # shuffling, encoding, augmentation (CPU)
    n_train = len(x_train)
    n_batches = math.ceil((n_train // ctx.world_size) / config.batch_size)
    if config.checkpoint_every and ctx.world_size > 1:
        raise ValueError(
            f"checkpoint_every={config.checkpoint_every} (mid-epoch checkpoints) is not supported under torchrun "
            f"({ctx.world_size} processes): use checkpoint_every=0"
        )
    optimizer = make_optimizer(config, model.parameters())
    scheduler = make_scheduler(config, optimizer, n_batches)
    per_batch_schedule = config.scheduler == "onecycle"
    scaler = torch.amp.GradScaler(device.type, enabled=config.amp and device.type == "cuda")

    if checkpoint is None and config.init != "default":
        _initialize(config, model, x_train, device)

    start_epoch, best_accuracy, best_epoch, history = 0, -1.0, 0, []
    if checkpoint is not None:
        try:
            model.load_state_dict(checkpoint["model"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            if scheduler is not None:
                scheduler.load_state_dict(checkpoint["scheduler"])
            if checkpoint.get("scaler") is not None and scaler.is_enabled():
                scaler.load_state_dict(checkpoint["scaler"])
            restore_rng_state(checkpoint["rng"], generator)
        except (RuntimeError, KeyError, ValueError, TypeError, AttributeError) as error:
            raise CheckpointError(f"checkpoint {source} does not fit this model: {error}") from error
        start_epoch = int(checkpoint["epoch"])
        best_accuracy = float(checkpoint["best_accuracy"])
        best_epoch = int(checkpoint.get("best_epoch", 0))
        history = list(checkpoint.get("history", []))
    partial = None if checkpoint is None else checkpoint.get("partial")  # resume inside the next epoch

    augment = config.augment if preset.images else 0
    rates = LayerActivity(model, keep_outputs=config.rate_reg > 0)
    network = ctx.wrap(model)  # DistributedDataParallel under torchrun, else the model itself
    board = None
    if config.tensorboard and ctx.is_main:  # a resumed run hides what the stopped one logged after its checkpoint
        board = TensorBoardLogger(out_dir / "tensorboard", purge_step=start_epoch + 1 if checkpoint is not None else None)
    if board is not None:
        board.log_config(config.to_dict())
    record = history[-1] if history else None  # the metrics of the last epoch
    train_metrics: dict[str, float] = {}
    try:
        for epoch in range(start_epoch + 1, config.epochs + 1):
            epoch_started = time.perf_counter()
            model.train()
            rates.reset()
            if partial is None:
                permutation = torch.randperm(n_train, generator=generator)
                done, total_loss, correct, seen = 0, 0.0, 0, 0
            else:  # a mid-epoch checkpoint: this epoch's order, and its first `done` batches' sums
                permutation, done = partial["order"], int(partial["batches"])
                total_loss, correct, seen = float(partial["total_loss"]), int(partial["correct"]), int(partial["seen"])
                rates.update(partial["counts"], partial["entries"], partial["step_counts"])
                partial = None
            order = ctx.shard(permutation)  # the same on every rank
            bar = _progress(n_batches, f"epoch {epoch}/{config.epochs}", config.quiet or not ctx.is_main)
            bar.update(done)
            try:
                for batch, start in enumerate(range(done * config.batch_size, len(order), config.batch_size), done + 1):
                    _faults.point("mid-epoch", epoch)  # crash tests only (SPIKEFLOW_FAULT)
                    index = order[start : start + config.batch_size]
                    xb = translate(x_train[index], augment, generator) if augment else x_train[index]
                    xb = _encode_batch(config, xb, generator).to(device)  # [T, B, ...]
                    yb = y_train[index].to(device)
                    with _autocast(config, device):
                        output, _ = network(xb)  # [T, B, C]
                    batch_loss = _loss_of(config, output, yb)
                    loss_value = batch_loss.item()
                    _stop_if_diverged(loss_value, epoch, batch, ctx, last_path)
                    objective = batch_loss + config.rate_reg * _rate_penalty(config, rates) if config.rate_reg else batch_loss
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(objective).backward()
                    if config.grad_clip > 0:
                        scaler.unscale_(optimizer)
                        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                    scaler.step(optimizer)
                    scaler.update()
                    if per_batch_schedule:
                        scheduler.step()
                    total_loss += loss_value * len(index)
                    correct += int((_logits(config, output.detach()).argmax(dim=1) == yb).sum())
                    seen += len(index)
                    bar.update(1)
                    bar.set_postfix(
                        loss=f"{total_loss / seen:.4f}", acc=f"{correct / seen:.3f}", rate=f"{rates.rate:.3f}",
                        refresh=False,
                    )
                    if (
                        config.checkpoint_every and batch % config.checkpoint_every == 0
                        and start + config.batch_size < len(order) and ctx.is_main
                    ):  # not after the last batch: the epoch's own checkpoint follows
                        partial_state = {
                            "order": permutation, "batches": batch, "total_loss": total_loss, "correct": correct,
                            "seen": seen, "counts": rates.counts(), "entries": rates.entries(),
                            "step_counts": rates.step_counts(),
                        }
                        payload = _payload(config, model, optimizer, scheduler, epoch - 1, best_accuracy,
                                           best_epoch, history, generator, partial_state, scaler)
                        save_checkpoint(last_path, payload, keep_previous=keep_previous)
                        keep_previous = True
                if scheduler is not None and not per_batch_schedule:
                    scheduler.step()
                total_loss, correct, seen = ctx.all_reduce_sum([total_loss, correct, seen])  # over all ranks
                spike_times = rates.step_counts()  # all_reduce_activity resets them under torchrun
                ctx.all_reduce_activity(rates)
                if config.tensorboard and ctx.enabled:
                    rates.update({}, {}, {name: ctx.all_reduce_sum(c) for name, c in spike_times.items()})
                train_metrics = {
                    "train_loss": total_loss / seen,
                    "train_accuracy": correct / seen,
                    "firing_rate": rates.rate,
                    "lr": optimizer.param_groups[0]["lr"],
                }
                if board is not None:
                    board.log_activity(epoch, rates)  # the training epoch's spikes
                result = evaluate(model, x_test, y_test, config, device=device)
                rates.clear_outputs()
                bar.set_postfix(
                    loss=f"{train_metrics['train_loss']:.4f}", acc=f"{train_metrics['train_accuracy']:.3f}",
                    rate=f"{train_metrics['firing_rate']:.3f}", test=f"{result['accuracy']:.3f}",
                )
            finally:
                bar.close()
            record = {
                "epoch": epoch,
                **train_metrics,
                "test_loss": result["loss"],
                "test_accuracy": result["accuracy"],
                "test_firing_rate": result["firing_rate"],
                "time_s": time.perf_counter() - epoch_started,
            }
            history.append(record)
            if board is not None:
                board.log_metrics(epoch, {k: v for k, v in train_metrics.items()}, "train")
                board.log_metrics(epoch, result, "test")
                board.log_metrics(epoch, {"epoch_time_s": record["time_s"]})
                board.log_metrics(epoch, {"ann" if config.ann else "snn": result["accuracy"]}, "accuracy")
                board.log_weights(epoch, model)
            improved = result["accuracy"] > best_accuracy
            if improved:
                best_accuracy, best_epoch = result["accuracy"], epoch
            payload = _payload(
                config, model, optimizer, scheduler, epoch, best_accuracy, best_epoch, history, generator,
                scaler=scaler,
            )
            if ctx.is_main:
                # best.pt first: a crash between the two resumes from the older last.pt,
                # whose best_accuracy/best_epoch predate this epoch, and redoes the epoch
                if improved:
                    save_checkpoint(best_path, payload)
                save_checkpoint(last_path, payload, keep_previous=keep_previous)
                keep_previous = True
            ctx.barrier()
            if on_epoch is not None:
                on_epoch(dict(record))
    finally:
        rates.close()
        if board is not None:
            board.close()

    if record is None:  # pragma: no cover - epochs >= 1 and a checkpoint holds >= 1 epoch
        raise AssertionError("no epoch was trained or recorded")
    epoch_times = [float(r["time_s"]) for r in history]
    hardware: dict[str, Any] = {}
    if config.hardware is not None:  # the same network without the device's non-idealities
        from ..hardware import ideal_crossbars

        with ideal_crossbars(model):
            hardware["ideal_test_accuracy"] = float(evaluate(model, x_test, y_test, config, device=device)["accuracy"])
    return {
        **hardware,
        "preset": config.preset,
        "ann": config.ann,
        "seed": config.seed,
        "epochs": int(record["epoch"]),
        "test_accuracy": float(record["test_accuracy"]),
        "best_test_accuracy": float(best_accuracy),
        "best_epoch": int(best_epoch),
        "train_accuracy": float(record["train_accuracy"]),
        "train_loss": float(record["train_loss"]),
        "test_loss": float(record["test_loss"]),
        "mean_firing_rate": float(record["test_firing_rate"]),
        "train_time_s": time.perf_counter() - started,
        "epoch_time_s": float(np.median(epoch_times)),
        "resumed_from_epoch": start_epoch if checkpoint is not None else None,
        "device": str(device),
        "world_size": ctx.world_size,
        "checkpoints": {"last": os.fspath(last_path), "best": os.fspath(best_path)},
        "config": config.to_dict(),
        "history": history,
    }
