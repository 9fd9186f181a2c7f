"""spikeflow.train.distributed: shard properties, the environment, and a real
2-process gloo run checked against a single-process reference.

Run as a script (``python tests/test_distributed.py OUT_DIR`` with torchrun's
variables set), this file is the worker of the 2-process tests.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from spikeflow import nn as snn
from spikeflow.loss import membrane_cross_entropy
from spikeflow.train.activity import LayerActivity
from spikeflow.train.distributed import DistributedContext, shard_indices

# --------------------------------------------------------------------------- shards


@pytest.mark.parametrize("world_size", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("n", [7, 8, 29, 100, 103])
def test_shards_drop_last_are_disjoint_equal_and_cover_the_trimmed_order(n, world_size):
    order = torch.randperm(n)
    shards = [shard_indices(order, r, world_size) for r in range(world_size)]
    assert {len(s) for s in shards} == {n // world_size}  # equal: same number of steps everywhere
    joined = torch.cat(shards)
    assert len(set(joined.tolist())) == len(joined)  # disjoint
    kept = n - n % world_size
    assert sorted(joined.tolist()) == sorted(order[:kept].tolist())  # cover all but the ragged end
    for r, s in enumerate(shards):  # round-robin
        assert torch.equal(s, order[:kept][r::world_size])


@pytest.mark.parametrize("world_size", [2, 3, 4])
@pytest.mark.parametrize("n", [1, 5, 29, 103])
def test_shards_padded_cover_everything_with_equal_counts(n, world_size):
    order = torch.randperm(n)
    shards = [shard_indices(order, r, world_size, drop_last=False) for r in range(world_size)]
    assert {len(s) for s in shards} == {math.ceil(n / world_size)}
    joined = torch.cat(shards)
    assert set(joined.tolist()) == set(order.tolist())
    # Padding repeats the first entries of the order, nothing else.
    padded = torch.cat([order] * math.ceil(len(joined) / n))[: len(joined)]
    assert sorted(joined.tolist()) == sorted(padded.tolist())


def test_per_rank_batches_together_are_the_single_process_batches():
    # Batches of b from each of W shards = batches of W * b of the one-process order.
    order, W, b = torch.randperm(64), 4, 3
    shards = [shard_indices(order, r, W) for r in range(W)]
    for k in range(math.ceil(len(shards[0]) / b)):
        together = torch.cat([s[k * b : (k + 1) * b] for s in shards])
        assert sorted(together.tolist()) == sorted(order[k * W * b : (k + 1) * W * b].tolist())


def test_shard_errors():
    order = torch.arange(3)
    with pytest.raises(ValueError, match="3 samples cannot be split over 4"):
        shard_indices(order, 0, 4)
    with pytest.raises(ValueError, match="rank"):
        shard_indices(order, 2, 2)
    with pytest.raises(ValueError, match="1-D integer"):
        shard_indices(torch.rand(3), 0, 1)
    with pytest.raises(ValueError, match="1-D integer"):
        shard_indices(order[None], 0, 1)
    with pytest.raises(ValueError, match="empty"):
        shard_indices(order[:0], 0, 2, drop_last=False)


def test_shards_are_disjoint_equal_and_cover_the_permutation():
    order = torch.randperm(103)
    shards = [DistributedContext(rank=r, world_size=4).shard(order) for r in range(4)]
    assert all(len(s) == 103 // 4 for s in shards)  # every rank takes the same number of steps
    joined = torch.cat(shards)
    assert len(set(joined.tolist())) == len(joined) == 100  # disjoint; 3 samples sit this epoch out
    assert set(joined.tolist()) <= set(order.tolist())
    assert torch.equal(DistributedContext().shard(order), order)  # a plain run takes everything


# --------------------------------------------------------------------------- environment


def test_from_env_without_torchrun_is_single_process_and_disabled():
    ctx = DistributedContext.from_env("cpu", env={})
    assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.enabled, ctx.is_main) == (0, 1, 0, False, True)
    assert ctx.device == torch.device("cpu") and ctx.backend is None
    # Disabled: every method is an identity or a no-op.
    assert ctx.setup() is ctx
    model = torch.nn.Linear(2, 2)
    assert ctx.wrap(model) is model
    values = torch.tensor([1.0, 2.0])
    summed = ctx.all_reduce_sum(values)
    assert torch.equal(summed, values) and summed is not values
    assert ctx.all_reduce_sum([1, 2.5]) == [1.0, 2.5]
    assert ctx.all_reduce_sum(3) == 3.0
    ctx.barrier()
    ctx.teardown()
    single = DistributedContext.from_env("cpu", env={"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"})
    assert not single.enabled and single.world_size == 1


def test_from_env_under_torchrun():
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "x", "MASTER_PORT": "1"}
    ctx = DistributedContext.from_env("cpu", env=env)
    assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.enabled, ctx.is_main) == (3, 4, 1, True, False)
    assert ctx.device == torch.device("cpu") and ctx.backend == "gloo"
    gpu = DistributedContext.from_env("cuda", env=env)  # no CUDA needed to describe it
    assert gpu.device == torch.device("cuda", 1) and gpu.backend == "nccl"
    assert DistributedContext.from_env("cuda:0", env=env).device == torch.device("cuda", 1)
    no_local = DistributedContext.from_env("cpu", env={"RANK": "2", "WORLD_SIZE": "4"})
    assert no_local.local_rank == 2


@pytest.mark.parametrize(
    "env, message",
    [
        ({"RANK": "0"}, "WORLD_SIZE is not"),
        ({"WORLD_SIZE": "2"}, "RANK is not"),
        ({"RANK": "2", "WORLD_SIZE": "2"}, r"RANK=2 is not in \[0, WORLD_SIZE=2\)"),
        ({"RANK": "a", "WORLD_SIZE": "2"}, "RANK='a' is not an integer"),
        ({"RANK": "0", "WORLD_SIZE": "0"}, "WORLD_SIZE=0"),
    ],
)
def test_from_env_errors(env, message):
    with pytest.raises(ValueError, match=message):
        DistributedContext.from_env("cpu", env=env)


def test_enabled_context_needs_setup_and_master_address(monkeypatch):
    ctx = DistributedContext(rank=0, world_size=2, enabled=True)
    with pytest.raises(RuntimeError, match="call setup"):
        ctx.wrap(torch.nn.Linear(2, 2))
    with pytest.raises(RuntimeError, match="call setup"):
        ctx.all_reduce_sum([1.0])
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    with pytest.raises(ValueError, match="MASTER_ADDR and MASTER_PORT"):
        ctx.setup()
    with pytest.raises(ValueError, match="rank 2 is not in"):
        DistributedContext(rank=2, world_size=2)


# --------------------------------------------------------------------------- 2 processes

T, B, IN, HIDDEN, OUT, LR = 6, 8, 5, 7, 3, 0.5


def _model() -> snn.Sequential:
    return snn.Sequential(
        snn.Linear(IN, HIDDEN),
        snn.LIF(beta=0.8, threshold=0.5, backend="reference"),
        snn.Linear(HIDDEN, OUT),
        snn.LI(beta=0.9, backend="reference"),
    )


def _data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(11)
    x = torch.rand(T, B, IN, generator=g) * 1.5
    y = torch.randint(0, OUT, (B,), generator=g)
    order = torch.randperm(B, generator=torch.Generator().manual_seed(5))  # "the epoch's permutation"
    return x, y, order


def _step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """One SGD step on the mean loss of the batch; returns the loss."""
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    output, _ = model(x)
    loss = membrane_cross_entropy(output, y, reduce="mean")
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def _worker(out_dir: Path) -> None:
    torch.set_num_threads(1)
    ctx = DistributedContext.from_env("cpu").setup()
    torch.manual_seed(100 + ctx.rank)  # different weights per rank: wrap must copy rank 0's
    model = _model()
    network = ctx.wrap(model)
    assert isinstance(network, torch.nn.parallel.DistributedDataParallel)
    x, y, order = _data()
    index = ctx.shard(order)
    activity = LayerActivity(network)
    loss = _step(network, x[:, index], y[index])
    loss_sum, seen = ctx.all_reduce_sum([loss * len(index), len(index)])
    ranks = ctx.all_reduce_sum(torch.tensor([ctx.rank + 1, 10], dtype=torch.int64))
    ctx.all_reduce_activity(activity)
    result = {
        "rank": ctx.rank, "world_size": ctx.world_size, "is_main": ctx.is_main, "index": index.tolist(),
        "loss_sum": loss_sum, "seen": seen, "ranks": ranks.tolist(), "ranks_dtype": str(ranks.dtype),
        "entries": activity.entries(), "counts": {k: v.tolist() for k, v in activity.counts().items()},
    }
    torch.save(model.state_dict(), out_dir / f"weights{ctx.rank}.pt")
    (out_dir / f"rank{ctx.rank}.json").write_text(json.dumps(result))
    activity.close()
    ctx.barrier()
    ctx.teardown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_take_the_single_process_step(tmp_path):
    """DDP's gradient average over two ranks, each with the mean loss of its half
    of the batch, equals one process's step on the mean loss of the whole batch."""
    world_size, port = 2, _free_port()
    processes = []
    for rank in range(world_size):
        env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
        env.update(
            RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port), OMP_NUM_THREADS="1",
        )
        if os.path.exists("/sys/class/net/lo"):
            env.setdefault("GLOO_SOCKET_IFNAME", "lo")
        processes.append(
            subprocess.Popen(
                [sys.executable, __file__, str(tmp_path)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True,
            )
        )
    logs = []
    for process in processes:
        try:
            logs.append(process.communicate(timeout=120)[0])
        except subprocess.TimeoutExpired:
            for p in processes:
                p.kill()
            pytest.fail("the 2-process gloo run did not finish in 120 s")
    for rank, process in enumerate(processes):
        assert process.returncode == 0, f"rank {rank} failed:\n{logs[rank][-3000:]}"

    # The single-process reference: rank 0's initial weights, the whole batch.
    x, y, order = _data()
    torch.manual_seed(100)
    reference = _model()
    initial = {k: v.clone() for k, v in reference.state_dict().items()}
    with LayerActivity(reference) as ref_activity:  # counted per shard, as on the ranks
        for rank in range(world_size):
            reference(x[:, shard_indices(order, rank, world_size)])
        ref_counts, ref_entries = ref_activity.counts(), ref_activity.entries()
    ref_loss = _step(reference, x[:, order], y[order])
    expected = reference.state_dict()
    assert any(not torch.allclose(initial[k], expected[k]) for k in expected)  # the step moved the weights

    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(world_size)]
    halves = [torch.tensor(r["index"]) for r in results]
    assert [r["rank"] for r in results] == [0, 1] and [r["is_main"] for r in results] == [True, False]
    assert sorted(torch.cat(halves).tolist()) == list(range(B)) and len(halves[0]) == len(halves[1]) == B // 2
    for r in results:
        assert r["seen"] == B
        assert r["loss_sum"] == pytest.approx(ref_loss * B, rel=1e-5)
        assert r["ranks"] == [3, 20] and r["ranks_dtype"] == "torch.int64"
        assert r["entries"] == ref_entries
        assert {k: torch.tensor(v) for k, v in r["counts"].items()}.keys() == ref_counts.keys()
        for k, v in r["counts"].items():
            assert torch.equal(torch.tensor(v), ref_counts[k])
    assert sum(sum(v) for v in results[0]["counts"].values()) > 0  # spikes were counted

    for rank in range(world_size):
        weights = torch.load(tmp_path / f"weights{rank}.pt", weights_only=True)
        for key in expected:
            torch.testing.assert_close(weights[key], expected[key], rtol=1e-5, atol=1e-6)

    # Without the gradient average (a step on one half only) the weights differ:
    # the comparison above can fail.
    torch.manual_seed(100)
    alone = _model()
    _step(alone, x[:, halves[0]], y[halves[0]])
    assert any(not torch.allclose(alone.state_dict()[k], expected[k], rtol=1e-5, atol=1e-6) for k in expected)


# --------------------------------------------------------------------------- trainer (lead's test)


def test_two_process_ddp_equals_one_process_on_the_union_of_the_batches(tmp_path):
    """Two ranks with 32 samples each per step take the same steps as one process with
    64: rank r trains on order[r::2], so step k of the two ranks together sees
    order[64k : 64k + 64], and DDP averages the two mean gradients."""
    from spikeflow.train import TrainConfig, train

    settings = dict(hidden=16, steps=4, epochs=1, quiet=True, threads=1)
    single = train(TrainConfig(**settings, batch_size=64, out=str(tmp_path / "single")))

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
        "--master_port", str(_free_port()), "-m", "spikeflow.cli", "train", "--hidden", "16", "-T", "4",
        "--epochs", "1", "--batch-size", "32", "--threads", "1", "-q", "--out", str(tmp_path / "ddp"),
        "--json", str(tmp_path / "ddp.json"),
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]

    ddp = torch.load(tmp_path / "ddp" / "last.pt", weights_only=True)
    ref = torch.load(tmp_path / "single" / "last.pt", weights_only=True)
    assert ddp["model"].keys() == ref["model"].keys()  # saved unwrapped (no "module." prefix)
    for key in ref["model"]:
        torch.testing.assert_close(ddp["model"][key], ref["model"][key], rtol=1e-4, atol=1e-5)

    summary = json.loads((tmp_path / "ddp.json").read_text())
    assert summary["world_size"] == 2
    assert summary["train_accuracy"] == pytest.approx(single["train_accuracy"], abs=0.01)


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))
