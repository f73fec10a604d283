"""Evaluation: fusion metrics, ``mmaif eval``, HTML reports, benchmarks and model info."""
