"""Weight initialisation for spiking networks: data-driven LSUV and fluctuation-driven.

Both functions walk a :class:`spikeflow.nn.Sequential` (nested Sequentials are walked
in execution order) and pair every *weight layer* -- a :class:`~spikeflow.nn.TimeDistributed`
wrapping ``torch.nn.Linear`` or ``torch.nn.Conv1d/2d/3d``, which is what
:func:`spikeflow.nn.Linear` and :func:`spikeflow.nn.Conv2d` build -- with the neuron
layer that follows it (:class:`~spikeflow.nn.LIF`, :class:`~spikeflow.nn.IF`,
:class:`~spikeflow.nn.CubaLIF` or the :class:`~spikeflow.nn.LI` readout). Weight
layers with no supported neuron after them (before the next weight layer) are left
as they are and listed in the report's ``skipped``.

**The free membrane potential.** Both methods target the statistics of ``U[t]``,
the membrane a neuron would have *without spiking and reset* (for CubaLIF and LIF
the pre-reset membrane ``h[t]`` of :mod:`spikeflow.neurons.lif` /
:mod:`spikeflow.neurons.cuba` run with ``reset="none"``, from rest, without the
recurrent drive of a recurrent layer; for LI its output ``v[t]``). ``U`` is linear in
the layer's input ``x[t]`` (membrane units), ``U[t] = sum_k eps[k] x[t-k]``, with the
impulse response (PSP kernel) ``eps[k]`` of the neuron, which
:func:`psp_integrals` sums in closed form. Targets are in units of the firing
threshold ``theta``: ``u = U / theta`` (``theta = 1`` for the LI readout), so that
``xi = (1 - mean(u)) / std(u)`` is the distance of the mean from threshold in standard
deviations (Rossbroich, Gygax & Zenke 2022).

- :func:`lsuv_`: layer-sequential unit-variance initialisation (Mishkin & Matas 2016)
  adapted to spiking layers: rescale (and shift) each weight layer until ``u`` on a
  batch has the target mean and standard deviation.
- :func:`fluctuation_init_`: draw the weights from the normal distribution that gives
  ``U`` a target mean and fluctuation size for Poisson inputs of a given rate
  (Rossbroich, Gygax & Zenke 2022), with no data.

References:
    D. Mishkin, J. Matas, "All you need is a good init", ICLR 2016, arXiv:1511.06422.
    J. Rossbroich, J. Gygax, F. Zenke, "Fluctuation-driven initialization for spiking
    neural network training", Neuromorphic Computing and Engineering 2, 044016 (2022),
    arXiv:2206.10226.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import numbers
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, NamedTuple, Optional, Sequence, Union

import torch

from ._scan import scan
from .neurons import CubaLIFParams, LIFParams, LIParams, Reset
from .nn import IF, LI, LIF, CubaLIF, Flatten, Sequential, TimeDistributed

__all__ = [
    "FluctuationLayer",
    "FluctuationReport",
    "LSUVLayer",
    "LSUVReport",
    "PSPIntegrals",
    "fluctuation_init_",
    "lsuv_",
    "psp_integrals",
]

_WEIGHT_TYPES = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
_NEURON_TYPES = (LIF, IF, CubaLIF, LI)
_NEURON_NAMES = "LIF, IF, CubaLIF or LI"


# ---------------------------------------------------------------------------------
# PSP kernel integrals
# ---------------------------------------------------------------------------------


class PSPIntegrals(NamedTuple):
    """Sums of a neuron's PSP kernel ``eps[k]`` (its free membrane's response to a unit
    input at step 0), in units of steps (membrane units per unit input).

    Attributes:
        bar: ``eps_bar = sum_k eps[k]``, the response to a constant unit input at steady
            state; a float, or a tensor for per-neuron time constants.
        hat: ``eps_hat = sum_k eps[k]**2``.
    """

    bar: Union[float, torch.Tensor]
    hat: Union[float, torch.Tensor]


def _number(value: Any) -> Union[float, torch.Tensor]:
    """A float for a scalar, else a detached float64 tensor."""
    if isinstance(value, torch.Tensor):
        if value.numel() == 1:
            return float(value.detach().reshape(()).item())
        return value.detach().to(torch.float64)
    return float(value)


def _any(condition: Any) -> bool:
    return bool(torch.as_tensor(condition).any())


def _exponential_integrals(decay, scale, what: str) -> PSPIntegrals:
    """``eps[k] = scale * decay**k``: ``bar = scale / (1 - decay)``,
    ``hat = scale**2 / (1 - decay**2)``."""
    if _any(torch.as_tensor(decay) >= 1.0):
        raise ValueError(
            f"{what}: a decay of 1 (no leak, e.g. an IF neuron or beta = 1) integrates its "
            f"input forever, so the PSP kernel sums diverge and the membrane has no "
            f"stationary fluctuations; use a leaky neuron (decay < 1)"
        )
    return PSPIntegrals(scale / (1.0 - decay), scale**2 / (1.0 - decay**2))


def _double_exponential_integrals(alpha, beta, scale, what: str) -> PSPIntegrals:
    """``eps[k] = scale * sum_{m=0..k} alpha**m * beta**(k-m)`` (a current filter with
    decay ``alpha`` feeding a membrane with decay ``beta``)::

        bar = scale / ((1 - alpha) (1 - beta))
        hat = scale**2 (1 + alpha beta) / ((1 - alpha**2) (1 - beta**2) (1 - alpha beta))

    (``hat`` from summing the square of ``(beta**(k+1) - alpha**(k+1)) / (beta - alpha)``
    as three geometric series; the result holds for ``alpha = beta`` too.)
    """
    if _any(torch.as_tensor(alpha) >= 1.0) or _any(torch.as_tensor(beta) >= 1.0):
        raise ValueError(
            f"{what}: a decay of 1 (alpha or beta) integrates the input forever, so the "
            f"PSP kernel sums diverge and the membrane has no stationary fluctuations; "
            f"use decays below 1"
        )
    bar = scale / ((1.0 - alpha) * (1.0 - beta))
    hat = scale**2 * (1.0 + alpha * beta) / ((1.0 - alpha**2) * (1.0 - beta**2) * (1.0 - alpha * beta))
    return PSPIntegrals(bar, hat)


def psp_integrals(neuron: Any, *, recurrent: bool = False) -> PSPIntegrals:
    """Closed-form sums ``eps_bar = sum_k eps[k]`` and ``eps_hat = sum_k eps[k]**2`` of the
    PSP kernel of spikeflow's discrete-time neurons (time in steps).

    ``eps[k]`` is the free membrane (no spike, no reset) ``k`` steps after a unit input
    ``x[0] = 1`` from rest, from the step equations of :mod:`spikeflow.neurons`:

    - LIF (``h[t] = beta h[t-1] + x[t]``): ``eps[k] = beta**k``, so
      ``eps_bar = 1 / (1 - beta)``, ``eps_hat = 1 / (1 - beta**2)``.
    - LI (``v[t] = beta v[t-1] + a x[t]``, ``a = 1 - beta`` if ``normalize`` else 1):
      ``eps[k] = a beta**k``, ``eps_bar = a / (1 - beta)``, ``eps_hat = a**2 / (1 - beta**2)``.
    - CubaLIF (``i[t] = alpha i[t-1] + a_i x[t]``, ``h[t] = beta h[t-1] + a_v gain i[t]``;
      ``a_i = 1 - alpha``, ``a_v = 1 - beta`` if ``normalize`` else 1), with
      ``c = gain a_i a_v``: ``eps[k] = c (beta**(k+1) - alpha**(k+1)) / (beta - alpha)``
      (``c (k+1) beta**k`` for ``alpha = beta``), so ``eps_bar = c / ((1-alpha)(1-beta))``
      and ``eps_hat = c**2 (1 + alpha beta) / ((1-alpha**2)(1-beta**2)(1-alpha beta))``.
      Order ``"membrane_first"`` delays the kernel by one step, which leaves both sums
      unchanged.

    With ``recurrent=True``, the kernel of the recurrent drive ``V s[t-1]``: the same as
    above (the drive joins ``x``, one step later), except for a CubaLIF with
    ``alpha_rec``, whose recurrent current ``i_rec[t] = alpha_rec i_rec[t-1] + a_r r[t]``
    enters the membrane without ``gain``: ``c = a_r a_v`` and ``alpha_rec`` in place of
    ``alpha``.

    Args:
        neuron: a :class:`~spikeflow.nn.LIF`, :class:`~spikeflow.nn.IF`,
            :class:`~spikeflow.nn.CubaLIF` or :class:`~spikeflow.nn.LI` module, or its
            parameter dataclass (``LIFParams``, ``CubaLIFParams``, ``LIParams``).
        recurrent: the kernel of the recurrent drive instead of the feed-forward input.

    Returns:
        :class:`PSPIntegrals` ``(bar, hat)``: floats, or float64 tensors of the
        parameters' shape for per-neuron decays.

    Raises:
        TypeError: for another neuron type.
        ValueError: for a decay of 1 (IF neurons: the sums diverge) or a zero gain.
    """
    params = neuron
    if isinstance(neuron, torch.nn.Module) and hasattr(neuron, "neuron_params"):
        params = neuron.neuron_params()
    what = type(neuron).__name__
    if isinstance(params, LIFParams):
        return _exponential_integrals(_number(params.beta), 1.0, what)
    if isinstance(params, LIParams):
        beta = _number(params.beta)
        return _exponential_integrals(beta, (1.0 - beta) if params.normalize else 1.0, what)
    if isinstance(params, CubaLIFParams):
        alpha, beta = _number(params.alpha), _number(params.beta)
        a_v = (1.0 - beta) if params.normalize else 1.0
        if recurrent and params.alpha_rec is not None:
            alpha_rec = params.alpha_rec
            a_r = (1.0 - alpha_rec) if params.normalize else 1.0
            return _double_exponential_integrals(alpha_rec, beta, a_r * a_v, what)
        if params.gain == 0.0:
            raise ValueError(f"{what}: gain is 0, so the input never reaches the membrane")
        a_i = (1.0 - alpha) if params.normalize else 1.0
        return _double_exponential_integrals(alpha, beta, params.gain * a_i * a_v, what)
    raise TypeError(
        f"psp_integrals supports {_NEURON_NAMES} neurons (or their parameter dataclasses), "
        f"got {type(neuron).__name__}"
    )


# ---------------------------------------------------------------------------------
# walking the network
# ---------------------------------------------------------------------------------


def _walk(module: torch.nn.Module, prefix: str) -> Iterator[tuple[str, torch.nn.Module]]:
    """The layers of a Sequential in execution order, nested Sequentials flattened."""
    for index, layer in enumerate(module.layers):
        name = f"{prefix}layers.{index}"
        if isinstance(layer, Sequential):
            yield from _walk(layer, name + ".")
        else:
            yield name, layer


def _weight_module(layer: torch.nn.Module) -> Optional[torch.nn.Module]:
    if isinstance(layer, TimeDistributed) and isinstance(layer.module, _WEIGHT_TYPES):
        return layer.module
    return None


@dataclass
class _Pair:
    weight_index: int
    neuron_index: Optional[int]  # None: skipped
    reason: str = ""


def _pairs(layers: list[tuple[str, torch.nn.Module]]) -> list[_Pair]:
    """Each weight layer with the first neuron after it (before the next weight layer)."""
    pairs = []
    for i, (_, layer) in enumerate(layers):
        if _weight_module(layer) is None:
            continue
        pair = _Pair(i, None, "no neuron layer follows it")
        for j in range(i + 1, len(layers)):
            other = layers[j][1]
            if _weight_module(other) is not None:
                pair.reason = f"the next weight layer ({layers[j][0]}) comes before any neuron layer"
                break
            if getattr(other, "stateful", False):
                if isinstance(other, _NEURON_TYPES):
                    pair.neuron_index, pair.reason = j, ""
                else:
                    pair.reason = (
                        f"it drives a {type(other).__name__} ({layers[j][0]}); only "
                        f"{_NEURON_NAMES} neurons are supported"
                    )
                break
        pairs.append(pair)
    return pairs


def _check_model(model: Any, what: str) -> list[tuple[str, torch.nn.Module]]:
    if not isinstance(model, Sequential):
        raise TypeError(f"{what} initialises a spikeflow.nn.Sequential, got {type(model).__name__}")
    layers = list(_walk(model, ""))
    if not any(_weight_module(layer) is not None for _, layer in layers):
        raise ValueError(
            f"{what}: the model has no weight layers to initialise (Linear or Conv1d/2d/3d, "
            f"as built by spikeflow.nn.Linear / spikeflow.nn.Conv2d)"
        )
    return layers


def _no_pairs_error(what: str, layers, pairs: list[_Pair]) -> ValueError:
    reasons = "; ".join(f"{layers[p.weight_index][0]}: {p.reason}" for p in pairs)
    return ValueError(f"{what}: no weight layer is followed by a {_NEURON_NAMES} neuron ({reasons})")


@contextmanager
def _eval_mode(model: torch.nn.Module):
    """Put every submodule in eval mode, and restore each one's own flag afterwards."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def _check_real(name: str, value: Any, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return float(value)


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_generator(generator: Any) -> Optional[torch.Generator]:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    return generator


# ---------------------------------------------------------------------------------
# LSUV
# ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LSUVLayer:
    """What :func:`lsuv_` did to one weight layer.

    The layer's final parameters are ``scale * p0 + shift`` for the shifted tensor and
    ``scale * p0`` for the other one, where ``p0`` is the parameter before the
    iterations (after the orthogonal pre-initialisation, if any).

    Attributes:
        name: the weight layer's name in the model (``model.get_submodule(name)``).
        neuron: the name of the neuron layer it drives.
        scale: the factor applied to its weight (and bias).
        shift: the constant added to its bias (``shifted == "bias"``) or to every weight
            (``"weight"``, layers without bias); 0.0 when the mean is not targeted.
        shifted: ``"bias"``, ``"weight"`` or None.
        mean: achieved mean of ``u = U / theta`` on the batch.
        std: achieved standard deviation of ``u`` on the batch.
        iterations: number of updates applied (0: the targets already held).
        converged: whether ``mean`` and ``std`` are within ``tol`` of the targets.
        rate: the neuron's firing rate after initialisation with its real dynamics
            (spikes per neuron per step, on the batch); None for an LI readout.
    """

    name: str
    neuron: str
    scale: float
    shift: float
    shifted: Optional[str]
    mean: float
    std: float
    iterations: int
    converged: bool
    rate: Optional[float]


@dataclass(frozen=True)
class LSUVReport:
    """What :func:`lsuv_` returns.

    Attributes:
        layers: one :class:`LSUVLayer` per initialised weight layer, in order.
        skipped: ``(name, reason)`` for each weight layer left as it was.
    """

    layers: list = field(default_factory=list)
    skipped: list = field(default_factory=list)

    @property
    def converged(self) -> bool:
        """Whether every initialised layer reached its targets."""
        return all(layer.converged for layer in self.layers)


def _run_layer(name: str, layer: torch.nn.Module, h: torch.Tensor) -> torch.Tensor:
    try:
        if getattr(layer, "stateful", False):
            return layer(h)[0]
        return layer(h)
    except (RuntimeError, ValueError) as error:
        raise ValueError(
            f"the batch does not fit layer {name} ({layer!r}): its input has shape "
            f"{tuple(h.shape)} ([T, B, *features]): {error}"
        ) from error


def _threshold(neuron: torch.nn.Module, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    if isinstance(neuron, LI):
        return torch.ones((), dtype=dtype, device=device)
    return torch.as_tensor(neuron.threshold.detach(), dtype=dtype, device=device)


def _free_membrane(neuron: torch.nn.Module, z: torch.Tensor) -> torch.Tensor:
    """``U[t]``: the neuron's membrane from rest without spikes, reset or recurrent drive."""
    params = neuron.neuron_params()
    if isinstance(neuron, LI):
        return scan(params, z, backend=neuron.backend).output
    params = dataclasses.replace(params, reset=Reset.NONE)
    return scan(params, z, backend=neuron.backend, record=True).trajectory.v


def lsuv_(
    model: Sequential,
    x: torch.Tensor,
    *,
    target_mean: Optional[float] = 0.0,
    target_std: float = 0.5,
    tol: float = 0.02,
    max_iter: int = 10,
    burn_in: int = 0,
    orthogonal: bool = True,
    generator: Optional[torch.Generator] = None,
) -> LSUVReport:
    """Layer-sequential unit-variance initialisation for spiking networks, in place.

    LSUV (Mishkin & Matas 2016) pre-initialises the weights with orthonormal matrices
    and then, layer after layer, rescales each one until its output has unit variance
    on a batch. For a spiking layer the quantity that decides whether and how often it
    fires is the membrane potential relative to the threshold, so here (as in the SNN
    LSUV that seed 003 applies, which targets the membrane's mean and variance) the
    statistic is the *free* membrane in threshold units, ``u[t] = U[t] / theta`` (see the
    module docstring), with mean and standard deviation taken over all time steps
    ``t >= burn_in``, samples and neurons of the batch. Its targets fix the distance
    to threshold ``xi = (1 - target_mean) / target_std`` of Rossbroich, Gygax & Zenke
    (2022); the defaults ``(0, 0.5)`` give ``xi = 2``: a Gaussian free membrane then
    lies above threshold on about 2 % of the steps, so a layer fires sparsely (less
    with reset) instead of not at all. Measuring the free membrane, not the membrane
    after resets, keeps the statistic linear in the weights: the reset clamps the
    membrane below threshold and would make the variance target unreachable.

    Walk the layers in order; each weight layer ``W`` (with bias ``b``) followed by a
    LIF/IF/CubaLIF/LI neuron (other stateless layers, such as pooling, may sit
    between) is updated with the batch that the already initialised layers before it
    produce. With ``U0`` the free membrane now and ``dU`` its response to a unit shift
    (``b += 1``, or every weight ``+= 1`` for a layer without bias), an update
    ``W, b <- g W, g b`` then shift ``delta`` gives ``U = g U0 + delta dU`` (exact when
    the layers in between are linear), and ``(g > 0, delta)`` solve::

        mean(g U0 + delta dU) = target_mean * theta,  std(...) = target_std * theta

    (a quadratic in ``g``; ``g = target_std / std(u0)``, ``delta = 0`` when
    ``target_mean`` is None or no shift moves the mean). The update repeats until both
    are within ``tol`` or ``max_iter`` updates were made; then the batch continues
    through the neuron with its real dynamics (spikes, reset, recurrence).

    Runs under ``torch.no_grad()`` with every module in eval mode (no dropout, batch
    norm uses and keeps its running statistics); each module's train/eval flag is
    restored afterwards.

    Args:
        model: a :class:`spikeflow.nn.Sequential`; changed in place.
        x: a representative batch ``[T, B, *features]`` (floating point), e.g. encoded
            training samples.
        target_mean: target mean of ``u`` (threshold units), or None to match the
            standard deviation only (a pure rescaling, as in the original LSUV).
        target_std: target standard deviation of ``u`` (threshold units), > 0.
        tol: absolute tolerance on both statistics (threshold units), > 0.
        max_iter: most updates per layer (>= 1).
        burn_in: number of leading time steps left out of the statistics (the membrane
            starts from rest); must leave at least one step.
        orthogonal: first set each initialised weight to a random orthonormal matrix
            (``torch.nn.init.orthogonal_`` on ``[out, fan_in]``) and its bias to 0, as
            LSUV does; False keeps the current values and only rescales/shifts them.
        generator: random generator for the orthogonal matrices.

    Returns:
        :class:`LSUVReport`: per layer the scale, shift, achieved statistics, number
        of iterations, convergence and firing rate; the skipped weight layers.

    Raises:
        TypeError: ``model`` is not a spikeflow Sequential, or ``x`` not a floating tensor.
        ValueError: bad targets/tolerances; ``x`` not ``[T, B, *features]`` or not
            matching the first layers; no weight layer (or none followed by a supported
            neuron); a layer whose membrane does not vary on the batch (no input
            reaches it), so no scaling can set its variance.

    Warns:
        RuntimeWarning: for each layer that did not reach the targets within
            ``max_iter`` updates (its entry has ``converged=False``).
    """
    layers = _check_model(model, "lsuv_")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"lsuv_: x must be a torch.Tensor [T, B, *features], got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"lsuv_: x must be a floating-point tensor, got dtype {x.dtype}")
    if x.dim() < 3 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(
            f"lsuv_: x must be a time-major batch [T, B, *features] with at least one feature "
            f"dimension and T, B >= 1, got shape {tuple(x.shape)}"
        )
    if not bool(torch.isfinite(x).all()):
        raise ValueError("lsuv_: x contains NaN or infinite values")
    if target_mean is not None:
        target_mean = _check_real("target_mean", target_mean)
    target_std = _check_real("target_std", target_std, positive=True)
    tol = _check_real("tol", tol, positive=True)
    max_iter = _check_int("max_iter", max_iter, 1)
    burn_in = _check_int("burn_in", burn_in, 0)
    if burn_in >= x.shape[0]:
        raise ValueError(f"lsuv_: burn_in={burn_in} leaves no time step of the T={x.shape[0]} in x")
    if not isinstance(orthogonal, bool):
        raise TypeError(f"orthogonal must be True or False, got {orthogonal!r}")
    generator = _check_generator(generator)

    pairs = _pairs(layers)
    if all(p.neuron_index is None for p in pairs):
        raise _no_pairs_error("lsuv_", layers, pairs)
    by_weight = {p.weight_index: p for p in pairs}

    report = LSUVReport()
    with torch.no_grad(), _eval_mode(model):
        h = x
        i = 0
        while i < len(layers):
            name, layer = layers[i]
            pair = by_weight.get(i)
            if pair is None or pair.neuron_index is None:
                if pair is not None:
                    report.skipped.append((name, pair.reason))
                h = _run_layer(name, layer, h)
                i += 1
                continue
            j = pair.neuron_index
            entry, h = _lsuv_layer(
                layers, i, j, h, target_mean, target_std, tol, max_iter, burn_in, orthogonal, generator
            )
            report.layers.append(entry)
            i = j + 1
    for entry in report.layers:
        if not entry.converged:
            warnings.warn(
                f"lsuv_: {entry.name} did not reach the targets in {max_iter} iterations "
                f"(mean {entry.mean:.4g}, std {entry.std:.4g} of u = U / threshold)",
                RuntimeWarning,
                stacklevel=2,
            )
    return report


def _lsuv_layer(layers, i, j, h, target_mean, target_std, tol, max_iter, burn_in, orthogonal, generator):
    """Initialise the weight layer ``layers[i]`` for the neuron ``layers[j]``; returns
    the report entry and the neuron's output on the batch."""
    name, wrapper = layers[i]
    neuron_name, neuron = layers[j]
    between = layers[i + 1 : j]
    module = _weight_module(wrapper)
    weight, bias = module.weight, module.bias
    shifted = None if target_mean is None else ("bias" if bias is not None else "weight")

    if orthogonal:
        flat = torch.empty(weight.shape[0], weight[0].numel(), dtype=weight.dtype, device=weight.device)
        torch.nn.init.orthogonal_(flat, generator=generator)
        weight.copy_(flat.reshape(weight.shape))
        if bias is not None:
            bias.zero_()

    def membrane(weight_layer: torch.nn.Module) -> torch.Tensor:
        z = _run_layer(name, weight_layer, h)
        for other_name, other in between:
            z = _run_layer(other_name, other, z)
        try:
            free = _free_membrane(neuron, z)
        except (RuntimeError, ValueError) as error:
            raise ValueError(f"the batch does not fit neuron layer {neuron_name}: {error}") from error
        theta = _threshold(neuron, free.dtype, free.device)
        return (free / theta)[burn_in:].to(torch.float64)

    def unit_shift_response(u0: torch.Tensor) -> torch.Tensor:
        trial = copy.deepcopy(wrapper)
        target = trial.module.bias if shifted == "bias" else trial.module.weight
        target.add_(1.0)
        return membrane(trial) - u0

    scale, shift, iterations = 1.0, 0.0, 0
    u = membrane(wrapper)
    while True:
        mean, std = float(u.mean()), float(u.std(unbiased=False))
        mean_ok = target_mean is None or abs(mean - target_mean) <= tol
        if (mean_ok and abs(std - target_std) <= tol) or iterations >= max_iter:
            break
        du = unit_shift_response(u) if shifted is not None else None
        g, delta = _solve_update(u, du, mean, std, target_mean, target_std)
        if g is None:
            raise ValueError(
                f"lsuv_: the free membrane of {neuron_name} (driven by {name}) does not vary "
                f"on this batch (std 0): no input reaches it, so no scaling can set its "
                f"variance; use a batch that drives every layer"
            )
        weight.mul_(g)
        if bias is not None:
            bias.mul_(g)
        if delta != 0.0:
            (bias if shifted == "bias" else weight).add_(delta)
        scale, shift = scale * g, shift * g + delta
        iterations += 1
        u = membrane(wrapper)

    z = _run_layer(name, wrapper, h)
    for other_name, other in between:
        z = _run_layer(other_name, other, z)
    out = _run_layer(neuron_name, neuron, z)
    rate = None if isinstance(neuron, LI) else float(out.mean())
    converged = (target_mean is None or abs(mean - target_mean) <= tol) and abs(std - target_std) <= tol
    entry = LSUVLayer(
        name=name,
        neuron=neuron_name,
        scale=scale,
        shift=shift if shifted is not None else 0.0,
        shifted=shifted,
        mean=mean,
        std=std,
        iterations=iterations,
        converged=converged,
        rate=rate,
    )
    return entry, out


def _solve_update(u0, du, mean, std, target_mean, target_std):
    """``(g, delta)`` with ``mean(g u0 + delta du) = target_mean`` and
    ``std(g u0 + delta du) = target_std``; ``(None, 0)`` if nothing can be done."""
    mean_du = float(du.mean()) if du is not None else 0.0
    if target_mean is None or du is None or abs(mean_du) <= 1e-12 * max(1.0, abs(mean)):
        if std == 0.0:
            return None, 0.0
        return target_std / std, 0.0
    # delta = d0 - g d1 fixes the mean; the centred membrane is then g p + q.
    d0, d1 = target_mean / mean_du, mean / mean_du
    a = u0 - mean
    b = du - mean_du
    p = a - d1 * b
    q = d0 * b
    vpp, vpq, vqq = float((p * p).mean()), float((p * q).mean()), float((q * q).mean())
    g = None
    if vpp > 0.0:
        disc = vpq * vpq - vpp * (vqq - target_std**2)
        if disc >= 0.0:
            root = (-vpq + math.sqrt(disc)) / vpp
            if root > 0.0:
                g = root
    if g is None:  # no exact solution: fix the std of the current membrane, then the mean
        if std == 0.0:
            if float(b.std()) == 0.0:
                return None, 0.0
            g = 1.0
        else:
            g = target_std / std
    return g, d0 - g * d1


# ---------------------------------------------------------------------------------
# fluctuation-driven initialisation
# ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FluctuationLayer:
    """What :func:`fluctuation_init_` did to one weight layer (floats, or per-output-channel
    tensors where the neuron's parameters differ per channel).

    Attributes:
        name: the weight layer's name in the model.
        neuron: the name of the neuron layer it drives.
        fan_in: ``n``, the number of inputs of each neuron.
        rate: ``nu``, the assumed input rate (spikes per input per step).
        eps_bar, eps_hat: the neuron's PSP kernel sums (:func:`psp_integrals`).
        mu_w, sigma_w: mean and standard deviation of the drawn weights.
        mu_u, sigma_u: the predicted mean and fluctuation size of the free membrane
            ``U`` (membrane units, not threshold units).
        recurrent_sigma: standard deviation of the drawn recurrent weights, or None.
    """

    name: str
    neuron: str
    fan_in: int
    rate: float
    eps_bar: Union[float, torch.Tensor]
    eps_hat: Union[float, torch.Tensor]
    mu_w: Union[float, torch.Tensor]
    sigma_w: Union[float, torch.Tensor]
    mu_u: Union[float, torch.Tensor]
    sigma_u: Union[float, torch.Tensor]
    recurrent_sigma: Optional[Union[float, torch.Tensor]] = None


@dataclass(frozen=True)
class FluctuationReport:
    """What :func:`fluctuation_init_` returns.

    Attributes:
        layers: one :class:`FluctuationLayer` per initialised weight layer, in order.
        skipped: ``(name, reason)`` for each weight layer left as it was.
    """

    layers: list = field(default_factory=list)
    skipped: list = field(default_factory=list)


def _per_channel(value: Any, channels: int, n_spatial: int, what: str) -> torch.Tensor:
    """A neuron parameter as a float64 vector ``[channels]`` (one value per weight row).

    The parameter broadcasts to the neuron's ``[B, C, *spatial]``; only a value shared by
    all neurons or one per output channel (shape ``(C, 1, ..., 1)``) fits a weight
    distribution per row.
    """
    t = torch.as_tensor(value, dtype=torch.float64).detach()
    if t.numel() == 1:
        return t.reshape(1).expand(channels).clone()
    shape = list(t.shape)
    while len(shape) > 1 + n_spatial and shape[0] == 1:
        shape.pop(0)
    if len(shape) > 1 + n_spatial:
        raise ValueError(f"{what} has shape {tuple(t.shape)}, more dimensions than the neurons' features")
    shape = [1] * (1 + n_spatial - len(shape)) + shape
    if shape[0] != channels or any(s != 1 for s in shape[1:]):
        raise ValueError(
            f"{what} of shape {tuple(t.shape)} varies within an output channel; fluctuation_init_ "
            f"needs one value per neuron layer or one per output channel ({channels})"
        )
    return t.reshape(channels)


def _kernel_params(neuron: torch.nn.Module, channels: int, n_spatial: int, name: str):
    """The neuron's parameters with numeric values as per-channel vectors."""
    params = neuron.neuron_params()
    values = {
        key: _per_channel(getattr(params, key), channels, n_spatial, f"{name}.{key}")
        for key in type(params).NUMERIC
    }
    # Bypass validation: the vectors are already-validated values in another shape.
    params = copy.copy(params)
    for key, value in values.items():
        object.__setattr__(params, key, value)
    return params


def _is_shape_only(layer: torch.nn.Module) -> bool:
    if isinstance(layer, Flatten):
        return True
    if isinstance(layer, TimeDistributed) and isinstance(layer.module, (torch.nn.Flatten, torch.nn.Identity)):
        return True
    return isinstance(layer, TimeDistributed) and isinstance(layer.module, torch.nn.Dropout)


def _rates(rate: Any, count: int) -> list[float]:
    if isinstance(rate, (list, tuple)):
        if len(rate) != count:
            raise ValueError(
                f"rate has {len(rate)} entries but fluctuation_init_ initialises {count} weight "
                f"layer(s); give one rate per initialised layer, or one number for all"
            )
        return [_check_real(f"rate[{k}]", r, positive=True) for k, r in enumerate(rate)]
    return [_check_real("rate", rate, positive=True)] * count


def _report_value(t: torch.Tensor) -> Union[float, torch.Tensor]:
    if bool((t == t[0]).all()):
        return float(t[0])
    return t


def fluctuation_init_(
    model: Sequential,
    *,
    rate: Union[float, Sequence[float]],
    xi: float = 1.0,
    mu_u: float = 0.0,
    ff_share: float = 0.9,
    generator: Optional[torch.Generator] = None,
) -> FluctuationReport:
    """Fluctuation-driven initialisation (Rossbroich, Gygax & Zenke 2022), in place.

    Inputs are taken as independent Poisson spike trains of ``rate`` spikes per step
    (``nu * dt`` for a rate ``nu`` in Hz and a step ``dt`` in s), one per each of the
    ``n`` inputs (the fan-in) of a neuron, and weights as i.i.d. with mean ``mu_w`` and
    standard deviation ``sigma_w``. The free membrane (module docstring)
    ``U[t] = sum_j w_j sum_k eps[k] x_j[t-k]`` then has, at steady state and on average
    over the weights (Campbell's theorem)::

        mu_U      = n * rate * mu_w * eps_bar
        sigma_U^2 = n * rate * (mu_w^2 + sigma_w^2) * eps_hat

    with the PSP kernel sums ``eps_bar, eps_hat`` of :func:`psp_integrals` (in steps).
    The targets are ``mu_U = mu_u * theta`` and ``sigma_U = (theta - mu_U) / xi`` (the
    mean sits ``xi`` standard deviations below the threshold ``theta``; ``theta = 1``
    for an LI readout), so each weight layer is drawn from
    ``Normal(mu_w, sigma_w)`` with::

        mu_w      = mu_U / (n * rate * eps_bar)
        sigma_w^2 = s * sigma_U^2 / (n * rate * eps_hat) - mu_w^2

    and its bias set to 0. ``s = 1``, except for a recurrent layer, where the
    feed-forward weights carry the share ``s = ff_share`` of the variance and the
    recurrent ``[N, N]`` weights, centred, the rest:
    ``sigma_rec^2 = (1 - ff_share) sigma_U^2 / (N * rate * eps_hat_rec)`` (the layer's
    own rate assumed equal to ``rate``; kernel ``psp_integrals(neuron, recurrent=True)``).
    ``mu_u = 0`` is the paper's centred (balanced) variant; ``ff_share = 0.9`` is the
    default of the authors' reference implementation (the ``stork`` library).

    ``sigma_U`` is the fluctuation of one neuron's membrane over time and trials,
    averaged (as a variance) over the neurons; the membranes of different neurons also
    differ in their means, by ``sqrt(n) * sigma_w * rate * eps_bar`` (standard deviation
    over neurons). For Bernoulli inputs (at most one spike per step) the variance is
    ``(1 - rate)`` times smaller. For convolutions ``n = in_channels / groups * prod(kernel)``
    (border neurons with zero padding have fewer inputs).

    Only weight layers followed directly by a LIF, CubaLIF or LI neuron (a Flatten,
    Identity or Dropout may sit between) are initialised; others are listed in the
    report's ``skipped`` and left unchanged.

    Args:
        model: a :class:`spikeflow.nn.Sequential`; changed in place.
        rate: input rate ``nu`` in spikes per input per step, > 0; one number for all
            initialised layers or one per initialised layer (in order).
        xi: ``(theta - mu_U) / sigma_U``, > 0.
        mu_u: the target mean free membrane in units of the threshold, < 1.
        ff_share: the share of ``sigma_U^2`` from the feed-forward weights of a
            recurrent layer, in (0, 1].
        generator: random generator for the weights.

    Returns:
        :class:`FluctuationReport`: per layer ``n``, ``rate``, the kernel sums, the
        weight and predicted membrane statistics; the skipped weight layers.

    Raises:
        TypeError: ``model`` is not a spikeflow Sequential.
        ValueError: bad ``rate``/``xi``/``mu_u``/``ff_share``; no weight layer or none
            to initialise; a neuron without leak (IF, decay 1: the kernel sums
            diverge); targets that need a negative weight variance (``mu_u`` too large
            for ``xi``: lower one of them); per-neuron parameters that vary within an
            output channel.
    """
    layers = _check_model(model, "fluctuation_init_")
    xi = _check_real("xi", xi, positive=True)
    mu_u = _check_real("mu_u", mu_u)
    if mu_u >= 1.0:
        raise ValueError(
            f"mu_u must be < 1 (the mean free membrane below threshold, in units of the "
            f"threshold), got {mu_u!r}"
        )
    ff_share = _check_real("ff_share", ff_share)
    if not 0.0 < ff_share <= 1.0:
        raise ValueError(f"ff_share must be in (0, 1], got {ff_share!r}")
    generator = _check_generator(generator)

    pairs = _pairs(layers)
    for pair in pairs:
        if pair.neuron_index is None:
            continue
        between = layers[pair.weight_index + 1 : pair.neuron_index]
        odd = [n for n, layer in between if not _is_shape_only(layer)]
        if odd:
            pair.neuron_index = None
            pair.reason = (
                f"layers between it and its neuron ({', '.join(odd)}) change the input "
                f"statistics; only Flatten, Identity or Dropout may sit between"
            )
    chosen = [p for p in pairs if p.neuron_index is not None]
    if not chosen:
        raise _no_pairs_error("fluctuation_init_", layers, pairs)
    rates = _rates(rate, len(chosen))

    report = FluctuationReport()
    with torch.no_grad():
        # validate everything first, so that an error leaves the model unchanged
        plans = [_fluctuation_plan(layers, p, nu, xi, mu_u, ff_share) for p, nu in zip(chosen, rates)]
        for pair in pairs:
            if pair.neuron_index is None:
                report.skipped.append((layers[pair.weight_index][0], pair.reason))
        for plan in plans:
            report.layers.append(_fluctuation_apply(plan, generator))
    return report


def _fluctuation_plan(layers, pair: _Pair, nu: float, xi: float, mu_u: float, ff_share: float) -> dict:
    name, wrapper = layers[pair.weight_index]
    neuron_name, neuron = layers[pair.neuron_index]
    module = _weight_module(wrapper)
    weight = module.weight
    channels, n = weight.shape[0], weight[0].numel()
    n_spatial = weight.dim() - 2
    params = _kernel_params(neuron, channels, n_spatial, neuron_name)
    bar, hat = psp_integrals(params)
    if isinstance(neuron, LI):
        theta = torch.ones(channels, dtype=torch.float64)
    else:
        theta = params.threshold
    mu_target = mu_u * theta
    sigma_target = (theta - mu_target) / xi
    recurrent = neuron.recurrent_weight
    share = ff_share if recurrent is not None else 1.0
    mu_w = mu_target / (n * nu * bar)
    var_w = share * sigma_target**2 / (n * nu * hat) - mu_w**2
    if bool((var_w < 0).any()):
        raise ValueError(
            f"fluctuation_init_: for {name} (n = {n}, rate = {nu:g}) the mean mu_u = {mu_u:g} "
            f"alone already gives more membrane variance than the target (xi = {xi:g}): "
            f"the weight variance would be negative; lower mu_u or xi"
        )
    plan = dict(
        name=name, neuron_name=neuron_name, module=module, recurrent=recurrent, n=n, nu=nu,
        bar=bar, hat=hat, mu_w=mu_w, sigma_w=var_w.sqrt(), mu_target=mu_target,
        sigma_target=sigma_target, sigma_rec=None,
    )
    if recurrent is not None:
        if channels != recurrent.shape[0]:
            raise ValueError(
                f"fluctuation_init_: {neuron_name} has {recurrent.shape[0]} recurrent neurons but "
                f"{name} has {channels} outputs"
            )
        _, hat_rec = psp_integrals(params, recurrent=True)
        var_rec = (1.0 - ff_share) * sigma_target**2 / (channels * nu * hat_rec)
        plan["sigma_rec"] = torch.as_tensor(var_rec, dtype=torch.float64).sqrt()
    return plan


def _fluctuation_apply(plan: dict, generator: Optional[torch.Generator]) -> FluctuationLayer:
    module = plan["module"]
    weight = module.weight
    view = (-1,) + (1,) * (weight.dim() - 1)
    noise = torch.randn(weight.shape, generator=generator, dtype=torch.float64)
    drawn = plan["mu_w"].reshape(view) + plan["sigma_w"].reshape(view) * noise
    weight.copy_(drawn.to(weight.dtype))
    if module.bias is not None:
        module.bias.zero_()
    sigma_rec = plan["sigma_rec"]
    if sigma_rec is not None:
        recurrent = plan["recurrent"]
        noise = torch.randn(recurrent.shape, generator=generator, dtype=torch.float64)
        recurrent.copy_((sigma_rec.reshape(-1, 1) * noise).to(recurrent.dtype))
    return FluctuationLayer(
        name=plan["name"],
        neuron=plan["neuron_name"],
        fan_in=plan["n"],
        rate=plan["nu"],
        eps_bar=_report_value(torch.as_tensor(plan["bar"], dtype=torch.float64).expand(weight.shape[0])),
        eps_hat=_report_value(torch.as_tensor(plan["hat"], dtype=torch.float64).expand(weight.shape[0])),
        mu_w=_report_value(plan["mu_w"]),
        sigma_w=_report_value(plan["sigma_w"]),
        mu_u=_report_value(plan["mu_target"]),
        sigma_u=_report_value(plan["sigma_target"]),
        recurrent_sigma=None if sigma_rec is None else _report_value(sigma_rec.expand(weight.shape[0])),
    )
