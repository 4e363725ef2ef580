"""Benchmarks of the Sluice stack against `mlflow models serve` (run: python -m bench.run)."""
