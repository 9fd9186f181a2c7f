"""The GPU backend ``"triton"`` (:mod:`spikeflow.backends.triton`).

Its kernels are checked against the reference backend with the shared equivalence
assertions of ``tests/test_equivalence.py`` (spikes identical; states, trajectories
and gradients w.r.t. the input, the initial state and the learnable parameters
within float tolerance), on cases that cover every neuron, every reset mode,
detach_reset, every surrogate kind, the CubaLIF orders and normalize, both ASN
input modes, scalar and per-feature parameters, nonzero initial states, record on
and off, missing upstream gradients, inference without autograd, float32 and
float64, and T in {1, small, > K} (the backward's checkpoint-and-recompute path).

Without a GPU they run in Triton's interpreter on CPU tensors: ``TRITON_INTERPRET=1``
must be set before the kernels are made, so each group of cases runs in a child
process (this file run as a script), which registers the same ``run_triton`` under
the backend name ``"triton_interpret"`` for CPU tensors. The pytest process itself
is unchanged. With CUDA the same cases also run on the GPU through the registered
``"triton"`` backend.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

pytest.importorskip("triton", reason="the triton backend needs the triton package")

import spikeflow  # noqa: E402
from spikeflow import surrogate as sg  # noqa: E402
from spikeflow.backends import backends_for, resolve  # noqa: E402
from spikeflow.backends import triton as triton_backend  # noqa: E402
from spikeflow.neurons import (  # noqa: E402
    ASNParams,
    CubaLIFParams,
    GradedLIFParams,
    LIFParams,
    LIParams,
    if_params,
    model_of,
)

HERE = Path(__file__).resolve().parent
INTERPRET = "triton_interpret"
NEURONS = ("lif", "cuba_lif", "asn", "graded_lif", "li")
LONG = 37  # > the checkpoint interval (8 for 37 steps): 5 segments, the last one short


def _eq():
    """The shared equivalence suite (tests/test_equivalence.py) as a module."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    import test_equivalence

    return test_equivalence


# ---------------------------------------------------------------------------
# Registry behaviour (this process, any machine)


@pytest.mark.parametrize("neuron", NEURONS)
def test_registered_for_every_cpu_neuron(neuron):
    model = model_of(_eq().DEFAULTS[neuron])
    found = {b.name: b for b in backends_for(model)}
    assert "cpu" in found and "triton" in found
    backend = found["triton"]
    assert backend.priority == 20 > found["cpu"].priority
    assert backend.caps.devices == frozenset({"cuda"})
    assert backend.caps.dtypes == frozenset({torch.float32, torch.float64})
    assert not backend.caps.recurrent


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_auto_never_picks_triton_without_cuda():
    reason = triton_backend.available()
    assert reason is not None and "CUDA" in reason
    params = LIFParams()
    x = torch.randn(4, 2, 3)
    chosen = resolve(model_of(params), "auto", params, x, False)
    assert chosen.name != "triton"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = spikeflow.scan(params, x)
    assert result.output.shape == x.shape
    # CPU tensors are outside its declared devices: not "unavailable here", no warning
    assert not [w for w in caught if "triton" in str(w.message)]


def test_explicit_triton_on_cpu_tensors_names_the_reason():
    with pytest.raises(ValueError, match=r"backend 'triton' cannot run this lif call: device 'cpu'"):
        spikeflow.scan(LIFParams(), torch.randn(3, 2, 4), backend="triton")


def test_triton_refuses_alpha_rec():
    params = CubaLIFParams(alpha_rec=0.8)
    backend = {b.name: b for b in backends_for(model_of(params))}["triton"]
    assert "alpha_rec" in backend.caps.params_check(params)
    assert backend.caps.params_check(CubaLIFParams()) is None


def test_import_safe_without_triton():
    """Without the triton package spikeflow imports, the backend says why it is
    unavailable, and CPU scans run (triton is never imported)."""
    code = (
        "import sys; sys.modules['triton'] = None\n"
        "import torch, spikeflow\n"
        "from spikeflow.backends import triton as tb\n"
        "reason = tb.available()\n"
        "assert reason is not None and 'triton is not installed' in reason, reason\n"
        "x = torch.randn(3, 2, 4)\n"
        "spikeflow.scan(spikeflow.neurons.LIFParams(), x)\n"
        "try:\n"
        "    spikeflow.scan(spikeflow.neurons.LIFParams(), x, backend='triton')\n"
        "except ValueError as exc:\n"
        "    assert 'triton' in str(exc)\n"
        "else:\n"
        "    raise AssertionError('no error')\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300, env=_child_env(interpret=False))
    assert result.returncode == 0 and "ok" in result.stdout, result.stdout + result.stderr


# ---------------------------------------------------------------------------
# The equivalence cases, grouped (one child process per group)


def _u(shape, dtype, gen, lo, hi):
    return _eq()._uniform(shape, dtype, gen, lo, hi)


def _learn(t):
    return t.detach().clone().requires_grad_(True)


def _run(backend, neuron, params, steps, batch, features, dtype, seed, **options):
    eq = _eq()
    gen = torch.Generator().manual_seed(seed)
    x = eq._input(neuron, (steps, batch, *features), dtype, gen)
    if neuron == "cuba_lif" and params.normalize:
        x = x * 3.0
    state = eq._random_state(neuron, (batch, *features), dtype, gen)
    eq.assert_equivalent(backend, params, x, state, seed=seed, **options)


def _lif_cases():
    f32, f64 = torch.float32, torch.float64
    cases = []
    combos = list(itertools.product(("subtract", "zero", "none"), (False, True)))
    for k, (reset, detach) in enumerate(combos):
        surrogate = _eq().SURROGATES[k % 5]

        def case(backend, reset=reset, detach=detach, surrogate=surrogate, k=k):
            gen = torch.Generator().manual_seed(100 + k)
            per_feature = k % 2 == 0
            params = LIFParams(
                beta=_learn(_u((5,), f32, gen, 0.6, 1.0) if per_feature else torch.tensor(0.85)),
                threshold=_learn(torch.tensor(0.9) if per_feature else _u((5,), f32, gen, 0.6, 1.2)),
                reset=reset, detach_reset=detach, surrogate=surrogate,
            )
            _run(backend, "lif", params, 7, 2, (5,), f32, 100 + k)

        cases.append((f"lif-{reset}-{'detached' if detach else 'attached'}-{surrogate!r}", case))

    def if_one_step(backend):
        _run(backend, "lif", if_params(threshold=0.7, reset="zero", surrogate=sg.triangle(0.8)),
             1, 3, (4,), f32, 110)

    def long_f32(backend):
        gen = torch.Generator().manual_seed(111)
        params = LIFParams(beta=_learn(torch.tensor(0.9)), threshold=_learn(_u((6,), f32, gen, 0.7, 1.1)),
                           surrogate=sg.atan(2.0))
        _run(backend, "lif", params, LONG, 2, (6,), f32, 111)

    def long_f64(backend):
        gen = torch.Generator().manual_seed(112)
        params = LIFParams(beta=_learn(_u((6,), f64, gen, 0.7, 1.0)), threshold=_learn(torch.tensor(0.8, dtype=f64)),
                           reset="zero", detach_reset=True, surrogate=sg.sigmoid(4.0))
        _run(backend, "lif", params, LONG, 2, (6,), f64, 112)

    def many_programs(backend):  # 3 * 4 * 13 = 156 elements: several blocks, a ragged tail
        gen = torch.Generator().manual_seed(113)
        params = LIFParams(beta=_learn(_u((4, 13), f32, gen, 0.7, 1.0)), threshold=0.8, reset="subtract",
                           surrogate=sg.superspike(5.0))
        _run(backend, "lif", params, 5, 3, (4, 13), f32, 113, noncontiguous=True)

    cases += [("if-T1", if_one_step), ("lif-long-f32", long_f32), ("lif-long-f64", long_f64),
              ("lif-many-programs-strided", many_programs)]
    return cases


def _cuba_cases():
    f32, f64 = torch.float32, torch.float64
    cases = []
    combos = list(itertools.product(("current_first", "membrane_first"), (False, True)))
    for k, (order, normalize) in enumerate(combos):
        reset = ("subtract", "zero", "none", "zero")[k]
        detach = k % 2 == 1
        surrogate = _eq().SURROGATES[(k + 1) % 5]

        def case(backend, order=order, normalize=normalize, reset=reset, detach=detach,
                 surrogate=surrogate, k=k):
            gen = torch.Generator().manual_seed(200 + k)
            params = CubaLIFParams(
                alpha=_learn(torch.tensor(0.75)), beta=_learn(_u((4,), f32, gen, 0.7, 0.97)),
                threshold=_learn(_u((4,), f32, gen, 0.5, 1.2)), gain=2.5 if normalize else 1.3,
                normalize=normalize, order=order, reset=reset, detach_reset=detach, surrogate=surrogate,
            )
            _run(backend, "cuba_lif", params, 7, 2, (4,), f32, 200 + k)

        cases.append((f"cuba-{order}-{'normalized' if normalize else 'plain'}-{reset}", case))

    def long_f64(backend):
        gen = torch.Generator().manual_seed(210)
        params = CubaLIFParams(alpha=_learn(_u((4,), f64, gen, 0.5, 0.9)), beta=_learn(torch.tensor(0.9, dtype=f64)),
                               threshold=0.7, gain=4.0, normalize=True, order="membrane_first",
                               reset="zero", detach_reset=True, surrogate=sg.superspike(5.0))
        _run(backend, "cuba_lif", params, LONG, 2, (4,), f64, 210)

    cases.append(("cuba-long-f64", long_f64))
    return cases


def _asn_cases():
    f32, f64 = torch.float32, torch.float64
    cases = []
    for k, (mode, surrogate) in enumerate([("spikes", sg.superspike(10.0)), ("current", sg.sigmoid(4.0)),
                                           ("spikes", sg.straight_through())]):
        def case(backend, mode=mode, surrogate=surrogate, k=k):
            params = ASNParams(tau_phi=2.0, tau_gamma=12.0, tau_eta=30.0, tau_beta=8.0, m_f=0.2, theta0=0.15,
                               h=1.5, bias=0.05, input=mode, surrogate=surrogate)
            _run(backend, "asn", params, 7, 2, (5,), f32, 300 + k)

        cases.append((f"asn-{mode}-{surrogate!r}", case))

    def long_f64(backend):
        params = ASNParams(m_f=0.15, h=1.0, bias=0.02, input="current", surrogate=sg.atan(2.0))
        _run(backend, "asn", params, LONG, 2, (3,), f64, 310)

    cases.append(("asn-long-f64", long_f64))
    return cases


def _smooth_cases():
    f32, f64 = torch.float32, torch.float64
    cases = []
    for k, form in enumerate(("float", "learnable-scalar", "learnable-per-feature")):
        def graded(backend, form=form, k=k):
            gen = torch.Generator().manual_seed(400 + k)
            form_ = _eq()._form
            params = GradedLIFParams(beta=form_(form, 0.85, (6,), f32, gen, 0.1),
                                     threshold=form_(form, 1.0, (6,), f32, gen, 0.4),
                                     penalty=form_(form, 0.8, (6,), f32, gen, 0.5))
            _run(backend, "graded_lif", params, 7, 2, (6,), f32, 400 + k)

        def li(backend, form=form, k=k):
            gen = torch.Generator().manual_seed(410 + k)
            params = LIParams(beta=_eq()._form(form, 0.8, (6,), f32, gen, 0.15), normalize=k % 2 == 1)
            _run(backend, "li", params, 7, 2, (6,), f32, 410 + k)

        cases += [(f"graded-{form}", graded), (f"li-{form}", li)]

    def graded_long(backend):
        gen = torch.Generator().manual_seed(420)
        params = GradedLIFParams(beta=_learn(_u((3,), f64, gen, 0.7, 0.95)),
                                 threshold=_learn(torch.tensor(1.2, dtype=f64)),
                                 penalty=_learn(_u((3,), f64, gen, 0.5, 1.5)))
        _run(backend, "graded_lif", params, LONG, 2, (3,), f64, 420)

    def li_long(backend):
        gen = torch.Generator().manual_seed(421)
        params = LIParams(beta=_learn(_u((3,), f64, gen, 0.6, 0.99)), normalize=True)
        _run(backend, "li", params, LONG, 2, (3,), f64, 421)

    def li_one_step(backend):
        _run(backend, "li", LIParams(beta=_learn(torch.tensor(0.7))), 1, 2, (3,), f32, 422)

    cases += [("graded-long-f64", graded_long), ("li-long-f64", li_long), ("li-T1", li_one_step)]
    return cases


# Missing upstream gradients (None in the backward) and inputs without grad, as in
# test_equivalence.test_partial_upstream_gradients, and runs without autograd.
PARTIAL = [
    ("output", dict(record=True, uses=frozenset({"output"}), grad_x=True, grad_state=True)),
    ("trajectory", dict(record=True, uses=frozenset({"trajectory"}), grad_x=True, grad_state=False)),
    ("state", dict(record=False, uses=frozenset({"state"}), grad_x=True, grad_state=True)),
    ("params-only", dict(record=False, uses=frozenset({"output"}), grad_x=False, grad_state=False)),
]


def _misc_cases():
    cases = []
    for k, neuron in enumerate(NEURONS):
        for j, (label, options) in enumerate(PARTIAL):
            if (k + j) % 2:  # half of the 20 combinations, every variant for every neuron pair
                continue

            def partial(backend, neuron=neuron, options=options, k=k):
                eq = _eq()
                gen = torch.Generator().manual_seed(500 + k)
                params = eq._representative(neuron, torch.float64, (4,), gen)
                _run(backend, neuron, params, 9, 2, (4,), torch.float64, 500 + k, **options)

            cases.append((f"partial-{neuron}-{label}", partial))

        def inference(backend, neuron=neuron, k=k):
            eq = _eq()
            gen = torch.Generator().manual_seed(520 + k)
            x = eq._input(neuron, (12, 2, 5), torch.float32, gen)
            state = eq._random_state(neuron, (2, 5), torch.float32, gen)
            device = eq._device_for(eq._backend(neuron, backend))
            x, state = x.to(device), type(state)(*(v.to(device) for v in state))
            for record in (False, True):
                with torch.no_grad():
                    ref = spikeflow.scan(eq.DEFAULTS[neuron], x, state, backend="reference", record=record)
                    got = spikeflow.scan(eq.DEFAULTS[neuron], x, state, backend=backend, record=record)
                if neuron in eq.SPIKING:
                    assert torch.equal(got.output, ref.output)
                eq._close(got.output, ref.output, x.dtype, "output")
                for a, b in zip(got.state, ref.state):
                    eq._close(a, b, x.dtype, "final state")
                if record:
                    for a, b in zip(got.trajectory, ref.trajectory):
                        eq._close(a, b, x.dtype, "trajectory")

        cases.append((f"inference-{neuron}", inference))
    return cases


def _random_cases():
    """Hypothesis-drawn cases of test_equivalence (derandomized: the same every run)."""
    from hypothesis import HealthCheck, Phase, given, settings

    cases = []
    for neuron in NEURONS:
        def random_case(backend, neuron=neuron):
            @settings(max_examples=5, database=None, derandomize=True, deadline=None,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            @given(case=_eq()._cases(neuron))
            def check(case):
                params, x, state, options = case
                _eq().assert_equivalent(backend, params, x, state, **options)

            check()

        cases.append((f"random-{neuron}", random_case))
    return cases


def _compile_cases():
    """torch.compile(fullgraph=True) runs the kernels through the registered operators
    (spikeflow::triton_scan and its backward): the same values as eager, bit for bit."""
    cases = []
    for neuron in ("lif", "cuba_lif", "asn", "li"):
        for record in (False, True):
            def compiled(backend, neuron=neuron, record=record):
                eq = _eq()
                gen = torch.Generator().manual_seed(600 + len(neuron) + record)
                params = eq._representative(neuron, torch.float32, (4,), gen)
                x = eq._input(neuron, (LONG, 2, 4), torch.float32, gen)
                state = eq._random_state(neuron, (2, 4), torch.float32, gen)
                device = eq._device_for(eq._backend(neuron, backend))
                x, state = x.to(device), type(state)(*(v.to(device) for v in state))

                def run(x, *fields):
                    result = spikeflow.scan(params, x, type(state)(*fields), backend=backend,
                                            record=record)
                    total = result.output.sum() + sum(f.sum() for f in result.state)
                    if record:
                        total = total + sum((f * f).sum() for f in result.trajectory)
                    return result.output, total

                def grads(fn):
                    leaves = [x.detach().clone().requires_grad_(), *[
                        f.detach().clone().requires_grad_() for f in state]]
                    out, total = fn(*leaves)
                    return out, torch.autograd.grad(total, leaves, allow_unused=True)

                torch._dynamo.reset()
                expected, expected_grads = grads(run)
                got, got_grads = grads(torch.compile(run, fullgraph=True, backend="aot_eager"))
                assert torch.equal(got, expected)
                for a, b in zip(got_grads, expected_grads):
                    assert (a is None) == (b is None)
                    if a is not None:
                        assert torch.equal(a, b)

            cases.append((f"compile-{neuron}-{'record' if record else 'plain'}", compiled))
    return cases


GROUPS = {
    "lif": _lif_cases,
    "cuba": _cuba_cases,
    "asn": _asn_cases,
    "smooth": _smooth_cases,
    "misc": _misc_cases,
    "random": _random_cases,
    "compile": _compile_cases,
}


def run_group(group: str, backend: str) -> list[str]:
    """Run a group's cases; returns the failures (name and error) and prints progress."""
    failures = []
    for name, case in GROUPS[group]():
        start = time.perf_counter()
        try:
            case(backend)
        except Exception as exc:  # noqa: BLE001 - every failure is reported
            import traceback

            failures.append(f"{name}: {type(exc).__name__}: {exc}\n{traceback.format_exc()}")
            status = "FAILED"
        else:
            status = "ok"
        print(f"{group}/{name}: {status} ({time.perf_counter() - start:.2f} s)", flush=True)
    return failures


def register_interpreter_backend() -> None:
    """Register ``run_triton`` as ``"triton_interpret"`` for CPU tensors (child processes
    only: the kernels then run in Triton's interpreter)."""
    from spikeflow.backends import Backend, Capabilities, register_backend
    from spikeflow.backends._fused import NEURONS as FUSED

    for name, neuron in FUSED.items():
        register_backend(Backend(
            INTERPRET, name, triton_backend.run_triton,
            Capabilities(dtypes=triton_backend._DTYPES, devices=frozenset({"cpu"}),
                         params_check=neuron.params_check),
            priority=-1,
        ))


def _child_env(interpret: bool) -> dict:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    if interpret:
        env["TRITON_INTERPRET"] = "1"
    else:
        env.pop("TRITON_INTERPRET", None)
    src = str(HERE.parent / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


# The interpreter groups run in child processes, a few groups per child (starting
# one costs seconds: torch, triton), two children at a time, started ahead of the
# test that waits for them (only children with a group selected in this session).
CHILDREN = (("lif", "smooth"), ("cuba", "asn"), ("misc", "random", "compile"))
assert sorted(g for child in CHILDREN for g in child) == sorted(GROUPS)
_PARALLEL = 2


def _selected_children(request) -> list:
    selected = {
        item.callspec.params["group"] for item in request.session.items
        if getattr(item, "originalname", None) == "test_interpreter_equivalence"
        and item.module is request.module
    }
    return [groups for groups in CHILDREN if selected & set(groups)]


@pytest.fixture(scope="module", autouse=True)
def children(tmp_path_factory, request):
    """Starts the first children with the module's first test, so that they run while
    the other tests do."""
    started: dict = {}  # child's groups -> (Popen, log path)
    logs = tmp_path_factory.mktemp("triton_interpret")
    wanted = _selected_children(request)
    if wanted:
        _schedule(started, logs, wanted, wanted[0])
    yield started, logs
    for child, _ in started.values():  # a session stopped early (-x, Ctrl-C)
        if child.poll() is None:
            child.kill()
            child.wait()


def _spawn(groups: tuple, logs: Path):
    log = logs / f"{'-'.join(groups)}.log"
    with open(log, "w") as out:
        child = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), *groups], stdout=out,
            stderr=subprocess.STDOUT, env=_child_env(interpret=True), cwd=str(logs),
        )
    return child, log


def _schedule(started: dict, logs: Path, wanted: list, needed: tuple) -> None:
    if needed not in started:
        started[needed] = _spawn(needed, logs)
    for groups in wanted:
        if sum(child.poll() is None for child, _ in started.values()) >= _PARALLEL:
            break
        if groups not in started:
            started[groups] = _spawn(groups, logs)


@pytest.mark.parametrize("group", list(GROUPS))
def test_interpreter_equivalence(group, children, request):
    """The kernels in Triton's interpreter (CPU tensors) agree with the reference."""
    started, logs = children
    wanted = _selected_children(request)
    needed = next(groups for groups in CHILDREN if group in groups)
    _schedule(started, logs, wanted, needed)
    child, log = started[needed]
    try:
        child.wait(timeout=600)
    finally:
        _schedule(started, logs, [g for g in wanted if g != needed], needed)
    output = log.read_text()
    mine = [line for line in output.splitlines() if line.startswith(f"{group}/")]
    assert f"== {group} done" in output, f"the child running {group!r} did not finish:\n{output}"
    assert mine and not any("FAILED" in line for line in mine), (
        f"interpreter cases of group {group!r} failed:\n{output}"
    )


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("group", list(GROUPS))
def test_cuda_equivalence(group):
    """The compiled kernels on the GPU agree with the reference on the GPU."""
    if triton_backend.available() is not None:
        pytest.skip(f"triton backend unavailable: {triton_backend.available()}")
    failures = run_group(group, "triton")
    assert not failures, "\n".join(failures)


if __name__ == "__main__":  # a child process: python tests/test_triton_backend.py GROUP
    assert os.environ.get("TRITON_INTERPRET") == "1", "run with TRITON_INTERPRET=1"
    torch.set_num_threads(1)
    register_interpreter_backend()
    failed = []
    for group in sys.argv[1:]:
        failed += run_group(group, INTERPRET)
        print(f"== {group} done", flush=True)
    if failed:
        print("\n\n".join(failed), flush=True)
        sys.exit(1)
