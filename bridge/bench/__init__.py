"""Benchmarks run by ``nrb bench`` / ``make bench``; each module writes its own report under ``bench/``."""
