"""The GRPO recipe's pure pieces on hand-made cases: its config, the exact answer checker as a TRL reward,
what a judge is shown of a completion, held-out accuracy, and best-of-n selection from a pairwise table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gram_ray.apply.answer_rewards import FinalAnswers, answer_text, oracle_reward
from gram_ray.apply.distinct_judge import DistinctComparisons
from gram_ray.config import ConfigError, GrpoConfig, parse_config
from gram_ray.eval.policy import (
    accuracy,
    best_of_first,
    best_of_n_accuracy,
    judge_tables,
    oracle_table,
    right_shares,
)
from gram_ray.run.grpo_report import greedy_flips, paired_standard_error, recovered_gain, write_grpo_report
from gram_ray.run.manifest import RunDir
from gram_ray.tinykit.addition import OPERANDS, final_answer, split_questions, worked_solution

RIGHT = "7+8=15, carry 1. 3+4+1=8. sum 85."  # 37 + 48
SLIP = "7+8=15, carry 1. 3+4=7. sum 75."  # the forgotten carry


def _chat(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


class SumJudge:
    """P(first beats second) = 1 when only the first is the sum ``right``, 0 when only the second, else 0.5;
    every call's items are recorded."""

    def __init__(self, right: str):
        self.right, self.calls = right, []

    def __call__(self, items):
        self.calls.append(list(items))
        return [0.5 + 0.5 * ((a == self.right) - (b == self.right)) for _, a, b in items]


def test_the_final_answer_is_the_sum_a_worked_solution_ends_with():
    assert final_answer(RIGHT) == 85
    assert all(final_answer(worked_solution(a, b)) == a + b for a in OPERANDS for b in OPERANDS)
    assert final_answer("7+8=15, carry 1. 3+4+1=8. sum 8") is None  # cut off before the full stop
    assert final_answer("I do not know") is None
    assert answer_text(RIGHT) == "85" and answer_text("  no idea ") == "no idea"


def test_the_oracle_rewards_exactly_the_right_final_sums():
    completions = [_chat(RIGHT), _chat(SLIP), _chat("sum"), RIGHT]
    assert oracle_reward(["q"] * 4, completions, answer=[85, 85, 85, 84]) == [1.0, 0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="2 completions for 1 answers"):
        oracle_reward(["q", "q"], [RIGHT, SLIP], answer=[85])


def test_a_judge_reward_is_shown_the_final_answers_and_keeps_its_name():
    seen = []

    def inner(prompts, completions, **columns):
        seen.append((list(completions), columns))
        return [0.25] * len(completions)

    reward = FinalAnswers(inner)
    assert reward.__name__ == "inner"
    assert reward(["q", "q"], [_chat(RIGHT), _chat("no idea")], answer=[85, 85]) == [0.25, 0.25]
    assert seen == [(["85", "no idea"], {"answer": [85, 85]})]


def test_distinct_comparisons_ask_each_distinct_pair_once_and_none_of_a_response_with_itself():
    judge = SumJudge("85")
    distinct = DistinctComparisons(judge)
    items = [("q", "85", "75"), ("q", "75", "85"), ("q", "85", "75"), ("q", "85", "85")]
    assert distinct(items) == [1.0, 0.0, 1.0, 0.5]
    assert judge.calls == [[("q", "85", "75"), ("q", "75", "85")]]
    assert (distinct.asked, distinct.given) == (2, 4)
    assert distinct([("q", "85", "85")]) == [0.5] and len(judge.calls) == 1  # nothing to ask: no call


def test_accuracy_counts_right_final_sums_per_question():
    assert accuracy([RIGHT, SLIP, "no idea", worked_solution(10, 11)], [85, 85, 85, 21]) == 0.5
    with pytest.raises(ValueError, match="1 completions for 2 questions"):
        accuracy([RIGHT], [85, 85])


def test_best_of_first_n_is_the_highest_win_rate_among_them_earliest_on_a_tie():
    # 0 beats 1, 2 beats both; 3 loses to all
    table = [[0.5, 0.9, 0.2, 1.0],
             [0.1, 0.5, 0.3, 1.0],
             [0.8, 0.7, 0.5, 1.0],
             [0.0, 0.0, 0.0, 0.5]]
    assert [best_of_first(table, n) for n in (1, 2, 3, 4)] == [0, 0, 2, 2]
    assert best_of_first([[0.5, 0.5], [0.5, 0.5]], 2) == 0
    right = [[False, False, True, False]]
    assert best_of_n_accuracy([table], right, 4) == [0.0, 0.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="best-of-5 needs 5 candidates"):
        best_of_n_accuracy([table], right, 5)


def test_the_oracles_best_of_n_is_pass_at_n():
    right = [[False, True, False], [False, False, False], [True, False, True]]
    assert best_of_n_accuracy([oracle_table(r) for r in right], right, 3) == pytest.approx([1 / 3, 2 / 3, 2 / 3])


def test_judge_tables_show_the_judge_distinct_final_answers_in_one_call():
    judge = SumJudge("85")
    candidates = [[SLIP, RIGHT, SLIP, "no idea"]]
    (table,) = judge_tables(judge, ["What is 37+48?"], candidates)
    assert len(judge.calls) == 1
    asked = judge.calls[0]
    assert len(asked) == len(set(asked)) == 6  # 3 distinct answers: 3 pairs, both orders
    assert {a for _, a, _ in asked} == {"75", "85", "no idea"}
    assert table[1] == [1.0, 0.5, 1.0, 1.0] and table[0][2] == 0.5
    assert best_of_n_accuracy([table], [[False, True, False, False]], 4) == [0.0, 1.0, 1.0, 1.0]


def test_split_questions_keep_held_out_pairs_out_of_training_in_either_order():
    train, heldout = split_questions(0, "train", 500), split_questions(0, "heldout", 100)
    assert len(set(train)) == 500 and len(set(heldout)) == 100
    assert not {(a, b) for a, b in train} & ({(a, b) for a, b in heldout} | {(b, a) for a, b in heldout})
    assert split_questions(0, "heldout", 100) == heldout  # seeded
    with pytest.raises(ValueError, match="asked for 5000 heldout questions"):
        split_questions(0, "heldout", 5000)


def test_recovered_gain_is_a_share_of_the_oracles_gain():
    shares = recovered_gain({"before": 0.4, "gram_r2": 0.6, "label_only": 0.35, "oracle": 0.8})
    assert shares == pytest.approx({"gram_r2": 0.5, "label_only": -0.125, "oracle": 1.0})
    assert recovered_gain({"before": 0.4, "gram_r2": 0.6, "oracle": 0.4}) == {"gram_r2": None, "oracle": None}


def test_a_paired_standard_error_measures_the_spread_of_the_per_question_gains():
    before, after = [0.0, 0.5, 1.0, 0.25], [0.5, 0.5, 1.0, 0.75]  # gains 0.5, 0, 0, 0.5: s.d. 1/sqrt(12)
    assert paired_standard_error(before, after) == pytest.approx((1 / 12) ** 0.5 / 2)
    assert paired_standard_error([0.0, 1.0, 0.5], [0.25, 1.25, 0.75]) == 0.0  # the same gain on every question
    with pytest.raises(ValueError, match="same >= 2 questions: 2 and 3"):
        paired_standard_error([0.0, 1.0], [0.0, 1.0, 0.5])


def test_greedy_flips_count_the_questions_fixed_and_broken_apart():
    assert greedy_flips([0.0, 1.0, 1.0, 0.0, 1.0], [1.0, 0.0, 1.0, 0.0, 0.0]) == {"wrong_to_right": 1,
                                                                                "right_to_wrong": 2}
    with pytest.raises(ValueError, match="same questions: 1 and 2"):
        greedy_flips([0.0], [0.0, 1.0])


def test_right_shares_give_each_question_the_share_of_its_samples_that_end_with_its_sum():
    assert right_shares([[RIGHT, SLIP, RIGHT, "no idea"], [SLIP]], [85, 75]) == [0.5, 1.0]
    with pytest.raises(ValueError, match="1 sample lists"):
        right_shares([[RIGHT]], [85, 75])
    with pytest.raises(ValueError, match="each non-empty"):
        right_shares([[RIGHT], []], [85, 75])


def _grpo(**change) -> dict:
    return {"run": {"name": "t"}, "rm_run": "runs/demo", "tinykit": {}, "engine": {},
            "train": {"pretrain": {"role": "plain"}}, "grpo": {"steps": 2}, **change}


def test_the_grpo_config_names_a_bad_key():
    cfg = parse_config(_grpo(), GrpoConfig)
    assert cfg.rewards == ["gram_r2", "label_only", "oracle"] and cfg.eval.best_of_n == 16
    for change, message in [({"rewards": ["oracle", "oracle"]}, "rewards names one twice"),
                            ({"rewards": ["exact"]}, "rewards.0: Input should be 'gram_r2', 'label_only' or 'oracle'"),
                            ({"group_method": "reference"}, "group_method: Input should be"),
                            ({"grpo": {"steps": 2, "num_generations": 1}}, "grpo.num_generations: Input should be"),
                            ({"eval": {"questions": 16}}, "eval.best_of_n_questions (32) are the first"),
                            ({"train": {}}, "missing ['pretrain']")]:
        with pytest.raises(ConfigError, match="invalid configuration") as err:
            parse_config(_grpo(**change), GrpoConfig)
        assert message in str(err.value)


def test_the_report_gives_greedy_and_sampled_accuracy_with_paired_errors_and_shares_of_the_oracles_gain(tmp_path):
    scores = {"before": {"greedy": [0.0, 1.0, 0.0, 0.0], "sampled": [0.25, 0.5, 0.0, 0.25]},
              "gram_r2": {"greedy": [0.0, 1.0, 1.0, 0.0], "sampled": [0.5, 0.75, 0.0, 0.25]},
              "oracle": {"greedy": [1.0, 1.0, 1.0, 0.0], "sampled": [0.75, 0.75, 0.25, 0.25]}}
    sizes = {"heldout_questions": 4, "best_of_n_questions": 4, "best_of_n": 2, "sampled_per_question": 4,
             "sampled_temperature": 0.5}
    paths = write_grpo_report(RunDir(tmp_path), scores, {"oracle": [0.25, 0.5]},
                              {"gram_r2": {"judge_prompts": 12, "seconds": 3.0}}, sizes)
    report = json.loads(Path(paths["json"]).read_text())
    assert report["policy_accuracy"] == {"before": 0.25, "gram_r2": 0.5, "oracle": 0.75}
    assert report["policy_accuracy_sampled"] == {"before": 0.25, "gram_r2": 0.375, "oracle": 0.5}
    assert report["recovered_oracle_gain"] == {"gram_r2": 0.5, "oracle": 1.0}
    assert report["recovered_oracle_gain_sampled"] == {"gram_r2": 0.5, "oracle": 1.0}
    assert report["gain_standard_error"]["sampled"]["oracle"] == pytest.approx(
        paired_standard_error(scores["before"]["sampled"], scores["oracle"]["sampled"]))
    table = Path(paths["markdown"]).read_text()
    assert report["greedy_flips"] == {"gram_r2": {"wrong_to_right": 1, "right_to_wrong": 0},
                                      "oracle": {"wrong_to_right": 2, "right_to_wrong": 0}}
    assert "| before GRPO | 25.0% |  | 25.0% |  |  |  |  |" in table
    assert ("| GRPO with exact checker (oracle) | 75.0% (+50.0 +- 28.9) | 100% | 50.0% (+25.0 +- 10.2) | 100% "
            "| 2 / 0 |") in table
    assert Path(paths["plot"]).stat().st_size > 0
