"""`gram-ray eval`: judge a benchmark's pairs, keep every judgement, score them by the official rule.

Pairs come from the data package's benchmark converters (local files) or the Hugging Face hub. Each pair
is judged as stored (game 1) and, unless ``single_game``, with the responses swapped (game 2), all in one
judge call. One results row per pair is kept (``RESULT_SCHEMA``, written as Parquet) so that scores can
be recomputed (``gram-ray eval score``) and mistakes read, and ``score_results`` applies the benchmark's
rule to it:

* JudgeBench: the two games' decisions under the +1/-1/0 rule (game 1 alone with ``single_game``).
* RM-Bench, RewardBench, HHH: the chosen response wins when the judge's preference for it (GRAM eq. 3
  over both games, or game 1's P) is strictly above 0.5.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
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
])


class PairJudge(Protocol):
    """What the harness needs of a judge backend (``OfflineJudge``, ``RayDataJudge``)."""

    def judge(self, items: Sequence[PairItem]) -> list[Judgement]: ...


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
    """Judge every pair (both games in one call) into a ``RESULT_SCHEMA`` table; ``benchmark`` may also
    be ``PAIRS``."""
    if benchmark != PAIRS:
        check_benchmark(benchmark)
    rows = pairs.to_pylist()
    items = [(r["prompt"], r["response_a"], r["response_b"]) for r in rows]
    if not single_game:
        items += [(p, b, a) for p, a, b in items]
    judged = judge.judge(items)
    if len(judged) != len(items):
        raise ValueError(f"judge returned {len(judged)} judgements for {len(items)} items")
    n = len(rows)
    out = []
    for i, row in enumerate(rows):
        first, second = judged[i], (None if single_game else judged[n + i])
        meta = json.loads(row["meta"] or "{}")
        preference = first.p_a if second is None else eq3(first.p_a, second.p_a)
        result = {
            "id": row["id"], "benchmark": benchmark, "group": meta.get(GROUP_KEY[benchmark]),
            "example": None, "cell": None, "label": row["label"],
            "decision_1": _decision(first.answer), "decision_2": _decision(second.answer) if second else None,
            "p_a_1": first.p_a, "p_a_2": second.p_a if second else None, "preference_a": preference,
            "rationale_1": _first_text(first), "rationale_2": _first_text(second), "meta": row["meta"],
        }
        if benchmark == "rm_bench":
            result["example"] = f"{meta['domain']}:{meta['bench_id']}"
            result["cell"] = STYLES * meta["chosen_index"] + meta["rejected_index"]
        result["correct"] = _correct(result, single_game)
        out.append(result)
    return pa.Table.from_pylist(out, schema=RESULT_SCHEMA)


def _correct(result: dict[str, Any], single_game: bool) -> bool:
    label = result["label"]
    if label not in ("A", "B"):
        raise ValueError(f"pair {result['id']}: benchmark pairs need an A/B label, got {label!r}")
    if result["benchmark"] == "judgebench":
        return judgebench_correct(_decision(label), result["decision_1"], result["decision_2"], single_game)
    chosen_pref = result["preference_a"] if label == "A" else 1.0 - result["preference_a"]
    return chosen_pref > 0.5


def score_results(results: pa.Table, single_game: bool | None = None) -> Score:
    """The official score of a results table (one benchmark). ``single_game`` defaults to what the table
    holds (no game-2 decisions and probabilities = a single game)."""
    benchmarks = set(results.column("benchmark").to_pylist())
    if len(benchmarks) != 1:
        raise ValueError(f"a results table must hold one benchmark, found {sorted(benchmarks)}")
    benchmark = benchmarks.pop()
    rows = results.to_pylist()
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
    """Judge, write ``<benchmark>.results.parquet`` and the score report under ``out_dir``."""
    from gram_ray.eval.report import write_report

    results = judge_benchmark(judge, benchmark, pairs, single_game)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / f"{benchmark}.results.parquet"
    pq.write_table(results, results_path)
    score = score_results(results, single_game)
    paths = write_report([score], out, title=benchmark)
    return score, {"results": results_path, **paths}
