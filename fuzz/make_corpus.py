"""Write the seed corpora of the atheris targets to ``fuzz/corpus/TARGET/`` (git-ignored).

Usage::

    python fuzz/make_corpus.py [TARGET ...]     # all targets by default

The seeds are small valid files made by spikeflow itself (see ``samples.py``), so
the fuzzer starts past the magic numbers. Nothing binary is committed: rerun this
script to get the same seeds.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from parsers import TARGETS, seed_inputs  # noqa: E402


def main(targets: list[str]) -> None:
    for target in targets or list(TARGETS):
        if target not in TARGETS:
            sys.exit(f"unknown target {target!r}; targets: {', '.join(TARGETS)}")
        folder = HERE / "corpus" / target
        folder.mkdir(parents=True, exist_ok=True)
        seeds = seed_inputs(target)
        for name, blob in seeds.items():
            digest = hashlib.sha1(blob).hexdigest()[:12]
            (folder / f"seed-{Path(name).stem}-{digest}").write_bytes(blob)
        print(f"{target}: {len(seeds)} seeds in {folder}")


if __name__ == "__main__":
    main(sys.argv[1:])
