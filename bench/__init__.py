"""Benchmarks: one per row of docs/architecture.md § Targets, each beside its anchor measured in the same run."""
