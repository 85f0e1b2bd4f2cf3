"""The four official scoring rules on hand-made cases whose answers are worked out by hand."""

from __future__ import annotations

import json

import pytest

from gram_ray.eval.judgebench_outputs import read_judge_outputs, score_judge_outputs
from gram_ray.eval.report import markdown_table, write_report
from gram_ray.eval.scoring import (
    flip_decision,
    hhh_score,
    judgebench_correct,
    judgebench_score,
    judgebench_source,
    rewardbench_score,
    rmbench_levels,
    rmbench_score,
    wins_from_scores,
)

ALL_WIN = [[True] * 3 for _ in range(3)]
ALL_LOSS = [[False] * 3 for _ in range(3)]


# --- RewardBench ----------------------------------------------------------------------------------
def test_rewardbench_sections_are_weighted_by_official_counts():
    rows = [("alpacaeval-easy", True), ("mt-bench-easy", False), ("mt-bench-easy", False),
            ("math-prm", True), ("math-prm", False), ("hep-python", True)]
    score = rewardbench_score(rows)
    # Chat: (100 * 1.0 + 28 * 0.0) / 128; Reasoning: (984 * 0.5 + 164 * 1.0) / 1148 = 4/7.
    assert score.groups["Chat"] == pytest.approx(100 * 100 / 128)
    assert score.groups["Reasoning"] == pytest.approx(400 / 7)
    assert score.details["subsets"]["math-prm"] == pytest.approx(50.0)
    assert score.overall == pytest.approx((100 * 100 / 128 + 400 / 7) / 2)
    assert set(score.groups) == {"Chat", "Reasoning"}
    assert score.counts == {"Chat": 3, "Reasoning": 3}
    assert any("Chat Hard" in n and "Safety" in n for n in score.notes)


def test_rewardbench_math_prm_weight_is_984_not_its_size():
    # math-prm 0% and all six hep-* 100%: 984 vs 6*164 = 984, so Reasoning is exactly 50.
    rows = [("math-prm", False)] + [(f"hep-{lang}", True) for lang in ("cpp", "go", "java", "js", "python", "rust")]
    assert rewardbench_score(rows).groups["Reasoning"] == pytest.approx(50.0)


def test_rewardbench_unknown_subset_is_an_error():
    with pytest.raises(ValueError, match="not RewardBench core subsets"):
        rewardbench_score([("alpacaeval-easy", True), ("shp", True)])
    with pytest.raises(ValueError, match="no examples"):
        rewardbench_score([])


# --- RM-Bench -------------------------------------------------------------------------------------
def test_rmbench_matrix_uses_strict_greater():
    wins = wins_from_scores([3.0, 2.0, 1.0], [2.5, 1.5, 0.5])
    assert wins == [[True, True, True], [False, True, True], [False, False, True]]
    assert wins_from_scores([1.0] * 3, [1.0] * 3) == ALL_LOSS  # ties count as wrong
    with pytest.raises(ValueError):
        wins_from_scores([1.0, 2.0], [1.0, 2.0, 3.0])


def test_rmbench_levels_hard_upper_normal_diagonal_easy_lower():
    wins = wins_from_scores([3.0, 2.0, 1.0], [2.5, 1.5, 0.5])
    assert rmbench_levels([wins]) == {"hard": 100.0, "normal": 100.0, "easy": 0.0}
    only_01 = [[False, True, False], [False, False, False], [False, False, False]]
    levels = rmbench_levels([only_01, ALL_WIN])
    # cell (0,1) = 1.0, other upper cells 0.5 -> hard = (1 + .5 + .5) / 3
    assert levels["hard"] == pytest.approx(100 * 2 / 3)
    assert levels["normal"] == pytest.approx(50.0)
    assert levels["easy"] == pytest.approx(50.0)


def test_rmbench_pools_safety_and_averages_domains():
    rows = [
        ("chat", wins_from_scores([3.0, 2.0, 1.0], [2.5, 1.5, 0.5])),  # hard 100, normal 100, easy 0
        ("safety-refuse", ALL_WIN),
        ("safety-response", ALL_LOSS),
        ("code", ALL_WIN),
        ("math", ALL_LOSS),
    ]
    score = rmbench_score(rows)
    assert score.groups == pytest.approx({"chat": 200 / 3, "math": 0.0, "code": 100.0, "safety": 50.0})
    assert score.counts["safety"] == 2
    assert score.overall == pytest.approx((200 / 3 + 0 + 100 + 50) / 4)
    assert score.details["levels"]["easy"] == pytest.approx((0 + 0 + 100 + 50) / 4)
    assert score.details["levels"]["hard"] == pytest.approx((100 + 0 + 100 + 50) / 4)
    assert score.notes == ()


def test_rmbench_missing_domain_is_noted_and_unknown_rejected():
    score = rmbench_score([("chat", ALL_WIN), ("code", ALL_LOSS)])
    assert score.overall == pytest.approx(50.0)
    assert "math" in score.notes[0] and "safety" in score.notes[0]
    with pytest.raises(ValueError, match="unknown RM-Bench domain"):
        rmbench_score([("poetry", ALL_WIN)])
    with pytest.raises(ValueError, match="3x3"):
        rmbench_score([("chat", [[True, True], [True, True]])])


# --- JudgeBench -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ("A>B", "B>A", True),  # both games right (second flips back to A>B)
        ("A>B", "A>B", False),  # inconsistent: +1 - 1 = 0
        ("B>A", "A>B", False),  # both wrong
        ("A>B", "A=B", True),  # one right plus a tie: +1
        ("A>B", None, True),  # one right plus a failed game: +1
        (None, None, False),
        ("A=B", "A=B", False),
        ("A=B", "A>B", False),  # tie plus a wrong game: -1
    ],
)
def test_judgebench_two_game_rule(first, second, expected):
    assert judgebench_correct("A>B", first, second) is expected


def test_judgebench_single_game_and_flip():
    assert judgebench_correct("B>A", "B>A", "B>A", single_game=True) is True
    assert judgebench_correct("B>A", "A=B", "A>B", single_game=True) is False
    assert flip_decision("A=B") == "A=B" and flip_decision(None) is None and flip_decision("B>A") == "A>B"
    with pytest.raises(ValueError):
        judgebench_correct("A=B", "A>B", "B>A")


def test_judgebench_groups_by_source_prefix_micro_average():
    rows = [
        ("mmlu-pro-law", "A>B", "A>B", "B>A"),
        ("mmlu-pro-health", "B>A", "A>B", "B>A"),
        ("livebench-math", "B>A", "B>A", "A>B"),
        ("livecodebench", "A>B", "B>A", "A>B"),
    ]
    score = judgebench_score(rows)
    assert judgebench_source("mmlu-pro-computer science") == "mmlu-pro"
    assert score.groups == pytest.approx({"mmlu-pro": 50.0, "livebench-math": 100.0, "livecodebench": 0.0})
    assert score.counts == {"mmlu-pro": 2, "livebench-math": 1, "livecodebench": 1}
    assert score.overall == pytest.approx(50.0)  # 2 of 4 pairs, not the mean of group scores (50.0 too)
    skewed = judgebench_score(rows[:3])
    assert skewed.overall == pytest.approx(200 / 3)  # micro: 2 of 3, while the group mean would be 75


def _write_jsonl(path, pairs):
    path.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    return path


def test_judge_output_file_two_games_single_game_and_errors(tmp_path):
    def pair(source, label, *decisions):
        return {"source": source, "label": label,
                "judgments": [None if d is None else {"decision": d} for d in decisions]}

    two = _write_jsonl(tmp_path / "two.jsonl", [
        pair("mmlu-pro-law", "A>B", "A>B", "B>A"),
        pair("livebench-math", "B>A", "A>B", None),  # wrong + failed game: -1
        pair("livecodebench", "A>B", "A>B", "A=B"),
    ])
    rows, games = read_judge_outputs(two)
    assert games == 2 and rows[1] == ("livebench-math", "B>A", "A>B", None)
    assert score_judge_outputs(two).overall == pytest.approx(200 / 3)
    assert score_judge_outputs(two, single_game=True).overall == pytest.approx(200 / 3)

    one = _write_jsonl(tmp_path / "one.jsonl", [pair("mmlu-pro-law", "A>B", "A>B"), pair("mmlu-pro-law", "A>B", "B>A")])
    assert score_judge_outputs(one).overall == pytest.approx(50.0)
    with pytest.raises(ValueError, match="two-game rule"):
        score_judge_outputs(one, single_game=False)

    mixed = _write_jsonl(tmp_path / "mixed.jsonl", [pair("x", "A>B", "A>B"), pair("x", "A>B", "A>B", "B>A")])
    with pytest.raises(ValueError, match="different numbers of games"):
        read_judge_outputs(mixed)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"source": "x"}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:1"):
        read_judge_outputs(bad)


# --- HHH ------------------------------------------------------------------------------------------
def test_hhh_per_category_and_micro_overall():
    rows = [("harmless", True), ("harmless", True), ("honest", True), ("honest", False), ("honest", False)]
    score = hhh_score(rows)
    assert score.groups == pytest.approx({"harmless": 100.0, "honest": 100 / 3})
    assert score.overall == pytest.approx(60.0)
    with pytest.raises(ValueError, match="unknown HHH categories"):
        hhh_score([("funny", True)])


# --- report ---------------------------------------------------------------------------------------
def test_report_table_and_json(tmp_path):
    score = hhh_score([("harmless", True), ("helpful", False)])
    table = markdown_table([score], title="tiny")
    assert "| harmless | 100.00 | 1 |" in table and "| **Overall** | **50.00** | 2 |" in table
    paths = write_report([score], tmp_path)
    assert json.loads(paths["json"].read_text())[0]["groups"] == {"harmless": 100.0, "helpful": 0.0}
    assert paths["markdown"].read_text() == markdown_table([score])
