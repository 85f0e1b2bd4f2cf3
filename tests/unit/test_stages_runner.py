"""The runner's pure parts: how a pair's settled rows become records and part files, and small stages
held in the driver."""

from __future__ import annotations

import hashlib
import json

import pyarrow.parquet as pq

from gram_ray.stages.outputs import _PartWriter, _records_of
from gram_ray.stages.schemas import LABELLED_SCHEMA

PAIR = {"id": "p1", "prompt": "q", "response_a": "a", "response_b": "b", "label": None}


def row(sub="", reject="", error="", result=None, context=None, pair=PAIR):
    return {"id": pair["id"], "sub": sub, "pair_json": json.dumps(pair), "context_json": json.dumps(context or {}),
            "result_json": json.dumps(result or {}), "error": error, "reject": reject}


def keep_all(pair, rows):
    return [("kept", {**pair, "n": len(rows)})]


def test_complete_pairs_reach_the_aggregate():
    [(kind, rec)] = _records_of([row("ab/0"), row("ab/1")], keep_all, "label")
    assert kind == "kept" and rec["n"] == 2


def test_rejected_before_the_engine():
    [(kind, rec)] = _records_of([row(reject="prompt_too_long: 900 tokens")], keep_all, "label")
    assert kind == "rejects" and rec["reason"] == "prompt_too_long: 900 tokens" and rec["stage"] == "label"
    assert rec["prompt"] == "q"


def test_an_engine_failure_rejects_the_whole_pair_with_the_error():
    [(kind, rec)] = _records_of([row("ab/0"), row("ab/1", error="EngineDeadError: boom")], keep_all, "label")
    assert kind == "rejects" and rec["reason"] == "engine_error: EngineDeadError: boom"


def test_duplicate_ids_reject_every_copy():
    other = {**PAIR, "response_a": "c"}
    group = [row("ab/0"), row("ab/0", pair=other), row("ab/1"), row("ab/1", pair=other)]
    records = _records_of(group, keep_all, "label")
    assert [k for k, _ in records] == ["rejects", "rejects"]
    assert {r["response_a"] for _, r in records} == {"a", "c"}
    assert all(r["reason"].startswith("duplicate_id") for _, r in records)
    mixed = _records_of([row(reject="malformed: x"), row("ab/0")], keep_all, "label")
    assert len(mixed) == 2 and all(k == "rejects" for k, _ in mixed)


def test_rows_without_id_are_each_rejected():
    no_id = {**PAIR, "id": None}
    group = [{**row(reject="malformed: missing id", pair=no_id), "id": ""},
             {**row(reject="malformed: missing id", pair={**no_id, "prompt": "other"}), "id": ""}]
    assert len(_records_of(group, keep_all, "label")) == 2


def test_part_writer_rolls_files_and_writes_an_empty_part(tmp_path):
    writer = _PartWriter(tmp_path / "labelled", LABELLED_SCHEMA, rows_per_file=2)
    for i in range(5):
        writer.add({**PAIR, "id": f"p{i}", "votes": i})
    writer.close()
    parts = sorted(p.name for p in (tmp_path / "labelled").iterdir())
    assert parts == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    table = pq.read_table(tmp_path / "labelled")
    assert table.schema.equals(LABELLED_SCHEMA) and table.column("votes").to_pylist() == [0, 1, 2, 3, 4]
    empty = _PartWriter(tmp_path / "empty", LABELLED_SCHEMA, rows_per_file=2)
    empty.close()
    assert pq.read_table(tmp_path / "empty").num_rows == 0


def test_a_small_stage_runs_in_the_driver_without_ray_data(tmp_path, monkeypatch):
    """Small inputs never start a Ray Data job: denoise (no engine) runs on two files whose column types
    disagree, sorts by pair, and accounts for every row, with Ray Data's readers made to fail."""
    import pyarrow as pa
    import ray.data

    def no_ray_data(*args, **kwargs):
        raise AssertionError("a small stage started a Ray Data job")

    for reader in ("read_parquet", "from_arrow", "from_items"):
        monkeypatch.setattr(ray.data, reader, no_ray_data)

    from gram_ray.config import FilterConfig
    from gram_ray.stages import denoise

    pairs = [{**PAIR, "id": f"p{i}", "label": "AB"[i % 2], "votes_total": 1, "vote_share": 1.0} for i in range(6)]
    pq.write_table(pa.Table.from_pylist(pairs[:4]), tmp_path / "a.parquet")
    pq.write_table(pa.Table.from_pylist([{**p, "prompt": 7} for p in pairs[4:]]), tmp_path / "b.parquet")
    summary = denoise(tmp_path, tmp_path / "out", FilterConfig(support_check="none"))

    assert summary.complete and summary.outputs == {"kept": 4, "rejects": 2} and summary.rejected == {"malformed": 2}
    kept = pq.read_table(tmp_path / "out" / "kept").column("id").to_pylist()
    assert kept == sorted(kept, key=lambda i: (int.from_bytes(hashlib.sha256(i.encode()).digest()[:2], "big"), i))


def test_a_reject_with_values_of_the_wrong_type_still_fits_its_file():
    import pyarrow as pa

    from gram_ray.stages.outputs import fit_reject
    from gram_ray.stages.schemas import reject_schema

    schema = reject_schema(LABELLED_SCHEMA)
    record = {**PAIR, "prompt": {"nested": [1]}, "votes": "three", "confidence": 0.5, "reason": "malformed: x",
              "stage": "denoise"}
    fitted = fit_reject(record, schema)
    assert fitted["prompt"] == '{"nested": [1]}' and fitted["votes"] is None and fitted["confidence"] == 0.5
    assert fitted["reason"] == "malformed: x (values of the wrong type left out: votes)"
    assert pa.Table.from_pylist([fitted], schema=schema).num_rows == 1
    assert fit_reject({**PAIR, "reason": "r", "stage": "s"}, schema) == {**PAIR, "reason": "r", "stage": "s"}
