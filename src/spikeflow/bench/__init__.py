"""Benchmarks of spikeflow against its peers (snnTorch, Norse, SpikingJelly), run by ``spikeflow bench``
(or ``python -m spikeflow.bench`` where click is missing).

- :mod:`.options`: :class:`BenchOptions`, what every configuration's ``run(opts)`` receives.
- :mod:`.suite`: the registry of configurations, the report (schema ``spikeflow-bench/suite/1``).
- :mod:`.ceilings`: measured memory bandwidth and GEMM rate; the floors they imply.
- :mod:`.lif_layer`, :mod:`.mlp`, :mod:`.open_neuromorphic`: configurations.
- :mod:`.timing`: interleaved (round-robin) timing, median/IQR statistics, machine info.

Modules are imported lazily (peers are imported only inside their adapters).
"""
