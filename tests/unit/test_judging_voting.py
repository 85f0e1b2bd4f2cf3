"""Vote and confidence arithmetic of the label stage, against hand computations."""

from __future__ import annotations

import math

import pytest

from gram_ray.judging.voting import (
    Sample,
    combine,
    decide,
    decided_early,
    judgement_record,
    read_sample,
    summarise_pass,
    to_stored,
)
from gram_ray.prompts.verdicts import LabelTokens

LABELS = LabelTokens(a=(10, 11), b=(20, 21))  # e.g. "A", " A" and "B", " B"


def lp(p: float) -> float:
    return math.log(p)


def test_read_sample_takes_p_a_at_the_verdict_token_over_label_tokens_only():
    text = "<think>sum 85.</think><answer>A</answer>"
    tokens = [5, 6, 10, 7]
    at_verdict = {10: lp(0.3), 11: lp(0.05), 20: lp(0.1), 21: lp(0.05), 99: lp(0.5)}
    logprobs = [{5: lp(0.9)}, {6: lp(0.9)}, at_verdict, {7: 0.0}]
    sample = read_sample(text, tokens, logprobs, LABELS)
    assert sample.answer == "A"
    assert sample.p_a == pytest.approx(0.35 / 0.5)  # (0.3 + 0.05) / (0.3 + 0.05 + 0.1 + 0.05); 0.5 of token 99 ignored


def test_read_sample_uses_the_last_verdict_token_and_none_when_absent():
    text = "<think>A looks right</think><answer>B</answer>"
    tokens = [10, 20, 3]
    logprobs = [{10: lp(0.9), 20: lp(0.1)}, {10: lp(0.2), 20: lp(0.6)}, {3: 0.0}]
    assert read_sample(text, tokens, logprobs, LABELS).p_a == pytest.approx(0.25)
    spelt_otherwise = read_sample(text, [3, 4], [{3: 0.0}, {4: 0.0}], LABELS)
    assert spelt_otherwise.answer == "B" and spelt_otherwise.p_a is None
    unparsable = read_sample("no verdict", [10], [{10: 0.0, 20: lp(0.5)}], LABELS)
    assert unparsable.answer is None and unparsable.p_a is None


def test_to_stored_swaps_only_the_swapped_order():
    assert to_stored("A", "ab") == "A"
    assert to_stored("A", "ba") == "B"
    assert to_stored(None, "ba") is None
    with pytest.raises(ValueError):
        to_stored("A", "xy")


def test_decide_majority_then_probability_then_none():
    assert decide(3, 1, 0.1) == "A"
    assert decide(1, 2, 0.9) == "B"
    assert decide(1, 1, 0.3) == "B"
    assert decide(1, 1, 0.5) is None
    assert decide(1, 1, None) is None
    assert decide(0, 0, 0.9) is None


def test_a_swapped_pass_is_mapped_back_to_the_stored_order():
    result = summarise_pass("ba", [Sample("t", "A", 0.8), Sample("t", "A", 0.6), Sample("t", None, None)])
    assert (result.votes_a, result.votes_b, result.votes_none) == (0, 2, 1)
    assert result.p_a == pytest.approx((0.2 + 0.4) / 2)
    assert result.answer == "B"


def test_combine_two_passes_by_hand():
    ab = summarise_pass("ab", [Sample("1", "A", 0.9), Sample("2", "A", 0.7), Sample("3", "B", 0.4)])
    ba = summarise_pass("ba", [Sample("4", "B", 0.2), Sample("5", "B", 0.3), Sample("6", None, None)])
    out = combine([ab, ba])
    p_a = ((0.9 + 0.7 + 0.4) / 3 + (0.8 + 0.7) / 2) / 2
    assert out["label"] == "A"
    assert out["votes"] == 4 and out["votes_total"] == 6
    assert out["vote_share"] == pytest.approx(4 / 6)
    assert out["confidence"] == pytest.approx(p_a)
    assert out["consistent"] is True


def test_combine_flags_inconsistent_orders_and_confidence_of_b():
    ab = summarise_pass("ab", [Sample("1", "B", 0.1)])
    ba = summarise_pass("ba", [Sample("2", "B", 0.4)])  # stored A, P(A) 0.6
    out = combine([ab, ba])
    assert out["consistent"] is False
    assert out["label"] == "B"  # 1-1 tie, mean P(A) = (0.1 + 0.6) / 2 = 0.35
    assert out["confidence"] == pytest.approx(0.65)
    assert out["vote_share"] == pytest.approx(0.5)


def test_single_pass_has_no_consistency_and_no_label_means_no_share():
    out = combine([summarise_pass("ab", [Sample("x", None, None), Sample("y", None, None)])])
    assert out["consistent"] is None
    assert out["label"] is None and out["votes"] == 0 and out["votes_total"] == 2
    assert out["vote_share"] is None and out["confidence"] is None


def test_judgement_record_fields():
    result = summarise_pass("ba", [Sample("text", "A", 0.8)])
    rec = judgement_record("pid", result, "model", 2)
    assert rec["order"] == "ba" and rec["parsed"] == ["A"] and rec["answer"] == "B"
    assert rec["p_a"] == pytest.approx(0.2) and rec["p_b"] == pytest.approx(0.8)
    assert (rec["votes_a"], rec["votes_b"], rec["votes_none"]) == (0, 1, 0)
    assert rec["generated_text"] == ["text"] and rec["round"] == 2


def votes(*answers_and_p: tuple[str | None, float | None]) -> list[Sample]:
    return [Sample("", answer, p_a) for answer, p_a in answers_and_p]


def test_decided_early_when_unanimous_and_confident_of_that_side():
    assert decided_early(votes(("A", 1.0), ("A", 0.75)), votes=8, min_confidence=0.875)  # mean P(A) 0.875
    assert not decided_early(votes(("A", 1.0), ("A", 0.5)), votes=8, min_confidence=0.875)  # 0.75
    assert decided_early(votes(("B", 0.25), ("B", 0.0)), votes=8, min_confidence=0.875)  # P(B) 0.875
    assert not decided_early(votes(("B", 0.5), ("B", 0.0)), votes=8, min_confidence=0.875)  # P(B) 0.75


def test_split_unreadable_or_unscored_first_votes_are_undecided():
    assert not decided_early(votes(("A", 0.99), ("B", 0.01)), votes=8, min_confidence=0.5)
    assert not decided_early(votes(("A", 0.99), (None, None)), votes=8, min_confidence=0.5)
    assert not decided_early(votes((None, None), (None, None)), votes=8, min_confidence=0.5)
    assert not decided_early(votes(("A", 0.99), ("A", None)), votes=8, min_confidence=0.5)


def test_decided_early_when_the_majority_of_k_cannot_change_whatever_the_confidence():
    # 5 of 8 for A, 3 to come: B can reach at most 3 < 5
    assert decided_early(votes(*[("A", 0.6)] * 5), votes=8, min_confidence=1.0)
    # 4 A, 1 B, 3 to come: B can reach 4 = a tie, so the majority could still change
    assert not decided_early(votes(*[("A", 0.6)] * 4, ("B", 0.4)), votes=8, min_confidence=1.0)
    # 4 A, 1 B, 2 to come: lead 3 > 2
    assert decided_early(votes(*[("A", 0.6)] * 4, ("B", 0.4)), votes=7, min_confidence=1.0)
    # an unreadable vote counts for neither side: 3 A, 1 none, 1 to come
    assert decided_early(votes(*[("A", 0.6)] * 3, (None, None)), votes=5, min_confidence=1.0)
    with pytest.raises(ValueError, match="3 samples of a 2-vote pass"):
        decided_early(votes(*[("A", 0.6)] * 3), votes=2, min_confidence=0.9)
