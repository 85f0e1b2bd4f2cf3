"""Held-out accuracy of a trained judge: one offline vLLM engine in one Ray task.

A held-out split is small (hundreds to a few thousand pairs). Judging it as a Ray Data stage pays for an
engine actor, an engine-core process and map tasks (60-90 s on 2 cores, most of it process start-up and
imports) to do a few seconds of decoding; one Ray task that builds a ``vllm.LLM`` in its own process and
judges every pair in one ``generate`` call pays for the engine start only, and its process (with the
engine's memory) ends with it. Every pair's judgement is kept, so a wrong verdict can be read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from gram_ray.apply.judges import JudgeKind
from gram_ray.config import EngineConfig, JudgeConfig
from gram_ray.data.io import ParquetSink
from gram_ray.eval.harness import PAIRS, RESULT_SCHEMA, judge_benchmark
from gram_ray.judging.engine import engine_env

JUDGEMENTS = "judgements"  # the evaluation stage's output: every pair's judgement, in RESULTS
RESULTS = "judgements.parquet"


def evaluate_heldout(pairs: str, out_dir: str | Path, engine: EngineConfig, judge: JudgeConfig,
                     kind: JudgeKind = "reasoning") -> tuple[dict[str, str], dict[str, Any]]:
    """Judge every labelled pair of ``pairs`` (a Parquet file or folder) and write ``judgements.parquet``
    (``harness.RESULT_SCHEMA``) under ``out_dir``; returns (outputs, info) for the run manifest, info
    holding ``accuracy`` = pairs whose labelled side won / all pairs (no verdict, or a prompt too long
    for the engine, counts as wrong; ``no_verdict`` includes the ``quarantined``).

    A reasoning judge is asked once per pair, in the stored order (its verdict decides); a label-only
    judge in both orders, its preference being GRAM's mean of P(A) and P(B) over the two orders.
    """
    import ray

    labels = pq.read_table(pairs, columns=["label"]).column("label").to_pylist()
    unlabelled = sum(label not in ("A", "B") for label in labels)
    if not labels or unlabelled:
        raise ValueError(f"held-out pairs {pairs}: {unlabelled} of {len(labels)} rows lack an A/B label; "
                         "accuracy needs every pair labelled")
    resources = ({"num_cpus": engine.cpus_per_engine} if engine.accelerator == "cpu"
                 else {"num_cpus": 1, "num_gpus": engine.tensor_parallel_size})
    task = ray.remote(max_calls=1, **resources)(_judge_pairs)  # a fresh process: the engine leaves with it
    results = ray.get(task.options(runtime_env={"env_vars": engine_env(engine)}).remote(pairs, engine, judge, kind))
    out = Path(out_dir) / RESULTS
    with ParquetSink(out, RESULT_SCHEMA) as sink:
        sink.write_table(results)
    correct = sum(results.column("correct").to_pylist())
    no_verdict = sum(d is None for d in results.column("decision_1").to_pylist())
    quarantined = results.num_rows - results.column("reason").null_count
    info = {"pairs": results.num_rows, "correct": correct, "no_verdict": no_verdict,
            "quarantined": quarantined, "kind": kind, "accuracy": correct / results.num_rows}
    return {JUDGEMENTS: str(out)}, info


def _judge_pairs(pairs: str, engine: EngineConfig, judge: JudgeConfig, kind: JudgeKind) -> pa.Table:
    from gram_ray.apply.judges import OfflineJudge

    table = pq.read_table(pairs, columns=["id", "prompt", "response_a", "response_b", "label", "meta"])
    offline = OfflineJudge.from_config(engine, kind, judge)
    return judge_benchmark(offline, PAIRS, table, single_game=kind == "reasoning")
