"""The benchmark files of shared/data/benchmarks/ (see SOURCES.md there) as pair tables for evaluation.

Each row's `meta` carries what the benchmark's official scoring groups by:

* ``judgebench``: ``source`` (e.g. "mmlu-pro-law"), ``category`` (the reported prefix: mmlu-pro,
  livebench-reasoning, livebench-math, livecodebench), ``pair_id``, ``original_id``, ``response_model``.
  Sides and labels are the benchmark's own.
* ``rm_bench``: ``domain`` (from the file name: chat, code, safety-refuse, safety-response), ``subset``,
  ``bench_id`` (the prompt's id), ``chosen_style`` / ``rejected_style`` (concise, detailed_plain,
  detailed_markdown) with their indices; 9 pairs per prompt.
* ``hhh``: ``category`` (harmless, helpful, honest, other).
* ``hh_rlhf``: no grouping; the extracted prompt is the shared dialogue.

In the chosen/rejected benchmarks the label says where the chosen response was placed (seeded side).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from gram_ray.data.convert import load_pairs

BENCHMARK_GLOBS: dict[str, str] = {
    "judgebench": "judgebench/dataset=judgebench,response_model=*.jsonl",
    "rm_bench": "rm-bench/*_filtered.json",
    "hhh": "hhh-alignment/hhh_alignment_eval.json",
    "hh_rlhf": "hh-rlhf/*.jsonl.gz",
}


def benchmark_files(root: str | Path) -> dict[str, list[Path]]:
    """The data files of each benchmark under `root` (reference outputs and SOURCES.md excluded)."""
    root = Path(root)
    return {name: sorted(root.glob(pattern)) for name, pattern in BENCHMARK_GLOBS.items()}


def load_benchmark(name: str, root: str | Path, seed: int = 0) -> pa.Table:
    """All pairs of one benchmark (every file of it under `root`), in PAIR_SCHEMA, unvalidated."""
    if name not in BENCHMARK_GLOBS:
        raise ValueError(f"unknown benchmark {name!r}: expected one of {sorted(BENCHMARK_GLOBS)}")
    files = benchmark_files(root)[name]
    if not files:
        raise FileNotFoundError(f"no {name} files under {root} (looked for {BENCHMARK_GLOBS[name]})")
    return pa.concat_tables(load_pairs(path, fmt=name, seed=seed) for path in files)
