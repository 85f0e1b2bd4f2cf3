"""A pairwise judge on Ray Data + ``ray.data.llm`` for sets too large for one process.

Each ``judge`` call is one Ray Data pass through an engine pool (``judging.engine.engine_pass``), so the
ranking methods cost one pass per judge call: ``reference`` one pass in all, ``knockout`` ceil(log2 n)
passes, ``scan`` n - 1. Voting@k is one n = k request per item, seeded like the label stage's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from gram_ray.apply.judges import JudgeCore, JudgeKind, Judgement, judgement_of
from gram_ray.apply.ranking import PairItem
from gram_ray.config import EngineConfig, JudgeConfig
from gram_ray.judging.engine import completions_of, engine_pass
from gram_ray.judging.requests import derive_seed, load_tokenizer


class RayDataJudge:
    """Same judgements as ``OfflineJudge``, computed by a Ray Data engine pool per call."""

    def __init__(self, engine: EngineConfig, kind: JudgeKind = "reasoning", judge: JudgeConfig | None = None):
        self.engine = engine
        self.core = JudgeCore(load_tokenizer(engine.model), kind, judge or JudgeConfig(), engine.max_model_len)
        self.calls = 0
        self.requests = 0

    def judge(self, items: Sequence[PairItem], votes: int | None = None) -> list[Judgement]:
        if not items:
            return []
        import ray.data

        sampling = self.core.sampling(votes)
        rows = [{"id": f"{i:09d}", "tokenized_prompt": self.core.prompt_ids(item),
                 "sampling_json": json.dumps({**sampling, "seed": derive_seed(self.engine.seed, i)})}
                for i, item in enumerate(items)]
        label_ids = set(self.core.labels.ids)

        def read(row: dict) -> dict:
            """Every sample's text, tokens and label-token log-probabilities (JSON: keys become strings)."""
            results = [{"text": c.text, "tokens": c.token_ids,
                        "logprobs": [{t: lp for t, lp in pos.items() if t in label_ids} for pos in c.logprobs]}
                       for c in completions_of(row)]
            return {"id": row["id"], "result_json": json.dumps(results)}

        self.calls += 1
        self.requests += len(rows)
        settled = engine_pass(ray.data.from_items(rows), self.engine, read, ("id", "result_json")).take_all()
        errors = [r["error"] for r in settled if r["error"]]
        if errors:
            raise RuntimeError(f"{len(errors)} judge request(s) failed in the engine, e.g. {errors[0]}")
        by_item = {int(r["id"]): json.loads(r["result_json"]) for r in settled}
        judgements = []
        for i in range(len(items)):
            samples = [self.core.sample(res["text"], res["tokens"],
                                        [{int(t): lp for t, lp in pos.items()} for pos in res["logprobs"]])
                       for res in by_item.get(i, [])]
            if len(samples) != sampling["n"]:
                raise RuntimeError(f"item {i}: {len(samples)} of {sampling['n']} judgements came back")
            judgements.append(judgement_of(samples))
        return judgements

    def refusal(self, item: PairItem) -> str | None:
        return self.core.refusal(item)

    def __call__(self, items: Sequence[PairItem]) -> list[float]:
        return [j.p_a for j in self.judge(items)]


def judge_backend(backend: str, engine: EngineConfig, kind: JudgeKind, judge: JudgeConfig) -> Any:
    """``offline`` (one in-process vLLM engine) or ``ray`` (Ray Data engine pool)."""
    if backend == "offline":
        from gram_ray.apply.judges import OfflineJudge

        return OfflineJudge.from_config(engine, kind, judge)
    if backend == "ray":
        return RayDataJudge(engine, kind, judge)
    raise ValueError(f"unknown backend {backend!r}; choose 'offline' or 'ray'")
