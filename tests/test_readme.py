"""The README's code example runs as written (so the front page stays true)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs():
    text = README.read_text()
    block = re.search(r"## In code\n\n```python\n(.*?)```", text, re.S)
    assert block, "README.md lost its '## In code' python example"
    namespace: dict = {}
    exec(compile(block.group(1), str(README), "exec"), namespace)  # noqa: S102 - our own file
    assert namespace["spikes"].shape == (100, 32, 4096)
    assert namespace["membrane"].shape == (25, 64, 10)
    assert namespace["result"].trajectory.v.shape == (100, 32, 4096)
