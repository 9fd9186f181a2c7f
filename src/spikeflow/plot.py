"""Figures of spiking networks, saved to files (the optional ``plot`` extra).

Every function draws one figure with matplotlib's object API (no pyplot, so no
global figure state and no display backend is needed), saves it to ``path`` (the
format follows the suffix: ``.png``, ``.pdf``, ``.svg``, ...; missing folders are
created) and returns the path::

    from spikeflow.plot import spike_raster, accuracy_vs_timesteps, training_curves
    spike_raster(spikes, "raster.png")                  # spikes [T, N] or [T, B, ...]
    accuracy_vs_timesteps(report, "accuracy.png")       # a ConversionReport
    training_curves(summary["history"], "curves.png")   # spikeflow.train.train's summary

Time is always the first axis (``[T, ...]``); steps are numbered from 0.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

__all__ = [
    "accuracy_vs_nonideality",
    "accuracy_vs_timesteps",
    "firing_rates",
    "membrane_traces",
    "spike_count_histogram",
    "spike_raster",
    "spike_time_histogram",
    "training_curves",
]

_INSTALL = "pip install spikeflow[plot]"

DPI = 120
"""Resolution of saved raster images: a figure of ``(w, h)`` inches is ``(120 w, 120 h)`` pixels."""

PathLike = Union[str, os.PathLike]


def _figure(width: float = 6.0, height: float = 4.0):
    """A new matplotlib ``Figure`` (not registered with pyplot)."""
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(f"plotting needs matplotlib, which is not installed ({error}); install it with: {_INSTALL}") from error
    return Figure(figsize=(width, height), layout="constrained")


def _save(fig: Any, path: PathLike) -> Path:
    """Write ``fig`` to ``path`` (folders created) and return the path."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file path (str or os.PathLike), got {type(path).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def _array(values: Any, what: str) -> np.ndarray:
    """``values`` (a tensor, array or nested list) as a float numpy array."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{what} must be numeric (a tensor or an array), got {type(values).__name__}") from error
    return array


def _time_by_neuron(values: Any, what: str, sample: int) -> np.ndarray:
    """``[T]``, ``[T, N]`` or ``[T, B, ...]`` (sample ``sample``, features flattened)
    as a ``[T, N]`` array."""
    array = _array(values, what)
    if array.ndim == 0:
        raise ValueError(f"{what} must be [T], [T, N] or [T, B, ...], got a scalar")
    if array.shape[0] == 0:
        raise ValueError(f"{what} must hold at least one time step, got shape {array.shape}")
    _check_count("sample", sample, minimum=None)
    if array.ndim == 1:
        return array[:, None]
    if array.ndim == 2:
        return array
    if not -array.shape[1] <= sample < array.shape[1]:
        raise IndexError(f"sample {sample} is out of range for {what} with batch size {array.shape[1]}")
    return array[:, sample].reshape(array.shape[0], -1)


def _check_count(what: str, value: Any, minimum: Optional[int] = 1) -> None:
    """``value`` must be an int (``>= minimum`` unless that is None)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{what} must be an int, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {value!r}")


def _fraction(what: str, value: Any) -> float:
    """An accuracy: a finite number in [0, 1]."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not 0.0 <= number <= 1.0:
        raise ValueError(f"{what} must be a fraction in [0, 1], got {value!r}")
    return number


def _report_dict(data: Any) -> Any:
    """A ConversionReport as its ``to_dict()``; anything else unchanged."""
    return data.to_dict() if hasattr(data, "to_dict") else data


def accuracy_vs_timesteps(
    result: Any,
    path: PathLike,
    *,
    ann_accuracy: Optional[float] = None,
    title: Optional[str] = None,
) -> Path:
    """SNN accuracy (in %) against the number of steps ``T``, with the ANN's accuracy
    as a dashed horizontal line. The T axis is logarithmic (base 2) when
    ``max(T) / min(T) >= 10``.

    Args:
        result: a :class:`~spikeflow.convert.evaluate.ConversionReport`, its
            ``to_dict()``, or a mapping ``{T: accuracy}`` (accuracies as fractions).
        path: the file to write.
        ann_accuracy: the ANN's accuracy (fraction); taken from a report if not given.
        title: the figure title.
    """
    data = _report_dict(result)
    if not isinstance(data, Mapping):
        raise TypeError(f"result must be a ConversionReport or a mapping, got {type(result).__name__}")
    if "snn_accuracy" in data:
        curve = data["snn_accuracy"]
        if ann_accuracy is None:
            ann_accuracy = data.get("ann_accuracy")
    else:
        curve = data
    if not isinstance(curve, Mapping) or not curve:
        raise ValueError(f"no accuracies to plot: expected a non-empty mapping {{T: accuracy}}, got {curve!r:.80}")
    points = []
    for t, a in curve.items():
        try:
            steps_t = int(t)
        except (TypeError, ValueError):
            raise ValueError(f"time steps must be integers (the keys of {{T: accuracy}}), got {t!r}") from None
        points.append((steps_t, _fraction(f"the accuracy at T = {t}", a)))
    points.sort()
    if ann_accuracy is not None:
        ann_accuracy = _fraction("ann_accuracy", ann_accuracy)
    steps = [t for t, _ in points]
    if steps[0] < 1:
        raise ValueError(f"time steps must be >= 1, got {steps[0]}")
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot(steps, [100 * a for _, a in points], marker="o", label="SNN")
    if ann_accuracy is not None:
        ax.axhline(100 * float(ann_accuracy), color="black", linestyle="--", label="ANN")
    if steps[-1] / steps[0] >= 10:
        ax.set_xscale("log", base=2)
        ax.set_xticks(steps, [str(t) for t in steps])
        ax.minorticks_off()
    ax.set_xlabel("time steps T")
    ax.set_ylabel("accuracy (%)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    return _save(fig, path)


def accuracy_vs_nonideality(
    results: Mapping[str, Any],
    path: PathLike,
    *,
    title: Optional[str] = None,
) -> Path:
    """Accuracy (in %) against one crossbar setting, one line per network (for
    example ``ordinary`` and ``hardware_aware``), with error bars of one standard
    deviation over devices. A value ``None`` (an ideal converter, continuous levels)
    is drawn at the right end, labelled "ideal".

    Args:
        results: ``{network name: SweepResult or its to_dict()}``, all of one parameter.
        path: the file to write.
        title: the figure title.
    """
    if not isinstance(results, Mapping) or not results:
        raise ValueError("results must be a non-empty mapping {network: SweepResult}")
    sweeps = {name: (r.to_dict() if hasattr(r, "to_dict") else dict(r)) for name, r in results.items()}
    parameters = {s["parameter"] for s in sweeps.values()}
    if len(parameters) != 1:
        raise ValueError(f"the sweeps vary different settings: {sorted(parameters)}")
    values = next(iter(sweeps.values()))["values"]
    if any(s["values"] != values for s in sweeps.values()):
        raise ValueError("the sweeps have different values")
    labels = ["ideal" if v is None else f"{v:g}" for v in values]
    x = np.arange(len(values))
    fig = _figure()
    ax = fig.add_subplot()
    for name, s in sweeps.items():
        ax.errorbar(x, 100 * np.asarray(s["mean"]), yerr=100 * np.asarray(s["std"]), marker="o", capsize=3,
                    label=name.replace("_", "-"))
    ax.set_xticks(x, labels)
    ax.set_xlabel(parameters.pop().replace("_", " "))
    ax.set_ylabel("accuracy (%)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    return _save(fig, path)


def spike_raster(
    spikes: Any,
    path: PathLike,
    *,
    sample: int = 0,
    max_neurons: Optional[int] = None,
    title: Optional[str] = None,
) -> Path:
    """A raster plot: a mark at ``(t, n)`` for every non-zero ``spikes[t, n]``.

    Args:
        spikes: ``[T, N]``, ``[T]`` or ``[T, B, ...]`` (then sample ``sample`` with
            its features flattened).
        path: the file to write.
        sample: the batch entry shown for ``[T, B, ...]``.
        max_neurons: show only the first this many neurons.
        title: the figure title.
    """
    grid = _time_by_neuron(spikes, "spikes", sample)
    if max_neurons is not None:
        _check_count("max_neurons", max_neurons)
        grid = grid[:, :max_neurons]
    steps, neurons = np.nonzero(grid)
    fig = _figure()
    ax = fig.add_subplot()
    ax.scatter(steps, neurons, marker="|", s=40, color="black", linewidths=1)
    ax.set_xlim(-0.5, grid.shape[0] - 0.5)
    ax.set_ylim(-0.5, grid.shape[1] - 0.5)
    ax.set_xlabel("step")
    ax.set_ylabel("neuron")
    ax.set_title(title or f"{len(steps)} spikes")
    return _save(fig, path)


def membrane_traces(
    v: Any,
    path: PathLike,
    threshold: Optional[Union[float, Sequence[float], Any]] = None,
    *,
    sample: int = 0,
    max_traces: int = 8,
    title: Optional[str] = None,
) -> Path:
    """Membrane potential against step, one line per neuron.

    Args:
        v: ``[T]``, ``[T, N]`` or ``[T, B, ...]`` (then sample ``sample``, features
            flattened).
        path: the file to write.
        threshold: a dotted line at the firing threshold: one value, or one per
            neuron (``[N]``, drawn in each neuron's colour).
        sample: the batch entry shown for ``[T, B, ...]``.
        max_traces: plot at most this many neurons (the first ones).
        title: the figure title.
    """
    grid = _time_by_neuron(v, "v", sample)
    _check_count("max_traces", max_traces)
    shown = grid[:, :max_traces]
    fig = _figure()
    ax = fig.add_subplot()
    lines = ax.plot(np.arange(grid.shape[0]), shown)
    if threshold is not None:
        theta = _array(threshold, "threshold").reshape(-1)
        if theta.size == 1:
            ax.axhline(float(theta[0]), color="black", linestyle=":", label="threshold")
        elif theta.size == grid.shape[1]:
            for line, value in zip(lines, theta[: shown.shape[1]]):
                ax.axhline(float(value), color=line.get_color(), linestyle=":")
        else:
            raise ValueError(f"threshold must be one value or one per neuron ({grid.shape[1]}), got {theta.size}")
    ax.set_xlabel("step")
    ax.set_ylabel("membrane potential")
    if title:
        ax.set_title(title)
    return _save(fig, path)


def _layer_axes(fig: Any, count: int) -> list:
    columns = min(count, 3)
    rows = math.ceil(count / columns)
    fig.set_size_inches(4.0 * columns, 3.0 * rows)
    return [fig.add_subplot(rows, columns, i + 1) for i in range(count)]


def _histograms(
    layers: Mapping[str, tuple[np.ndarray, Optional[np.ndarray]]], path: PathLike, xlabel: str, title: Optional[str]
) -> Path:
    """One histogram per layer of ``(values, weights)``; unit bins for integers."""
    if not layers:
        raise ValueError("no layers to plot")
    fig = _figure()
    for ax, (name, (values, weights)) in zip(_layer_axes(fig, len(layers)), layers.items()):
        if values.size and np.all(values == np.round(values)):
            bins = np.arange(values.min(), values.max() + 2) - 0.5
        else:
            bins = 30
        ax.hist(values, bins=bins, weights=weights)
        ax.set_title(str(name))
        ax.set_xlabel(xlabel)
        ax.set_ylabel("count")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def _per_layer(data: Any, keys: Sequence[str], what: str) -> dict[str, tuple[np.ndarray, Optional[np.ndarray]]]:
    """``{layer: (values, weights)}`` from a report (the first of ``keys`` present in
    each neuron layer: a histogram over 0, 1, 2, ...) or from ``{layer: values}``."""
    data = _report_dict(data)
    if not isinstance(data, Mapping):
        raise TypeError(f"{what} must be a mapping {{layer: values}} or a ConversionReport, got {type(data).__name__}")
    if "neurons" in data and "timesteps" in data:  # a report
        layers = {}
        for layer in data["neurons"]:
            histogram = next((layer[k] for k in keys if layer.get(k) is not None), None)
            if histogram is not None:
                layers[layer["name"]] = (np.arange(len(histogram), dtype=np.float64), _array(histogram, what))
        return layers
    return {name: (_array(values, f"{what}[{name!r}]").reshape(-1), None) for name, values in data.items()}


def spike_count_histogram(counts: Any, path: PathLike, *, title: Optional[str] = None) -> Path:
    """Histograms of spike counts per neuron, one panel per layer (unit bins).

    Args:
        counts: ``{layer: per-neuron spike counts}`` (any shape, flattened), or a
            :class:`~spikeflow.convert.evaluate.ConversionReport` (its spikes per
            neuron and sample).
        path: the file to write.
        title: the figure title.
    """
    return _histograms(_per_layer(counts, ["count_histogram"], "counts"), path, "spikes per neuron", title)


def spike_time_histogram(times: Any, path: PathLike, *, title: Optional[str] = None) -> Path:
    """Histograms of spike times (steps), one panel per layer; for time-to-first-spike
    codings the first-spike times.

    Args:
        times: ``{layer: spike times}`` (any shape, flattened; integers get unit
            bins), or a :class:`~spikeflow.convert.evaluate.ConversionReport` (its
            first-spike times for TTFS codings, else the steps of all spikes).
        path: the file to write.
        title: the figure title.
    """
    layers = _per_layer(times, ["first_spike_histogram", "spikes_per_step"], "times")
    return _histograms(layers, path, "step", title)


# (panel label, y-axis label, scale, ((history key, line label), ...))
_CURVES = (
    ("loss", "loss", 1.0, (("train_loss", "train"), ("test_loss", "test"))),
    ("accuracy", "accuracy (%)", 100.0, (("train_accuracy", "train"), ("test_accuracy", "test"))),
    ("firing rate", "firing rate (spikes/step)", 1.0, (("firing_rate", "train"), ("test_firing_rate", "test"))),
)


def _history_value(record: Mapping[str, Any], key: str, epoch: int) -> float:
    value = record.get(key)
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"history: epoch {epoch}'s {key!r} must be a number, got {value!r}") from None


def training_curves(
    history: Sequence[Mapping[str, Any]],
    path: PathLike,
    *,
    figsize: Optional[tuple[float, float]] = None,
    title: Optional[str] = None,
) -> Path:
    """Loss and accuracy (in %) per epoch, train and test, one panel each, and the
    firing rate in a third panel when the history has one.

    A line is drawn for every key that some epoch holds (``train_loss``,
    ``test_loss``, ``train_accuracy``, ``test_accuracy``, ``firing_rate`` (training),
    ``test_firing_rate``); an epoch without it (or with None) leaves a gap.

    Args:
        history: per-epoch dicts, as in the ``history`` of the summary
            :func:`spikeflow.train.train` returns or of a training checkpoint; the x
            values are their ``epoch`` (else 1, 2, ...).
        path: the file to write.
        figsize: ``(width, height)`` in inches (:data:`DPI` pixels each); default 6
            wide, 2.5 high per panel.
        title: the figure title.
    """
    if isinstance(history, (str, bytes)) or not isinstance(history, Sequence):
        raise TypeError(f"history must be a list of per-epoch dicts, got {type(history).__name__}")
    if not history:
        raise ValueError("no epochs to plot: the history is empty")
    for i, record in enumerate(history):
        if not isinstance(record, Mapping):
            raise TypeError(f"history[{i}] must be a dict of per-epoch metrics, got {type(record).__name__}")
    epochs = [_history_value(r, "epoch", i + 1) if "epoch" in r else float(i + 1) for i, r in enumerate(history)]
    panels = [
        (name, ylabel, scale, [(key, label) for key, label in lines if any(key in r for r in history)])
        for name, ylabel, scale, lines in _CURVES
    ]
    panels = [panel for panel in panels if panel[3]]
    if not any(name in ("loss", "accuracy") for name, *_ in panels):
        raise ValueError(
            "the history has no train_loss, test_loss, train_accuracy or test_accuracy to plot"
        )
    fig = _figure(*(figsize or (6.0, 2.5 * len(panels))))
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (name, ylabel, scale, lines) in zip(axes, panels):
        for key, label in lines:
            values = [scale * _history_value(r, key, int(e)) for r, e in zip(history, epochs)]
            ax.plot(epochs, values, marker="o", markersize=3, label=label)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend()
    axes[-1].set_xlabel("epoch")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def firing_rates(
    rates: Mapping[str, Any],
    path: PathLike,
    *,
    bins: int = 20,
    figsize: Optional[tuple[float, float]] = None,
    title: Optional[str] = None,
) -> Path:
    """Firing rates per layer: a bar of each layer's mean rate (left) and histograms of
    its neurons' rates (right, one colour per layer, on common bins).

    Args:
        rates: ``{layer: per-neuron rates}`` (a tensor or array, flattened), for
            example spikes per neuron and step.
        path: the file to write.
        bins: number of histogram bins, spread over the range of all rates.
        figsize: ``(width, height)`` in inches (:data:`DPI` pixels each); default
            ``(10, 4)``.
        title: the figure title.
    """
    if not isinstance(rates, Mapping) or not rates:
        raise ValueError("rates must be a non-empty mapping {layer: per-neuron rates}")
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    layers = {str(name): _array(values, f"rates[{name!r}]").reshape(-1) for name, values in rates.items()}
    for name, values in layers.items():
        if values.size == 0:
            raise ValueError(f"layer {name!r} has no neurons")
        if not np.all(np.isfinite(values)):
            raise ValueError(f"layer {name!r} has non-finite rates")
    names = list(layers)
    means = [float(values.mean()) for values in layers.values()]
    fig = _figure(*(figsize or (10.0, 4.0)))
    bar_ax, hist_ax = fig.subplots(1, 2)
    bar_ax.bar(np.arange(len(names)), means, color=[f"C{i}" for i in range(len(names))])
    bar_ax.set_xticks(np.arange(len(names)), names)
    bar_ax.set_xlabel("layer")
    bar_ax.set_ylabel("mean firing rate")
    low = min(float(v.min()) for v in layers.values())
    high = max(float(v.max()) for v in layers.values())
    edges = np.linspace(low, high if high > low else low + 1.0, bins + 1)
    hist_ax.hist(list(layers.values()), bins=edges, label=names, color=[f"C{i}" for i in range(len(names))])
    hist_ax.set_xlabel("firing rate")
    hist_ax.set_ylabel("neurons")
    hist_ax.legend()
    if title:
        fig.suptitle(title)
    return _save(fig, path)
