"""Benchmarks: one per row of DESIGN.md § Targets, each beside its anchor measured in the same run."""
