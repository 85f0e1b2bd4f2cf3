"""Rationale synthesis: the prover writes k proofs of each pair's label; the most context-specific one
becomes the RM's target ``<think>proof</think><answer>label</answer>``.

Two engine passes: generation (whose token log-probabilities give log p(proof | input, label)), then,
when there is a choice to make, a prompt-logprob pass over each proof after an empty user turn for
log p(proof). The generation results are materialized between the passes so the two engine pools never
hold resources at the same time.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from gram_ray.config import EngineConfig, ProverConfig
from gram_ray.judging.engine import logprob_map
from gram_ray.judging.proofs import Candidate, choose, is_wellformed, sequence_logprob
from gram_ray.judging.requests import chat_ids, derive_seed, load_tokenizer, malformed, too_long
from gram_ray.prompts import proof_to_target, prover_prompt
from gram_ray.stages import runner
from gram_ray.stages.outputs import REJECTS, StageOutputs, StageSummary, reject_record, write_stage
from gram_ray.stages.resume import Checkpoint
from gram_ray.stages.rows import Request, Settled, read_rows, union
from gram_ray.stages.schemas import LABELLED_SCHEMA, PROOF_SCHEMA, RATIONALE_OUT_SCHEMA, reject_schema

RATIONALES, PROOFS = "rationales", "proofs"
PROVE = StageOutputs("prove", primary=RATIONALES, extra=(PROOFS,))


def proof_requests(row: dict, engine: EngineConfig, prover: ProverConfig) -> list[Request] | str:
    problem = malformed(row, need_label=True)
    if problem:
        return problem
    text = prover_prompt(prover.template, row["prompt"], row["response_a"], row["response_b"], row["label"])
    ids = chat_ids(load_tokenizer(engine.model), text)
    problem = too_long(len(ids), engine.max_model_len)
    if problem:
        return problem
    return [
        Request(f"{k:04d}", ids, {"n": 1, "temperature": prover.temperature, "top_p": prover.top_p,
                                  "max_tokens": prover.max_tokens, "seed": derive_seed(engine.seed, row["id"], k),
                                  "logprobs": 0},
                {"sample": k})
        for k in range(prover.proofs)
    ]


def parse_proof(row: dict, context: dict) -> dict:
    tokens = [int(t) for t in row["generated_tokens"]]
    logprobs = [logprob_map(pos) for pos in row.get("logprobs") or []]
    return {"proof": row["generated_text"].strip(), "token_ids": tokens,
            "logp_cond": sequence_logprob(tokens, logprobs) if tokens else None}


def unconditional_request(context: dict, result: dict, engine: EngineConfig) -> Request | None:
    """Score a well-formed proof's tokens after an empty user turn (prompt logprobs, one token generated)."""
    if not result["token_ids"] or not is_wellformed(result["proof"]):
        return None
    prefix = chat_ids(load_tokenizer(engine.model), "")
    ids = prefix + result["token_ids"]
    if too_long(len(ids), engine.max_model_len):
        return None
    sampling = {"n": 1, "temperature": 0.0, "max_tokens": 1, "prompt_logprobs": 0}
    return Request("", ids, sampling, {**context, "gen": result, "prefix_len": len(prefix)})


def parse_unconditional(row: dict, context: dict) -> dict:
    ids = [int(t) for t in row["prompt_token_ids"]]
    start = context["prefix_len"]
    positions = [logprob_map(pos) for pos in row["prompt_logprobs"][start:]]
    return {"logp_uncond": sequence_logprob(ids[start:], positions)}


def aggregate_proofs(pair: dict, rows: list[Settled], producer: str, round_: int, selection: str
                     ) -> list[tuple[str, dict]]:
    candidates = []
    for r in sorted(rows, key=lambda r: r.context["sample"]):
        gen = r.context.get("gen", r.result)
        candidates.append(Candidate(r.context["sample"], gen["proof"], len(gen["token_ids"]), gen["logp_cond"],
                                    r.result.get("logp_uncond")))
    chosen = choose(candidates, selection)
    records = [(PROOFS, {"id": pair["id"], "sample": c.sample, "proof": c.proof, "num_tokens": c.num_tokens,
                           "logp_cond": c.logp_cond, "logp_uncond": c.logp_uncond, "score": c.score,
                           "wellformed": c.wellformed, "chosen": c is chosen})
               for c in candidates]
    if chosen is None:
        return [*records, reject_record(pair, f"no_usable_proof: none of {len(candidates)} proofs is "
                                        "well formed and scored", PROVE.name)]
    rationale = {**pair, "rationale": chosen.proof, "target": proof_to_target(chosen.proof, pair["label"]),
                 "producer": producer, "round": round_, "score": chosen.score}
    return [*records, (RATIONALES, rationale)]


def prove_pairs(labelled: str | Path | Any, out_dir: str | Path, engine: EngineConfig, prover: ProverConfig,
                round: int) -> StageSummary:
    """Write ``rationales/`` (RATIONALE_SCHEMA plus the judge fields the input carried), ``proofs/`` (every
    candidate with its scores) and ``rejects/`` for pairs with a label (given or judged)."""
    rows, inputs = read_rows(labelled)
    checkpoint = Checkpoint.open(out_dir, PROVE.name, labelled, engine, [prover, round])
    requests = runner.plan_requests(rows, partial(proof_requests, engine=engine, prover=prover))
    generated = runner.generate(requests, engine, parse_proof, checkpoint, "generate")
    parts = [runner.plan_settled(rows, partial(proof_requests, engine=engine, prover=prover))]
    if prover.proofs > 1 and prover.selection == "specificity":
        to_score, rest = runner.follow_up(generated, partial(unconditional_request, engine=engine))
        if to_score.count():  # no engine pool for nothing to score
            parts.append(runner.generate(to_score, engine, parse_unconditional, checkpoint, "unconditional"))
        parts.append(rest)
    else:
        parts.append(generated)
    return write_stage(
        union(parts), out_dir, PROVE,
        {RATIONALES: RATIONALE_OUT_SCHEMA, PROOFS: PROOF_SCHEMA, REJECTS: reject_schema(LABELLED_SCHEMA)},
        aggregate=partial(aggregate_proofs, producer=engine.model, round_=round, selection=prover.selection),
        inputs=inputs, requests_per_row=prover.proofs, checkpoint=checkpoint,
    )
