import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gram_ray.run.manifest import ConfigChangedError, RunDir


def _writer(run: RunDir, calls: list, rows: int = 3):
    def fn():
        calls.append(1)
        out = run.path("stage", "out.parquet")
        out.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"id": [str(i) for i in range(rows)]}), out)
        return {"pairs": str(out)}, {"kept": rows}

    return fn


def test_finished_stage_is_skipped_with_its_recorded_result(tmp_path):
    run, calls = RunDir(tmp_path), []
    first = run.run_stage("s", "h1", _writer(run, calls))
    second = RunDir(tmp_path).run_stage("s", "h1", _writer(run, calls))
    assert calls == [1]
    assert not first.skipped and second.skipped
    assert second.rows == {"pairs": 3} and second.info == {"kept": 3}


def test_changed_config_is_refused_unless_redo(tmp_path):
    run, calls = RunDir(tmp_path), []
    run.run_stage("s", "h1", _writer(run, calls))
    with pytest.raises(ConfigChangedError, match="--redo s"):
        run.run_stage("s", "h2", _writer(run, calls))
    run.run_stage("s", "h2", _writer(run, calls, rows=5), redo=True)
    assert len(calls) == 2
    assert run.finished("s")["config_hash"] == "h2"


def test_corrupted_output_runs_the_stage_again(tmp_path):
    run, calls = RunDir(tmp_path), []
    result = run.run_stage("s", "h1", _writer(run, calls))
    path = result.outputs["pairs"]
    with open(path, "r+b") as fh:  # truncate the file: a half-written Parquet
        fh.truncate(10)
    again = run.run_stage("s", "h1", _writer(run, calls))
    assert len(calls) == 2 and not again.skipped
    assert pq.read_table(path).num_rows == 3


def test_unfinished_stage_leaves_no_manifest_entry(tmp_path):
    run = RunDir(tmp_path)

    def crash():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run.run_stage("s", "h1", crash)
    assert run.finished("s") is None
