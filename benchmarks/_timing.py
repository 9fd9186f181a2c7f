"""The benchmark scripts' timing helpers live in the package: :mod:`spikeflow.bench.timing`."""

from spikeflow.bench.timing import *  # noqa: F401,F403
from spikeflow.bench.timing import __all__  # noqa: F401
