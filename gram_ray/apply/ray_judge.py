"""A pairwise judge on Ray Data + ``ray.data.llm`` for sets too large for one process.

Each ``judge`` call is one Ray Data pass through the stages' engine pool (``gram_ray.stages``), so the
ranking methods cost one pass per judge call: ``reference`` one pass in all, ``knockout`` ceil(log2 n)
passes, ``scan`` n - 1. ``ray.data.llm`` keeps one completion per request, so voting@k sends k requests
per pair with derived seeds instead of one n = k request.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from gram_ray.apply.judges import JudgeCore, JudgeKind, Judgement, judgement_of
from gram_ray.apply.ranking import PairItem
from gram_ray.config import EngineConfig, JudgeConfig


def _label_logprobs(position: Mapping | None, ids: Sequence[int]) -> dict[str, float]:
    """The label tokens' log-probabilities at one position of an engine output row (keys may have become
    strings and absent ones None on the way through Arrow)."""
    out: dict[str, float] = {}
    for key, value in (position or {}).items():
        if value is None or int(key) not in ids:
            continue
        out[str(int(key))] = float(value["logprob"] if isinstance(value, Mapping) else value)
    return out


class RayDataJudge:
    """Same judgements as ``OfflineJudge``, computed by a Ray Data engine pool per call."""

    def __init__(self, engine: EngineConfig, kind: JudgeKind = "reasoning", judge: JudgeConfig | None = None):
        from gram_ray.stages.requests import load_tokenizer

        self.engine = engine
        self.core = JudgeCore(load_tokenizer(engine.model), kind, judge or JudgeConfig(), engine.max_model_len)
        self.calls = 0
        self.requests = 0

    def judge(self, items: Sequence[PairItem], votes: int | None = None) -> list[Judgement]:
        if not items:
            return []
        import ray.data

        from gram_ray.stages.requests import derive_seed
        from gram_ray.stages.runner import generate

        sampling = self.core.sampling(votes)
        k = sampling.pop("n")
        rows = []
        for i, item in enumerate(items):
            ids = self.core.prompt_ids(item)
            for s in range(k):
                params = {**sampling, "seed": derive_seed(self.engine.seed, i, s)}
                rows.append({"id": f"{i:09d}", "sub": f"{s:04d}", "pair_json": "{}", "context_json": "{}",
                             "tokenized_prompt": ids, "sampling_json": json.dumps(params)})
        label_ids = self.core.labels.ids

        def parse(row: dict, context: dict) -> dict:
            return {"text": row.get("generated_text") or "", "tokens": list(row.get("generated_tokens") or []),
                    "logprobs": [_label_logprobs(p, label_ids) for p in (row.get("logprobs") or [])]}

        self.calls += 1
        self.requests += len(rows)
        settled = generate(ray.data.from_items(rows), self.engine, parse).take_all()
        errors = [r["error"] for r in settled if r["error"]]
        if errors:
            raise RuntimeError(f"{len(errors)} judge request(s) failed in the engine, e.g. {errors[0]}")
        by_item: dict[int, list[tuple[str, dict]]] = {}
        for r in settled:
            by_item.setdefault(int(r["id"]), []).append((r["sub"], json.loads(r["result_json"])))
        judgements = []
        for i in range(len(items)):
            samples = [self.core.sample(res["text"], res["tokens"],
                                        [{int(t): lp for t, lp in pos.items()} for pos in res["logprobs"]])
                       for _, res in sorted(by_item.get(i, []))]
            if len(samples) != k:
                raise RuntimeError(f"item {i}: {len(samples)} of {k} judgements came back")
            judgements.append(judgement_of(samples))
        return judgements

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
