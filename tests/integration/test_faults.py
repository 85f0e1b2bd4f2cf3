"""Faults around a finished or running stage, on real Ray Data and Parquet, through the run folder's manifest.

The stage is denoise (no engine, so the tests stay fast); the write path and the manifest are the same
for every inference stage. A damaged output is found by its SHA-256 and redone to the same rows; a write
that fails half-way (disk full, permission refused) leaves no output folder and no manifest entry, and
the re-run gives the outputs of an uninterrupted run. Root ignores ``chmod`` here, so the failure is
injected at the Parquet writer, as the OS would raise it (a refused write takes the same path).

The last test SIGKILLs a vLLM engine actor in the middle of a label stage: Ray Data restarts the actor and
retries its batches, and the stage writes exactly the rows of an uninterrupted run.
"""

from __future__ import annotations

import errno
import os
import signal
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gram_ray.config import EngineConfig, FilterConfig, JudgeConfig
from gram_ray.run.driver import Driver
from gram_ray.run.manifest import RunDir, StageResult
from gram_ray.stages import denoise, label_pairs
from gram_ray.stages.schemas import LABELLED_SCHEMA

pytestmark = pytest.mark.integration

ROWS = 60
FILTERS = FilterConfig(min_vote_share=0.6)
ENGINE_UP_S = 2.0


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> Path:
    """Judged pairs, a third of them with too small a vote share."""
    records = [{"id": f"pair-{i:03d}", "prompt": f"What is {i}+1?", "response_a": str(i + 1), "response_b": str(i),
             "label": "AB"[i % 2], "source": "faults", "meta": "{}", "votes": 2 + i % 3, "votes_total": 4,
             "vote_share": (2 + i % 3) / 4, "confidence": 0.9, "consistent": None, "input_label": None,
             "judge": "test"} for i in range(ROWS)]
    path = tmp_path_factory.mktemp("faults") / "labelled.parquet"
    pq.write_table(pa.Table.from_pylist(records, schema=LABELLED_SCHEMA), path)
    return path


def run_denoise(root: Path, src: Path) -> StageResult:
    """One pipeline run with a single stage, as a fresh driver process would do it."""
    d = Driver(cfg=None, run=RunDir(root), redo=set())
    return d.infer("denoise", {"filters": FILTERS}, [], lambda: denoise(src, d.run.path("denoise"), FILTERS))


def rows(result: StageResult) -> dict[str, list[dict]]:
    return {name: pq.read_table(path).to_pylist() for name, path in result.outputs.items()}


@pytest.fixture(scope="module")
def finished(ray_local, labelled, tmp_path_factory) -> tuple[Path, dict[str, list[dict]]]:
    """A run folder whose stage finished uninterrupted, and that run's output rows."""
    root = tmp_path_factory.mktemp("finished")
    result = run_denoise(root, labelled)
    expected = rows(result)
    assert len(expected["kept"]) + len(expected["rejects"]) == ROWS and expected["rejects"]
    return root, expected


def test_a_damaged_output_file_is_found_and_the_stage_redone(labelled, finished):
    root, expected = finished
    part = root / "denoise" / "kept" / "part-00000.parquet"
    blob = bytearray(part.read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # one flipped byte, same size: only the checksum can tell
    part.write_bytes(bytes(blob))

    again = run_denoise(root, labelled)
    assert not again.skipped and rows(again) == expected
    RunDir(root).verify("denoise")  # the manifest matches the new files: the next run skips the stage


def test_a_write_failing_midway_leaves_nothing_taken_as_complete(labelled, finished, tmp_path, monkeypatch):
    real_write, parts = pq.write_table, []

    def write_then_fail(table, where, *args, **kwargs):
        if Path(where).name.startswith("part-"):
            parts.append(where)
            if len(parts) > 1:  # the first output file is written, the next one finds the disk full
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(table, where, *args, **kwargs)

    monkeypatch.setattr(pq, "write_table", write_then_fail)
    with pytest.raises(OSError, match="No space left on device"):
        run_denoise(tmp_path, labelled)
    assert len(parts) == 2
    assert not (tmp_path / "denoise").exists()  # no half-written output under the real name
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".denoise")] == []  # nor a temporary one
    assert RunDir(tmp_path).finished("denoise") is None

    monkeypatch.undo()  # the disk has room again
    again = run_denoise(tmp_path, labelled)
    assert not again.skipped and rows(again) == finished[1]


def _map_workers(job_id: str) -> list[dict]:
    """Alive Ray Data map-worker actors of this job (in a label stage: the vLLM engine replicas)."""
    from ray._private.state import actors

    return [a for a in actors(actor_state_name="ALIVE").values()
            if "MapWorker" in a["ActorClassName"] and a["JobID"] == job_id and a["Pid"]]


def _kill_engine_actor_once(job_id: str, old: set[str], killed: list, stop: threading.Event) -> None:
    """SIGKILL the first new engine actor a moment after it is up."""
    while not stop.is_set():
        alive = [a for a in _map_workers(job_id) if a["ActorID"] not in old]
        if alive:
            time.sleep(ENGINE_UP_S)  # let it take its first batches
            os.kill(alive[0]["Pid"], signal.SIGKILL)
            killed.append(alive[0]["ActorID"])
            return
        time.sleep(0.2)


def test_killing_an_engine_actor_mid_stage_loses_and_duplicates_nothing(ray_local, tiny_kit, tmp_path):
    from ray._private.state import actors

    src = tiny_kit.unlabeled[0]
    pairs = pq.ParquetFile(src).metadata.num_rows
    engine = EngineConfig(model=str(tiny_kit.model_dir), max_model_len=256, batch_size=8, max_num_seqs=16)
    judge = JudgeConfig(template="compact", votes=2, temperature=1.0, max_tokens=24, swap_pass=True)
    reference = label_pairs(src, tmp_path / "reference", engine, judge)

    killed: list[str] = []
    stop = threading.Event()
    job_id = ray_local.get_runtime_context().get_job_id()
    old = {a["ActorID"] for a in _map_workers(job_id)}
    killer = threading.Thread(target=_kill_engine_actor_once, args=(job_id, old, killed, stop), daemon=True)
    killer.start()
    try:
        summary = label_pairs(src, tmp_path / "killed", engine, judge)
    finally:
        stop.set()
        killer.join()
    assert killed, "no engine actor was seen alive"
    assert actors(actor_id=killed[0])["NumRestarts"] >= 1  # Ray restarted it and retried its batches

    assert summary.complete and reference.complete and summary.inputs == pairs
    for view in ("labelled", "judgements", "rejects"):
        got, want = (pq.read_table(tmp_path / run / view).to_pylist() for run in ("killed", "reference"))
        assert got == want, view  # same rows as the uninterrupted run: none lost, none duplicated
