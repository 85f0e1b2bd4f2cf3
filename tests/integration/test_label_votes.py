"""The Ray Data label stage samples voting@k as the offline judge does (real Ray, ray.data.llm, vLLM on CPU,
the tiny kit's random-weight model).

Exact equality needs per-request seeds: an unseeded vLLM request draws from the engine's shared generator,
so its samples depend on which other requests share its batches, and the stage's engine batches are not the
offline call's. A seeded request gets a generator of its own (vLLM seeds sample i of an n = k request with
seed + i), which makes the samples a function of the prompt, the seed and the weights. So the offline
judge is given the stage's seeds (``derive_seed(engine.seed, pair id, order)``), and then every sampled
text, verdict and vote must be the same. Adaptive voting's second pass continues those seeds, so an order
it samples in full has exactly full voting's samples.
"""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from gram_ray.apply.judges import OfflineJudge
from gram_ray.config import AdaptiveVoting, EngineConfig, JudgeConfig
from gram_ray.judging.requests import derive_seed
from gram_ray.stages import label_pairs
from gram_ray.stages import rows as held

pytestmark = pytest.mark.integration

VOTES = 4


def judgements_by_pair(folder) -> dict[str, dict]:
    return {j["pair_id"]: j for j in pq.read_table(folder / "judgements").to_pylist() if j["order"] == "ab"}


def test_label_stage_votes_equal_offline_judge(ray_local, tiny_kit, vllm_tiny_llm, tmp_path, monkeypatch):
    monkeypatch.setattr(held, "LOCAL_ROWS", 0)  # every step on Ray Data, as large inputs go
    pairs = pq.read_table(tiny_kit.unlabeled[0]).slice(0, 6)
    pq.write_table(pairs, tmp_path / "pairs.parquet")
    engine = EngineConfig(model=str(tiny_kit.model_dir), max_model_len=512, batch_size=4, seed=3)
    judge = JudgeConfig(template="compact", votes=VOTES, temperature=1.0, max_tokens=24)
    summary = label_pairs(tmp_path / "pairs.parquet", tmp_path / "full", engine, judge)
    assert summary.complete and summary.kept == pairs.num_rows
    staged = judgements_by_pair(tmp_path / "full")

    rows = pairs.to_pylist()
    offline = OfflineJudge(vllm_tiny_llm, "reasoning", judge).judge(
        [(r["prompt"], r["response_a"], r["response_b"]) for r in rows],
        seeds=[derive_seed(engine.seed, r["id"], "ab") for r in rows])
    for row, expected in zip(rows, offline, strict=True):
        got = staged[row["id"]]
        assert got["generated_text"] == list(expected.texts)
        assert got["parsed"] == list(expected.verdicts)
        assert (got["votes_a"], got["votes_b"], got["votes_none"]) == (expected.votes_a, expected.votes_b,
                                                                       expected.votes_none)
    assert len({t for j in staged.values() for t in j["generated_text"]}) > VOTES  # samples do differ

    adaptive = judge.model_copy(update={"adaptive": AdaptiveVoting(first_votes=2, min_confidence=0.9)})
    assert label_pairs(tmp_path / "pairs.parquet", tmp_path / "adaptive", engine, adaptive).complete
    for pair_id, got in judgements_by_pair(tmp_path / "adaptive").items():
        full = staged[pair_id]["generated_text"]
        assert len(got["generated_text"]) in (2, VOTES) and got["generated_text"] == full[:len(got["generated_text"])]
