"""Denoising rules: every reject names its rule; judge rules only for judged rows, rationale rules only
for rationale rows."""

from __future__ import annotations

import pytest

from gram_ray.config import ConfigError, FilterConfig, StageJobConfig, parse_config
from gram_ray.prompts import proof_to_target
from gram_ray.stages.filters import conclusion_verdict, reject_reason
from gram_ray.stages.outputs import category
from gram_ray.tinykit import digit_verify

ARITHMETIC = "gram_ray.tinykit.addition:verify_rationale"

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


def test_the_tinykit_verifier_plugin_rejects_what_it_finds_unsupported():
    cfg = FilterConfig(support_check="none", verifier=ARITHMETIC)
    good = digit_verify(37, 48, "85", "84")
    assert reject_reason(with_rationale(good, "A"), cfg) is None
    assert reject_reason(with_rationale(good, "B"), cfg) == "unsupported: rationale supports A, label is B"
    assert reject_reason(with_rationale("sum 85.", "A"), cfg) == "unsupported: no check of A"
    assert reject_reason(judged(), cfg) is None  # a labelled pair without a rationale is not the verifier's


def unsupported_unless_short(row, rationale, label):
    """A verifier plugin for the tests below: a reason for every rationale over 12 characters."""
    return f"{len(rationale)} chars for {label} of {row['id']}" if len(rationale) > 12 else None


def test_a_verifier_plugin_sees_the_row_rationale_and_label_and_its_reason_rejects():
    cfg = FilterConfig(support_check="none", verifier=f"{__name__}:unsupported_unless_short")
    assert reject_reason(with_rationale("short", "B"), cfg) is None
    assert reject_reason(with_rationale("long enough, surely", "B"), cfg) == "unsupported: 19 chars for B of p"
    both = FilterConfig(support_check="conclusion", verifier=f"{__name__}:unsupported_unless_short")
    assert reject_reason(with_rationale("Conclusion: Response B is better.", "A"), both) == (
        "unsupported: the conclusion argues for B, label is A")  # the support check runs first


NOT_A_FUNCTION = 42


@pytest.mark.parametrize(("spec", "problem"), [
    ("gram_ray.no_such_module:check", "cannot import module 'gram_ray.no_such_module': No module named"),
    ("gram_ray.tinykit.addition:no_such_check", "module 'gram_ray.tinykit.addition' has no attribute 'no_such_check'"),
    (f"{__name__}:NOT_A_FUNCTION", f"'{__name__}:NOT_A_FUNCTION' is not a function (it is of type int)"),
    ("gram_ray.tinykit.addition.verify_rationale", "must look like 'package.module:function'"),
])
def test_a_verifier_that_cannot_be_used_fails_when_the_config_loads(spec, problem):
    with pytest.raises(ConfigError) as caught:
        parse_config({"filters": {"verifier": spec}}, StageJobConfig, origin="job.yaml")
    message = str(caught.value)
    assert message.startswith("job.yaml: invalid configuration (1 problem(s)):")
    assert "filters.verifier:" in message and problem in message


def test_the_removed_arithmetic_support_check_is_an_error():
    with pytest.raises(ConfigError, match=r"filters\.support_check"):
        parse_config({"filters": {"support_check": "arith_verify"}}, StageJobConfig)


def test_filter_config_rejects_crossed_length_bounds():
    with pytest.raises(ValueError, match="min_rationale_chars"):
        FilterConfig(min_rationale_chars=10, max_rationale_chars=5)
