"""Training time per epoch of snnTorch's tutorial network in spikeflow and in
snnTorch, on the project's fixed MNIST split (train = t10k images 0..7999).

The network is snnTorch's tutorial 5: ``784 -> 1000 -> 10``, ``Linear -> Leaky(beta
0.95) -> Linear -> Leaky(beta 0.95)``, 25 steps of direct input, the ATan surrogate
(alpha 2), loss = sum over steps of the cross-entropy of the output membrane, Adam
(lr 5e-4, betas 0.9 / 0.999), batches of 128, prediction = most output spikes.
Both libraries start from the same weights. Their LIF neurons differ in one detail:
snnTorch subtracts the threshold at the step *after* a spike and reports the
membrane before that subtraction, spikeflow subtracts it in the step of the spike
(the usual discrete LIF); the loss reads each library's own membrane.

Epochs alternate between the libraries (spikeflow, snnTorch, spikeflow, ...) so that
machine noise hits both alike. Run with the peers' virtualenv::

    /work/peers-venv/bin/python benchmarks/epoch_time.py --data-dir ../shared/data/mnist

Writes ``results/epoch_time.json`` and ``.md`` (``--quick``: a few batches, written
to ``*.quick.*``).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _timing import machine_info  # noqa: E402

T, BATCH, LR, BETA = 25, 128, 5e-4, 0.95


def spikeflow_net(fc1: torch.nn.Linear, fc2: torch.nn.Linear):
    import spikeflow
    from spikeflow import nn as snn

    atan = spikeflow.surrogate.atan(2.0)
    net = snn.Sequential(
        snn.Linear(784, 1000), snn.LIF(BETA, surrogate=atan), snn.Linear(1000, 10), snn.LIF(BETA, surrogate=atan)
    )
    net[0].module.load_state_dict(fc1.state_dict())
    net[2].module.load_state_dict(fc2.state_dict())

    def forward(x):  # x [B, 784] -> (membrane [T, B, 10], spikes [T, B, 10])
        rec = net.record(x.unsqueeze(0).expand(T, *x.shape))
        return rec.trajectories[-1].v, rec.output

    return net, forward


def snntorch_net(fc1: torch.nn.Linear, fc2: torch.nn.Linear):
    import snntorch as snn

    class Net(torch.nn.Module):  # tutorial 5
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = copy.deepcopy(fc1), copy.deepcopy(fc2)
            self.lif1, self.lif2 = snn.Leaky(beta=BETA), snn.Leaky(beta=BETA)

        def forward(self, x):
            mem1, mem2 = self.lif1.init_leaky(), self.lif2.init_leaky()
            spk_rec, mem_rec = [], []
            for _ in range(T):
                spk1, mem1 = self.lif1(self.fc1(x), mem1)
                spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
                spk_rec.append(spk2)
                mem_rec.append(mem2)
            return torch.stack(mem_rec), torch.stack(spk_rec)

    net = Net()
    return net, net


def epoch(forward, params, x, y, order, limit):
    optimizer = epoch.optimizers[id(params)]
    start = time.perf_counter()
    for n, i in enumerate(range(0, len(x), BATCH)):
        if limit and n >= limit:
            break
        idx = order[i : i + BATCH]
        mem, _ = forward(x[idx])
        loss = sum(F.cross_entropy(mem[t], y[idx]) for t in range(T))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


epoch.optimizers = {}


@torch.no_grad()
def accuracy(forward, x, y):
    correct = 0
    for i in range(0, len(x), 500):
        _, spikes = forward(x[i : i + 500])
        correct += int((spikes.sum(0).argmax(1) == y[i : i + 500]).sum())
    return correct / len(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("SPIKEFLOW_DATA"))
    parser.add_argument("--epochs", type=int, default=2, help="epochs per library (alternating)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="5 batches per epoch")
    args = parser.parse_args()
    import snntorch

    import spikeflow
    from spikeflow.data import load_mnist_splits

    torch.set_num_threads(args.threads)
    x_train, y_train, x_test, y_test = load_mnist_splits(args.data_dir, flatten=True)
    torch.manual_seed(0)
    fc1, fc2 = torch.nn.Linear(784, 1000), torch.nn.Linear(1000, 10)
    runs = {}
    for name, make in (("spikeflow", spikeflow_net), ("snntorch", snntorch_net)):
        module, forward = make(fc1, fc2)
        params = list(module.parameters())
        epoch.optimizers[id(params)] = torch.optim.Adam(params, lr=LR, betas=(0.9, 0.999))
        with torch.no_grad():
            mem, _ = forward(x_train[:BATCH])
            first_loss = float(sum(F.cross_entropy(mem[t], y_train[:BATCH]) for t in range(T)))
        runs[name] = {"forward": forward, "params": params, "times": [], "first_batch_loss": first_loss}
    limit = 5 if args.quick else 0
    for e in range(args.epochs):
        order = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(e))
        for name in (("spikeflow", "snntorch") if e % 2 == 0 else ("snntorch", "spikeflow")):
            run = runs[name]
            run["times"].append(epoch(run["forward"], run["params"], x_train, y_train, order, limit))
            print(f"epoch {e + 1} {name}: {run['times'][-1]:.1f} s", flush=True)
    results = {}
    for name, run in runs.items():
        results[name] = {
            "epoch_times_s": run["times"],
            "median_epoch_s": statistics.median(run["times"]),
            "test_accuracy": accuracy(run["forward"], x_test, y_test),
            "first_batch_loss": run["first_batch_loss"],
        }
    ratio = results["snntorch"]["median_epoch_s"] / results["spikeflow"]["median_epoch_s"]
    report = {
        "benchmark": "epoch_time",
        "network": "784-1000-10 LIF (beta 0.95), T=25, direct input, ATan(2), Adam 5e-4, batch 128",
        "data": "MNIST t10k fixed split: train 0..7999, test 8000..9999",
        "epochs_per_library": args.epochs,
        "quick": args.quick,
        "threads": torch.get_num_threads(),
        "versions": {"torch": torch.__version__, "spikeflow": spikeflow.__version__,
                     "snntorch": snntorch.__version__},
        "machine": machine_info(),
        "results": results,
        "snntorch_over_spikeflow": ratio,
    }
    suffix = ".quick" if args.quick else ""
    out = HERE / "results" / f"epoch_time{suffix}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    table = ["| library | s / epoch (median) | test accuracy after the run |", "|---|---:|---:|"]
    for name, r in results.items():
        table.append(f"| {name} | {r['median_epoch_s']:.1f} | {r['test_accuracy']:.2%} |")
    table.append(f"\nsnnTorch / spikeflow time per epoch: {ratio:.1f}x ({torch.get_num_threads()} threads)")
    (HERE / "results" / f"epoch_time{suffix}.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
