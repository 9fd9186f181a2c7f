"""Numerical guards of the neuron state: the compute dtype and non-finite values.

**Half precision.** A membrane integrates many small inputs over many steps. In
float16 it overflows at 65504 (an IF neuron without reset reaches that after a few
thousand steps of input 20) and in both float16 and bfloat16 a small input added to a
large membrane is lost to rounding (bfloat16 keeps 8 significant bits: 1 + 0.001 is
1). So a neuron fed float16 or bfloat16 input keeps its state, and computes every
step, in float32 (:func:`state_dtype`); its output is returned in the input's dtype
(spikes 0/1 are exact there). This is what mixed-precision training does for
accumulations, and it also lets the fused float32 kernels run half-precision
models.

**Non-finite state.** NaN in one input value, or in a parameter, poisons a
neuron's state for every later step (``NaN > threshold`` is false, ``beta * NaN`` is
NaN), so a network silently stops spiking; ``+-Inf`` does the same through
``Inf - Inf``. After every call :func:`spikeflow.scan` checks that the final state is
finite (one pass over ``[B, *features]``, not over time) and, if it is not, finds
the cause (NaN/Inf in the input, with its first time step; in a parameter; in the
initial state; or an overflow of the state itself) and acts on the policy:

- ``"warn"`` (default): a :class:`NonFiniteWarning` naming the layer and the cause;
- ``"raise"``: a :class:`NonFiniteError` (a ``FloatingPointError``) with that message;
- ``"ignore"``: no check.

Set it with :func:`set_nonfinite_policy`, temporarily with :func:`nonfinite_policy`,
or with the environment variable ``SPIKEFLOW_NONFINITE``. Reading a flag from an
accelerator tensor waits for the device, so under the default policy only CPU states
are checked; a policy set explicitly (function or environment variable) checks on
every device. Nothing is checked while ``torch.compile`` traces a model.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from typing import Any, Iterator, NamedTuple

import torch

__all__ = [
    "NonFiniteError",
    "NonFiniteWarning",
    "POLICIES",
    "check_state",
    "get_nonfinite_policy",
    "nonfinite_policy",
    "set_nonfinite_policy",
    "state_dtype",
]

POLICIES = ("warn", "raise", "ignore")
_HALF = (torch.float16, torch.bfloat16)


class NonFiniteError(FloatingPointError):
    """A neuron state became NaN or Inf (policy ``"raise"``)."""


class NonFiniteWarning(RuntimeWarning):
    """A neuron state became NaN or Inf (policy ``"warn"``)."""


def _parse(policy: Any, source: str) -> str:
    if policy not in POLICIES:
        raise ValueError(f"{source} must be one of {', '.join(POLICIES)}; got {policy!r}")
    return policy


_env = os.environ.get("SPIKEFLOW_NONFINITE")
_policy = _parse(_env, "SPIKEFLOW_NONFINITE") if _env else "warn"
_explicit = bool(_env)


def get_nonfinite_policy() -> str:
    """The current policy: ``"warn"``, ``"raise"`` or ``"ignore"``."""
    return _policy


def set_nonfinite_policy(policy: str) -> str:
    """Set what a non-finite neuron state does (see the module docstring); returns the
    previous policy. An explicitly set policy also checks states on accelerators."""
    global _policy, _explicit
    previous = _policy
    _policy, _explicit = _parse(policy, "the non-finite policy"), True
    return previous


@contextlib.contextmanager
def nonfinite_policy(policy: str) -> Iterator[None]:
    """``with nonfinite_policy("raise"): ...`` sets the policy inside the block only."""
    global _policy, _explicit
    saved = (_policy, _explicit)
    set_nonfinite_policy(policy)
    try:
        yield
    finally:
        _policy, _explicit = saved


def state_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype a neuron computes and keeps its state in for inputs of ``dtype``:
    float32 for float16 and bfloat16, the input's own dtype otherwise."""
    return torch.float32 if dtype in _HALF else dtype


def _should_check(state: NamedTuple) -> bool:
    if _policy == "ignore" or torch.compiler.is_compiling():
        return False
    return _explicit or all(t.device.type == "cpu" for t in state)


def _finite(t: torch.Tensor) -> bool:
    return bool(torch.isfinite(t).all())


def _probably_finite(t: torch.Tensor) -> bool:
    """True if every value is finite, decided by the sum (one reduction and a float: a
    quarter of the cost of ``isfinite().all()`` on a small state); a sum that overflows
    while every value is finite is settled by the exact test."""
    return math.isfinite(float(t.sum())) or _finite(t)


def _cause(x: torch.Tensor, initial: NamedTuple, params: Any, final: NamedTuple) -> str:
    """Why the state is not finite, most specific first."""
    for name in getattr(type(params), "NUMERIC", ()):
        value = getattr(params, name, None)
        if isinstance(value, torch.Tensor) and not _finite(value.detach()):
            return f"parameter {name} holds NaN or Inf"
    bad = ~torch.isfinite(x.detach())
    if bool(bad.any()):
        per_step = bad.flatten(1).any(1)
        first = int(per_step.nonzero()[0, 0])
        n_nan = int(torch.isnan(x.detach()).sum())
        return (
            f"the input holds {n_nan} NaN and {int(bad.sum()) - n_nan} Inf of its {x.numel()} values "
            f"(first at time step {first})"
        )
    for name, value in zip(type(initial)._fields, initial):
        if not _finite(value.detach()):
            return f"the initial state field {name!r} holds NaN or Inf"
    fields = [n for n, v in zip(type(final)._fields, final) if not _finite(v.detach())]
    limit = torch.finfo(final[0].dtype).max
    return (
        f"the input and parameters are finite, so the state field {fields[0]!r} overflowed "
        f"{final[0].dtype} (largest value {limit:.3g}): the input drives it without bound "
        f"(no reset, or a decay of 1?)"
    )


def check_state(layer: str, x: torch.Tensor, initial: NamedTuple, params: Any, final: NamedTuple) -> None:
    """Apply the policy to the ``final`` state of a call on input ``x`` (see module)."""
    if not _should_check(final) or all(_probably_finite(t.detach()) for t in final):
        return
    message = (
        f"{layer}: the neuron state became NaN or Inf in this call: {_cause(x, initial, params, final)}. "
        f"It stays non-finite for every later step; "
        + (
            "spikeflow.set_nonfinite_policy('raise') stops at the first such call, 'ignore' silences this"
            if _policy == "warn"
            else "fix the input or parameters, or set spikeflow.set_nonfinite_policy('warn')"
        )
    )
    if _policy == "raise":
        raise NonFiniteError(message)
    warnings.warn(message, NonFiniteWarning, stacklevel=4)
