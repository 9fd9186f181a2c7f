"""ASN coding: ANNs trained with the adaptive spiking neuron's transfer function,
then run with adaptive spiking neurons (Zambrano et al. 2018, seed 000).

**The transfer function.** Driven by a constant current ``S`` (``input="current"``),
an ASN (:mod:`spikeflow.neurons.asn`) settles into a firing rate ``r(S)`` (spikes per
step): zero below ``theta0 / 2``, rising, then saturating (near 0.69 with seed 000's
parameters) as the adaptive threshold grows with the rate. :class:`ASNActivation` is
``f(S) = h * r(S)``, measured once from the neuron's own step function (a long run
of that neuron over a grid of currents, the mean over the steady-state part), made
monotone, and interpolated piecewise-linearly, so that it is differentiable and the
ANN can be trained with it. Nothing is fitted by hand: change the ASN's parameters
and the function follows.

**The spiking network** (:func:`asn_network`). Every ``ASNActivation`` becomes an
:class:`spikeflow.nn.ASN` with its parameters. The first layer's neurons read the
analog image as a current (``input="current"``: ``I = W x + b``). Deeper neurons read
spikes (``input="spikes"``), which their synapses filter::

    I[t] = d_beta * I[t-1] + (1 - d_beta) * (W h z[t] + b)

so that in the steady state ``I = W * h * r + b = W f(S) + b``, the ANN's current.
The factor ``1 - d_beta`` is a :class:`~spikeflow.convert.layers.Scale` on the
neuron's input (equivalently, weights and biases scaled by ``1 - d_beta``). Spikes
reach the weights as 0/1 events (``h`` folded into the weights). Max pooling gates
spikes by their running count (:class:`~spikeflow.convert.layers.SpikingMaxPool`);
``r`` is monotone, so the most active input is the one with the largest ``S``. The
output layer's current is filtered in the same way by a unit-gain leaky integrator
(:class:`spikeflow.nn.LI`, ``beta = d_beta``) and read at the last step
(``info["readout"] = "last"``): it approaches the ANN's logits as the filters settle,
in a few ``tau_beta`` (50 steps by default) per layer.
"""

from __future__ import annotations

import copy
import functools
import inspect
from typing import Optional

import torch

from .. import nn as snn
from ..neurons.asn import ASNParams
from .calibrate import Calibration, check_builder_inputs
from .graph import ConversionError, Kind, LayerGraph, Node
from .layers import Scale, SpikingMaxPool
from .network import SpikingNetwork, Step
from .replace import finalize, to_spiking

__all__ = ["ASNActivation", "asn_model", "asn_network", "asn_transfer"]

#: Parameters of the neuron an :class:`ASNActivation` stands for (``bias`` is the
#: layer's own, ``input`` and ``surrogate`` are decided by the conversion).
ASN_FIELDS = ("tau_phi", "tau_gamma", "tau_eta", "tau_beta", "m_f", "theta0", "h")

#: Default spike value ``h`` of an :class:`ASNActivation`: ``f`` then rises from the
#: onset with a slope near 4 and saturates near 14, a range in which the usual
#: initialisations train. ``h`` is folded into the next layer's weights, so it
#: changes nothing in what the network can compute, only how the ANN trains; with the
#: neuron's own ``h = 1`` the signal vanishes through the layers (LeNet-5 stays at
#: chance on the 8x8 digits, 94 % with ``h = 5``, 97 % with ``h = 20``).
DEFAULT_H = 20.0


@functools.lru_cache(maxsize=16)
def _measured(params: tuple[tuple[str, float], ...], warmup: int, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    config = dict(params)
    theta0 = config["theta0"]
    # currents relative to the resting threshold: fine around the firing onset at
    # theta0 / 2, then logarithmic far into saturation
    relative = torch.cat([
        torch.linspace(0.0, 20.0, 401, dtype=torch.float64),
        torch.logspace(torch.log10(torch.tensor(20.0)), 4.0, 161, dtype=torch.float64)[1:],
    ])
    grid = relative * theta0
    neuron = snn.ASN(**{k: config[k] for k in ASN_FIELDS if k != "h"}, h=1.0, input="current")
    with torch.no_grad():
        current = grid.view(1, 1, -1).expand(warmup + steps, 1, -1)
        spikes, _ = neuron(current)
    rate = spikes[warmup:, 0].mean(0)
    rate = torch.cummax(rate, 0).values  # monotone (the averaged rate is up to 1/steps off)
    return grid.float(), (config["h"] * rate).float()


def asn_transfer(params: ASNParams | None = None, *, warmup: int = 1000, steps: int = 4000) -> tuple[torch.Tensor, torch.Tensor]:
    """``(currents S, f(S))``: the ASN's steady-state output ``h * rate`` for constant
    currents, measured from its step function (``warmup`` steps dropped, the mean of
    the next ``steps``). Cached per parameter set."""
    p = ASNParams() if params is None else params
    key = tuple((name, float(getattr(p, name))) for name in ASN_FIELDS)
    grid, values = _measured(key, int(warmup), int(steps))
    return grid.clone(), values.clone()


class ASNActivation(torch.nn.Module):
    """The transfer function ``f(S) = h * r(S)`` of an adaptive spiking neuron (see the
    module docstring), piecewise-linear between measured points; 0 for ``S`` below
    the firing onset, constant beyond the last point (``1e4 theta0``).

    Args: the :class:`~spikeflow.neurons.ASNParams` of the neuron that replaces it
    (time constants in steps; ``theta0`` defaults to ``m_f``, ``tau_beta`` to
    ``tau_eta``).
    """

    conversion_activation = True

    def __init__(
        self,
        tau_phi: float = 2.5,
        tau_gamma: float = 15.0,
        tau_eta: float = 50.0,
        tau_beta: Optional[float] = None,
        m_f: float = 0.1,
        theta0: Optional[float] = None,
        h: float = DEFAULT_H,
    ) -> None:
        super().__init__()
        self.params = ASNParams(
            tau_phi=tau_phi, tau_gamma=tau_gamma, tau_eta=tau_eta, tau_beta=tau_beta, m_f=m_f, theta0=theta0, h=h
        )
        if not float(h) > 0:
            raise ValueError(f"h (the value of one spike) must be > 0, got {h!r}")
        grid, values = asn_transfer(self.params)
        self.register_buffer("grid", grid, persistent=False)
        self.register_buffer("values", values, persistent=False)
        self.register_buffer("slopes", torch.diff(values) / torch.diff(grid), persistent=False)

    @property
    def scale(self) -> torch.Tensor:
        """The largest output, ``h * max r`` (what one neuron can carry)."""
        return self.values[-1].detach()

    def asn_kwargs(self) -> dict:
        """The ASN parameters, as keyword arguments of :class:`spikeflow.nn.ASN`."""
        return {name: float(getattr(self.params, name)) for name in ASN_FIELDS}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid = self.grid.to(x.dtype)
        s = x.clamp(grid[0], grid[-1])
        flat = s.detach().reshape(-1).contiguous()
        index = (torch.searchsorted(grid, flat, right=True) - 1).clamp(0, len(grid) - 2)
        y = self.values.to(x.dtype)[index] + self.slopes.to(x.dtype)[index] * (s.reshape(-1) - grid[index])
        return y.view_as(x)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v:g}" for k, v in self.asn_kwargs().items())


def asn_model(model: torch.nn.Module, **params: float) -> torch.nn.Module:
    """A copy of ``model`` with every ``torch.nn.ReLU`` module replaced by an
    :class:`ASNActivation` (``params`` for all of them).

    Raises:
        TypeError: ``model`` is not a module, or a parameter ASNActivation does not take.
        ValueError: a parameter out of range, or no ReLU module to replace.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    known = [n for n in inspect.signature(ASNActivation.__init__).parameters if n != "self"]
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise TypeError(f"unknown ASNActivation parameter {', '.join(map(repr, unknown))}; expected some of {known}")
    ASNActivation(**params)  # check the values before copying the model
    model = copy.deepcopy(model)
    replaced = 0
    for parent in model.modules():
        for name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.ReLU):
                setattr(parent, name, ASNActivation(**params))
                replaced += 1
    if replaced == 0:
        raise ValueError(f"{type(model).__name__} has no torch.nn.ReLU modules to replace by ASNActivation")
    return model


def _analog_nodes(graph: LayerGraph) -> set[str]:
    """Nodes whose values come from the input without passing a neuron."""
    analog: set[str] = set()
    for node in graph.nodes:
        if node.kind is Kind.INPUT:
            analog.add(node.name)
        elif node.kind not in (Kind.RELU, Kind.ACTIVATION) and any(i in analog for i in node.inputs):
            analog.add(node.name)
    return analog


def asn_network(
    graph: LayerGraph,
    calibration: Optional[Calibration] = None,
    *,
    fold_scales: bool = True,
    info: Optional[dict] = None,
) -> SpikingNetwork:
    """The adaptive spiking network of a graph trained with :class:`ASNActivation`
    (see the module docstring).

    Args:
        graph: a folded graph whose activations are all ``ASNActivation``.
        calibration: not needed (the activations fix their own range); accepted for
            the common builder signature.
        fold_scales: fold the spike height ``h`` into the weights that read the spikes.
        info: facts saved with the network.

    Raises:
        ConversionError: naming the first activation that is not an ``ASNActivation``,
            or a neuron whose input mixes the analog image and spikes.
    """
    check_builder_inputs("asn_network", graph, calibration, optional=True)
    activations = [n for n in graph.nodes if n.kind in (Kind.RELU, Kind.ACTIVATION)]
    for node in activations:
        if not isinstance(node.module, ASNActivation):
            raise ConversionError(
                f"{node.where or node.name}: the asn coding needs every activation to be an ASNActivation "
                f"(train the ANN with spikeflow.convert.asn.asn_model); use the rate coding for plain ReLUs"
            )
    if not activations:
        raise ConversionError("the asn coding needs at least one ASNActivation in the model")
    analog = _analog_nodes(graph)

    def neuron(node: Node, scale: torch.Tensor) -> list:
        kwargs = node.module.asn_kwargs()
        h = kwargs.pop("h")
        sources = [i in analog for i in node.inputs]
        if any(sources) and not all(sources):
            raise ConversionError(f"{node.where or node.name}: an ASN reads both the analog input and spikes")
        layers = []
        if not sources[0]:
            d_beta = node.module.params.d_beta
            layers.append((".synapse", Scale(torch.tensor(1.0 - d_beta)), {}))
        mode = "current" if sources[0] else "spikes"
        layers.append(("", snn.ASN(**kwargs, h=1.0, input=mode), {}))
        layers.append((".scale", Scale(torch.tensor(h)), {}))
        return layers

    scales = {node.name: node.module.scale for node in activations}
    info = dict(info or {})
    info["readout"] = "last"
    net = to_spiking(graph, scales, neuron, lambda node: SpikingMaxPool(node.module), info)
    _filter_output(net, activations[-1].module.params.d_beta)
    return finalize(net) if fold_scales else net


def _filter_output(net: SpikingNetwork, d_beta: float) -> None:
    """Insert a unit-gain leaky integrator (``beta = d_beta``) before the output."""
    output = next(s for s in net.steps if s.op == "output")
    name = "readout"
    while name in {s.name for s in net.steps}:
        name += "_"
    net.steps.insert(net.steps.index(output), Step(name, "layer", list(output.inputs)))
    net.layers[name] = snn.LI(beta=d_beta, normalize=True)
    output.inputs = [name]
    net._last_use = {i: index for index, step in enumerate(net.steps) for i in step.inputs}
