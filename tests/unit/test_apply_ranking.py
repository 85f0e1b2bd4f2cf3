"""Ranking, best-of-n and voting logic over a deterministic utility judge (pure logic, no model)."""

from __future__ import annotations

import math

import pytest

from gram_ray.apply.ranking import (
    Knockout,
    RankTask,
    best_of_n,
    knockout,
    linear_scan,
    preferences,
    rank,
    reference_rewards,
)
from gram_ray.prompts.verdicts import Vote, majority_vote


class UtilityJudge:
    """P(first better) = sigmoid(u(first) - u(second)) + a position bias; records its calls."""

    def __init__(self, utility: dict[str, float], bias: float = 0.0):
        self.utility, self.bias, self.calls = utility, bias, []

    def __call__(self, items):
        self.calls.append(list(items))
        out = []
        for _, first, second in items:
            p = 1 / (1 + math.exp(self.utility[second] - self.utility[first])) + self.bias
            out.append(min(1.0, max(0.0, p)))
        return out


def _task(utilities, prompt="q", reference=None):
    return RankTask(prompt, [f"r{i}" for i in range(len(utilities))], reference)


def _judge(*utility_lists, bias=0.0, ref=0.0):
    table = {"ref": ref}
    for utilities in utility_lists:
        table.update({f"r{i}": u for i, u in enumerate(utilities)})
    return UtilityJudge(table, bias)


def test_both_orders_cancel_position_bias_in_one_call():
    judge = _judge([1.0, 0.0], bias=0.1)
    (p,) = preferences(judge, [("q", "r0", "r1")])
    assert p == pytest.approx(1 / (1 + math.exp(-1.0)))  # eq. 3 removes the +0.1 bias exactly
    assert len(judge.calls) == 1 and judge.calls[0] == [("q", "r0", "r1"), ("q", "r1", "r0")]
    (p_one,) = preferences(judge, [("q", "r0", "r1")], both_orders=False)
    assert p_one == pytest.approx(1 / (1 + math.exp(-1.0)) + 0.1)


def test_judge_output_is_checked():
    with pytest.raises(ValueError, match="returned 1 probabilities for 2"):
        preferences(lambda items: [0.5], [("q", "a", "b")])
    with pytest.raises(ValueError, match="outside"):
        preferences(lambda items: [1.5] * len(items), [("q", "a", "b")])
    assert preferences(lambda items: pytest.fail("no call for nothing"), []) == []


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9])
def test_knockout_uses_ceil_log2_rounds_and_finds_the_best(n):
    utilities = [((i * 7) % n) / n for i in range(n)]  # a permutation: the best sits anywhere
    judge = _judge(utilities)
    (result,) = knockout(judge, [_task(utilities)])
    expected_rounds = math.ceil(math.log2(n)) if n > 1 else 0
    assert result.rounds == expected_rounds and len(judge.calls) == expected_rounds
    assert result.winner == max(range(n), key=utilities.__getitem__)
    assert sum(1 for r in result.lost_in if r is None) == 1


def test_knockout_byes_and_batched_tasks():
    large = [5.0, 4.0, 3.0, 2.0, 1.0]
    judge = _judge(large)
    judge.utility.update({"s0": 0.0, "s1": 1.0, "s2": 2.0})
    tasks = [RankTask("p", ["s0", "s1", "s2"]), _task(large)]
    first, second = knockout(judge, tasks)
    assert (first.winner, first.rounds) == (2, 2)  # round 1: s0 v s1, s2 bye; round 2: s1 v s2
    assert first.lost_in == (1, 2, None)
    assert (second.winner, second.rounds) == (0, 3)
    assert len(judge.calls) == 3  # one call per round for both tasks together
    assert len(judge.calls[0]) == 2 * (1 + 2)  # round 1: 1 + 2 matches, each in both orders


def test_knockout_order_ranks_by_elimination_round_then_margin():
    result = Knockout(winner=2, rounds=2, lost_in=(1, 2, None, 1), lost_with=(0.1, 0.4, None, 0.3))
    assert result.order() == [2, 1, 3, 0]


def test_knockout_tie_goes_to_the_earlier_candidate():
    judge = _judge([1.0, 1.0])
    (result,) = knockout(judge, [_task([1.0, 1.0])])
    assert result.winner == 0


def test_linear_scan_calls_and_incumbent_keeps_ties():
    utilities = [1.0, 3.0, 3.0, 0.0, 2.0]
    judge = _judge(utilities)
    assert linear_scan(judge, [_task(utilities)]) == [1]  # r2 ties r1, incumbent r1 stays
    assert len(judge.calls) == len(utilities) - 1


def test_all_methods_agree_on_a_transitive_judge():
    utilities = [0.3, 2.0, -1.0, 1.2, 0.9, 1.5]
    expected = sorted(range(len(utilities)), key=lambda i: -utilities[i])
    task = _task(utilities, reference="ref")
    judge = _judge(utilities, bias=0.05)
    assert rank(judge, [task], "reference") == [expected]
    assert rank(judge, [task], "scan") == [expected]
    knock = rank(judge, [task], "knockout")[0]
    assert knock[0] == expected[0] and sorted(knock) == list(range(len(utilities)))
    for method in ("reference", "knockout", "scan"):
        assert best_of_n(judge, [task], method) == [expected[0]]


def test_reference_rewards_are_eq3_against_the_reference_in_one_call():
    utilities = [1.0, -1.0]
    judge = _judge(utilities, bias=-0.1, ref=0.5)
    (rewards,) = reference_rewards(judge, [_task(utilities, reference="ref")])
    assert rewards == pytest.approx([1 / (1 + math.exp(-0.5)), 1 / (1 + math.exp(1.5))])
    assert len(judge.calls) == 1 and len(judge.calls[0]) == 4


def test_scan_ranking_call_count_and_errors():
    utilities = [0.0, 1.0, 2.0, 3.0]
    judge = _judge(utilities)
    assert rank(judge, [_task(utilities)], "scan") == [[3, 2, 1, 0]]
    assert len(judge.calls) == 3 + 2 + 1  # n(n-1)/2 sequential comparisons
    with pytest.raises(ValueError, match="needs a reference"):
        rank(judge, [_task(utilities)], "reference")
    with pytest.raises(ValueError, match="unknown ranking method"):
        best_of_n(judge, [_task(utilities)], "bubble")
    with pytest.raises(ValueError, match="at least one response"):
        RankTask("q", [])


def test_majority_vote():
    vote = majority_vote(["A", "B", "A", None, "A"])
    assert (vote.answer, vote.votes_a, vote.votes_b, vote.votes_none) == ("A", 3, 1, 1)
    assert majority_vote(["A", "B", None]).answer is None
    assert majority_vote([None, None]) == Vote(None, 0, 0, 2)
    with pytest.raises(ValueError, match="verdicts must be"):
        majority_vote(["A", "maybe"])
