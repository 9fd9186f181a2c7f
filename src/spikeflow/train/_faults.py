"""Fault injection for the crash tests: a process that kills itself at a named point.

TEST-ONLY. Set ``SPIKEFLOW_FAULT=EVENT[:KEY]:N`` in the environment of a training,
conversion or tuning process and it sends itself ``SIGKILL`` (no clean-up, no
``finally``, like a power cut or the OOM killer) the N-th time it reaches ``EVENT``
(with ``KEY``, when one is given). Unset, every hook is one comparison with ``None``.

Events (``KEY`` in brackets). The checkpoint events fire for every file written
through :func:`spikeflow.train.checkpoint.save_weights_only` (training checkpoints,
and the conversion's files), keyed by the file's name:

``before-checkpoint`` (file name)
    a checkpoint write is about to start (``before-checkpoint:last.pt:2``: after the
    second epoch, once ``best.pt`` is written, before ``last.pt`` is).
``checkpoint-write`` (file name)
    half of the checkpoint's bytes are in its temporary file, flushed
    (``checkpoint-write:3``: the third checkpoint write of the process, any file).
``after-checkpoint`` (file name)
    a checkpoint was renamed into place.
``mid-epoch`` (epoch)
    a training batch is about to start (``mid-epoch:2:5``: before the fifth batch of
    epoch 2).
``mid-evaluation`` (window, or ``all``)
    a conversion's ANN-vs-SNN evaluation has started (``spikeflow convert``; one
    evaluation per window for the windowed TTFS codings).
``mid-trial`` (trial number)
    a tuning trial reported an epoch (``mid-trial:1:2``: trial 1, after its second
    epoch's report).
``after-trial``
    a tuning trial was recorded as finished in the study (``after-trial:2``).

Only the first matching occurrence kills; counts are per process, so the process
that resumes the run must be started without the variable.
"""

from __future__ import annotations

import os
import signal
from typing import IO, Optional

__all__ = ["ENV", "point"]

ENV = "SPIKEFLOW_FAULT"


def _parse(spec: Optional[str]) -> Optional[tuple[str, Optional[str], int]]:
    if not spec:
        return None
    parts = spec.split(":")
    try:
        count = int(parts[-1])
    except ValueError:
        raise ValueError(f"{ENV}={spec!r}: expected EVENT[:KEY]:N with N a positive integer") from None
    if len(parts) < 2 or count < 1:
        raise ValueError(f"{ENV}={spec!r}: expected EVENT[:KEY]:N with N a positive integer")
    return parts[0], ":".join(parts[1:-1]) or None, count


_FAULT = _parse(os.environ.get(ENV))
_seen = 0


def point(event: str, key: object = None, flush: Optional[IO[bytes]] = None) -> None:
    """A place where a crash test may kill the process: ``SIGKILL`` to itself when
    this is the N-th arrival at the event (and key) ``SPIKEFLOW_FAULT`` names.
    ``flush``: a file whose buffered bytes reach the disk first."""
    global _seen
    if _FAULT is None:
        return
    name, wanted, count = _FAULT
    if event != name or (wanted is not None and str(key) != wanted):
        return
    _seen += 1
    if _seen == count:
        if flush is not None:
            flush.flush()
            os.fsync(flush.fileno())
        os.kill(os.getpid(), signal.SIGKILL)
