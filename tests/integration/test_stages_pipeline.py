"""label -> prove -> denoise (through the CLI) on real Ray + vLLM (CPU) + the tiny kit's random-weight model.

A random model rarely writes an <answer>, so labels are mostly null here; what is checked is the
plumbing: schemas, every input row accounted for, reasons on rejects, the judgement rows adding up to the
labelled rows, and the proof scores (a near-uniform random model gives every token log p ~ -log V).
The label call also carries the bad-input corpus (tests/data/bad_inputs.py), unvalidated, so that it
meets a real engine without paying for another engine start.
"""

from __future__ import annotations

import json
import math
from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from gram_ray.cli import main
from gram_ray.config import EngineConfig, FilterConfig, JudgeConfig, ProverConfig
from gram_ray.data.schemas import JUDGEMENT_SCHEMA, PAIR_SCHEMA, RATIONALE_SCHEMA
from gram_ray.judging.requests import load_tokenizer
from gram_ray.prompts import parse_answer, proof_to_target
from gram_ray.stages import denoise, label_pairs, prove_pairs
from gram_ray.stages import rows as held
from gram_ray.stages.outputs import category
from gram_ray.stages.schemas import LABELLED_SCHEMA, PROOF_SCHEMA, RATIONALE_OUT_SCHEMA, reject_schema

pytestmark = pytest.mark.integration

VOTES = 2
PROOFS = 3


def write(rows: list[dict], schema: pa.Schema, path) -> str:
    pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema([f.with_nullable(True) for f in schema])), path)
    return str(path)


def read(folder) -> pa.Table:
    return pq.read_table(folder)


@pytest.fixture(scope="module")
def engine(tiny_kit) -> EngineConfig:
    return EngineConfig(model=str(tiny_kit.model_dir), max_model_len=256, batch_size=16, max_num_seqs=32)


def split_off_corpus(expected: dict[str, str], labelled: pa.Table, judgements: pa.Table, rejects: pa.Table
                     ) -> tuple[pa.Table, pa.Table, pa.Table]:
    """Check the corpus rows' outcomes (case name -> "labelled" or reject category) and that every parsed
    verdict is read from generated text; return the tables without the corpus rows."""
    names = pa.array(list(expected))
    outcome = {r["source"]: "labelled" for r in labelled.to_pylist() if r["source"] in expected}
    outcome.update({r["source"]: category(r["reason"]) for r in rejects.to_pylist() if r["source"] in expected})
    assert outcome == expected
    for j in judgements.to_pylist():  # whatever a response said, a verdict is only what the judge generated
        assert j["parsed"] == [parse_answer(text) for text in j["generated_text"]]
    labelled = labelled.filter(pc.invert(pc.is_in(labelled["source"], names)))
    rejects = rejects.filter(pc.invert(pc.fill_null(pc.is_in(rejects["source"], names), False)))
    return labelled, judgements.filter(pc.is_in(judgements["pair_id"], labelled["id"].combine_chunks())), rejects


def test_label_prove_denoise(ray_local, tiny_kit, engine, bad_inputs, tmp_path, monkeypatch):
    monkeypatch.setattr(held, "LOCAL_ROWS", 0)  # the Ray Data path that large inputs take; the others here are small
    # --- label: 6 good pairs, one overlong, one malformed, and the bad-input corpus ---
    pairs = pq.read_table(tiny_kit.unlabeled[0]).to_pylist()[:6]
    overlong = {**pairs[0], "id": "overlong", "response_a": "9 " * 300}
    broken = {**pairs[1], "id": "broken", "response_b": None}
    corpus = bad_inputs.stage_rows()
    expected = {case.name: case.stage for case, _ in corpus}
    pairs_path = write([*pairs, overlong, broken, *(row for _, row in corpus)], PAIR_SCHEMA, tmp_path / "pairs.parquet")
    judge = JudgeConfig(template="compact", votes=VOTES, temperature=1.0, max_tokens=16, swap_pass=True)
    summary = label_pairs(pairs_path, tmp_path / "label", engine, judge, round=1)

    corpus_rejected = Counter(outcome for outcome in expected.values() if outcome != "labelled")
    assert summary.complete and summary.inputs == 8 + len(corpus)
    assert summary.kept == 6 + len(corpus) - corpus_rejected.total()
    assert summary.rejected == dict(Counter({"prompt_too_long": 1, "malformed": 1}) + corpus_rejected)
    assert json.loads((tmp_path / "label" / "summary.json").read_text())["complete"] is True
    labelled, judgements = read(tmp_path / "label" / "labelled"), read(tmp_path / "label" / "judgements")
    rejects = read(tmp_path / "label" / "rejects")
    assert labelled.num_rows + rejects.num_rows == summary.inputs
    labelled, judgements, rejects = split_off_corpus(expected, labelled, judgements, rejects)
    assert labelled.schema.equals(LABELLED_SCHEMA) and judgements.schema.equals(JUDGEMENT_SCHEMA)
    assert rejects.schema.equals(reject_schema(PAIR_SCHEMA))
    assert {r["id"]: r["reason"].split(":")[0] for r in rejects.to_pylist()} == {
        "overlong": "prompt_too_long", "broken": "malformed"}
    assert set(labelled.column("id").to_pylist()) == {p["id"] for p in pairs}
    by_pair: dict[str, list[dict]] = {}
    for j in judgements.to_pylist():
        by_pair.setdefault(j["pair_id"], []).append(j)
    for row in labelled.to_pylist():
        passes = by_pair[row["id"]]
        assert sorted(j["order"] for j in passes) == ["ab", "ba"]
        assert all(len(j["generated_text"]) == VOTES and j["votes_a"] + j["votes_b"] + j["votes_none"] == VOTES
                   for j in passes)
        assert row["votes_total"] == 2 * VOTES and row["judge"] == engine.model and row["input_label"] is None
        votes = {"A": sum(j["votes_a"] for j in passes), "B": sum(j["votes_b"] for j in passes)}
        assert row["votes"] == votes.get(row["label"], 0)
        if row["label"] is not None:
            assert votes[row["label"]] >= votes["B" if row["label"] == "A" else "A"]

    # --- prove: the labelled pairs (mostly without a label) and six gold-labelled pairs ---
    gold = pq.read_table(tiny_kit.labeled).to_pylist()[:6]
    mixed = write(labelled.to_pylist() + gold, LABELLED_SCHEMA, tmp_path / "to_prove.parquet")
    prover = ProverConfig(template="compact", proofs=PROOFS, temperature=1.0, max_tokens=12)
    summary = prove_pairs(mixed, tmp_path / "prove", engine, prover, round=1)

    assert summary.complete and summary.inputs == 12
    rationales, proofs = read(tmp_path / "prove" / "rationales"), read(tmp_path / "prove" / "proofs")
    rejects = read(tmp_path / "prove" / "rejects")
    assert rationales.schema.equals(RATIONALE_OUT_SCHEMA) and proofs.schema.equals(PROOF_SCHEMA)
    unlabelled = {r["id"] for r in labelled.to_pylist() if r["label"] is None}
    assert {r["id"] for r in rejects.to_pylist() if r["reason"].startswith("no_label")} == unlabelled
    assert set(Counter(r["reason"].split(":")[0] for r in rejects.to_pylist())) <= {"no_label", "no_usable_proof"}
    assert rationales.num_rows + rejects.num_rows == 12 and rationales.num_rows >= 1
    candidates: dict[str, list[dict]] = {}
    for c in proofs.to_pylist():
        candidates.setdefault(c["id"], []).append(c)
    log_vocab = math.log(len(load_tokenizer(engine.model)))
    for row in rationales.to_pylist():
        assert row["target"] == proof_to_target(row["rationale"], row["label"])
        assert row["producer"] == engine.model and row["round"] == 1
        cands = candidates[row["id"]]
        assert sorted(c["sample"] for c in cands) == list(range(PROOFS))
        [chosen] = [c for c in cands if c["chosen"]]
        assert chosen["proof"] == row["rationale"] and chosen["score"] == pytest.approx(row["score"])
        scored = [c for c in cands if c["wellformed"] and c["score"] is not None]
        assert chosen["score"] == max(c["score"] for c in scored)
        for c in scored:
            assert c["score"] == pytest.approx(-c["logp_cond"] / c["logp_uncond"])
            # every proof token counted, in both passes: ~ -log V per token for a near-uniform model
            assert c["logp_cond"] / c["num_tokens"] == pytest.approx(-log_vocab, abs=0.5)
            assert c["logp_uncond"] / c["num_tokens"] == pytest.approx(-log_vocab, abs=0.5)

    # --- denoise: the synthesized rationales plus the kit's human ones (which verify) ---
    seed = pq.read_table(tiny_kit.seed_rationales).cast(RATIONALE_SCHEMA).to_pylist()
    both = write(rationales.to_pylist() + seed, RATIONALE_OUT_SCHEMA, tmp_path / "to_filter.parquet")
    config = tmp_path / "filters.yaml"
    config.write_text("filters:\n  support_check: none\n  verifier: gram_ray.tinykit.addition:verify_rationale\n")
    assert main(["denoise", "--config", str(config), both, str(tmp_path / "denoise")]) == 0  # via the CLI

    kept, rejects = read(tmp_path / "denoise" / "kept"), read(tmp_path / "denoise" / "rejects")
    summary = json.loads((tmp_path / "denoise" / "summary.json").read_text())
    assert summary["complete"] and kept.num_rows + rejects.num_rows == rationales.num_rows + len(seed)
    assert kept.schema.equals(RATIONALE_OUT_SCHEMA)
    assert set(kept.column("id").to_pylist()) == {r["id"] for r in seed}
    assert all(r["reason"].startswith("unsupported: ") and r["stage"] == "denoise" for r in rejects.to_pylist())


def test_small_inputs_in_the_driver_match_ray_data(ray_local, tiny_kit, tmp_path, monkeypatch):
    """Inputs of at most LOCAL_ROWS rows are planned, sorted and written in the driver: the same files and
    rows as through Ray Data, from two files, with kept rows and rejects, in the same order."""
    seed = pq.read_table(tiny_kit.seed_rationales).cast(RATIONALE_SCHEMA).to_pylist()
    flipped = [{**r, "id": f"flipped-{r['id']}", "label": other, "target": proof_to_target(r["rationale"], other)}
               for r in seed[: len(seed) // 2] for other in ["B" if r["label"] == "A" else "A"]]
    half = len(seed) // 2
    (tmp_path / "in").mkdir()
    files = [write(seed[:half] + flipped[:3], RATIONALE_OUT_SCHEMA, tmp_path / "in" / "a.parquet"),
             write(seed[half:] + flipped[3:], RATIONALE_OUT_SCHEMA, tmp_path / "in" / "b.parquet")]
    filters = FilterConfig(support_check="none", verifier="gram_ray.tinykit.addition:verify_rationale",
                           max_rationale_chars=400)
    local = denoise(tmp_path / "in", tmp_path / "local", filters)
    monkeypatch.setattr(held, "LOCAL_ROWS", 0)
    distributed = denoise(tmp_path / "in", tmp_path / "ray", filters)

    assert len(files) == 2 and local.rejected == {"unsupported": len(flipped)} and local.kept == len(seed) >= 8
    assert (local.outputs, local.rejected, local.complete) == (distributed.outputs, distributed.rejected, True)
    for view in ("kept", "rejects"):
        names = sorted(p.name for p in (tmp_path / "local" / view).iterdir())
        assert names == sorted(p.name for p in (tmp_path / "ray" / view).iterdir())
        assert read(tmp_path / "local" / view).equals(read(tmp_path / "ray" / view))
