"""Denoising rules: every reject names its rule; judge rules only for judged rows, rationale rules only
for rationale rows."""

from __future__ import annotations

import pytest

from gram_ray.config import FilterConfig
from gram_ray.prompts import proof_to_target
from gram_ray.stages.filters import conclusion_verdict, reject_reason
from gram_ray.stages.runner import category
from gram_ray.tinykit import digit_verify

PAIR = {"id": "p", "prompt": "What is 37+48?", "response_a": "85", "response_b": "84"}


def judged(**over):
    return {**PAIR, "label": "A", "votes": 3, "votes_total": 4, "vote_share": 0.75, "confidence": 0.8,
            "consistent": True, **over}


def with_rationale(rationale: str, label: str = "A", **over):
    return {**PAIR, "label": label, "rationale": rationale, "target": proof_to_target(rationale, label), **over}


@pytest.mark.parametrize(("text", "verdict"), [
    ("Feedback: ...\nComparision: ...\nConclusion:\nResponse A is better.", "A"),
    ("Conclusion: Response B falls short, so Response A is the better one.", "A"),
    ("Conclusion: I prefer Assistant B.", "B"),
    ("Response A is better than Response B. Conclusion: Response B is superior.", "B"),
    ("Conclusion: [[A]]", "A"),
    ("Conclusion: only Response B answers the question.", "B"),
    ("Conclusion: Response A and Response B are both fine.", None),
    ("Conclusion: Response A is better, but Response B is preferred.", None),
    ("No verdict at all.", None),
])
def test_conclusion_verdict(text, verdict):
    assert conclusion_verdict(text) == verdict


def test_judge_rules_and_their_order():
    cfg = FilterConfig(min_vote_share=0.6, min_confidence=0.7, require_consistent=True, support_check="none")
    assert reject_reason(judged(), cfg) is None
    assert category(reject_reason(judged(label=None), cfg)) == "no_majority"
    assert category(reject_reason(judged(vote_share=0.5, confidence=0.1), cfg)) == "low_vote_share"
    assert category(reject_reason(judged(confidence=0.69), cfg)) == "low_confidence"
    assert category(reject_reason(judged(confidence=None), cfg)) == "low_confidence"
    assert category(reject_reason(judged(consistent=False), cfg)) == "inconsistent"
    assert category(reject_reason(judged(consistent=None), cfg)) == "no_swap_pass"
    assert reject_reason(judged(confidence=None), FilterConfig(support_check="none")) is None


def test_gold_labels_skip_judge_rules_but_must_be_labels():
    cfg = FilterConfig(min_confidence=0.9, require_consistent=True, support_check="none")
    assert reject_reason({**PAIR, "label": "B"}, cfg) is None
    assert category(reject_reason({**PAIR, "label": None}, cfg)) == "no_label"
    assert category(reject_reason({**PAIR, "label": "C"}, cfg)) == "invalid_label"


def test_rationale_length_and_structure():
    cfg = FilterConfig(min_rationale_chars=5, max_rationale_chars=20, support_check="none")
    assert reject_reason(with_rationale("long enough"), cfg) is None
    assert category(reject_reason(with_rationale("tiny"), cfg)) == "rationale_too_short"
    assert category(reject_reason(with_rationale("x" * 21), cfg)) == "rationale_too_long"
    broken = with_rationale("long enough", target="<think>long enough</think>")
    assert category(reject_reason(broken, cfg)) == "malformed_target"
    wrong_label = with_rationale("long enough", target=proof_to_target("long enough", "B"))
    assert category(reject_reason(wrong_label, cfg)) == "malformed_target"


def test_conclusion_support_check():
    cfg = FilterConfig(support_check="conclusion")
    assert reject_reason(with_rationale("Conclusion: Response A is better."), cfg) is None
    reason = reject_reason(with_rationale("Conclusion: Response B is better."), cfg)
    assert reason == "unsupported: the conclusion argues for B, label is A"
    assert category(reject_reason(with_rationale("Conclusion: hard to say."), cfg)) == "unsupported"


def test_arith_verify_support_check_uses_the_tinykit_verifier():
    cfg = FilterConfig(support_check="arith_verify")
    good = digit_verify(37, 48, "85", "84")
    assert reject_reason(with_rationale(good, "A"), cfg) is None
    assert category(reject_reason(with_rationale(good, "B"), cfg)) == "unsupported"
    assert category(reject_reason(with_rationale("sum 85.", "A"), cfg)) == "unsupported"


def test_filter_config_rejects_crossed_length_bounds():
    with pytest.raises(ValueError, match="min_rationale_chars"):
        FilterConfig(min_rationale_chars=10, max_rationale_chars=5)
