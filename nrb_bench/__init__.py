"""Benchmarks run by ``nrb bench`` / ``make bench``; each module writes its own report under ``bench/``.

A tools package beside ``bridge``, not inside it: the benchmarks import the model code (``neural_renderer``, torch)
and the runtime must not, so ``bridge`` never imports this package; ``nrb bench`` (``bridge/commands/bench.py``)
loads a benchmark module only when it runs it. It ships in the wheel (so ``nrb bench`` works from an install with
the ``[train]`` extra); a core or ``[server]`` install imports none of it.
"""
