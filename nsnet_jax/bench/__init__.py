"""Benchmarks and research tools, apart from the library: speed, FLOPs and model FLOP utilisation
at a config's shapes, decode and input rates, CPU serving, the PyTorch reference, and the
relaxation and seed studies. Each is a `python -m` command printing JSON lines; nothing in the
library imports this package (tests/test_layers.py)."""
