"""Courtyard's benchmark suite: data generator, load generator, baselines and the report (docs/benchmarks.md)."""
