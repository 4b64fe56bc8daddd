"""Benchmarks: generation and training throughput, measured the same way for every encoder."""
