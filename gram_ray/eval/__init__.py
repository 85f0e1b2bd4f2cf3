"""Benchmarks: the official scoring rules of RewardBench, RM-Bench, JudgeBench and HHH-Alignment, the
harness that judges their pairs, and the reports."""
