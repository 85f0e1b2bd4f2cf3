"""GRAM scoring against transformers, and engine failures that must end in rejects, on real Ray + vLLM."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from gram_ray.config import EngineConfig, JudgeConfig
from gram_ray.data.schemas import PAIR_SCHEMA
from gram_ray.judging.requests import chat_ids, load_tokenizer
from gram_ray.prompts import judge_prompt
from gram_ray.prompts.verdicts import LabelTokens
from gram_ray.stages import gram_score, runner
from gram_ray.stages.outputs import StageOutputs, write_stage
from gram_ray.stages.rows import DatasetRows
from gram_ray.stages.schemas import SCORE_SCHEMA

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def engine(tiny_kit) -> EngineConfig:
    return EngineConfig(model=str(tiny_kit.model_dir), max_model_len=256, batch_size=8, max_num_seqs=16)


def test_gram_score_matches_transformers(ray_local, tiny_kit, engine, tmp_path):
    from transformers import AutoModelForCausalLM

    pairs = pq.read_table(tiny_kit.heldout).to_pylist()[:4]
    schema = pa.schema([f.with_nullable(True) for f in PAIR_SCHEMA])
    path = tmp_path / "pairs.parquet"
    pq.write_table(pa.Table.from_pylist([*pairs, {**pairs[0], "id": "no-prompt", "prompt": ""}], schema=schema),
                   path)
    summary = gram_score(str(path), tmp_path / "score", engine, JudgeConfig(template="compact"))

    assert summary.complete and summary.kept == 4 and summary.rejected == {"malformed": 1}
    scores = pq.read_table(tmp_path / "score" / "scores")
    assert scores.schema.equals(SCORE_SCHEMA)
    tok = load_tokenizer(engine.model)
    labels = LabelTokens.from_tokenizer(tok)
    model = AutoModelForCausalLM.from_pretrained(engine.model, dtype=torch.float32).eval()

    def p_a(prompt: str, first: str, second: str) -> float:
        ids = torch.tensor([chat_ids(tok, judge_prompt("compact", prompt, first, second))])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0, -1].double(), dim=-1)
        return labels.p_a({i: float(logp[i]) for i in labels.ids})

    for row in scores.to_pylist():
        p_first = p_a(row["prompt"], row["response_a"], row["response_b"])
        p_second = p_a(row["prompt"], row["response_b"], row["response_a"])
        assert row["p_first"] == pytest.approx(p_first, abs=1e-4)
        assert row["p_second"] == pytest.approx(p_second, abs=1e-4)
        assert row["reward"] == pytest.approx((p_first + 1 - p_second) / 2, abs=1e-4)


def test_rows_failing_in_the_engine_become_rejects_and_the_batch_survives(ray_local, engine, tmp_path):
    import ray.data

    ids = chat_ids(load_tokenizer(engine.model), "What is 12+34?")
    good = {"n": 1, "temperature": 0.0, "max_tokens": 4}

    def request(name: str, prompt_ids: list[int], sampling: dict) -> dict:
        return {"id": name, "sub": "", "pair_json": json.dumps({"id": name, "prompt": "q"}), "context_json": "{}",
                "tokenized_prompt": prompt_ids, "sampling_json": json.dumps(sampling)}

    requests = [request(f"ok{i}", ids, good) for i in range(4)]
    requests.append(request("overlong", ids * 40, good))  # longer than max_model_len, sent raw
    requests.append(request("bad-params", ids, {**good, "max_tokens": 0}))
    settled = runner.generate(DatasetRows(ray.data.from_items(requests)), engine,
                              lambda row, ctx: {"n": len(row["generated_tokens"])})
    summary = write_stage(
        settled, tmp_path / "out", StageOutputs("test", primary="kept"),
        {"kept": pa.schema([pa.field("id", pa.string())]),
         "rejects": pa.schema([pa.field("id", pa.string()), pa.field("reason", pa.string())])},
        aggregate=lambda pair, rows: [("kept", pair)], inputs=len(requests))

    assert summary.complete and summary.kept == 4 and summary.rejected == {"engine_error": 2}
    reasons = {r["id"]: r["reason"] for r in pq.read_table(tmp_path / "out" / "rejects").to_pylist()}
    assert set(reasons) == {"overlong", "bad-params"}
    assert "maximum context length" in reasons["overlong"] and "max_tokens" in reasons["bad-params"]
