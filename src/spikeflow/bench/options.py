"""Options shared by every benchmark configuration of ``spikeflow bench``.

Each configuration module exposes ``run(opts: BenchOptions) -> dict``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

__all__ = ["BenchOptions"]


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
