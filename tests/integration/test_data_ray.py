"""Validation as a Ray Data stage gives the same verdicts as on one table, duplicates caught across blocks;
converted benchmark Parquet reads back through Ray Data in PAIR_SCHEMA."""

from __future__ import annotations

from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gram_ray.config import ValidationConfig
from gram_ray.data.convert import convert_file
from gram_ray.data.schemas import PAIR_SCHEMA
from gram_ray.data.validate import PairValidator, good_rows, reject_rows, validate_dataset

pytestmark = pytest.mark.integration


def _rows() -> list[dict]:
    rows = []
    for i in range(60):
        row = {"id": f"id{i % 50}", "prompt": f"p{i}", "response_a": "x", "response_b": f"y{i}", "label": "a",
               "source": "t", "meta": "{}"}  # ids 0-9 appear twice, in different blocks
        if i % 7 == 0:
            row["label"] = "A>B"
        if i % 11 == 0:
            row["response_b"] = " x"
        if i % 13 == 0:
            row["prompt"] = "p" * 80
        rows.append(row)
    return rows


def test_validate_dataset_matches_local_validation(ray_local, tmp_path):
    import ray.data

    table = pa.Table.from_pylist(_rows(), schema=PAIR_SCHEMA)
    for start in range(0, 60, 10):  # six files -> at least six blocks
        pq.write_table(table.slice(start, 10), tmp_path / f"part{start:02d}.parquet")
    cfg = ValidationConfig(max_tokens=10)

    annotated = validate_dataset(ray.data.read_parquet(str(tmp_path)), cfg).materialize()
    good = annotated.map_batches(good_rows, batch_format="pyarrow").take_all()
    rejects = annotated.map_batches(reject_rows, batch_format="pyarrow").take_all()

    local_good, local_rejects = PairValidator(cfg).split(table)
    assert sorted(r["id"] for r in good) == sorted(local_good["id"].to_pylist())
    assert {r["label"] for r in good} == {"A"}
    reasons = Counter(r["reason"] for r in rejects)
    assert reasons == Counter(local_rejects["reason"].to_pylist())
    assert reasons["duplicate_id"] > 0 and reasons["too_long"] > 0


def test_converted_benchmark_reads_back_through_ray(ray_local, benchmarks_dir, tmp_path):
    import ray.data

    out = tmp_path / "hh.parquet"
    summary = convert_file(benchmarks_dir / "hh-rlhf" / "harmless-base_test.jsonl.gz", out)
    ds = ray.data.read_parquet(str(out))
    assert ds.count() == summary.written == 2312 - summary.rejected
    assert ds.schema().names == PAIR_SCHEMA.names
