"""The scripts in examples/ run end to end (one epoch on a few samples) and say what
they rebuild. The MNIST ones need the MNIST folder and skip without it."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from spikeflow.data import find_mnist_dir
from spikeflow.data.mnist import DATA_ENV
from spikeflow.train.presets import PRESETS

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
_SHARED = ROOT.parent / "shared" / "data" / "mnist"
SCRIPTS = {  # script -> (preset, needs MNIST)
    "seed001_graded_mnist.py": ("seed001", True),
    "seed003_randman.py": ("seed003", False),
    "seed004_latency_mnist.py": ("seed004", True),
}
ACCURACY = re.compile(r"^epoch 1: .*test accuracy (\d+\.\d+)%$", re.MULTILINE)


def _mnist_folder() -> Path:
    """``$SPIKEFLOW_DATA`` if it holds MNIST files, else the shared folder; else skip."""
    tried = []
    for source in (os.environ.get(DATA_ENV), _SHARED):
        if source:
            try:
                return find_mnist_dir(source)
            except FileNotFoundError:
                tried.append(str(source))
    pytest.skip(f"no MNIST data (tried {', '.join(tried) or 'nothing'}): set {DATA_ENV} to an MNIST folder")


def _run(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        cwd=cwd, capture_output=True, text=True, timeout=300,
    )


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_docstring_names_the_seed_and_the_cli_equivalent(script):
    preset, _ = SCRIPTS[script]
    doc = ast.get_docstring(ast.parse((EXAMPLES / script).read_text()))
    assert doc and f"Seed {preset[4:]}" in doc
    assert f"spikeflow train --preset {preset}" in doc and preset in PRESETS
    assert f"`{script}`" in (EXAMPLES / "README.md").read_text()


@pytest.mark.parametrize(
    "script",
    [pytest.param(name, marks=pytest.mark.mnist) if SCRIPTS[name][1] else name for name in sorted(SCRIPTS)],
)
def test_script_trains_one_epoch_and_prints_an_accuracy(script, tmp_path):
    args = ["--epochs", "1", "--limit", "200", "--seed", "1"]
    if SCRIPTS[script][1]:
        args += ["--data-dir", str(_mnist_folder())]
    result = _run(script, *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    match = ACCURACY.search(result.stdout)
    assert match, f"no 'epoch 1: ... test accuracy N.NN%' line in:\n{result.stdout}"
    assert 0.0 <= float(match.group(1)) <= 100.0
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_missing_mnist_is_a_one_line_error(tmp_path):
    result = _run("seed004_latency_mnist.py", "--data-dir", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert result.returncode != 0
    assert "error:" in result.stderr and "Traceback" not in result.stderr
    assert DATA_ENV in result.stderr  # the message says how to point at the data
