"""Benchmarks: speed, FLOPs and model FLOP utilisation at a config's shapes (JSON lines)."""
