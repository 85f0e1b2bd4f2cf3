"""Label prediction: the reasoning RM judges each pair k times (and again with the responses swapped),
majority vote, confidence from the answer-token probabilities.

ray.data.llm 2.60 returns only the first completion of a request (``vLLMOutputData`` reads
``outputs[0]``), so voting@k sends k requests per pair and order instead of one request with ``n=k``;
they share the prompt, which vLLM's prefix cache computes once. Each request has its own seed derived
from the pair id, so reruns sample the same judgements.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from gram_ray.config import EngineConfig, JudgeConfig
from gram_ray.data.schemas import JUDGEMENT_SCHEMA, PAIR_SCHEMA
from gram_ray.judging.engine import logprob_map
from gram_ray.judging.requests import chat_ids, derive_seed, label_tokens, load_tokenizer, malformed, too_long
from gram_ray.judging.voting import ORDERS, Sample, combine, judgement_record, read_sample, summarise_pass
from gram_ray.prompts import judge_prompt
from gram_ray.stages import runner
from gram_ray.stages.outputs import REJECTS, StageOutputs, StageSummary, write_stage
from gram_ray.stages.resume import Checkpoint
from gram_ray.stages.rows import Request, Settled, read_rows, union
from gram_ray.stages.schemas import LABELLED_SCHEMA, reject_schema

LABELLED, JUDGEMENTS = "labelled", "judgements"
LABEL = StageOutputs("label", primary=LABELLED, extra=(JUDGEMENTS,))


def judge_requests(row: dict, engine: EngineConfig, judge: JudgeConfig, extra_sampling: dict | None = None
                   ) -> list[Request] | str:
    problem = malformed(row)
    if problem:
        return problem
    tokenizer = load_tokenizer(engine.model)
    label_ids = label_tokens(engine.model).ids
    requests = []
    for order in ORDERS if judge.swap_pass else ORDERS[:1]:
        first, second = row["response_a"], row["response_b"]
        if order == "ba":
            first, second = second, first
        ids = chat_ids(tokenizer, judge_prompt(judge.template, row["prompt"], first, second))
        problem = too_long(len(ids), engine.max_model_len)
        if problem:
            return problem
        for k in range(judge.votes):
            sampling = {"n": 1, "temperature": judge.temperature, "top_p": judge.top_p,
                        "max_tokens": judge.max_tokens, "seed": derive_seed(engine.seed, row["id"], order, k),
                        "logprob_token_ids": label_ids, **(extra_sampling or {})}
            requests.append(Request(f"{order}/{k:04d}", ids, sampling, {"order": order, "sample": k}))
    return requests


def parse_judgement(row: dict, context: dict, model: str) -> dict:
    labels = label_tokens(model)
    logprobs = [logprob_map(pos) for pos in row.get("logprobs") or []]
    sample = read_sample(row["generated_text"], [int(t) for t in row["generated_tokens"]], logprobs, labels)
    return {"text": sample.text, "answer": sample.answer, "p_a": sample.p_a}


def aggregate_pair(pair: dict, rows: list[Settled], producer: str, round_: int) -> list[tuple[str, dict]]:
    passes = []
    for order in ORDERS:
        samples = [Sample(r.result["text"], r.result["answer"], r.result["p_a"])
                   for r in rows if r.context["order"] == order]
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
    checkpoint = Checkpoint.open(out_dir, LABEL.name, pairs, engine, [judge, round, extra_sampling])
    settled = union([
        runner.plan_settled(rows, plan),
        runner.generate(runner.plan_requests(rows, plan), engine, partial(parse_judgement, model=engine.model),
                        checkpoint),
    ])
    return write_stage(
        settled, out_dir, LABEL,
        {LABELLED: LABELLED_SCHEMA, JUDGEMENTS: JUDGEMENT_SCHEMA, REJECTS: reject_schema(PAIR_SCHEMA)},
        aggregate=partial(aggregate_pair, producer=engine.model, round_=round),
        inputs=inputs, requests_per_row=judge.votes * (2 if judge.swap_pass else 1), checkpoint=checkpoint,
    )
