from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gram_ray.run.driver import Driver, ModelPath, StageRef, round_stage, round_tag, second_arm
from gram_ray.run.manifest import ConfigChangedError, CorruptOutputError, RunDir


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


def test_a_damaged_manifest_stops_the_run_with_a_clear_error(tmp_path):
    run = RunDir(tmp_path)
    run.run_stage("s", "h1", _writer(run, []))
    text = run.manifest_path.read_text()
    run.manifest_path.write_text(text[: len(text) // 2])
    with pytest.raises(CorruptOutputError, match=r"manifest\.json is unreadable"):
        run.run_stage("s", "h1", _writer(run, []))


def _stage_writing(run: RunDir, name: str, values, calls: list):
    """A stage that writes the next of ``values`` each time it runs (a deterministic stage repeats one)."""

    def fn():
        calls.append(name)
        out = run.path(name, "out.parquet")
        out.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"v": [next(values)]}), out)
        return {"out": str(out)}, {}

    return fn


@pytest.mark.parametrize(("values", "later_redone"), [([1, 1], False), ([1, 2], True)])
def test_a_damaged_stage_redoes_later_stages_only_if_its_new_outputs_differ(tmp_path, values, later_redone):
    first_values, second_values = iter(values), iter([7, 7])

    def run_pipeline(calls: list) -> None:
        d = Driver(cfg=None, run=RunDir(tmp_path), redo=set())
        d.stage("first", {"x": 1}, [], _stage_writing(d.run, "first", first_values, calls))
        d.stage("second", {"y": 1}, ["first"], _stage_writing(d.run, "second", second_values, calls))

    run_pipeline([])
    (tmp_path / "first" / "out.parquet").write_bytes(b"PAR1 damaged")
    calls: list = []
    run_pipeline(calls)
    assert calls == (["first", "second"] if later_redone else ["first"])
    RunDir(tmp_path).verify("first")
    RunDir(tmp_path).verify("second")


def test_stages_finishing_at_once_in_threads_are_all_recorded(tmp_path):
    """Pipelines run independent branches in threads: no stage may overwrite another's manifest entry."""
    from concurrent.futures import ThreadPoolExecutor

    run = RunDir(tmp_path)

    def stage(i: int) -> None:
        out = run.path(f"s{i}.parquet")
        pq.write_table(pa.table({"id": [str(i)]}), out)
        for _ in range(5):  # widen the read-modify-write window
            run.record(f"s{i}", "h", {"pairs": str(out)}, {}, 0.0)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(stage, range(16)))
    assert sorted(run.manifest()["stages"]) == sorted(f"s{i}" for i in range(16))


def test_redoing_a_leaf_stage_redoes_no_later_stage(tmp_path):
    """An evaluation (a leaf: nothing reads its outputs) may run in another thread, so redoing it must not
    make whatever the main thread runs next redo too; it is still redone with a stage before it."""
    values = iter(range(100))

    def run_pipeline(redo: set, calls: list) -> None:
        d = Driver(cfg=None, run=RunDir(tmp_path), redo=redo)
        d.stage("model", {"x": 1}, [], _stage_writing(d.run, "model", values, calls))
        d.stage("eval", {"e": 1}, ["model"], _stage_writing(d.run, "eval", values, calls), leaf=True)
        d.stage("next", {"y": 1}, ["model"], _stage_writing(d.run, "next", values, calls))

    run_pipeline(set(), [])
    calls: list = []
    run_pipeline({"eval"}, calls)
    assert calls == ["eval"]
    calls = []
    run_pipeline({"model"}, calls)
    assert calls == ["model", "eval", "next"]


class _Run:
    """The part of a pipeline config ``open_run`` reads."""

    def __init__(self, runs: Path, name: str) -> None:
        from gram_ray.config import RunSection

        self.run = RunSection(name=name, runs_dir=str(runs))

    def model_dump(self, mode: str = "python") -> dict:
        return {"run": self.run.model_dump(mode=mode)}


def test_a_second_arm_takes_over_the_stages_the_first_finished_with_the_same_settings(tmp_path):
    """The verifier arm's run: stages whose hash (settings and upstream) equals the first run's are recorded
    with the first run's outputs, not run again; the first that differs, and all after it, run."""
    values = iter(range(100))

    def run_pipeline(d: Driver, verifier: str | None, calls: list) -> None:
        d.stage("data", {"seed": 0}, [], _stage_writing(d.run, "data", values, calls))
        d.stage("prover", {"steps": 3}, ["data"], _stage_writing(d.run, "prover", values, calls))
        d.stage("denoise", {"verifier": verifier}, ["prover"], _stage_writing(d.run, "denoise", values, calls))
        d.stage("rm", {"steps": 3}, ["denoise"], _stage_writing(d.run, "rm", values, calls))

    headline = Driver(cfg=_Run(tmp_path, "demo"), run=RunDir(tmp_path / "demo"), redo=set())
    run_pipeline(headline, None, [])
    calls: list = []
    arm = second_arm(headline, _Run(tmp_path, "demo-verifier"))
    run_pipeline(arm, "pkg.mod:check", calls)
    assert calls == ["denoise", "rm"]
    assert arm.run.root == tmp_path / "demo-verifier" and (arm.run.root / "config.yaml").exists()
    assert arm.path("prover", "out") == headline.path("prover", "out")
    assert arm.path("prover", "out") == str(tmp_path / "demo" / "prover" / "out.parquet")
    assert arm.path("rm", "out") == str(tmp_path / "demo-verifier" / "rm" / "out.parquet")
    assert arm.run.finished("prover") == {**headline.run.finished("prover"), "taken_from": "demo"}

    # run again: nothing reruns; once the first run's prover is redone, the arm takes the new one and its
    # later stages redo (their hashes are unchanged, their inputs are not)
    calls = []
    run_pipeline(second_arm(headline, _Run(tmp_path, "demo-verifier")), "pkg.mod:check", calls)
    assert calls == []
    redone = Driver(cfg=_Run(tmp_path, "demo"), run=RunDir(tmp_path / "demo"), redo={"prover"})
    run_pipeline(redone, None, [])
    calls = []
    run_pipeline(second_arm(redone, _Run(tmp_path, "demo-verifier")), "pkg.mod:check", calls)
    assert calls == ["denoise", "rm"]
    redone_prover = {**RunDir(tmp_path / "demo").finished("prover"), "taken_from": "demo"}
    assert RunDir(tmp_path / "demo-verifier").finished("prover") == redone_prover


def test_a_second_arm_runs_a_stage_itself_when_the_first_runs_files_are_damaged(tmp_path):
    values = iter(range(100))

    def run_pipeline(d: Driver, calls: list) -> None:
        d.stage("data", {"seed": 0}, [], _stage_writing(d.run, "data", values, calls))
        d.stage("prover", {"steps": 3}, ["data"], _stage_writing(d.run, "prover", values, calls))

    headline = Driver(cfg=_Run(tmp_path, "demo"), run=RunDir(tmp_path / "demo"), redo=set())
    run_pipeline(headline, [])
    (tmp_path / "demo" / "data" / "out.parquet").write_bytes(b"PAR1 damaged")
    calls: list = []
    arm = second_arm(headline, _Run(tmp_path, "demo-verifier"))
    run_pipeline(arm, calls)
    assert calls == ["data", "prover"]
    assert arm.path("data", "out") == str(tmp_path / "demo-verifier" / "data" / "out.parquet")
    # the first run repairs its stage (new outputs, so its later stages redo): the arm takes both over again
    run_pipeline(Driver(cfg=_Run(tmp_path, "demo"), run=RunDir(tmp_path / "demo"), redo=set()), [])
    calls = []
    arm = second_arm(headline, _Run(tmp_path, "demo-verifier"))
    run_pipeline(arm, calls)
    assert calls == [] and arm.path("prover", "out") == str(tmp_path / "demo" / "prover" / "out.parquet")


class _TrainPhases:
    """The part of a pipeline config ``Driver.train`` reads."""

    def __init__(self) -> None:
        from gram_ray.config import TrainSettings

        self.train = {"rm": TrainSettings()}

    def train_config(self, phase: str, model: str, data: list[str], output_dir: str):
        from gram_ray.config import TrainConfig

        return TrainConfig(model=model, data=data, output_dir=output_dir)


@pytest.mark.parametrize(("redo", "from_scratch"), [(set(), False), ({"rm"}, True), ({"all"}, True)])
def test_a_redone_training_stage_starts_from_scratch_a_resumed_one_does_not(tmp_path, monkeypatch, redo,
                                                                          from_scratch):
    """A redo must not resume the earlier attempt's Ray Train run or return its export (both keyed by a
    config that names the start model by path); a re-run after a crash must resume them."""
    import gram_ray.train.trainer as trainer

    seen: list[tuple[bool, bool]] = []

    def fake_train(cfg):
        out = Path(cfg.output_dir)
        storage, name = trainer.run_location(cfg)
        seen.append((out.exists(), (Path(storage) / name).exists()))
        (Path(storage) / name).mkdir(parents=True, exist_ok=True)
        out.mkdir(parents=True, exist_ok=True)
        (out / "weights").write_text(str(len(seen)))
        return out

    monkeypatch.setattr(trainer, "train", fake_train)

    def run_pipeline(redo: set) -> None:
        driver = Driver(cfg=_TrainPhases(), run=RunDir(tmp_path / "runs"), redo=redo)
        driver.train("rm", "rm", ModelPath("base"), ["d"], [])

    run_pipeline(set())
    if not redo:  # a crash after training, before the manifest recorded it
        RunDir(tmp_path / "runs").forget("rm")
    run_pipeline(redo)
    assert seen == [(False, False), (not from_scratch, not from_scratch)]


def test_a_training_stage_starts_from_a_stage_model_or_a_path_said_which(tmp_path, monkeypatch):
    """``StageRef`` starts from the model a finished stage exported, ``ModelPath`` from the path as given,
    even one that reads like a stage's name."""
    import gram_ray.train.trainer as trainer

    started: list[str] = []

    def fake_train(cfg):
        started.append(cfg.model)
        out = Path(cfg.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "weights").write_text(cfg.model)
        return out

    monkeypatch.setattr(trainer, "train", fake_train)
    d = Driver(cfg=_TrainPhases(), run=RunDir(tmp_path / "runs"), redo=set())
    first = d.train("rm", "rm", ModelPath("base-model"), ["d"], [])
    second = d.train("rm_again", "rm", StageRef("rm"), ["d"], ["rm"])
    third = d.train("rm_path", "rm", ModelPath("rm"), ["d"], [])  # a path that happens to share a stage's name
    assert started == ["base-model", first, "rm"] and second != first and third != second


def test_round_stage_names():
    assert round_tag(0) == "r00" and round_tag(12) == "r12"
    assert round_stage("label", 1) == "label_r01" and round_stage("rm", 0) == "rm_r00"
