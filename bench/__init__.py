"""Benchmarks: ``python -m bench`` measures every speed and search-efficiency goal."""
