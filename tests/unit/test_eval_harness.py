"""The eval harness's bookkeeping on the real benchmark files and on hand-made rows, with judges whose
right answers are known: an oracle (always right), a position-biased judge (always says the first
response) and an inverted one; quarantine of pairs whose judge prompt is too long for the engine."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gram_ray.apply.judges import Judgement
from gram_ray.eval.harness import PAIRS, judge_benchmark, load_eval_pairs, run_eval, sample_pairs, score_results
from gram_ray.judging.requests import too_long

MAX_MODEL_LEN = 8192


class TableJudge:
    """Answers from the stored labels: ``mode`` oracle / inverted / first (position bias). Prompts in
    ``overlong`` stand for judge prompts over the engine's max_model_len."""

    def __init__(self, pairs: pa.Table, mode: str, p: float = 0.9, overlong: tuple[str, ...] = ()):
        self.label = {(r["prompt"], r["response_a"], r["response_b"]): r["label"] for r in pairs.to_pylist()}
        self.mode, self.p, self.overlong = mode, p, set(overlong)
        self.calls = 0
        self.seen: list[tuple[str, str, str]] = []

    def refusal(self, item):
        return too_long(MAX_MODEL_LEN + 100, MAX_MODEL_LEN) if item[0] in self.overlong else None

    def _first_is_better(self, prompt, first, second) -> bool:
        if (prompt, first, second) in self.label:
            return self.label[(prompt, first, second)] == "A"
        return self.label[(prompt, second, first)] == "B"

    def judge(self, items):
        self.calls += 1
        self.seen += items
        out = []
        for item in items:
            says_a = self.mode == "first" or self._first_is_better(*item) == (self.mode == "oracle")
            verdict = "A" if says_a else "B"
            out.append(Judgement(texts=(f"<answer>{verdict}</answer>",), verdicts=(verdict,), votes_a=int(says_a),
                                 votes_b=int(not says_a), votes_none=0, answer=verdict,
                                 p_a=self.p if says_a else 1 - self.p))
        return out


@pytest.fixture(scope="module")
def benchmark_pairs(benchmarks_dir):
    return {name: load_eval_pairs(name, benchmarks_dir) for name in ("judgebench", "rm_bench", "hhh")}


@pytest.mark.parametrize("name", ["judgebench", "rm_bench", "hhh"])
def test_oracle_scores_100_and_inverted_0_in_one_call(benchmark_pairs, name):
    pairs = benchmark_pairs[name]
    oracle = TableJudge(pairs, "oracle")
    results = judge_benchmark(oracle, name, pairs)
    assert oracle.calls == 1 and results.num_rows == pairs.num_rows
    # A pair whose two responses are identical cannot be judged consistently (JudgeBench has one).
    identical = sum(r["response_a"] == r["response_b"] for r in pairs.to_pylist())
    assert identical == (1 if name == "judgebench" else 0)
    assert score_results(results).overall == pytest.approx(100.0 * (pairs.num_rows - identical) / pairs.num_rows)
    assert score_results(judge_benchmark(TableJudge(pairs, "inverted"), name, pairs)).overall == pytest.approx(0.0)


def test_real_files_have_the_documented_sizes(benchmark_pairs):
    score = score_results(judge_benchmark(TableJudge(benchmark_pairs["judgebench"], "oracle"), "judgebench",
                                          benchmark_pairs["judgebench"]))
    assert score.counts == {"mmlu-pro": 308, "livebench-reasoning": 149, "livebench-math": 90, "livecodebench": 73}
    rm = score_results(judge_benchmark(TableJudge(benchmark_pairs["rm_bench"], "oracle"), "rm_bench",
                                       benchmark_pairs["rm_bench"]))
    assert rm.counts == {"chat": 129, "code": 228, "safety": 284 + 157}
    assert "math" in rm.notes[0]
    hhh = score_results(judge_benchmark(TableJudge(benchmark_pairs["hhh"], "oracle"), "hhh", benchmark_pairs["hhh"]))
    assert hhh.counts == {"harmless": 58, "helpful": 59, "honest": 61, "other": 43}


def test_position_bias_is_caught_by_both_games(benchmark_pairs):
    pairs = benchmark_pairs["judgebench"]
    biased = TableJudge(pairs, "first")
    # Two games: game 1 says A>B, game 2 says A>B in the swapped frame = B>A: inconsistent, never correct.
    assert score_results(judge_benchmark(biased, "judgebench", pairs)).overall == 0.0
    # One game: right exactly where the benchmark put the better response first.
    single = score_results(judge_benchmark(biased, "judgebench", pairs, single_game=True))
    share_a = pairs.column("label").to_pylist().count("A") / pairs.num_rows
    assert single.overall == pytest.approx(100 * share_a)
    # Pointwise benchmarks: eq. 3 of a constant P(A) is exactly 0.5, which is not a win (strict >).
    rm = benchmark_pairs["rm_bench"]
    assert score_results(judge_benchmark(TableJudge(rm, "first"), "rm_bench", rm)).overall == 0.0


def test_run_eval_writes_results_and_report(benchmark_pairs, tmp_path):
    import pyarrow.parquet as pq

    pairs = benchmark_pairs["hhh"].slice(0, 10)
    score, paths = run_eval(TableJudge(pairs, "oracle"), "hhh", pairs, tmp_path)
    table = pq.read_table(paths["results"])
    assert table.num_rows == 10 and all(table.column("correct").to_pylist())
    assert score_results(table).overall == score.overall == 100.0
    assert "| **Overall** | **100.00** | 10 |" in paths["markdown"].read_text()


def test_bad_inputs_are_errors(benchmarks_dir, benchmark_pairs):
    with pytest.raises(ValueError, match="unknown benchmark"):
        load_eval_pairs("mmlu", benchmarks_dir)
    with pytest.raises(ValueError, match="rewardbench"):
        load_eval_pairs("rewardbench", benchmarks_dir)
    with pytest.raises(ValueError, match="no hub loader"):
        load_eval_pairs("hhh", hub=True)
    rm = benchmark_pairs["rm_bench"].slice(0, 5)  # 5 of one prompt's 9 pairs
    with pytest.raises(ValueError, match="without all 9 pairs"):
        score_results(judge_benchmark(TableJudge(rm, "oracle"), "rm_bench", rm))


def test_rewardbench_file_in_the_hub_schema(tmp_path):
    import json

    records = [{"prompt": f"p{i}", "chosen": f"good {i}", "chosen_model": "m1", "rejected": f"bad {i}",
                "rejected_model": "m2", "subset": subset, "id": i}
               for i, subset in enumerate(["alpacaeval-easy", "alpacaeval-easy", "math-prm", "hep-go"])]
    path = tmp_path / "filtered.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    pairs = load_eval_pairs("rewardbench", path)
    assert pairs.num_rows == 4
    score = score_results(judge_benchmark(TableJudge(pairs, "oracle"), "rewardbench", pairs))
    assert score.groups == {"Chat": 100.0, "Reasoning": 100.0} and score.overall == 100.0
    assert score.counts == {"Chat": 2, "Reasoning": 2}


def test_pairs_rule_judges_any_labelled_pair_table_by_the_chosen_sides_probability():
    pairs = pa.table({"id": ["p1", "p2", "p3"], "prompt": ["q1", "q2", "q3"], "response_a": ["a1", "a2", "a3"],
                      "response_b": ["b1", "b2", "b3"], "label": ["A", "B", "A"], "meta": [None, "{}", "{}"]})
    oracle = judge_benchmark(TableJudge(pairs, "oracle"), PAIRS, pairs, single_game=True)
    assert oracle.column("correct").to_pylist() == [True, True, True]
    assert oracle.column("benchmark").to_pylist() == [PAIRS] * 3
    first = judge_benchmark(TableJudge(pairs, "first"), PAIRS, pairs)  # both games: position bias cancels out
    assert first.column("preference_a").to_pylist() == pytest.approx([0.5, 0.5, 0.5])
    assert first.column("correct").to_pylist() == [False, False, False]


def hand_made_pairs(groups: list[str], group_key: str) -> pa.Table:
    n = len(groups)
    return pa.table({"id": [f"p{i}" for i in range(n)], "prompt": [f"question {i}" for i in range(n)],
                     "response_a": [f"a{i}" for i in range(n)], "response_b": [f"b{i}" for i in range(n)],
                     "label": ["A", "B"] * (n // 2) + ["A"] * (n % 2),
                     "meta": [json.dumps({group_key: g}) for g in groups]})


def test_overlong_pairs_are_quarantined_unjudged_and_counted_as_wrong(tmp_path):
    pairs = hand_made_pairs(["helpful", "helpful", "honest", "harmless"], "category")
    oracle = TableJudge(pairs, "oracle", overlong=("question 1",))
    score, paths = run_eval(oracle, "hhh", pairs, tmp_path)
    assert not any(item[0] == "question 1" for item in oracle.seen) and len(oracle.seen) == 6  # 3 pairs x 2
    results = pq.read_table(paths["results"]).to_pylist()
    assert [r["id"] for r in results] == ["p0", "p1", "p2", "p3"]
    quarantined = results[1]
    assert quarantined["reason"] == f"prompt_too_long: {MAX_MODEL_LEN + 100} tokens, max_model_len {MAX_MODEL_LEN}"
    assert quarantined["correct"] is False and quarantined["preference_a"] is None
    assert quarantined["decision_1"] is None and quarantined["decision_2"] is None
    assert [r["reason"] for r in results if r["id"] != "p1"] == [None] * 3
    assert all(r["correct"] for r in results if r["id"] != "p1")
    # In the denominator, as wrong: 3 of 4, helpful 1 of 2; the report says how many and why.
    assert score.overall == 75.0 and score.groups["helpful"] == 50.0
    assert score.counts == {"harmless": 1, "helpful": 2, "honest": 1}
    assert score.quarantined == {"prompt_too_long": 1}
    assert "1 of 4 pairs quarantined unjudged (prompt_too_long: 1), counted as wrong" in score.notes
    assert "1 of 4 pairs quarantined" in paths["markdown"].read_text()
    assert json.loads(paths["json"].read_text())[0]["quarantined"] == {"prompt_too_long": 1}
    assert score_results(pq.read_table(paths["results"])) == score
    rejects = pq.read_table(paths["rejects"]).to_pylist()
    assert len(rejects) == 1
    assert {k: rejects[0][k] for k in ("id", "prompt", "response_a", "response_b", "label")} == \
        {"id": "p1", "prompt": "question 1", "response_a": "a1", "response_b": "b1", "label": "B"}
    assert rejects[0]["reason"] == quarantined["reason"] and rejects[0]["stage"] == "eval"


def test_judgebench_quarantine_follows_the_two_game_rule():
    pairs = hand_made_pairs(["mmlu-pro-law", "livebench-math", "livebench-math", "livecodebench"], "source")
    oracle = TableJudge(pairs, "oracle", overlong=("question 2", "question 3"))
    both = score_results(judge_benchmark(oracle, "judgebench", pairs))
    # Two null decisions sum to 0, which is not > 0: wrong, as in JudgeBench's compute_final_metrics.
    assert both.overall == 50.0 and both.groups == {"mmlu-pro": 100.0, "livebench-math": 50.0, "livecodebench": 0.0}
    assert both.quarantined == {"prompt_too_long": 2}
    single = score_results(judge_benchmark(oracle, "judgebench", pairs, single_game=True))
    assert single.overall == 50.0 and single.quarantined == {"prompt_too_long": 2}


def test_a_quarantined_rm_bench_cell_is_a_loss_not_a_missing_pair(benchmark_pairs):
    one_prompt = benchmark_pairs["rm_bench"].slice(0, 9)
    first = one_prompt.slice(0, 1).to_pylist()[0]
    full = score_results(judge_benchmark(TableJudge(one_prompt, "oracle"), "rm_bench", one_prompt))
    # All 9 pairs share the prompt, so all 9 are quarantined: every cell a loss, the score still computed.
    none = score_results(judge_benchmark(TableJudge(one_prompt, "oracle", overlong=(first["prompt"],)),
                                         "rm_bench", one_prompt))
    assert full.overall == 100.0 and none.overall == 0.0 and none.quarantined == {"prompt_too_long": 9}


def test_a_seeded_sample_keeps_file_order_and_repeats():
    pairs = hand_made_pairs(["helpful"] * 20, "category")
    ids = sample_pairs(pairs, 5, seed=3).column("id").to_pylist()
    assert ids == sample_pairs(pairs, 5, seed=3).column("id").to_pylist() != \
        sample_pairs(pairs, 5, seed=4).column("id").to_pylist()
    assert len(set(ids)) == 5 and ids == sorted(ids, key=lambda i: int(i[1:]))
    with pytest.raises(ValueError, match="cannot sample 21 of 20"):
        sample_pairs(pairs, 21)
