"""Seed 000's comparison: the adaptive spiking neuron (ASN) as the seed's per-sample
NumPy loop against a vectorized PyTorch scan and spikeflow's fused kernel.

Seed 000 (Soerensen et al., "How to accelerate deep spiking neural networks with
recurrent API from Keras/Tensorflow") times its NumPy ``ASN`` class over 300 steps
for a growing number of neurons and shows the loop falling behind a recurrent-API
implementation. This configuration repeats that comparison:

* ``numpy-seed-loop``: the seed's ``ASN.call`` transcribed as published (see
  :class:`SeedASN`), one neuron per sample (``input [N, 300, 1]``), each sample
  simulated with scalar Python state (one-element NumPy arrays, as the seed's
  ``input[b, t, :]`` gives). The loop is linear in ``N``, so for large ``N`` only the
  first ``measured_neurons`` are timed (about ``NUMPY_BUDGET_S`` per call) and the
  time is scaled by ``N / measured_neurons`` (recorded in every row).
* ``spikeflow-reference``: ``spikeflow.scan(ASNParams(...), x, backend="reference")``,
  a plain vectorized PyTorch loop over time (one set of elementwise ops per step).
* ``spikeflow-fused``: the same with ``backend="auto"`` (the fused C++/OpenMP ``cpu``
  kernel on CPU; the name of the backend ``auto`` picked is recorded).

Forward only (under ``torch.no_grad()``; the seed compares simulation speed), float64
throughout (the seed's NumPy precision), so the spikes must be *identical*: before
timing, both spikeflow variants are checked spike for spike against the NumPy loop
on the measured neurons, for both input modes of the seed (spike train, current).
"""

from __future__ import annotations

import datetime as _dt
import gc
import time
from typing import Dict, List, Optional

import numpy as np
import torch

from .options import option, report_progress, selected
from .suite import target_row
from .timing import Timed, json_safe, library_versions, load_average, machine_info, round_robin, summarize, synchronizer

__all__ = ["SeedASN", "run", "seed_loop", "make_input"]

NAME = "asn_seed"
SCHEMA = "spikeflow-bench/asn_seed/1"
DESCRIPTION = (
    "Seed 000: adaptive spiking neuron (ASN, seed defaults) over 300 steps, forward only, float64; "
    "the seed's per-sample NumPy loop vs spikeflow's vectorized reference scan vs spikeflow's fused kernel"
)
T_STEPS = 300
FULL_NS = (10, 100, 1000, 10000, 100000)
QUICK_NS = (10, 1000)
MODES = ("spikes", "current")
NUMPY_BUDGET_S = 2.0  # wall time of one timed NumPy call (the measured subset)
QUICK_NUMPY_BUDGET_S = 0.15
CALIBRATION_NEURONS = 10
TARGET_N = 10000
TARGET_RATIO = 1000.0  # the issue's target: fused >= 1000x the NumPy loop at 10,000 neurons
EARLIER_REFERENCE_RATIO = 226.0  # what the plain PyTorch scan measured there earlier (the issue)

IMPL_NUMPY = "numpy-seed-loop"
IMPL_REF = "spikeflow-reference"
IMPL_FUSED = "spikeflow-fused"
IMPLS = (IMPL_NUMPY, IMPL_REF, IMPL_FUSED)


# --------------------------------------------------------------------------- the seed


class SeedASN:
    """Seed 000's NumPy ``ASN`` class, as published.

    Two things differ from the seed's text, neither changing what is computed: the
    ``else:`` of ``update`` is indented one space too far in the seed (a syntax
    error as printed) and is aligned here; ``self.S_bias = bias,`` (a one-element
    tuple, a typo) is kept, since ``tuple + ndarray`` broadcasts and ``call`` feeds
    one-element arrays (``input[b, t, :]``), so it adds ``bias`` as intended.
    """

    def __init__(self, mf=0.1, bias=0):
        # Params of a spiking neuron
        # membrane filter
        self.tau_phi = 2.5
        self.dPhi = np.exp(-1 / self.tau_phi)
        # threshold decay filter
        self.tau_gamma = 15.0
        self.dGamma = np.exp(-1 / self.tau_gamma)
        # refractory decay  filter
        self.tau_eta = 50.0
        self.dEta = np.exp(-1 / self.tau_eta)
        self.dBeta = self.dEta

        self.m_f = mf
        self.theta0 = self.m_f  # Resting threshold

        self.S_bias = bias,  # noqa: E231 - the seed's typo, kept (see the class docstring)
        self.S = self.S_bias  # filtered activation, initialized with bias
        self.S_dyn = 0
        self.theta = self.theta0  # Start value of thresehold
        self.theta_dyn = 0  # dynamic part of the threshold
        self.S_hat = 0  # refractory response, internal approximation

        self.I = 0
        self.spike = 0

    def update(self, current, spike_train=True):
        """inject current for one moment in time at once"""
        # Membrane filter
        if spike_train == True:  # noqa: E712 - as in the seed
            self.I = self.I * self.dBeta + current
        else:
            self.I = current
        self.S_dyn = (1 - self.dPhi) * self.I + self.dPhi * self.S_dyn
        self.S = self.S_bias + self.S_dyn
        # Decay
        self.S_hat = self.S_hat * self.dEta

        # Spike?
        if self.S - self.S_hat > 0.5 * self.theta:
            self.spike = 1  # Code spike

            # Update refractory response
            self.S_hat = self.S_hat + self.theta

            # Update threshold
            self.theta_dyn = self.theta_dyn + self.m_f * self.theta  # adaptive part based on the paper

        else:
            self.spike = 0

        # Decay
        self.theta_dyn = self.theta_dyn * self.dGamma
        self.theta = self.theta0 + self.theta_dyn

    def call(self, input, spike_train=True, mf=0.1, bias=0):
        timesteps = input.shape[1]
        batch_size = input.shape[0]
        spikes = np.zeros(input.shape)

        for b in range(batch_size):
            self.__init__(mf=mf, bias=bias)
            for t in range(timesteps):  # loop over timesteps
                self.update(input[b, t, :], spike_train=spike_train)
                spikes[b, t, 0] = self.spike

        return spikes


def seed_loop(x: np.ndarray, mode: str) -> np.ndarray:
    """The seed's ``ASN().call(x, spike_train=...)`` with its defaults (mf 0.1, bias 0):
    ``x`` is ``[N, T, 1]`` (N independent samples), returns spikes ``[N, T, 1]``."""
    return SeedASN().call(x, spike_train=(mode == "spikes"), mf=0.1, bias=0)


def make_input(mode: str, n: int, steps: int, seed: int) -> np.ndarray:
    """Input ``[n, steps, 1]`` float64: "spikes": a spike train (each step a spike with
    probability 0.3, of weight uniform in [0, 0.5)); "current": uniform in [0, 1)."""
    rng = np.random.default_rng([seed, 0 if mode == "spikes" else 1, n])
    if mode == "spikes":
        return (rng.random((n, steps, 1)) < 0.3) * rng.uniform(0.0, 0.5, (n, steps, 1))
    return rng.uniform(0.0, 1.0, (n, steps, 1))


# --------------------------------------------------------------------------- helpers


def _fmt(v, spec=".2f"):
    return "–" if v is None else format(v, spec)


# --------------------------------------------------------------------------- run


def run(opts) -> dict:
    """Run the configuration with a ``BenchOptions``-like ``opts`` (see module docstring)."""
    started = time.perf_counter()
    device = torch.device(option(opts, "device", "cpu"))
    quick = bool(option(opts, "quick", False))
    repeats = int(option(opts, "repeats", 1 if quick else 5))
    warmup = int(option(opts, "warmup", 0 if quick else 1))
    seed = int(option(opts, "seed", 0))
    impls = getattr(opts, "impls", None)
    threads = getattr(opts, "threads", None)
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    ns = QUICK_NS if quick else FULL_NS
    budget = QUICK_NUMPY_BUDGET_S if quick else NUMPY_BUDGET_S
    sync = synchronizer(device)

    import spikeflow
    from spikeflow.backends import resolve
    from spikeflow.neurons import ASNParams, model_of

    implementations: Dict[str, dict] = {
        IMPL_NUMPY: {
            "library": "numpy",
            "api": "seed 000's ASN().call(x[:measured], spike_train=mode == 'spikes') (class SeedASN)",
            "device": "cpu",
            "notes": [
                "Per-sample, per-step Python loop with one-element NumPy float64 state, as published; "
                "always on the CPU, single-threaded, whatever the configured device.",
                "Only the first measured_neurons samples are timed when the full N would exceed the "
                f"budget (~{budget:g} s per call); median_ms is the measured median times "
                "N / measured_neurons (the loop is linear in N: every sample restarts the neuron).",
            ],
        },
        IMPL_REF: {
            "library": "spikeflow",
            "api": "spikeflow.scan(ASNParams(input=mode), x, backend='reference').output",
            "device": str(device),
            "notes": ["Vectorized over all N neurons; one Python-level step per time step (the plain PyTorch scan)."],
        },
        IMPL_FUSED: {
            "library": "spikeflow",
            "api": "spikeflow.scan(ASNParams(input=mode), x, backend='auto').output",
            "device": str(device),
            "notes": ["backend='auto' picks the fused kernel where one exists for the device (the 'cpu' C++/OpenMP kernel on CPU)."],
        },
    }
    for name, entry in implementations.items():
        entry["status"] = "ok" if selected(name, impls) else "skipped"
        if entry["status"] == "skipped":
            entry["reason"] = "not selected by the impls filter"

    # Which backend does "auto" pick for an ASN scan on this device?
    probe = torch.zeros(2, 1, 1, dtype=torch.float64, device=device)
    try:
        resolved = resolve(model_of(ASNParams()), "auto", ASNParams(), probe, False).name
    except Exception as exc:  # noqa: BLE001
        resolved = None
        implementations[IMPL_FUSED].update(status="unavailable", reason=f"{type(exc).__name__}: {exc}")
    implementations[IMPL_FUSED]["backend_resolved"] = resolved
    if resolved == "reference":
        implementations[IMPL_FUSED]["notes"].append(
            f"On {device.type}, 'auto' resolves to 'reference' (no fused ASN kernel for this device): "
            "the two rows time the same code."
        )

    def spikeflow_run(mode: str, backend: str):
        params = ASNParams(input=mode)  # every other value: the seed's defaults

        def call(x):
            with torch.no_grad():
                return spikeflow.scan(params, x, backend=backend).output

        return call

    # Calibrate the NumPy loop's cost per neuron once per mode (untimed).
    per_neuron_s: Dict[str, float] = {}
    if implementations[IMPL_NUMPY]["status"] == "ok":
        for mode in MODES:
            xc = make_input(mode, CALIBRATION_NEURONS, T_STEPS, seed + 12345)
            t0 = time.perf_counter()
            seed_loop(xc, mode)
            per_neuron_s[mode] = (time.perf_counter() - t0) / CALIBRATION_NEURONS

    results: List[dict] = []
    ratio_ref: Dict[str, Dict[str, Optional[float]]] = {}
    ratio_fused: Dict[str, Dict[str, Optional[float]]] = {}
    for mode in MODES:
        ratio_ref[mode], ratio_fused[mode] = {}, {}
        for n in ns:
            report_progress(opts, NAME, f"mode={mode} N={n} ...")
            x_np = make_input(mode, n, T_STEPS, seed)
            # time-major [T, B=N, 1] for spikeflow (the transpose is outside the timing)
            x_t = torch.from_numpy(np.ascontiguousarray(x_np.transpose(1, 0, 2))).to(device)
            if per_neuron_s:
                measured = int(min(n, max(1, budget // max(per_neuron_s[mode], 1e-9))))
            else:
                measured = min(n, 1000)
            x_meas = x_np[:measured]
            row_impls: Dict[str, dict] = {}
            timed: List[Timed] = []
            outputs: Dict[str, np.ndarray] = {}
            calls = {}
            if implementations[IMPL_NUMPY]["status"] == "ok":
                calls[IMPL_NUMPY] = (lambda xm=x_meas, mode=mode: seed_loop(xm, mode), None)
            for name, backend in ((IMPL_REF, "reference"), (IMPL_FUSED, "auto")):
                if implementations[name]["status"] != "ok":
                    continue
                fn = spikeflow_run(mode, backend)

                def call(fn=fn, x=x_t):
                    out = fn(x)
                    sync()
                    return out

                calls[name] = (call, sync)
            for name in IMPLS:
                if name not in calls:
                    row_impls[name] = {"status": implementations[name]["status"], "reason": implementations[name].get("reason")}
                    continue
                call, setup = calls[name]
                try:  # one untimed call: the spikes for the check (and first-call costs)
                    if setup:
                        setup()
                    out = call()
                    if isinstance(out, torch.Tensor):
                        # [T, N, 1] -> [measured, T, 1] like the seed's output
                        out = out[:, :measured].detach().cpu().numpy().transpose(1, 0, 2)
                    outputs[name] = np.asarray(out, dtype=np.float64)
                except Exception as exc:  # noqa: BLE001
                    row_impls[name] = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
                    continue
                row_impls[name] = {"status": "ok"}
                timed.append(Timed(name, call, setup))
            check = {"neurons_compared": measured, "steps": T_STEPS, "exact": True}
            base = outputs.get(IMPL_NUMPY)
            for name in (IMPL_REF, IMPL_FUSED):
                if name in outputs and base is not None:
                    mism = int((outputs[name] != base).sum())
                    check[name] = {"mismatched_spikes": mism, "spikes_compared": int(base.size), "passed": mism == 0}
            if base is not None:
                check["numpy_firing_rate"] = float(base.mean())
            for name in (IMPL_REF, IMPL_FUSED):
                if name in outputs:
                    check.setdefault(name, {})["firing_rate_measured_neurons"] = float(outputs[name].mean())
            load_before = load_average()
            t0 = time.perf_counter()
            round_robin(timed, repeats=repeats, warmup=warmup)
            wall = time.perf_counter() - t0
            for item in timed:
                entry = row_impls[item.name]
                if item.error is not None:
                    entry.update(status="failed", reason=item.error)
                if item.samples_s:
                    entry.update(summarize(item.samples_s))
            np_entry = row_impls.get(IMPL_NUMPY, {})
            if np_entry.get("median_ms") is not None:
                scale = n / measured
                np_entry.update(
                    measured_neurons=measured,
                    measured_median_ms=np_entry["median_ms"],
                    measured_iqr_ms=np_entry["iqr_ms"],
                    scale=scale,
                    extrapolated=measured < n,
                    median_ms=np_entry["median_ms"] * scale,
                    iqr_ms=np_entry["iqr_ms"] * scale,
                    us_per_neuron_step=np_entry["median_ms"] * 1e3 / (measured * T_STEPS),
                )
            np_ms = np_entry.get("median_ms")
            ref_ms = row_impls.get(IMPL_REF, {}).get("median_ms")
            fused_ms = row_impls.get(IMPL_FUSED, {}).get("median_ms")
            r_ref = np_ms / ref_ms if (np_ms and ref_ms) else None
            r_fused = np_ms / fused_ms if (np_ms and fused_ms) else None
            ratio_ref[mode][str(n)] = r_ref
            ratio_fused[mode][str(n)] = r_fused
            results.append(
                {
                    "mode": mode,
                    "N": n,
                    "T": T_STEPS,
                    "label": f"{mode}/N={n}",
                    "check": check,
                    "implementations": row_impls,
                    "ratios": {
                        "numpy_ms_over_reference_ms": r_ref,
                        "numpy_ms_over_fused_ms": r_fused,
                        "reference_ms_over_fused_ms": (ref_ms / fused_ms) if (ref_ms and fused_ms) else None,
                    },
                    "wall_s": round(wall, 2),
                    "load_average_before": load_before,
                    "load_average_after": load_average(),
                }
            )
            del x_np, x_t, x_meas, outputs, timed, calls
            gc.collect()

    target = {
        "description": f"fused >= {TARGET_RATIO:g}x the NumPy loop at N = {TARGET_N} (spike-train input, the seed's default)",
        "N": TARGET_N,
        "required_ratio": TARGET_RATIO,
        "earlier_reference_ratio": EARLIER_REFERENCE_RATIO,
        "measured_fused_ratio": ratio_fused.get("spikes", {}).get(str(TARGET_N)),
        "measured_reference_ratio": ratio_ref.get("spikes", {}).get(str(TARGET_N)),
    }
    target["met"] = None if target["measured_fused_ratio"] is None else target["measured_fused_ratio"] >= TARGET_RATIO
    checks_passed = all(
        r["check"].get(name, {}).get("passed", True) for r in results for name in (IMPL_REF, IMPL_FUSED)
    )
    report = {
        "name": NAME,
        "schema": SCHEMA,
        "description": DESCRIPTION,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "quick": quick,
        "device": str(device),
        "settings": {
            "neuron": "ASNParams() defaults = seed 000: tau_phi 2.5, tau_gamma 15, tau_eta 50, tau_beta = tau_eta, "
            "m_f 0.1, theta0 = m_f, h 1, bias 0",
            "steps": T_STEPS,
            "neurons": list(ns),
            "modes": {
                "spikes": "spike_train=True / ASNParams(input='spikes'); x = (rand < 0.3) * uniform(0, 0.5)",
                "current": "spike_train=False / ASNParams(input='current'); x = uniform(0, 1)",
            },
            "dtype": "float64 (the seed's NumPy precision) for every implementation",
            "layout": "NumPy: [N, T, 1] (N samples of one neuron, as the seed's call); spikeflow: the same data "
            "time-major [T, N, 1] (transposed once, outside the timing)",
            "grad": "forward only, under torch.no_grad(): the seed compares simulation speed",
            "repeats": repeats,
            "warmup": warmup,
            "seed": seed,
            "threads": torch.get_num_threads(),
            "numpy_budget_s": budget,
            "numpy_calibration_s_per_neuron": per_neuron_s,
            "timing": "time.perf_counter around one call, gc off during the call; the three implementations "
            "interleaved round-robin, order rotated every round; median and IQR over the rounds"
            + ("; torch.cuda.synchronize after every spikeflow call (inside the timing) and before it" if device.type == "cuda" else ""),
            "check": "before timing, one untimed call each: spikeflow's spikes on the measured neurons must equal "
            "the NumPy loop's exactly (float64)",
        },
        "implementations": implementations,
        "results": results,
        "ratios": ratio_rows(ratio_ref, ratio_fused),
        "ratio_details": {
            "numpy_ms_over_reference_ms": ratio_ref,
            "numpy_ms_over_fused_ms": ratio_fused,
            "target": target,
        },
        "checks_passed": checks_passed,
        "notes": [
            "numpy_ms for large N is extrapolated linearly from measured_neurons (recorded per row): the seed's "
            "call re-initialises the neuron for every sample, so its cost is exactly proportional to N.",
            "The NumPy loop is single-threaded Python; spikeflow uses torch's thread count "
            f"({torch.get_num_threads()}), which the fused kernel's OpenMP loop also uses.",
            "Forward only: no autograd graph is built (torch.no_grad()).",
        ],
        "machine": {**machine_info(), "torch_num_threads": torch.get_num_threads(), "load_average_end": load_average()},
        "libraries": library_versions(["torch", "numpy", "spikeflow"]),
        "wall_s": round(time.perf_counter() - started, 1),
    }
    report = json_safe(report)
    report["markdown"] = markdown(report)
    if threads:
        torch.set_num_threads(old_threads)
    return report


def ratio_rows(ratio_ref: dict, ratio_fused: dict) -> List[dict]:
    """Summary rows: NumPy ms / spikeflow ms per input mode and N; the issue's target
    on the fused kernel at N = 10,000 with spike-train input."""
    rows = []
    for mode in ratio_fused:
        for n_text, value in ratio_fused[mode].items():
            targeted = mode == "spikes" and int(n_text) == TARGET_N
            rows.append(target_row(
                NAME, f"{mode} N={n_text}", "numpy_ms_over_fused_ms", value,
                ">=" if targeted else None, TARGET_RATIO if targeted else None,
                f"{IMPL_NUMPY} ms / {IMPL_FUSED} ms" + (" (the issue's target)" if targeted else ""),
            ))
            rows.append(target_row(
                NAME, f"{mode} N={n_text}", "numpy_ms_over_reference_ms", ratio_ref[mode].get(n_text), None, None,
                f"{IMPL_NUMPY} ms / {IMPL_REF} ms (measured {EARLIER_REFERENCE_RATIO:g}x at N = {TARGET_N} earlier)",
            ))
    return rows


def markdown(report: dict) -> str:
    lines = [
        "| input | N | NumPy loop ms (timed neurons) | reference ms | fused ms | NumPy / reference | NumPy / fused | spikes equal |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in report["results"]:
        im = r["implementations"]
        np_e = im.get(IMPL_NUMPY, {})
        timed_n = np_e.get("measured_neurons")
        np_txt = _fmt(np_e.get("median_ms"), ".1f")
        if timed_n is not None and timed_n < r["N"]:
            np_txt += f" ({timed_n} timed)"
        chk = r["check"]
        eq = all(chk.get(n, {}).get("passed", True) for n in (IMPL_REF, IMPL_FUSED))
        lines.append(
            f"| {r['mode']} | {r['N']} | {np_txt} | {_fmt(im.get(IMPL_REF, {}).get('median_ms'), '.3f')} "
            f"| {_fmt(im.get(IMPL_FUSED, {}).get('median_ms'), '.3f')} "
            f"| {_fmt(r['ratios']['numpy_ms_over_reference_ms'], '.0f')} | {_fmt(r['ratios']['numpy_ms_over_fused_ms'], '.0f')} "
            f"| {'yes' if eq else 'NO'} |"
        )
    t = report["ratio_details"]["target"]
    if t.get("measured_fused_ratio") is not None:
        lines.append("")
        lines.append(
            f"Target (fused >= {t['required_ratio']:g}x NumPy at N = {t['N']}, spike input): "
            f"{t['measured_fused_ratio']:.0f}x — {'met' if t['met'] else 'NOT met'}."
        )
    return "\n".join(lines)
