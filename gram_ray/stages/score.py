"""GRAM scoring: P(A) of the label-only judge in both presentation orders, combined by eq. 3.

For each pair the judge prompt is built twice (response_a first, then response_b first); one token is
generated greedily and the label tokens' exact log-probabilities at that position (``logprob_token_ids``)
give P(A) with the softmax restricted to the label tokens. ``reward`` = P(response_a beats response_b);
to score responses against a reference, put the reference in ``response_b``.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from gram_ray.config import EngineConfig, JudgeConfig
from gram_ray.data.schemas import PAIR_SCHEMA
from gram_ray.judging.engine import logprob_map
from gram_ray.judging.requests import chat_ids, label_tokens, load_tokenizer, malformed, too_long
from gram_ray.prompts import judge_prompt
from gram_ray.prompts.verdicts import eq3
from gram_ray.stages import runner
from gram_ray.stages.outputs import REJECTS, StageOutputs, StageSummary, reject_record, write_stage
from gram_ray.stages.resume import Checkpoint
from gram_ray.stages.rows import Request, Settled, read_rows, union
from gram_ray.stages.schemas import SCORE_SCHEMA, reject_schema

SCORES = "scores"
SCORE = StageOutputs("score", primary=SCORES)


def score_requests(row: dict, engine: EngineConfig, judge: JudgeConfig) -> list[Request] | str:
    problem = malformed(row)
    if problem:
        return problem
    tokenizer = load_tokenizer(engine.model)
    sampling = {"n": 1, "temperature": 0.0, "max_tokens": 1, "logprob_token_ids": label_tokens(engine.model).ids}
    requests = []
    for order, first, second in (("ab", row["response_a"], row["response_b"]),
                                 ("ba", row["response_b"], row["response_a"])):
        ids = chat_ids(tokenizer, judge_prompt(judge.template, row["prompt"], first, second))
        problem = too_long(len(ids), engine.max_model_len)
        if problem:
            return problem
        requests.append(Request(order, ids, sampling, {"order": order}))
    return requests


def parse_label_probability(row: dict, context: dict, model: str) -> dict:
    first = (row.get("logprobs") or [None])[0]
    if not first:
        return {"p_a": None}
    return {"p_a": label_tokens(model).p_a(logprob_map(first))}


def aggregate_score(pair: dict, rows: list[Settled], producer: str) -> list[tuple[str, dict]]:
    p = {r.context["order"]: r.result["p_a"] for r in rows}
    if p.get("ab") is None or p.get("ba") is None:
        return [reject_record(pair, "no_label_probability: no label token logprobs came back", SCORE.name)]
    return [(SCORES, {**pair, "p_first": p["ab"], "p_second": p["ba"], "reward": eq3(p["ab"], p["ba"]),
                        "judge": producer})]


def gram_score(pairs: str | Path | Any, out_dir: str | Path, engine: EngineConfig, judge: JudgeConfig
               ) -> StageSummary:
    """Write ``scores/`` (SCORE_SCHEMA) and ``rejects/``; ``judge.template`` should be a label-only
    template (``gram``, or ``compact`` for tiny models)."""
    label_tokens(engine.model)
    rows, inputs = read_rows(pairs)
    plan = partial(score_requests, engine=engine, judge=judge)
    checkpoint = Checkpoint.open(out_dir, SCORE.name, pairs, engine, judge)
    settled = union([
        runner.plan_settled(rows, plan),
        runner.generate(runner.plan_requests(rows, plan), engine, partial(parse_label_probability, model=engine.model),
                        checkpoint),
    ])
    return write_stage(
        settled, out_dir, SCORE, {SCORES: SCORE_SCHEMA, REJECTS: reject_schema(PAIR_SCHEMA)},
        aggregate=partial(aggregate_score, producer=engine.model), inputs=inputs, requests_per_row=2,
        checkpoint=checkpoint,
    )
