"""Benchmarks of WebWire: run each as C{python -m benchmarks.<name>} (see README.md)."""
