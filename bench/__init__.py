"""Benchmark scripts: each prints calbridge's figures beside a baseline from the same run."""
