"""Benchmarks of spikeflow against its peers (snnTorch, Norse, SpikingJelly), run by ``spikeflow bench``.

- :mod:`.timing`: interleaved (round-robin) timing, median/IQR statistics, machine info.
"""
