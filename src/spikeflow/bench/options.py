"""Options shared by every benchmark configuration of ``spikeflow bench``.

Each configuration module exposes ``run(opts: BenchOptions) -> dict``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple

__all__ = ["BenchOptions", "option", "report_progress", "selected"]


@dataclass(frozen=True)
class BenchOptions:
    """What a benchmark configuration needs to know.

    - ``device``: ``"cpu"`` or ``"cuda"``.
    - ``threads``: torch intra-op threads (already applied by the caller; 0 means "as set").
    - ``quick``: smaller sizes and fewer repeats (smoke runs, tests).
    - ``repeats`` / ``warmup``: timed rounds and untimed warm-up rounds (round-robin).
    - ``seed``: seed for inputs and weights.
    - ``impls``: keep only implementations whose name starts with one of these prefixes
      (``None``: all).
    - ``progress``: print progress lines to stderr.
    """

    device: str = "cpu"
    threads: int = 0
    quick: bool = False
    repeats: int = 10
    warmup: int = 2
    seed: int = 0
    impls: Optional[Tuple[str, ...]] = None
    progress: bool = False


def option(opts: Any, name: str, default: Any) -> Any:
    """``opts.name``, or ``default`` when it is missing or None (configurations also
    take stand-in option objects)."""
    value = getattr(opts, name, default)
    return default if value is None else value


def selected(name: str, impls: Optional[Sequence[str]]) -> bool:
    """Whether implementation ``name`` passes the ``impls`` prefix filter (None: all)."""
    return not impls or any(name.startswith(p) for p in impls)


def report_progress(opts: Any, config: str, message: str) -> None:
    """A progress line ``[config] message`` on stderr when ``opts.progress`` is set."""
    if getattr(opts, "progress", False):
        print(f"[{config}] {message}", file=sys.stderr, flush=True)
