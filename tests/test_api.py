"""The public surface: what `import spikeflow` gives, and what it must not do."""

import json
import os
import subprocess
import sys

import spikeflow


def test_top_level_names():
    for name in spikeflow.__all__:
        assert hasattr(spikeflow, name), name
    assert callable(spikeflow.scan)
    # The driver is a function and the backends a package: neither shadows the other.
    import spikeflow.backends.cpu as cpu
    import spikeflow.backends.reference as reference

    assert cpu.__name__ == "spikeflow.backends.cpu"
    assert reference.__name__ == "spikeflow.backends.reference"
    assert {"auto", "cpu", "reference"} <= set(spikeflow.backends.backend_names())


def test_import_has_no_side_effects(tmp_path):
    """Importing needs only torch and numpy, builds no kernel, patches nothing."""
    code = (
        "import json, sys, torch; base = set(sys.modules); before = torch.reshape; import spikeflow; "
        "print(json.dumps({'mods': sorted(set(sys.modules) - base), 'same_reshape': torch.reshape is before}))"
    )
    env = dict(os.environ, SPIKEFLOW_CACHE_DIR=str(tmp_path / "cache"))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    info = json.loads(out.stdout)
    # Beyond what torch itself loads, only spikeflow's own modules (and the stdlib).
    heavy = {"sklearn", "click", "tqdm", "matplotlib", "safetensors", "scipy", "optuna", "numba"}
    assert heavy.isdisjoint({m.split(".")[0] for m in info["mods"]})
    assert "spikeflow.backends.cpu" in info["mods"]
    assert info["same_reshape"]
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.so"))
