"""Data-parallel training with ``torch.distributed``, launched by ``torchrun``.

``torchrun --nproc-per-node N ...`` starts N processes and gives each the variables
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``.
:class:`DistributedContext` reads them, joins the process group, wraps the model
in ``DistributedDataParallel`` and gives each process its share of every epoch::

    ctx = DistributedContext.from_env(config.device).setup()   # disabled without torchrun
    model = ctx.wrap(build_model().to(ctx.device))
    for epoch in ...:
        order = torch.randperm(n, generator=generator)   # same seed: same on every rank
        for batch in ctx.shard(order).split(batch_size):
            ...                                           # DDP averages the gradients
        loss_sum, seen = ctx.all_reduce_sum([loss_sum, seen])
        if ctx.is_main:
            save_checkpoint(...)
    ctx.teardown()

Without the variables (a plain ``python`` run) the context is *disabled*: rank 0 of
1, ``wrap`` returns the model itself, ``shard`` the whole order and the reductions
their input, so one code path serves both.
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence, Union

import torch

if TYPE_CHECKING:  # pragma: no cover
    from .activity import LayerActivity

__all__ = ["DistributedContext", "shard_indices"]

ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
"""The variables torchrun sets for every process."""


def shard_indices(order: torch.Tensor, rank: int, world_size: int, *, drop_last: bool = True) -> torch.Tensor:
    """Process ``rank``'s share of an epoch's sample order ``order`` (1-D integer).

    Every process must pass the *same* ``order`` (draw it from a generator seeded
    identically on every rank). The order is first made a multiple of
    ``world_size`` long, then dealt out round-robin: rank ``r`` gets
    ``order[r], order[r + W], order[r + 2W], ...``. Every shard thus has the same
    length, so every rank takes the same number of optimizer steps (which DDP
    needs: a rank with an extra step would wait forever for the others), and
    batches of ``b`` taken in turn from each shard together form exactly the
    batches of ``W * b`` that one process would take from the same order.

    The ragged end (``len(order) % world_size`` samples):

    - ``drop_last=True`` (default): the last ``len(order) % W`` entries of the
      order are left out of this epoch. The shards are disjoint and cover the
      rest. As the order is reshuffled every epoch, a different handful of samples
      (fewer than W) sits out each epoch.
    - ``drop_last=False``: the order is padded by repeating its first entries
      (as ``torch.utils.data.DistributedSampler`` does), so the shards cover every
      sample, and up to W - 1 samples are seen twice in the epoch.

    Returns:
        A new 1-D tensor of ``len(order) // W`` (``drop_last``) or
        ``ceil(len(order) / W)`` indices.

    Raises:
        ValueError: ``order`` is not a 1-D integer tensor, ``rank`` is not in
            ``[0, world_size)``, or (``drop_last``) there are fewer samples than
            processes, so the shards would be empty.
    """
    if not isinstance(order, torch.Tensor) or order.dim() != 1 or order.is_floating_point() or order.is_complex():
        shape = tuple(order.shape) if isinstance(order, torch.Tensor) else type(order).__name__
        raise ValueError(f"shard: order must be a 1-D integer tensor of sample indices, got {shape}")
    if order.dtype == torch.bool:
        raise ValueError("shard: order must hold integer sample indices, not a boolean mask")
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"shard: world_size must be a positive int, got {world_size!r}")
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ValueError(f"shard: rank must be an int in [0, {world_size}), got {rank!r}")
    n = len(order)
    if drop_last:
        usable = n - n % world_size
        if usable == 0:
            raise ValueError(
                f"shard: {n} samples cannot be split over {world_size} processes with drop_last=True "
                f"(every shard would be empty); use fewer processes or drop_last=False"
            )
        order = order[:usable]
    else:
        if n == 0:
            raise ValueError("shard: the order is empty; there is nothing to share out")
        total = math.ceil(n / world_size) * world_size
        if total > n:
            order = torch.cat([order] * math.ceil(total / n))[:total]
    return order[rank::world_size].clone()


def _env_int(env: Mapping[str, str], name: str) -> int:
    text = env[name]
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"environment variable {name}={text!r} is not an integer") from None


@dataclass
class DistributedContext:
    """Where this process stands in a data-parallel run.

    Attributes:
        rank: this process's index, ``0 .. world_size - 1`` (0 for rank 0 = main).
        world_size: number of processes.
        local_rank: index of this process on its machine (picks its GPU).
        device: the device this process computes on (``cuda:<local_rank>`` for a
            distributed CUDA run).
        enabled: True when there is more than one process; False for a plain
            single-process run, where every method is a no-op or an identity.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    enabled: bool = False
    _owns_group: bool = field(default=False, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.device = torch.device(self.device)
        if self.world_size < 1:
            raise ValueError(f"DistributedContext: world_size must be >= 1, got {self.world_size}")
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"DistributedContext: rank {self.rank} is not in [0, {self.world_size})")
        if self.local_rank < 0:
            raise ValueError(f"DistributedContext: local_rank must be >= 0, got {self.local_rank}")
        if self.enabled and self.world_size == 1:
            raise ValueError("DistributedContext: enabled needs world_size > 1")

    @classmethod
    def from_env(
        cls, device: Union[str, torch.device] = "cpu", env: Optional[Mapping[str, str]] = None
    ) -> "DistributedContext":
        """The context described by torchrun's variables (``env``: ``os.environ``).

        Without ``RANK`` and ``WORLD_SIZE`` (a plain run), or with
        ``WORLD_SIZE=1``, the context is single-process and disabled, on
        ``device``. Otherwise it is enabled; a CUDA ``device`` becomes
        ``cuda:<LOCAL_RANK>`` (one GPU per process; an index in ``device`` is
        replaced), a CPU device stays. ``LOCAL_RANK`` defaults to ``RANK`` (one
        machine). Nothing is initialised here: call :meth:`setup`.

        Raises:
            ValueError: only one of ``RANK``/``WORLD_SIZE`` is set, a variable is
                not an integer, or the rank is out of range.
        """
        env = os.environ if env is None else env
        try:
            device = torch.device(device)
        except (RuntimeError, TypeError):
            raise ValueError(f"unknown device {device!r}; use 'cpu', 'cuda' or 'cuda:N'") from None
        present = [name for name in ("RANK", "WORLD_SIZE") if name in env]
        if not present:
            return cls(device=device)
        if len(present) == 1:
            missing = "WORLD_SIZE" if present == ["RANK"] else "RANK"
            raise ValueError(
                f"{present[0]} is set but {missing} is not: launch with torchrun (which sets "
                f"{', '.join(ENV_VARS)}), or unset {present[0]} for a single-process run"
            )
        world_size = _env_int(env, "WORLD_SIZE")
        rank = _env_int(env, "RANK")
        local_rank = _env_int(env, "LOCAL_RANK") if "LOCAL_RANK" in env else rank
        if world_size < 1:
            raise ValueError(f"WORLD_SIZE={world_size} must be >= 1")
        if not 0 <= rank < world_size:
            raise ValueError(f"RANK={rank} is not in [0, WORLD_SIZE={world_size})")
        if world_size == 1:
            return cls(rank=0, world_size=1, local_rank=local_rank, device=device)
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
        return cls(rank=rank, world_size=world_size, local_rank=local_rank, device=device, enabled=True)

    @property
    def backend(self) -> Optional[str]:
        """The process-group backend: ``"nccl"`` on CUDA, ``"gloo"`` otherwise
        (None when disabled)."""
        if not self.enabled:
            return None
        return "nccl" if self.device.type == "cuda" else "gloo"

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that should log and write checkpoints."""
        return self.rank == 0

    def _dist(self):
        import torch.distributed as dist

        if not dist.is_available():
            raise RuntimeError("this PyTorch build has no torch.distributed; distributed training is not possible")
        return dist

    def _require_group(self, what: str):
        dist = self._dist()
        if not dist.is_initialized():
            raise RuntimeError(f"DistributedContext.{what}: the process group is not initialised; call setup() first")
        return dist

    def setup(self) -> "DistributedContext":
        """Join the process group (``init_process_group`` from the environment:
        gloo on the CPU, nccl on CUDA, after selecting ``cuda:<local_rank>``).
        A no-op when disabled or when the group already exists (it must then match
        this rank and world size). Returns ``self``.

        Raises:
            ValueError: ``MASTER_ADDR``/``MASTER_PORT`` are missing, or an existing
                group disagrees with this context.
            RuntimeError: no torch.distributed, or the GPU ``local_rank`` is missing.
        """
        if not self.enabled:
            return self
        dist = self._dist()
        if dist.is_initialized():
            if (dist.get_rank(), dist.get_world_size()) != (self.rank, self.world_size):
                raise ValueError(
                    f"a process group already exists as rank {dist.get_rank()} of {dist.get_world_size()}, "
                    f"but this context is rank {self.rank} of {self.world_size}"
                )
            return self
        missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
        if missing:
            raise ValueError(
                f"distributed setup needs {' and '.join(missing)} in the environment (torchrun sets them)"
            )
        if self.device.type == "cuda":
            if not torch.cuda.is_available() or self.local_rank >= torch.cuda.device_count():
                count = torch.cuda.device_count() if torch.cuda.is_available() else 0
                raise RuntimeError(
                    f"process with LOCAL_RANK={self.local_rank} needs GPU cuda:{self.local_rank}, but "
                    f"{count} GPU(s) are visible; start at most one process per GPU"
                )
            torch.cuda.set_device(self.device)
        dist.init_process_group(self.backend, init_method="env://", rank=self.rank, world_size=self.world_size)
        self._owns_group = True
        return self

    def wrap(self, model: torch.nn.Module, **ddp_options: Any) -> torch.nn.Module:
        """``DistributedDataParallel(model)`` when enabled (``device_ids`` set for
        CUDA; ``ddp_options`` are passed on), else ``model`` itself. Move the model
        to :attr:`device` first. DDP copies rank 0's parameters and buffers to
        every rank here, and averages the gradients over the ranks in ``backward``.
        """
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"wrap takes a torch.nn.Module, got {type(model).__name__}")
        if not self.enabled:
            return model
        self._require_group("wrap")
        from torch.nn.parallel import DistributedDataParallel

        if self.device.type == "cuda":
            ddp_options.setdefault("device_ids", [self.device.index])
            ddp_options.setdefault("output_device", self.device.index)
        return DistributedDataParallel(model, **ddp_options)

    def shard(self, order: torch.Tensor, *, drop_last: bool = True) -> torch.Tensor:
        """This rank's share of ``order``: :func:`shard_indices` with this rank and
        world size (the whole order, copied, when disabled)."""
        return shard_indices(order, self.rank, self.world_size, drop_last=drop_last)

    def all_reduce_sum(
        self, values: Union[torch.Tensor, Sequence[float], float]
    ) -> Union[torch.Tensor, list[float], float]:
        """The sum over all ranks of ``values``: a tensor (returned as a new, detached
        tensor of the same dtype and device), a list/tuple of numbers (returned as a
        list of floats, summed in float64) or a single number (a float). When
        disabled the values come back unchanged (copied). Every rank must call it,
        with values of the same shape."""
        if isinstance(values, torch.Tensor):
            if values.dtype == torch.bool:
                raise TypeError("all_reduce_sum: cannot sum a boolean tensor; convert it to int or float")
            result = values.detach().clone()
            if self.enabled:
                dist = self._require_group("all_reduce_sum")
                buffer = result.to(self.device) if self.backend == "nccl" else result
                dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
                result = buffer.to(values.device)
            return result
        if isinstance(values, numbers.Real) and not isinstance(values, bool):
            return float(self.all_reduce_sum(torch.tensor([float(values)], dtype=torch.float64))[0])
        if isinstance(values, (list, tuple)):
            try:
                numbers_ = torch.tensor([float(v) for v in values], dtype=torch.float64)
            except (TypeError, ValueError):
                raise TypeError("all_reduce_sum: a list must hold numbers only") from None
            return [float(v) for v in self.all_reduce_sum(numbers_)]
        raise TypeError(
            f"all_reduce_sum takes a tensor, a number or a list of numbers, got {type(values).__name__}"
        )

    def all_reduce_activity(self, activity: "LayerActivity") -> "LayerActivity":
        """Replace ``activity``'s counts by their sum over all ranks (per-neuron
        counts and entries of every layer), so that its rates and histograms
        describe the whole epoch rather than this rank's share. Every rank must
        call it; the kept outputs are dropped. Returns ``activity``.

        Raises:
            RuntimeError: the ranks counted different layers or neuron shapes.
        """
        from .activity import LayerActivity

        if not isinstance(activity, LayerActivity):
            raise TypeError(f"all_reduce_activity takes a LayerActivity, got {type(activity).__name__}")
        if not self.enabled:
            return activity
        dist = self._require_group("all_reduce_activity")
        names = list(activity.names)
        counts, entries = activity.counts(), activity.entries()
        comm_device = self.device if self.backend == "nccl" else torch.device("cpu")
        # Every rank must send the same layout: compare the per-layer sizes first.
        sizes = torch.tensor([counts[n].numel() if n in counts else -1 for n in names], dtype=torch.int64)
        low, high = sizes.to(comm_device), sizes.clone().to(comm_device)
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
        if not torch.equal(low, high):
            differing = [n for n, a, b in zip(names, low.tolist(), high.tolist()) if a != b]
            raise RuntimeError(
                f"all_reduce_activity: the ranks counted different neurons in layers {differing} "
                f"(a layer ran on some ranks only, or with other shapes); reset() every rank at the same point"
            )
        ran = [n for n in names if n in counts]
        if not ran:
            return activity
        flat = torch.cat(
            [torch.tensor([entries[n] for n in ran], dtype=torch.int64)]
            + [counts[n].flatten().to(torch.int64) for n in ran]
        ).to(comm_device)
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat = flat.cpu()
        total_entries = dict(zip(ran, flat[: len(ran)].tolist()))
        summed, offset = {}, len(ran)
        for n in ran:
            size = counts[n].numel()
            summed[n] = flat[offset : offset + size].reshape(counts[n].shape)
            offset += size
        activity.reset()
        activity.update(summed, total_entries)
        return activity

    def barrier(self) -> None:
        """Wait until every rank gets here (no-op when disabled)."""
        if not self.enabled:
            return
        dist = self._require_group("barrier")
        if self.backend == "nccl":
            dist.barrier(device_ids=[self.device.index])
        else:
            dist.barrier()

    def teardown(self) -> None:
        """Leave the process group if :meth:`setup` created it (``destroy_process_group``);
        harmless to call again or when disabled."""
        if not (self.enabled and self._owns_group):
            return
        dist = self._dist()
        if dist.is_initialized():
            dist.destroy_process_group()
        self._owns_group = False

    def __enter__(self) -> "DistributedContext":
        return self.setup()

    def __exit__(self, *exc: Optional[object]) -> None:
        self.teardown()
