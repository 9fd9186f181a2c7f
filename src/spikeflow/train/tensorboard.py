"""TensorBoard logs of a training run (the optional ``tensorboard`` extra).

:class:`TensorBoardLogger` writes, with ``torch.utils.tensorboard.SummaryWriter``,
a run's metrics as scalars, per-layer firing rates, per-neuron spike-count and
spike-time histograms from a :class:`~spikeflow.train.activity.LayerActivity`,
weight histograms, and the run's configuration as text and as TensorBoard
hyperparameters::

    with TensorBoardLogger("runs/mlp/tensorboard") as board:
        board.log_config(config.to_dict())
        board.log_metrics(epoch, {"loss": 0.31, "accuracy": 0.92}, prefix="train")
        board.log_activity(epoch, activity)
        board.log_weights(epoch, model)

View with ``tensorboard --logdir runs``.
"""

from __future__ import annotations

import math
import numbers
import os
from typing import Any, Mapping, Optional, Sequence

import torch

from .activity import LayerActivity, _named_modules, _unwrap

__all__ = ["TensorBoardLogger"]

_INSTALL = "pip install spikeflow[tensorboard]"


def _summary_writer():
    """``torch.utils.tensorboard.SummaryWriter``, or an ImportError saying how to get it."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:  # torch.utils.tensorboard imports the tensorboard package
        raise ImportError(
            f"TensorBoard logging needs the 'tensorboard' package, which is not installed "
            f"({error}); install it with: {_INSTALL}"
        ) from error
    return SummaryWriter


def _number(value: Any) -> Optional[float]:
    """``value`` as a float if it is a real number (a Python/NumPy number or a
    one-element tensor, bools excluded), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.is_complex() or value.dtype == torch.bool:
            return None
        return float(value.detach().reshape(()).item())
    if isinstance(value, numbers.Real) and not isinstance(value, (bool,)):
        try:
            return float(value)
        except (TypeError, ValueError):  # pragma: no cover - exotic Real subclasses
            return None
    return None


def _hparam(value: Any) -> Any:
    """A config value as a TensorBoard hyperparameter: finite numbers stay numbers,
    everything else (bools, None, paths, lists, ...) becomes its text."""
    number = _number(value)
    if number is not None and math.isfinite(number):
        return number
    return str(value)


def _markdown_cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


class TensorBoardLogger:
    """TensorBoard event files for one run, written into ``log_dir``.

    Args:
        log_dir: the folder of the event files (created if missing).
        flush_secs: how often the writer flushes pending events to disk.

    Raises:
        ImportError: the ``tensorboard`` package is not installed
            (``pip install spikeflow[tensorboard]``).

    Usable as a context manager, which closes the writer on exit.
    """

    def __init__(self, log_dir: str | os.PathLike, *, flush_secs: int = 30, purge_step: Optional[int] = None) -> None:
        """``purge_step``: for a resumed run, the first step it logs again; TensorBoard
        hides the events an interrupted process wrote from that step on, so a redone
        epoch is not shown twice."""
        SummaryWriter = _summary_writer()
        self.log_dir = os.fspath(log_dir)
        self._writer = SummaryWriter(log_dir=self.log_dir, flush_secs=flush_secs, purge_step=purge_step)
        self._closed = False

    @property
    def writer(self):
        """The underlying ``SummaryWriter``, for anything not covered here."""
        return self._writer

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"TensorBoardLogger for {self.log_dir!r} is closed")

    def log_metrics(self, step: int, metrics: Mapping[str, Any], prefix: str = "") -> list[str]:
        """Write each number of ``metrics`` as a scalar ``<prefix>/<name>`` (``<name>``
        without a prefix) at ``step``.

        Numbers are Python/NumPy ints and floats and one-element tensors (NaN and
        inf included); anything else (bools, strings, lists, None) is skipped.

        Returns:
            The tags written.
        """
        self._check_open()
        if not isinstance(metrics, Mapping):
            raise TypeError(f"log_metrics takes a dict of metrics, got {type(metrics).__name__}")
        step = int(step)
        prefix = prefix.strip("/")
        written = []
        for name, value in metrics.items():
            number = _number(value)
            if number is None:
                continue
            tag = f"{prefix}/{name}" if prefix else str(name)
            self._writer.add_scalar(tag, number, step)
            written.append(tag)
        return written

    def log_activity(self, step: int, activity: LayerActivity) -> None:
        """Write, for every layer that ran since ``activity``'s last reset, its firing
        rate as the scalar ``firing_rate/<layer>``, the rate of all layers together as
        ``firing_rate/all``, a histogram ``spike_counts/<layer>`` of its
        per-neuron spike counts (one value per neuron, summed over steps and
        samples) and a histogram ``spike_times/<layer>`` of the step ``t`` of every
        spike (one bucket per step, :meth:`log_integer_histogram`)."""
        self._check_open()
        if not isinstance(activity, LayerActivity):
            raise TypeError(f"log_activity takes a LayerActivity, got {type(activity).__name__}")
        step = int(step)
        rates = activity.rates()
        for name, rate in rates.items():
            self._writer.add_scalar(f"firing_rate/{name}", rate, step)
        if rates:
            self._writer.add_scalar("firing_rate/all", activity.overall_rate, step)
        for name, counts in activity.counts().items():
            if counts.numel():
                self._writer.add_histogram(f"spike_counts/{name}", counts.flatten().double(), step)
        for name, per_step in activity.step_counts().items():
            self.log_integer_histogram(f"spike_times/{name}", per_step.tolist(), step)

    def log_integer_histogram(self, tag: str, histogram: Sequence[int], step: int) -> bool:
        """Write ``histogram[k]`` = how often the value ``k`` occurred as a histogram
        with one bucket per integer (exact count, sum and sum of squares). Nothing
        is written for an all-zero histogram.

        Returns:
            Whether the histogram was written.
        """
        self._check_open()
        histogram = [int(n) for n in histogram]
        num = sum(histogram)
        if num == 0:
            return False
        values = [k for k, n in enumerate(histogram) if n]
        self._writer.add_histogram_raw(
            tag,
            min=float(values[0]),
            max=float(values[-1]),
            num=num,
            sum=float(sum(k * n for k, n in enumerate(histogram))),
            sum_squares=float(sum(k * k * n for k, n in enumerate(histogram))),
            bucket_limits=[k + 0.5 for k in range(len(histogram))],
            bucket_counts=histogram,
            global_step=int(step),
        )
        return True

    def log_weights(self, step: int, model: torch.nn.Module, prefix: str = "weights") -> list[str]:
        """Write a histogram ``<prefix>/<layer>.<name>`` of every parameter of
        ``model`` (weights, biases and any learned neuron parameters). Layers are
        named by module path as in :func:`~spikeflow.train.activity.spiking_layers`
        (DDP/``torch.compile`` wrappers looked through), the module inside a
        per-step wrapper (:func:`~spikeflow.nn.Linear`, ``Conv2d``, ...) by the wrapper's
        path: ``weights/0.weight`` for the ``Linear`` of ``Sequential(Linear, LIF)``.

        Returns:
            The tags written.
        """
        from ..nn._layers import TimeDistributed

        self._check_open()
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"log_weights takes a torch.nn.Module, got {type(model).__name__}")
        step = int(step)
        prefix = prefix.strip("/")
        written = []
        wrapped: dict[int, str] = {}  # id of a TimeDistributed's inner module -> the wrapper's path
        for path, module in _named_modules(_unwrap(model)):
            path = wrapped.get(id(module), path)
            if isinstance(module, TimeDistributed):
                wrapped[id(module.module)] = path
            for name, parameter in module.named_parameters(recurse=False):
                if parameter.numel():
                    tag = f"{prefix}/{path}.{name}" if path else f"{prefix}/{name}"
                    self._writer.add_histogram(tag, parameter.detach().float().cpu(), step)
                    written.append(tag)
        return written

    def log_config(self, config: Mapping[str, Any]) -> None:
        """Write ``config`` as a Markdown table (text tag ``config``) and as the
        run's TensorBoard hyperparameters (the HPARAMS tab; finite numbers as
        numbers, other values as text)."""
        self._check_open()
        if not isinstance(config, Mapping):
            raise TypeError(f"log_config takes a dict, got {type(config).__name__}")
        from torch.utils.tensorboard.summary import hparams

        items = sorted((str(key), value) for key, value in config.items())
        rows = "\n".join(f"| {_markdown_cell(key)} | {_markdown_cell(value)} |" for key, value in items)
        self._writer.add_text("config", "| setting | value |\n|---|---|\n" + rows, 0)
        experiment, start, end = hparams({key: _hparam(value) for key, value in items}, {})
        file_writer = self._writer.file_writer  # the run's own event file, not a sub-run
        for summary in (experiment, start, end):
            file_writer.add_summary(summary)

    def flush(self) -> None:
        """Write pending events to disk."""
        self._check_open()
        self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file; calling it again is harmless."""
        if not self._closed:
            self._writer.flush()
            self._writer.close()
            self._closed = True

    def __enter__(self) -> "TensorBoardLogger":
        return self

    def __exit__(self, *exc: Optional[object]) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TensorBoardLogger({self.log_dir!r}{', closed' if self._closed else ''})"
