"""GRPO group rewards over a judge whose verdicts the test chooses (pure logic: exact rewards and costs)."""

from __future__ import annotations

import math

import pytest

from gram_ray.apply.group_rewards import (
    GROUP_METHODS,
    batch_rewards,
    bradley_terry,
    group_rewards,
    judge_cost,
    rank_rewards,
    split_groups,
    win_rates,
)
from gram_ray.apply.ranking import RankTask


class TableJudge:
    """P(A) for (prompt, first, second) from a table the test writes; unlisted pairs answer 0.5.

    ``bias`` is added to every answer (a judge that favours the first position); calls are recorded.
    """

    def __init__(self, table: dict[tuple[str, str], float], bias: float = 0.0):
        self.table, self.bias, self.calls = table, bias, []

    def __call__(self, items):
        self.calls.append(list(items))
        return [min(1.0, max(0.0, self.table.get((a, b), 0.5) + self.bias)) for _, a, b in items]


def _beats(order: str, p: float = 1.0) -> dict[tuple[str, str], float]:
    """A transitive table: earlier letters beat later ones with probability p, in either position."""
    out = {}
    for i, a in enumerate(order):
        for b in order[i + 1:]:
            out[(a, b)], out[(b, a)] = p, 1.0 - p
    return out


def test_reference_rewards_are_eq3_against_each_groups_reference_in_one_call():
    judge = TableJudge({("x", "ref1"): 0.9, ("ref1", "x"): 0.3, ("y", "ref2"): 0.2, ("ref2", "y"): 0.6})
    groups = [RankTask("p1", ["x", "ref1"], "ref1"), RankTask("p2", ["y"], "ref2")]
    rewards = group_rewards(judge, groups, "reference")
    assert rewards == [[pytest.approx((0.9 + 1 - 0.3) / 2), 0.5], [pytest.approx((0.2 + 1 - 0.6) / 2)]]
    assert len(judge.calls) == 1 and len(judge.calls[0]) == 6  # 3 completions x 2 orders
    with pytest.raises(ValueError, match="reference"):
        group_rewards(judge, [RankTask("p", ["x"])], "reference")


def test_win_rate_is_the_mean_probability_of_beating_the_others():
    table = {("a", "b"): 0.8, ("b", "a"): 0.4, ("a", "c"): 1.0, ("c", "a"): 0.0, ("b", "c"): 0.5, ("c", "b"): 0.5}
    judge = TableJudge(table)
    (rewards,) = group_rewards(judge, [RankTask("q", ["a", "b", "c"])], "win_rate")
    p_ab, p_ac, p_bc = (0.8 + 1 - 0.4) / 2, 1.0, 0.5
    assert rewards == pytest.approx([(p_ab + p_ac) / 2, (1 - p_ab + p_bc) / 2, (1 - p_ac + 1 - p_bc) / 2])
    assert len(judge.calls) == 1
    asked = {(a, b) for _, a, b in judge.calls[0]}
    assert asked == {(a, b) for a in "abc" for b in "abc" if a != b}  # every ordered pair, once


def test_position_bias_cancels_with_both_orders_only():
    biased = TableJudge(_beats("ab", 0.5), bias=0.3)  # always prefers whatever is shown first
    assert group_rewards(biased, [RankTask("q", ["a", "b"])], "win_rate") == [[pytest.approx(0.5)] * 2]
    one_order = group_rewards(biased, [RankTask("q", ["a", "b"])], "win_rate", both_orders=False)
    assert one_order == [[pytest.approx(0.8), pytest.approx(0.2)]]


def test_bradley_terry_two_members_matches_the_closed_form():
    # one game, P(a beats b) = 0.75, no prior: s_a / s_b = 3, geometric mean 1 -> s_a = sqrt(3)
    rewards = bradley_terry([[0.5, 0.75], [0.25, 0.5]], prior=0.0)
    s = math.sqrt(3)
    assert rewards == pytest.approx([s / (s + 1), (1 / s) / (1 / s + 1)], abs=1e-9)


def test_bradley_terry_solves_its_likelihood_equations():
    table = [[0.5, 1.0, 0.7, 0.9], [0.0, 0.5, 0.6, 0.2], [0.3, 0.4, 0.5, 1.0], [0.1, 0.8, 0.0, 0.5]]
    prior = 0.1
    rewards = bradley_terry(table, prior)
    s = [r / (1 - r) for r in rewards]
    n = len(s)
    assert math.prod(s) == pytest.approx(1.0)
    for i in range(n):
        observed = sum((table[i][j] + prior) / (1 + 2 * prior) for j in range(n) if j != i)
        expected = sum(s[i] / (s[i] + s[j]) for j in range(n) if j != i)
        assert observed == pytest.approx(expected, abs=1e-9)
    assert sorted(range(n), key=lambda i: -rewards[i]) == [0, 2, 3, 1]


def test_bradley_terry_needs_a_prior_for_certain_outcomes():
    with pytest.raises(ValueError, match="prior"):
        bradley_terry([[0.5, 1.0], [0.0, 0.5]], prior=0.0)
    assert bradley_terry([[0.5, 0.5], [0.5, 0.5]], prior=0.0) == pytest.approx([0.5, 0.5])


def test_bradley_terry_group_rewards_order_a_transitive_group():
    judge = TableJudge(_beats("dbca"))
    (rewards,) = group_rewards(judge, [RankTask("q", ["a", "b", "c", "d"])], "bradley_terry")
    assert sorted("abcd", key=lambda c: -rewards["abcd".index(c)]) == list("dbca")
    assert len(judge.calls) == 1 and len(judge.calls[0]) == 12


def test_knockout_rewards_follow_the_tournament_order():
    # a beats everyone; c beats b and d. Round 1: a v b, c v d; final: a v c.
    judge = TableJudge(_beats("acbd"))
    (rewards,) = group_rewards(judge, [RankTask("q", ["a", "b", "c", "d"])], "knockout")
    # winner a = 1; finalist c = 2/3; first-round losers b and d both lost with P = 0: the earlier index (b)
    # ranks higher (the tie-break of ``Knockout.order``)
    assert rewards == pytest.approx([1.0, 1 / 3, 2 / 3, 0.0])
    assert len(judge.calls) == 2 and [len(c) for c in judge.calls] == [4, 2]


def test_rank_rewards_and_singletons():
    assert rank_rewards([2, 0, 1]) == [0.5, 0.0, 1.0]
    assert rank_rewards([0]) == [0.5] and win_rates([[0.5]]) == [0.5] and bradley_terry([[0.5]]) == [0.5]
    judge = TableJudge({})
    for method in ("win_rate", "bradley_terry", "knockout"):
        assert group_rewards(judge, [RankTask("q", ["only"])], method) == [[0.5]]
    assert judge.calls == []  # nothing to compare, no judge call


@pytest.mark.parametrize("method", GROUP_METHODS)
@pytest.mark.parametrize("both_orders", [True, False])
@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_judge_cost_is_what_the_methods_spend(method, both_orders, n):
    judge = TableJudge(_beats("abcdefgh"[:n] + "r", 0.9))
    groups = [RankTask(f"q{k}", list("abcdefgh"[:n]), "r") for k in range(3)]
    group_rewards(judge, groups, method, both_orders)
    calls, prompts = judge_cost(method, n, both_orders)
    assert len(judge.calls) == calls  # three groups share each call
    assert sum(len(c) for c in judge.calls) == 3 * prompts


def test_batch_rewards_regroup_a_flat_rl_batch_and_keep_row_order():
    judge = TableJudge({**_beats("ab"), **_beats("yx")})
    prompts = ["p1", "p2", "p1", "p2"]
    completions = ["b", "x", "a", "y"]
    assert batch_rewards(judge, prompts, completions, method="win_rate") == [0.0, 0.0, 1.0, 1.0]
    assert len(judge.calls) == 1  # both groups in one call
    groups, where = split_groups(prompts, completions)
    assert [(g.prompt, list(g.responses)) for g in groups] == [("p1", ["b", "a"]), ("p2", ["x", "y"])]
    assert where == [(0, 0), (1, 0), (0, 1), (1, 1)]


def test_split_groups_refuses_inconsistent_batches():
    with pytest.raises(ValueError, match="length"):
        split_groups(["p"], ["a", "b"])
    with pytest.raises(ValueError, match="two different references"):
        split_groups(["p", "p"], ["a", "b"], ["r1", "r2"])
    with pytest.raises(ValueError, match="unknown"):
        group_rewards(TableJudge({}), [RankTask("q", ["a"])], "elo")  # type: ignore[arg-type]
