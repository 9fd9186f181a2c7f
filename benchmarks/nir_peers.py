"""NIR round trips between spikeflow, snnTorch and Norse, spike for spike.

Run in a virtualenv holding the peers (snntorch, norse, nir, nirtorch), with
spikeflow on the path::

    PYTHONPATH=src peers-venv/bin/python benchmarks/nir_peers.py --json benchmarks/results/nir_peers.json

Each case builds a random network, writes it to NIR in one library, reads it in
another, runs both on the same random spike input (T = 100, B = 8) and counts the
spikes on which they disagree. Conventions: snnTorch reads and writes NIR for
``dt = 1e-4`` (``beta = 1 - dt / tau``, ``r = tau / dt``); Norse takes ``dt`` as an
argument and ignores ``r`` on LIF nodes (and writes ``tau = dt / tau_mem_inv``, so a
graph it writes is compared as Norse itself reads it back), so spikeflow exports for it with
``unit_resistance=True`` (r folded into the weights).
"""

from __future__ import annotations

import argparse
import io
import json
import contextlib
import logging
import warnings

import torch

import spikeflow as sf
from spikeflow import nir as snir

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)
T, B = 100, 8


def _quiet(fn, *args, **kwargs):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


def _run_steps(module, x):
    """A peer module stepped through time: ``out, state = module(x_t, state)``."""
    state, outs = None, []
    for t in range(x.shape[0]):
        out = module(x[t]) if state is None else module(x[t], state)
        o, state = out
        outs.append(o)
    return torch.stack(outs)


def _spikeflow_net(seed, recurrent=False, cuba=False):
    torch.manual_seed(seed)
    hidden = sf.nn.CubaLIF(alpha=0.6, beta=0.85, reset="zero", threshold=0.4) if cuba else sf.nn.LIF(
        beta=0.8, reset="zero", threshold=0.7, recurrent=40 if recurrent else None
    )
    return sf.nn.Sequential(
        torch.nn.Linear(50, 40), hidden, torch.nn.Linear(40, 10), sf.nn.LIF(beta=0.9, reset="zero", threshold=0.5)
    )


def _input(seed, features=50):
    g = torch.Generator().manual_seed(seed + 1000)
    return (torch.rand(T, B, features, generator=g) < 0.2).float()


def _result(name, a, b):
    mismatches = int((a != b).sum())
    return {"case": name, "spikes": int(a.sum()), "mismatched": mismatches, "identical": mismatches == 0}


def main() -> list[dict]:
    from snntorch.export_nir import export_to_nir
    from snntorch.import_nir import import_from_nir
    import snntorch as snn
    import norse.torch as norse

    results = []
    for seed in range(3):
        for kind in ("lif", "recurrent", "cuba"):
            net = _spikeflow_net(seed, recurrent=kind == "recurrent", cuba=kind == "cuba")
            x = _input(seed)
            with torch.no_grad():
                ref, _ = net(x)
                peer = _quiet(import_from_nir, snir.to_nir(net, (50,)))
                results.append(_result(f"spikeflow->snntorch {kind} seed {seed}", ref, _run_steps(peer, x)))
                if kind != "recurrent":  # Norse's NIR import has no recurrent graphs
                    peer = norse.from_nir(snir.to_nir(net, (50,), unit_resistance=True), dt=1e-4)
                    results.append(_result(f"spikeflow->norse {kind} seed {seed}", ref, _run_steps(peer, x)))

        # peers -> spikeflow
        torch.manual_seed(seed)
        x = _input(seed)
        snn_net = torch.nn.Sequential(
            torch.nn.Linear(50, 40), snn.Leaky(beta=torch.full((40,), 0.8), threshold=torch.full((40,), 0.7), reset_mechanism="zero", init_hidden=True, reset_delay=False),
            torch.nn.Linear(40, 10), snn.Leaky(beta=torch.full((10,), 0.9), threshold=torch.full((10,), 0.5), reset_mechanism="zero", init_hidden=True, reset_delay=False),
        )
        with torch.no_grad():
            graph = _quiet(export_to_nir, snn_net, x[0, 0])
            ours = snir.from_nir(graph)  # snnTorch writes for dt = 1e-4
            peer = _quiet(import_from_nir, graph)
            results.append(_result(f"snntorch->spikeflow lif seed {seed}", _run_steps(peer, x), ours(x)[0]))

        norse_net = norse.SequentialState(
            torch.nn.Linear(50, 40), norse.LIFBoxCell(norse.LIFBoxParameters(tau_mem_inv=torch.full((40,), 0.2), v_th=torch.full((40,), 0.1), v_leak=torch.zeros(40))),
            torch.nn.Linear(40, 10), norse.LIFBoxCell(norse.LIFBoxParameters(tau_mem_inv=torch.full((10,), 0.1), v_th=torch.full((10,), 0.05), v_leak=torch.zeros(10))),
        )
        with torch.no_grad():
            graph = norse.to_nir(norse_net, x[0, 0], dt=1e-3)
            ours = snir.from_nir(graph, dt=1e-3)
            peer = norse.from_nir(graph, dt=1e-3)  # Norse writes tau = dt * tau_mem (not 1 / tau_mem_inv): compare readers
            results.append(_result(f"norse->spikeflow lif seed {seed}", _run_steps(peer, x), ours(x)[0]))
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()
    rows = main()
    for r in rows:
        print(f"{r['case']:40s} spikes {r['spikes']:6d} mismatched {r['mismatched']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    raise SystemExit(0 if all(r["identical"] for r in rows) else 1)
