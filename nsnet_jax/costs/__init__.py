"""What a model costs: GMACs from XLA's cost analysis and wall-clock timing, below train,
evaluation and inference so that all three (and the benchmarks) count the same way."""
