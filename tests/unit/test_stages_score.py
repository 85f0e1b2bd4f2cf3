"""GRAM scoring (paper eq. 3) from label-token log-probabilities, against a hand computation."""

from __future__ import annotations

import math

import pytest

from gram_ray.prompts.verdicts import LabelTokens
from gram_ray.stages.rows import Settled
from gram_ray.stages.score import aggregate_score


def test_eq3_from_label_token_logprobs_by_hand():
    labels = LabelTokens(a=(10,), b=(20,))
    # response_a shown first: logits favour A 3:1 -> P(A) = 0.75; shown second: P(A) = 0.4 (A is response_b)
    p_first = labels.p_a({10: math.log(0.3), 20: math.log(0.1), 7: math.log(0.6)})
    p_second = labels.p_a({10: math.log(0.2), 20: math.log(0.3)})
    assert p_first == pytest.approx(0.75) and p_second == pytest.approx(0.4)
    pair = {"id": "p", "prompt": "q", "response_a": "y", "response_b": "ref"}
    rows = [Settled("ab", {"order": "ab"}, {"p_a": p_first}), Settled("ba", {"order": "ba"}, {"p_a": p_second})]
    [(kind, record)] = aggregate_score(pair, rows, "judge")
    # r(x, y) = (P(A | y first) + P(B | y second)) / 2 = (0.75 + 0.6) / 2
    assert kind == "scores" and record["reward"] == pytest.approx(0.675)
    assert record["p_first"] == pytest.approx(0.75) and record["p_second"] == pytest.approx(0.4)


def test_missing_label_probability_is_a_reject():
    pair = {"id": "p"}
    rows = [Settled("ab", {"order": "ab"}, {"p_a": 0.5}), Settled("ba", {"order": "ba"}, {"p_a": None})]
    [(kind, record)] = aggregate_score(pair, rows, "judge")
    assert kind == "rejects" and record["reason"].startswith("no_label_probability")
