"""The label stage's requests: one n = k request per order, and adaptive voting's second request, which
continues the first one's seeds so that its votes are the ones full voting samples."""

from __future__ import annotations

from itertools import islice

import pytest

from gram_ray.config import AdaptiveVoting, EngineConfig, JudgeConfig
from gram_ray.judging.requests import derive_seed
from gram_ray.stages.label import aggregate_pair, judge_requests, more_votes
from gram_ray.stages.rows import Settled
from gram_ray.tinykit.addition import corpus
from gram_ray.tinykit.tokenizer import train_tokenizer

PAIR = {"id": "p1", "prompt": "What is 23+45?", "response_a": "68", "response_b": "67", "label": None}


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> EngineConfig:
    folder = tmp_path_factory.mktemp("tokenizer")
    train_tokenizer(islice(corpus(), 3000)).save_pretrained(folder)
    return EngineConfig(model=str(folder), seed=5)


def sample(answer: str | None, p_a: float | None) -> dict:
    return {"text": f"<answer>{answer}</answer>", "answer": answer, "p_a": p_a}


def test_votes_are_one_seeded_request_per_order(engine):
    judge = JudgeConfig(template="compact", votes=8, temperature=0.7, swap_pass=True)
    ab, ba = judge_requests(PAIR, engine, judge)
    assert (ab.sub, ba.sub) == ("ab", "ba") and ab.prompt_ids != ba.prompt_ids
    assert ab.sampling["n"] == 8 and ab.sampling["seed"] == derive_seed(5, "p1", "ab")
    assert ba.sampling["seed"] == derive_seed(5, "p1", "ba")
    assert ab.context == {"order": "ab"}  # no prompt ids carried without adaptive voting
    assert more_votes(ab.context, {"samples": [sample("A", 0.6), sample("B", 0.4)]}, engine, judge) is None


def test_adaptive_voting_asks_for_the_rest_of_an_undecided_order_only(engine):
    judge = JudgeConfig(template="compact", votes=8, temperature=0.7, adaptive=AdaptiveVoting(first_votes=2))
    [first] = judge_requests(PAIR, engine, judge)
    base = derive_seed(5, "p1", "ab")
    assert first.sampling["n"] == 2 and first.sampling["seed"] == base
    decided = {"samples": [sample("A", 0.95), sample("A", 0.9)]}
    assert more_votes(first.context, decided, engine, judge) is None
    split = {"samples": [sample("A", 0.95), sample("B", 0.1)]}
    rest = more_votes(first.context, split, engine, judge)
    assert rest.sub == "ab+" and rest.prompt_ids == first.prompt_ids
    assert rest.sampling["n"] == 6 and rest.sampling["seed"] == base + 2  # votes 2..7 of full voting's seeds
    assert rest.context == {"order": "ab", "earlier": split["samples"]}

    later = {"samples": [sample("B", 0.2)] * 5 + [sample(None, None)]}
    [(_, labelled), (_, judgement)] = aggregate_pair(PAIR, [Settled("ab+", rest.context, later)], "rm", 1)
    assert judgement["parsed"] == ["A", "B", "B", "B", "B", "B", "B", None]  # first votes, then the rest
    assert (labelled["label"], labelled["votes"], labelled["votes_total"]) == ("B", 6, 8)
    [(_, early), _] = aggregate_pair(PAIR, [Settled("ab", first.context, decided)], "rm", 1)
    assert (early["label"], early["votes"], early["votes_total"]) == ("A", 2, 2)
