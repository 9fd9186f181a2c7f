"""The benchmark suite (spikeflow.bench) and `spikeflow bench`: quick runs on CPU,
the JSON structure, floors and ratios from hand-made numbers, the CLI and its errors.

In the package's own environment the peer libraries are not installed: they must come
out as "unavailable" with a reason, never crash a run.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from spikeflow.bench import ceilings, lif_layer, mlp, open_neuromorphic, suite
from spikeflow.bench.options import BenchOptions
from spikeflow.cli import main

ROOT = Path(__file__).resolve().parents[1]
QUICK = BenchOptions(device="cpu", threads=torch.get_num_threads(), quick=True, repeats=1, warmup=0, seed=0,
                     impls=None, progress=False)


def _peers_installed(*names):
    return any(importlib.util.find_spec(n) is not None for n in names)


def test_options_fields():
    fields = [(f.name, f.type) for f in dataclasses.fields(BenchOptions)]
    assert [n for n, _ in fields] == ["device", "threads", "quick", "repeats", "warmup", "seed", "impls", "progress"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        QUICK.device = "cuda"


def test_floors_follow_the_formulas():
    T, B, N = 100, 32, 1024
    assert ceilings.lif_bytes(T, B, N, "forward") == 2 * T * B * N * 4
    assert ceilings.lif_bytes(T, B, N, "forward_backward") == 5 * T * B * N * 4
    with pytest.raises(ValueError, match="unknown mode"):
        ceilings.lif_bytes(T, B, N, "backward")
    c = {"bandwidth_gb_per_s": 10.0, "gemm_gflop_per_s": 100.0}
    # 2*100*32*1024*4 = 26,214,400 bytes at 10 GB/s = 2.62144 ms
    assert ceilings.bandwidth_floor_ms(26_214_400, c) == pytest.approx(2.62144)
    flops = ceilings.mlp_flops(100, 64, (784, 512, 10))
    assert flops == 4 * 100 * 64 * 784 * 512 + 6 * 100 * 64 * 512 * 10  # the data needs no gradient
    assert ceilings.gemm_floor_ms(flops, c) == pytest.approx(flops / 100e9 * 1e3)
    assert ceilings.mlp_flops(500, 16, (16384, 16384)) == 4 * 500 * 16 * 16384**2
    assert ceilings.ratio_to_floor(5.0, 2.0) == 2.5
    assert ceilings.ratio_to_floor(None, 2.0) is None and ceilings.bandwidth_floor_ms(1, {}) is None


def test_ratios_from_a_hand_made_result():
    ok = lambda ms: {"status": "ok", "median_ms": ms}  # noqa: E731
    entries = {
        "spikeflow-reference": ok(40.0),
        "spikeflow-cpu": ok(2.0),
        "snntorch-leaky": ok(30.0),
        "norse-lifbox": ok(8.0),
        "spikingjelly-lif-torch": ok(10.0),
        "spikingjelly-lif-cuda": {"status": "unavailable", "reason": "no CUDA"},
    }
    r = lif_layer.ratios(entries)
    assert r["cpu_speedup_over_reference"] == 20.0
    assert r["peer_ms_over_spikeflow_cpu_ms"]["norse-lifbox"] == 4.0
    assert r["peer_ms_over_spikeflow_cpu_ms"]["spikingjelly-lif-cuda"] is None
    result = {"label": "100x32x1024", "mode": "forward", "size": {"T": 100, "B": 32, "N": 1024},
              "implementations": entries}
    lif_layer.add_floors(result, {"bandwidth_gb_per_s": 26.2144})  # floor = 1 ms
    assert result["floor_ms"] == pytest.approx(1.0)
    assert entries["spikeflow-cpu"]["ratio_to_floor"] == pytest.approx(2.0)
    rows = {row["metric"]: row for row in lif_layer.target_rows([result], "cpu")}
    assert rows["speedup_vs_fastest_peer"]["value"] == 4.0  # norse 8 ms / spikeflow-cpu 2 ms
    assert rows["speedup_vs_fastest_peer"]["met"] is True  # >= 3
    assert rows["ratio_to_bandwidth_floor"]["value"] == pytest.approx(2.0)
    assert rows["ratio_to_bandwidth_floor"]["met"] is True  # <= 2
    gpu = {row["metric"]: row for row in lif_layer.target_rows([result], "cuda")}
    assert gpu["speedup_vs_fastest_spikingjelly"]["value"] == 5.0 and gpu["speedup_vs_fastest_spikingjelly"]["met"]
    assert gpu["fraction_of_bandwidth"]["value"] == pytest.approx(0.5) and gpu["fraction_of_bandwidth"]["met"] is False
    # no peer ran: the target is not decided
    alone = {**result, "implementations": {"spikeflow-cpu": ok(2.0)}}
    assert lif_layer.target_rows([alone], "cpu")[0]["met"] is None
    # MLP: 2x fastest peer and <= 1.5x the GEMM floor
    net = {"spikeflow": ok(30.0), "snntorch": ok(90.0), "norse": ok(50.0), "spikingjelly": {"status": "unavailable"}}
    table, targets = mlp.rows_and_targets("mlp", "H512", net, 25.0, "cpu", 2.0, 1.5)
    t = {row["metric"]: row for row in targets}
    assert t["speedup_vs_fastest_peer"]["value"] == pytest.approx(50 / 30) and t["speedup_vs_fastest_peer"]["met"] is False
    assert t["ratio_to_gemm_floor"]["value"] == pytest.approx(1.2) and t["ratio_to_gemm_floor"]["met"] is True
    assert net["norse"]["ms_over_spikeflow"] == pytest.approx(50 / 30) and len(table) == 4
    assert suite.target_row("x", "", "m", 1.0)["met"] is None


def _check_config(result: dict, name: str):
    json.dumps(result, allow_nan=False)
    assert result["name"] == name
    for key in ("description", "results", "markdown", "ratios"):
        assert key in result, key
    assert isinstance(result["results"], list) and result["results"]
    for row in result["ratios"]:
        assert {"config", "case", "metric", "value", "target", "met"} <= set(row)


def test_lif_layer_quick_peers_unavailable_not_fatal():
    result = lif_layer.run(QUICK)
    _check_config(result, "lif_layer")
    impls = result["implementations"]
    assert impls["spikeflow-reference"]["status"] == "ok" and impls["spikeflow-cpu"]["status"] == "ok"
    assert impls["spikeflow-cpu"]["check"]["passed"] is True
    if not _peers_installed("snntorch", "norse", "spikingjelly"):
        for name in ("snntorch-leaky", "norse-lifbox", "spikingjelly-lif-torch"):
            assert impls[name]["status"] == "unavailable" and "not importable" in impls[name]["reason"]
    for case in result["cases"]:
        assert case["floor_ms"] > 0
        assert case["implementations"]["spikeflow-cpu"]["ratio_to_floor"] > 0
    assert {r["metric"] for r in result["ratios"]} == {"speedup_vs_fastest_peer", "ratio_to_bandwidth_floor"}


def test_lif_layer_backends_come_from_the_registry():
    names = lif_layer.spikeflow_backend_names()
    assert names[0] == "reference" and "cpu" in names
    only = lif_layer.build_impls(["spikeflow-ref"])
    assert [i.name for i in only] == ["spikeflow-reference"]


def test_mlp_and_open_neuromorphic_quick():
    opts = dataclasses.replace(QUICK, impls=None)
    result = mlp.run(opts, hidden=(32,))
    _check_config(result, "mlp")
    sf = next(r for r in result["results"] if r["implementation"] == "spikeflow")
    assert sf["status"] == "ok" and sf["median_ms"] > 0 and sf["ratio_to_floor"] > 0
    assert sf["flops"] == ceilings.mlp_flops(10, 8, (784, 32, 10))
    if not _peers_installed("snntorch", "norse", "spikingjelly"):
        assert all(r["status"] == "unavailable" and r["reason"] for r in result["results"] if r["implementation"] != "spikeflow")
    on = open_neuromorphic.run(opts, neurons=64)
    _check_config(on, "open_neuromorphic")
    assert on["settings"]["neurons"] == 64 and on["settings"]["neurons_source"] == "option"
    assert on["published"]["values_ms"]["snnTorch"] == 3078.0
    assert all(r["note"] == "published, other machine" for r in on["published_rows"])


def test_suite_report_structure(tmp_path, monkeypatch):
    monkeypatch.setitem(suite.CONFIGURATIONS, "not_written_yet", ("no_such_module_xyz", "missing"))
    out = tmp_path / "b.json"
    report = suite.run_suite(dataclasses.replace(QUICK, impls=("spikeflow",)),
                             only=["ceilings", "mlp", "not_written_yet"], out=str(out))
    saved = json.loads(out.read_text())
    assert saved["schema"] == "spikeflow-bench/suite/1" == report["schema"]
    for key in ("machine", "libraries", "ceilings", "configurations", "summary", "markdown", "options"):
        assert key in saved, key
    assert saved["ceilings"]["bandwidth_gb_per_s"] > 0 and saved["ceilings"]["gemm_gflop_per_s"] > 0
    assert saved["configurations"]["not_written_yet"]["status"] == "unavailable"
    assert "module not found" in saved["configurations"]["not_written_yet"]["reason"]
    assert saved["configurations"]["mlp"]["status"] == "ok"
    assert {r["config"] for r in saved["summary"]} == {"mlp"}
    assert "## Summary" in (tmp_path / "b.md").read_text()
    with pytest.raises(ValueError, match="known: ceilings, lif_layer"):
        suite.resolve_names(["nope"])
    assert suite.resolve_names([]) == list(suite.CONFIGURATIONS)
    for name in ("asn_seed", "memory", "resnet18"):
        assert name in suite.CONFIGURATIONS


def test_suite_flattens_dict_ratios_and_records_failures(monkeypatch):
    import types

    fake = types.ModuleType("spikeflow.bench._fake_cfg")
    fake.run = lambda opts: {"name": "fake", "description": "", "results": [], "markdown": "",
                             "ratios": {"a": {"b": 2.0}, "c": None}}
    broken = types.ModuleType("spikeflow.bench._broken_cfg")
    broken.run = lambda opts: 1 / 0
    monkeypatch.setitem(__import__("sys").modules, "spikeflow.bench._fake_cfg", fake)
    monkeypatch.setitem(__import__("sys").modules, "spikeflow.bench._broken_cfg", broken)
    monkeypatch.setitem(suite.CONFIGURATIONS, "fake", ("_fake_cfg", ""))
    monkeypatch.setitem(suite.CONFIGURATIONS, "broken", ("_broken_cfg", ""))
    monkeypatch.setattr(ceilings, "cached", lambda opts: {"bandwidth_gb_per_s": 1.0, "gemm_gflop_per_s": 1.0})
    report = suite.run_suite(QUICK, only=["fake", "broken"])
    assert [(r["metric"], r["value"]) for r in report["summary"]] == [("a.b", 2.0), ("c", None)]
    assert report["configurations"]["broken"]["status"] == "failed"
    assert "ZeroDivisionError" in report["configurations"]["broken"]["reason"]


def test_cli_bench_ceilings(tmp_path):
    out = tmp_path / "r" / "bench.json"
    result = CliRunner().invoke(main, ["bench", "--quick", "--only", "ceilings", "--device", "cpu", "--threads", "1",
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["schema"] == "spikeflow-bench/suite/1"
    assert report["options"]["only"] == ["ceilings"] and report["options"]["threads"] == 1
    assert report["configurations"]["ceilings"]["status"] == "ok"
    assert out.with_suffix(".md").exists()
    assert "GB/s" in result.output and "| configuration |" in result.output


def test_cli_bench_errors(monkeypatch):
    result = CliRunner().invoke(main, ["bench", "--only", "nope"])
    assert result.exit_code == 2
    assert "unknown configuration 'nope'" in result.output and "lif_layer" in result.output and "resnet18" in result.output
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = CliRunner().invoke(main, ["bench", "--device", "cuda"])
    assert result.exit_code == 2 and "CUDA is not available" in result.output
    result = CliRunner().invoke(main, ["bench", "--repeats", "0"])
    assert result.exit_code == 2


def test_benchmarks_lif_layer_wrapper(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_lif_layer_script", ROOT / "benchmarks" / "lif_layer.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    report = script.main(["--quick", "--impls", "spikeflow", "--out", str(tmp_path / "lif.json")])
    assert report["schema"] == "spikeflow-bench/lif_layer/1"
    assert [r["label"] for r in report["results"]] == ["10x4x64", "10x4x64"]
    assert report["results"][0]["ratios"]["cpu_speedup_over_reference"] is not None
    assert (tmp_path / "lif.md").exists()
