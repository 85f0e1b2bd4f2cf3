"""The Ray Data judge gives the offline judge's probabilities (same tiny model, real ray.data.llm) and
sends voting@k as one seeded n = k request per pair."""

from __future__ import annotations

import pytest

from gram_ray.apply.judges import OfflineJudge
from gram_ray.apply.ray_judge import RayDataJudge
from gram_ray.config import EngineConfig, JudgeConfig

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # two Ray Data engine pools

ITEMS = [("What is 23+45?", "68", "67"), ("What is 23+45?", "67", "68"), ("What is 10+11?", "21", "12")]


def test_ray_data_judge_matches_offline_and_votes_in_one_request(ray_local, tiny_kit, vllm_tiny_llm):
    engine = EngineConfig(model=str(tiny_kit.model_dir), max_model_len=512, batch_size=8)
    ray_judge = RayDataJudge(engine, "label", JudgeConfig(template="compact"))
    offline = OfflineJudge(vllm_tiny_llm, "label", JudgeConfig(template="compact"))
    # The label logprobs survive the trip through Ray Data rows: same P(A) as the in-process engine.
    assert ray_judge(ITEMS) == pytest.approx(offline(ITEMS), abs=1e-4)
    assert (ray_judge.calls, ray_judge.requests) == (1, len(ITEMS))

    voter = RayDataJudge(engine, "reasoning", JudgeConfig(template="compact", votes=3, temperature=1.0, max_tokens=8))
    judged = voter.judge(ITEMS[:2])
    assert voter.requests == 2 and [len(j.texts) for j in judged] == [3, 3]
    assert all(j.votes_a + j.votes_b + j.votes_none == 3 for j in judged)
