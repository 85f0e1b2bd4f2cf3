"""Label prediction: the reasoning RM judges each pair k times (and again with the responses swapped),
majority vote, confidence from the answer-token probabilities.

Voting@k is one request with ``n = k`` per pair and order: vLLM samples the k judgements on one prompt
and Ray Data carries one row for them (``judging.engine_stage`` keeps all k completions, which
``ray.data.llm`` alone reduces to the first). Its seed is derived from the pair id and order, and vLLM
seeds sample i with seed + i, so reruns sample the same judgements, and so does the offline judge given
the same seed.

With ``judge.adaptive``, the request asks for the first votes only; a second engine pass samples the rest
(seeds continuing where the first request's stopped, so they are the samples full voting draws) for the
orders that the first votes leave undecided (``judging.voting.decided_early``).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from gram_ray.config import EngineConfig, JudgeConfig
from gram_ray.data.schemas import JUDGEMENT_SCHEMA, PAIR_SCHEMA
from gram_ray.judging.engine import completions_of
from gram_ray.judging.requests import chat_ids, derive_seed, label_tokens, load_tokenizer, malformed, too_long
from gram_ray.judging.voting import (
    ORDERS,
    Sample,
    combine,
    decided_early,
    judgement_record,
    read_sample,
    summarise_pass,
)
from gram_ray.prompts import judge_prompt
from gram_ray.stages import runner
from gram_ray.stages.outputs import REJECTS, StageOutputs, StageSummary, write_stage
from gram_ray.stages.resume import Checkpoint
from gram_ray.stages.rows import Request, Settled, read_rows, union
from gram_ray.stages.schemas import LABELLED_SCHEMA, reject_schema

LABELLED, JUDGEMENTS = "labelled", "judgements"
LABEL = StageOutputs("label", primary=LABELLED, extra=(JUDGEMENTS,))


def vote_request(sub: str, ids: list[int], row_id: str, order: str, first: int, count: int, engine: EngineConfig,
                 judge: JudgeConfig, extra_sampling: dict | None, context: dict) -> Request:
    """The request for votes ``first`` .. ``first + count - 1`` of a pair's order (vote i has seed base + i)."""
    sampling = {"n": count, "temperature": judge.temperature, "top_p": judge.top_p, "max_tokens": judge.max_tokens,
                "seed": derive_seed(engine.seed, row_id, order) + first,
                "logprob_token_ids": label_tokens(engine.model).ids, **(extra_sampling or {})}
    return Request(sub, ids, sampling, {"order": order, **context})


def judge_requests(row: dict, engine: EngineConfig, judge: JudgeConfig, extra_sampling: dict | None = None
                   ) -> list[Request] | str:
    problem = malformed(row)
    if problem:
        return problem
    tokenizer = load_tokenizer(engine.model)
    first_votes = judge.adaptive.first_votes if judge.adaptive else judge.votes
    requests = []
    for order in ORDERS if judge.swap_pass else ORDERS[:1]:
        first, second = row["response_a"], row["response_b"]
        if order == "ba":
            first, second = second, first
        ids = chat_ids(tokenizer, judge_prompt(judge.template, row["prompt"], first, second))
        problem = too_long(len(ids), engine.max_model_len)
        if problem:
            return problem
        context = {"prompt_ids": ids, "row_id": row["id"]} if judge.adaptive else {}
        requests.append(vote_request(order, ids, row["id"], order, 0, first_votes, engine, judge, extra_sampling,
                                     context))
    return requests


def more_votes(context: dict, result: dict, engine: EngineConfig, judge: JudgeConfig,
               extra_sampling: dict | None = None) -> Request | None:
    """The request for the rest of an order's k votes, or None when its first votes decided it."""
    if judge.adaptive is None or decided_early(_samples(result["samples"]), judge.votes,
                                                judge.adaptive.min_confidence):
        return None
    first = len(result["samples"])
    return vote_request(f"{context['order']}+", context["prompt_ids"], context["row_id"], context["order"], first,
                        judge.votes - first, engine, judge, extra_sampling, {"earlier": result["samples"]})


def parse_judgement(row: dict, context: dict, model: str) -> dict:
    labels = label_tokens(model)
    samples = [read_sample(c.text, c.token_ids, c.logprobs, labels) for c in completions_of(row)]
    return {"samples": [{"text": s.text, "answer": s.answer, "p_a": s.p_a} for s in samples]}


def _samples(records: list[dict]) -> list[Sample]:
    return [Sample(s["text"], s["answer"], s["p_a"]) for s in records]


def aggregate_pair(pair: dict, rows: list[Settled], producer: str, round_: int) -> list[tuple[str, dict]]:
    passes = []
    for order in ORDERS:
        samples = [s for r in rows if r.context["order"] == order
                   for s in _samples(r.context.get("earlier", []) + r.result["samples"])]
        if samples:
            passes.append(summarise_pass(order, samples))
    labelled = {**pair, **combine(passes), "input_label": pair.get("label"), "judge": producer}
    return [(LABELLED, labelled)] + [(JUDGEMENTS, judgement_record(pair["id"], p, producer, round_))
                                     for p in passes]


def label_pairs(pairs: str | Path | Any, out_dir: str | Path, engine: EngineConfig, judge: JudgeConfig,
                round: int = 0, extra_sampling: dict | None = None) -> StageSummary:
    """Judge every pair; write ``labelled/`` (LABELLED_SCHEMA, one row per judged pair, ``label`` null
    when no side won), ``judgements/`` (JUDGEMENT_SCHEMA, one row per pair and order) and ``rejects/``.
    ``extra_sampling`` adds vLLM sampling parameters to every request (the benchmark's ``ignore_eos``)."""
    label_tokens(engine.model)  # fail fast, in the driver, on a bad tokenizer
    rows, inputs = read_rows(pairs)
    plan = partial(judge_requests, engine=engine, judge=judge, extra_sampling=extra_sampling)
    parse = partial(parse_judgement, model=engine.model)
    checkpoint = Checkpoint.open(out_dir, LABEL.name, pairs, engine, [judge, round, extra_sampling])
    voted = runner.generate(runner.plan_requests(rows, plan), engine, parse, checkpoint)
    parts = [runner.plan_settled(rows, plan)]
    if judge.adaptive is None:
        parts.append(voted)
    else:
        more, decided = runner.follow_up(voted, partial(more_votes, engine=engine, judge=judge,
                                                        extra_sampling=extra_sampling))
        if more.count():  # no engine pool for nothing to sample
            parts.append(runner.generate(more, engine, parse, checkpoint, "more_votes"))
        parts.append(decided)
    return write_stage(
        union(parts), out_dir, LABEL,
        {LABELLED: LABELLED_SCHEMA, JUDGEMENTS: JUDGEMENT_SCHEMA, REJECTS: reject_schema(PAIR_SCHEMA)},
        aggregate=partial(aggregate_pair, producer=engine.model, round_=round),
        inputs=inputs, requests_per_row=2 if judge.swap_pass else 1, checkpoint=checkpoint,
    )
