"""Row-level resume of inference stages: settled engine rows kept in ``<out>.partial/`` as they stream, and
a re-run that sends the engine only what no earlier attempt settled, and discards rows written for other
settings or by another gram-ray version.

The first test drives the runner's engine pass with a checkpoint and a stand-in engine (a Ray Data map)
through a killed attempt, a truncated file, a chunk written twice and a leftover temp file; the second
resumes the real label
stage (Ray Data + vLLM on the tiny model) from part of an uninterrupted run's rows and checks that its
outputs are the same rows in the same order.
"""

from __future__ import annotations

import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gram_ray.config import EngineConfig, JudgeConfig
from gram_ray.stages import StageSummary, label_pairs, runner
from gram_ray.stages import resume as ckpt
from gram_ray.stages.rows import DatasetRows

pytestmark = pytest.mark.integration


def _requests(n: int) -> list[dict]:
    return [{"id": f"p{i // 2:03d}", "sub": f"s{i % 2}", "pair_json": "{}", "context_json": "{}",
             "tokenized_prompt": [i], "sampling_json": "{}"} for i in range(n)]


def _fake_engine(row: dict) -> dict:
    return {"id": row["id"], "sub": row["sub"], "pair_json": row["pair_json"], "context_json": row["context_json"],
            "result_json": json.dumps({"token": row["tokenized_prompt"][0]}), "error": "", "reject": ""}


def _keys(settled: DatasetRows) -> list[tuple[str, str]]:
    """The (id, sub) of every settled row an engine pass hands back."""
    return sorted((r["id"], r["sub"]) for r in settled.dataset.take_all())


def test_checkpoint_survives_a_kill_corrupt_and_duplicate_chunks(ray_local, tmp_path, monkeypatch):
    import ray.data

    source = tmp_path / "pairs.parquet"
    pq.write_table(pa.table({"id": ["x"]}), source)
    engine = EngineConfig(model="stand-in")
    requests = DatasetRows(ray.data.from_items(_requests(40), override_num_blocks=10))  # blocks of 4 rows
    monkeypatch.setattr(runner, "engine_pass", lambda pending, **_: pending.map(_fake_engine))
    monkeypatch.setattr(ckpt, "CHUNK_ROWS", 4)

    def settle(checkpoint: ckpt.Checkpoint) -> DatasetRows:
        return runner.generate(requests, engine, parse=lambda row, context: {}, checkpoint=checkpoint)

    # attempt 1 is killed while writing its third chunk
    writes = []

    def dying_write(table, path):
        writes.append(path)
        if len(writes) == 3:
            raise RuntimeError("killed")
        real_write(table, path)

    real_write = ckpt._write_table
    monkeypatch.setattr(ckpt, "_write_table", dying_write)
    first = ckpt.Checkpoint.open(tmp_path / "out", "test", source, engine, {"k": 1})
    with pytest.raises(RuntimeError, match="killed"):
        settle(first)
    monkeypatch.setattr(ckpt, "_write_table", real_write)
    folder = tmp_path / "out.partial" / "engine"
    assert sorted(p.name for p in folder.iterdir()) == ["a0001-00000.parquet", "a0001-00001.parquet"]

    # damage: chunk 1 truncated, chunk 0 copied as if written again later, a killed write's temp file
    data = (folder / "a0001-00001.parquet").read_bytes()
    (folder / "a0001-00001.parquet").write_bytes(data[: len(data) // 2])
    shutil.copy(folder / "a0001-00000.parquet", folder / "a0002-00099.parquet")
    (folder / ".a0001-00002.parquet.tmp").write_bytes(b"half")

    second = ckpt.Checkpoint.open(tmp_path / "out", "test", source, engine, {"k": 1})
    assert second.attempt == 2
    keys = _keys(settle(second))
    assert second.resumed == {"engine": 4} and second.sent == {"engine": 36}
    assert keys == sorted({(r["id"], r["sub"]) for r in _requests(40)}) and len(keys) == 40
    assert not (folder / "a0002-00099.parquet").exists() and not (folder / ".a0001-00002.parquet.tmp").exists()

    # a finished pass is not sent again; other settings discard the folder
    third = ckpt.Checkpoint.open(tmp_path / "out", "test", source, engine, {"k": 1})
    assert len(_keys(settle(third))) == 40
    assert third.resumed == {"engine": 40} and third.sent == {"engine": 0}
    victim = sorted(folder.glob("*.parquet"))[0]  # ... unless a file of it is damaged: its rows go again
    lost = pq.read_metadata(victim).num_rows
    victim.write_bytes(b"")
    fourth = ckpt.Checkpoint.open(tmp_path / "out", "test", source, engine, {"k": 1})
    assert len(_keys(settle(fourth))) == 40 and fourth.sent == {"engine": lost}
    other = ckpt.Checkpoint.open(tmp_path / "out", "test", source, engine, {"k": 2})
    assert other.attempt == 1 and not folder.exists()
    settle(other)
    monkeypatch.setattr(ckpt, "__version__", "another")  # so does another gram-ray version: its rows' layout
    upgraded = ckpt.Checkpoint.open(tmp_path / "out", "test", source, engine, {"k": 2})
    assert upgraded.attempt == 1 and not folder.exists()
    upgraded.clear()
    assert not (tmp_path / "out.partial").exists()


def _tables(folder) -> dict[str, pa.Table]:
    return {name: pq.read_table(folder / name) for name in ("labelled", "judgements", "rejects")}


def test_label_stage_resumes_from_part_of_its_rows(ray_local, tiny_kit, tmp_path, monkeypatch):
    pairs = pq.read_table(tiny_kit.unlabeled[0]).slice(0, 12)
    source = tmp_path / "pairs.parquet"
    pq.write_table(pairs, source)
    engine = EngineConfig(model=str(tiny_kit.model_dir), max_model_len=256, batch_size=8, max_num_seqs=16)
    judge = JudgeConfig(template="compact", votes=2, temperature=1.0, max_tokens=16, swap_pass=True)
    monkeypatch.setattr(ckpt, "CHUNK_ROWS", 8)
    monkeypatch.setattr(ckpt.Checkpoint, "clear", lambda self: None)  # keep the rows to look at them

    full = label_pairs(source, tmp_path / "full", engine, judge, round=1)
    chunks = sorted((tmp_path / "full.partial" / "engine").glob("a0001-*.parquet"))
    assert full.complete and full.resumed == 0 and chunks
    settled = pa.concat_tables(pq.read_table(c) for c in chunks)
    assert settled.num_rows == 12 * 2  # one request (n = 2 votes) per order and pair

    # the same stage into another folder, as if killed once 10 of its engine rows were written
    partial = tmp_path / "resumed.partial"
    (partial / "engine").mkdir(parents=True)
    shutil.copy(tmp_path / "full.partial" / "resume.json", partial)
    kept = 10
    pq.write_table(settled.slice(0, kept), partial / "engine" / "a0001-00000.parquet")
    resumed = label_pairs(source, tmp_path / "resumed", engine, judge, round=1)

    assert resumed.complete and resumed.resumed == kept
    sent = sum(pq.read_metadata(c).num_rows for c in (partial / "engine").glob("a0002-*.parquet"))
    assert sent == 24 - kept  # only the missing rows went to the engine
    ours, theirs = _tables(tmp_path / "resumed"), _tables(tmp_path / "full")
    for name in ours:
        assert ours[name].equals(theirs[name]), name
    assert ours["labelled"].num_rows == 12 and len(set(ours["labelled"].column("id").to_pylist())) == 12
    assert StageSummary(**json.loads((tmp_path / "resumed" / "summary.json").read_text())).resumed == kept
