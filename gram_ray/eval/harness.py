"""`gram-ray eval`: judge a benchmark's pairs, keep every judgement, score them by the official rule.

Pairs come from the data package's benchmark converters (local files) or the Hugging Face hub. Each pair
is judged as stored (game 1) and, unless ``single_game``, with the responses swapped (game 2), all in one
judge call. One results row per pair is kept (``RESULT_SCHEMA``, written as Parquet) so that scores can
be recomputed (``gram-ray eval score``) and mistakes read, and ``score_results`` applies the benchmark's
rule to it:

* JudgeBench: the two games' decisions under the +1/-1/0 rule (game 1 alone with ``single_game``).
* RM-Bench, RewardBench, HHH: the chosen response wins when the judge's preference for it (GRAM eq. 3
  over both games, or game 1's P) is strictly above 0.5.

A pair whose judge prompt the engine would refuse (longer than ``max_model_len``, in either order) is not
sent: it is quarantined, its results row carrying the ``reason`` with no decisions, and its input row
written to ``<benchmark>.rejects.parquet``. It stays in the denominator and counts as wrong, as each
benchmark's own code counts a pair its judge gave no verdict for (JudgeBench: two null decisions score 0,
not > 0; the others: no score is no strict win), so a score is never raised by leaving hard pairs out.
"""

from __future__ import annotations

import json
import random
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from gram_ray.apply.judges import Judgement
from gram_ray.apply.ranking import PairItem
from gram_ray.data.benchmarks import load_benchmark
from gram_ray.data.convert import load_pairs
from gram_ray.eval.scoring import (
    STYLES,
    Score,
    hhh_score,
    judgebench_correct,
    judgebench_score,
    rewardbench_score,
    rmbench_score,
)
from gram_ray.prompts.verdicts import eq3
from gram_ray.stages.schemas import reject_schema

BENCHMARKS = ("judgebench", "rm_bench", "hhh", "rewardbench")
PAIRS = "pairs"  # any file of A/B-labelled pairs (a run's held-out split): the chosen side wins when P > 0.5
# The pair-file format of each benchmark's local files, and the meta key its scoring groups by.
FORMAT = {"judgebench": "judgebench", "rm_bench": "rm_bench", "hhh": "hhh", "rewardbench": "chosen_rejected"}
GROUP_KEY = {"judgebench": "source", "rm_bench": "domain", "hhh": "category", "rewardbench": "subset", PAIRS: "source"}
# Hub copies: (dataset id, splits). HHH's hub copy is BIG-bench's ranked-list format, which is not a pair file.
HUB = {
    "rewardbench": ("allenai/reward-bench", ["filtered"]),
    "rm_bench": ("THU-KEG/RM-Bench", ["train"]),
    "judgebench": ("ScalerLab/JudgeBench", ["gpt", "claude"]),
}

RESULT_SCHEMA = pa.schema([
    pa.field("id", pa.string(), nullable=False),
    pa.field("benchmark", pa.string(), nullable=False),
    pa.field("group", pa.string()),  # what the official rule groups by: subset / domain / source / category
    pa.field("example", pa.string()),  # RM-Bench: the prompt the 9 pairs share
    pa.field("cell", pa.int32()),  # RM-Bench: 3 * chosen style + rejected style
    pa.field("label", pa.string()),  # the side of the better (chosen) response
    pa.field("decision_1", pa.string()),  # game 1 as stored: "A>B", "B>A" or null (no verdict)
    pa.field("decision_2", pa.string()),  # game 2 (swapped), in the swapped frame as the judge gave it
    pa.field("p_a_1", pa.float64()),  # P(first shown is better) in game 1
    pa.field("p_a_2", pa.float64()),  # ... in game 2 (null for a single game)
    pa.field("preference_a", pa.float64()),  # P(stored response_a is better): eq. 3, or p_a_1 for a single game
    pa.field("correct", pa.bool_()),
    pa.field("rationale_1", pa.string()),  # the first sampled judgement text of each game
    pa.field("rationale_2", pa.string()),
    pa.field("meta", pa.string()),
    pa.field("reason", pa.string()),  # why the pair was quarantined unjudged (counted as wrong); null if judged
])
EVAL_STAGE = "eval"


class PairJudge(Protocol):
    """What the harness needs of a judge backend (``OfflineJudge``, ``RayDataJudge``)."""

    def judge(self, items: Sequence[PairItem]) -> list[Judgement]: ...

    def refusal(self, item: PairItem) -> str | None: ...


def load_eval_pairs(benchmark: str, data: str | Path | None = None, hub: bool = False, seed: int = 0) -> pa.Table:
    """A benchmark's pairs: from ``data`` (a benchmarks root folder with the SOURCES.md layout, or one file
    of the benchmark's format), or from the Hugging Face hub."""
    check_benchmark(benchmark)
    if hub:
        return _from_hub(benchmark, seed)
    if data is None:
        raise ValueError(f"{benchmark}: give a data path (file or benchmarks folder) or use the hub")
    path = Path(data)
    if path.is_dir():
        if benchmark == "rewardbench":
            raise ValueError("rewardbench: give the filtered split as a JSON/JSONL/Parquet file, or use the hub")
        return load_benchmark(benchmark, path, seed=seed)
    return load_pairs(path, fmt=FORMAT[benchmark], seed=seed)


def sample_pairs(pairs: pa.Table, n: int, seed: int = 0) -> pa.Table:
    """``n`` pairs drawn without replacement by ``seed``, in file order: a subset that spans the whole
    file (its groups in about their shares), where the first ``n`` of a file sorted by group would not."""
    if not 0 < n <= pairs.num_rows:
        raise ValueError(f"cannot sample {n} of {pairs.num_rows} pairs")
    return pairs.take(sorted(random.Random(seed).sample(range(pairs.num_rows), n)))


def _from_hub(benchmark: str, seed: int) -> pa.Table:
    if benchmark not in HUB:
        raise ValueError(f"{benchmark}: no hub loader (its hub copy is not in pair form); use the local file")
    try:
        import datasets
    except ImportError:
        raise ImportError("loading from the Hugging Face hub needs the `datasets` package: "
                          "pip install datasets (then `huggingface-cli login` for gated sets)") from None
    repo, splits = HUB[benchmark]
    tables = []
    with tempfile.TemporaryDirectory() as tmp:
        for split in splits:
            path = Path(tmp) / f"{benchmark}_{split}.jsonl"
            datasets.load_dataset(repo, split=split).to_json(str(path), lines=True, force_ascii=False)
            tables.append(load_pairs(path, fmt=FORMAT[benchmark], seed=seed))
    return pa.concat_tables(tables)


def check_benchmark(benchmark: str) -> None:
    if benchmark not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {benchmark!r}; choose one of {BENCHMARKS}")


def _decision(answer: str | None) -> str | None:
    return {"A": "A>B", "B": "B>A"}.get(answer) if answer else None


def _first_text(j: Judgement | None) -> str | None:
    return j.texts[0] if j is not None and j.texts else None


def judge_benchmark(judge: PairJudge, benchmark: str, pairs: pa.Table, single_game: bool = False) -> pa.Table:
    """Judge every pair (both games in one call) into a ``RESULT_SCHEMA`` table, quarantined pairs
    included; ``benchmark`` may also be ``PAIRS``."""
    if benchmark != PAIRS:
        check_benchmark(benchmark)
    rows = pairs.to_pylist()
    reasons = [_refusal(judge, row, single_game) for row in rows]
    judged_rows = [row for row, reason in zip(rows, reasons, strict=True) if reason is None]
    items = [(r["prompt"], r["response_a"], r["response_b"]) for r in judged_rows]
    if not single_game:
        items += [(p, b, a) for p, a, b in items]
    judged = judge.judge(items) if items else []
    if len(judged) != len(items):
        raise ValueError(f"judge returned {len(judged)} judgements for {len(items)} items")
    n = len(judged_rows)
    games = iter(zip(judged[:n], [None] * n if single_game else judged[n:], strict=True))
    out = []
    for row, reason in zip(rows, reasons, strict=True):
        first, second = next(games) if reason is None else (None, None)
        meta = json.loads(row["meta"] or "{}")
        result = {
            "id": row["id"], "benchmark": benchmark, "group": meta.get(GROUP_KEY[benchmark]),
            "example": None, "cell": None, "label": row["label"], "meta": row["meta"], "reason": reason,
            **_games(first, second),
        }
        if benchmark == "rm_bench":
            result["example"] = f"{meta['domain']}:{meta['bench_id']}"
            result["cell"] = STYLES * meta["chosen_index"] + meta["rejected_index"]
        result["correct"] = _correct(result, single_game)
        out.append(result)
    return pa.Table.from_pylist(out, schema=RESULT_SCHEMA)


def _refusal(judge: PairJudge, row: dict[str, Any], single_game: bool) -> str | None:
    """Why the engine would refuse this pair's judge prompt in either game, or None."""
    item = (row["prompt"], row["response_a"], row["response_b"])
    return judge.refusal(item) or (None if single_game else judge.refusal((item[0], item[2], item[1])))


def _games(first: Judgement | None, second: Judgement | None) -> dict[str, Any]:
    """The results columns of a pair's games; all null for a quarantined pair (``first`` None)."""
    if first is None:
        return dict.fromkeys(("decision_1", "decision_2", "p_a_1", "p_a_2", "preference_a",
                              "rationale_1", "rationale_2"))
    return {
        "decision_1": _decision(first.answer), "decision_2": _decision(second.answer) if second else None,
        "p_a_1": first.p_a, "p_a_2": second.p_a if second else None,
        "preference_a": first.p_a if second is None else eq3(first.p_a, second.p_a),
        "rationale_1": _first_text(first), "rationale_2": _first_text(second),
    }


def _correct(result: dict[str, Any], single_game: bool) -> bool:
    label = result["label"]
    if label not in ("A", "B"):
        raise ValueError(f"pair {result['id']}: benchmark pairs need an A/B label, got {label!r}")
    if result["benchmark"] == "judgebench":
        return judgebench_correct(_decision(label), result["decision_1"], result["decision_2"], single_game)
    if result["preference_a"] is None:  # quarantined: no score is no strict win
        return False
    chosen_pref = result["preference_a"] if label == "A" else 1.0 - result["preference_a"]
    return chosen_pref > 0.5


def score_results(results: pa.Table, single_game: bool | None = None) -> Score:
    """The official score of a results table (one benchmark), with its quarantined pairs counted by
    reason (in the score as wrong). ``single_game`` defaults to what the table holds (no game-2
    decisions and probabilities = a single game)."""
    benchmarks = set(results.column("benchmark").to_pylist())
    if len(benchmarks) != 1:
        raise ValueError(f"a results table must hold one benchmark, found {sorted(benchmarks)}")
    benchmark = benchmarks.pop()
    rows = results.to_pylist()
    score = _official_score(benchmark, rows, single_game)
    quarantined = Counter(r["reason"].split(":")[0] for r in rows if r.get("reason"))
    if not quarantined:
        return score
    kinds = ", ".join(f"{reason}: {count}" for reason, count in sorted(quarantined.items()))
    note = (f"{quarantined.total()} of {len(rows)} pairs quarantined unjudged ({kinds}), "
            "counted as wrong")
    return replace(score, quarantined=dict(quarantined), notes=(*score.notes, note))


def _official_score(benchmark: str, rows: list[dict[str, Any]], single_game: bool | None) -> Score:
    if benchmark == "judgebench":
        if single_game is None:
            single_game = all(r["p_a_2"] is None for r in rows)
        return judgebench_score(
            [(r["group"], _decision(r["label"]), r["decision_1"], r["decision_2"]) for r in rows], single_game
        )
    if benchmark == "rm_bench":
        matrices: dict[str, tuple[str, list[list[bool]]]] = {}
        for r in rows:
            _, matrix = matrices.setdefault(r["example"], (r["group"], [[False] * STYLES for _ in range(STYLES)]))
            matrix[r["cell"] // STYLES][r["cell"] % STYLES] = bool(r["correct"])
        pairs_per_example = Counter(r["example"] for r in rows)
        incomplete = [k for k, n in pairs_per_example.items() if n != STYLES * STYLES]
        if incomplete:
            raise ValueError(f"RM-Bench prompts without all 9 pairs: {incomplete[:5]}")
        return rmbench_score(matrices.values())
    if benchmark == "hhh":
        return hhh_score((r["group"], r["correct"]) for r in rows)
    if benchmark == "rewardbench":
        return rewardbench_score((r["group"], r["correct"]) for r in rows)
    raise ValueError(f"unknown benchmark {benchmark!r} in results")


def run_eval(judge: PairJudge, benchmark: str, pairs: pa.Table, out_dir: str | Path,
             single_game: bool = False) -> tuple[Score, dict[str, Path]]:
    """Judge, write ``<benchmark>.results.parquet``, the quarantined input rows
    (``<benchmark>.rejects.parquet``, with their ``reason``) and the score report under ``out_dir``."""
    from gram_ray.eval.report import write_report

    results = judge_benchmark(judge, benchmark, pairs, single_game)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / f"{benchmark}.results.parquet"
    pq.write_table(results, results_path)
    rejects_path = out / f"{benchmark}.rejects.parquet"
    pq.write_table(_rejects(pairs, results), rejects_path)
    score = score_results(results, single_game)
    paths = write_report([score], out, title=benchmark)
    return score, {"results": results_path, "rejects": rejects_path, **paths}


def _rejects(pairs: pa.Table, results: pa.Table) -> pa.Table:
    """The input rows of the quarantined pairs (results rows follow the pairs' order), with reason and stage."""
    quarantined = pc.is_valid(results.column("reason"))
    rows = pairs.filter(quarantined)
    rows = rows.append_column("reason", results.column("reason").filter(quarantined))
    rows = rows.append_column("stage", pa.array([EVAL_STAGE] * rows.num_rows, pa.string()))
    return rows.cast(reject_schema(pairs.schema))
