"""Benchmarks of flx-meltano: run them all with ``python -m bench`` (see bench/__main__.py)."""
