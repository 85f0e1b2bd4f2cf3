"""The main job end to end: submitted with `ray job submit` to a local head node, then killed (SIGKILL)
during a round's inference stage and during its training stage, and resumed to the same outputs and the
same report.

One reference run, submitted as a Ray job. Its outputs are copied aside, and the run folder is cut back,
in place, to before round 1 (so the re-runs are the same command, with the same paths and stage hashes,
on the same round-0 reward model); it is then run again, killed twice, and re-run until it finishes.
The first kill comes once the label stage has checkpointed some engine rows, so the re-run resumes it
at row level. The second comes once Ray Train has registered a checkpoint of round 1's training (listed
in its run snapshot, which is all a relaunch restores from; a checkpoint folder on disk is not enough, nor
a step in the log, which reaches the driver late), with that training made long enough to still be under
way. Every round-1 stage is a seeded or greedy function of its inputs, and training resumes exactly
(docs/resume.md), so every output, the retrained model's weights and report.json (less its wall times)
must equal the reference's.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow.dataset as ds
import pytest
import torch
from safetensors.torch import load_file

from gram_ray.train.export import read_manifest
from gram_ray.train.trainer import registered_checkpoint

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "tests" / "integration" / "configs" / "selftrain_tiny.yaml"
RAY = str(Path(sys.executable).with_name("ray"))
# a loopback-only test cluster: Ray's token authentication (on by default since 2.5x) is turned off for it
# and `python` in the job's entry point is this environment's, as in an activated virtualenv
ENV = {**os.environ, "RAY_ADDRESS": "", "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1",
       "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
ROUND1 = ["label_r01", "screen_r01", "prove_r01", "denoise_r01", "rm_r01", "eval_r01"]
# round-1 training long enough that a kill after its first registered checkpoint lands mid-run (the tiny
# config's 6 steps take about 1 s, less than Ray Train's 2 s between registrations); every run uses it
RM_STEPS, RM_CHECKPOINT_EVERY = 40, 5
ROUND1_TRAINING = [f"train.rm_round.max_steps={RM_STEPS}", f"train.rm_round.checkpoint_every={RM_CHECKPOINT_EVERY}"]

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def head_node(tmp_path_factory):
    """A local `ray start --head --block` cluster with the job server. It is stopped by ending its own process
    group, not `ray stop`, which would also stop every other Ray cluster on the machine.

    Every port is a free one: the session's other cluster (``ray_local``) already holds Ray's fixed
    defaults, such as the dashboard agent's 52365, which the job server needs to reach its agent."""
    temp = tmp_path_factory.mktemp("ray")
    port, dash, agent, client = _free_port(), _free_port(), _free_port(), _free_port()
    head = subprocess.Popen(
        [RAY, "start", "--head", "--block", f"--port={port}", "--num-cpus=2", "--include-dashboard=true",
         f"--dashboard-port={dash}", "--dashboard-host=127.0.0.1", f"--temp-dir={temp}",
         f"--dashboard-agent-listen-port={agent}", f"--ray-client-server-port={client}",
         "--object-store-memory=500000000", "--disable-usage-stats"],
        env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while subprocess.run([RAY, "job", "list", "--address", f"http://127.0.0.1:{dash}"], env=ENV,
                             capture_output=True, timeout=60).returncode != 0:
            assert head.poll() is None and time.monotonic() < deadline, "the head node did not come up"
            time.sleep(2)
        yield {"gcs": f"127.0.0.1:{port}", "dashboard": f"http://127.0.0.1:{dash}"}
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)


def _driver(runs: Path, gcs: str, log: Path) -> subprocess.Popen:
    sets = [f"run.runs_dir={runs}", f"run.ray_address={gcs}", *ROUND1_TRAINING]
    cmd = [sys.executable, "pipelines/selftrain.py", "--config", str(CONFIG), *(a for s in sets for a in ("--set", s))]
    return subprocess.Popen(cmd, cwd=REPO, stdout=log.open("a"), stderr=subprocess.STDOUT,
                            env=ENV, start_new_session=True)


def _kill_when(proc: subprocess.Popen, log: Path, ready: Callable[[str], bool], what: str,
               timeout: float = 600) -> None:
    """SIGKILL the driver once ``ready(log text)``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text()
        if ready(text):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
            return
        assert proc.poll() is None, f"driver ended before {what}:\n{text[-3000:]}"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail(f"{what} not seen in {timeout}s:\n{log.read_text()[-3000:]}")


def _in_order(*markers: str) -> Callable[[str], bool]:
    def ready(text: str) -> bool:
        at = text.find(markers[0])
        return at >= 0 and all(m in text[at:] for m in markers[1:])
    return ready


def _registered(storage: Path) -> str | None:
    """The latest checkpoint Ray Train has registered for the run in a training stage's storage folder."""
    return next((name for run in sorted(storage.glob("*")) if (name := registered_checkpoint(run))), None)


def _rows(path: str) -> list[dict]:
    rows = ds.dataset(path, format="parquet").to_table().to_pylist()
    return sorted(rows, key=lambda r: (r.get("id") or r.get("pair_id"), r.get("order") or ""))


def _stage_outputs(run: Path, stage: str, moved_to: Path | None = None) -> dict[str, str]:
    """A finished stage's output paths from ``run``'s manifest (``moved_to``: where that folder now is)."""
    entry = json.loads(((moved_to or run) / "manifest.json").read_text())["stages"][stage]
    paths = {name: rec["path"] for name, rec in entry["outputs"].items()}
    return {name: path.replace(str(run), str(moved_to)) if moved_to else path for name, path in paths.items()}


def test_job_submit_then_kill_and_resume_gives_the_same_outputs(head_node, tmp_path):
    # 1. the reference run, as users launch it on a cluster
    runs = tmp_path / "runs"
    submit = subprocess.run(
        [RAY, "job", "submit", "--address", head_node["dashboard"], "--working-dir", str(REPO), "--",
         "python", "pipelines/selftrain.py", "--config", str(CONFIG.relative_to(REPO)),
         *(a for s in [f"run.runs_dir={runs}", *ROUND1_TRAINING] for a in ("--set", s))],
        capture_output=True, text=True, timeout=1500, env=ENV)
    assert submit.returncode == 0, submit.stdout[-4000:] + submit.stderr[-2000:]
    assert "succeeded" in (submit.stdout + submit.stderr).lower()
    run = runs / "tiny"
    report = json.loads((run / "report.json").read_text())
    assert [r["round"] for r in report["rounds"]] == [0, 1]

    # 2. keep its outputs aside, then cut the run back to before round 1, in place: the re-runs are the
    # same command (same paths, so the same stage hashes) on the same round-0 models and data
    reference = tmp_path / "reference"
    shutil.copytree(run, reference)
    manifest = json.loads((run / "manifest.json").read_text())
    for stage in ROUND1:
        del manifest["stages"][stage]
    (run / "manifest.json").write_text(json.dumps(manifest))
    for gone in (run / "r01", run / "models" / "rm_r01", run / "models" / "rm_r01.ray_train",
                 run / "eval" / "eval_r01", run / "report.json"):
        shutil.rmtree(gone, ignore_errors=True) if gone.is_dir() else gone.unlink(missing_ok=True)

    log = tmp_path / "driver.log"
    # 3. killed during round 1's label stage (an inference stage), once it has checkpointed engine rows
    _kill_when(_driver(runs, head_node["gcs"], log), log,
               _in_order("stage label_r01: running", "rows settled and checkpointed"), "label rows checkpointed")
    assert "label_r01" not in json.loads((run / "manifest.json").read_text())["stages"]
    assert list((run / "r01" / "label.partial" / "engine").glob("a0001-*.parquet"))
    # 4. killed during round 1's training, once Ray Train has registered a checkpoint of it
    storage = run / "models" / "rm_r01.ray_train"
    _kill_when(_driver(runs, head_node["gcs"], log), log,
               lambda _: (_registered(storage) or "").startswith("step_"), "a registered rm_r01 checkpoint")
    killed_at = int(_registered(storage).removeprefix("step_"))
    finished = json.loads((run / "manifest.json").read_text())["stages"]
    assert {"label_r01", "screen_r01", "prove_r01", "denoise_r01"} <= set(finished) and "rm_r01" not in finished
    assert not (run / "models" / "rm_r01").exists(), "the kill landed after round 1's training had finished"
    # 5. run to the end
    final = _driver(runs, head_node["gcs"], log)
    assert final.wait(timeout=1200) == 0, log.read_text()[-4000:]
    text = log.read_text()
    assert "stage eval_r00: already finished, skipped" in text
    label_resumed = json.loads((run / "r01" / "label" / "summary.json").read_text())["resumed"]
    assert label_resumed > 0, "the label stage did not resume at row level"
    assert not list(run.rglob("*.partial")), "partial rows left behind after the stages finished"
    assert "resumed from step" in text.split("stage rm_r01: running")[-1]
    # the relaunch resumed from the checkpoint registered by the kill, or one the dying run registered after
    resumed = read_manifest(Path(_stage_outputs(run, "rm_r01")["model"]))["resumed_from_step"]
    assert resumed is not None and killed_at <= resumed < RM_STEPS and resumed % RM_CHECKPOINT_EVERY == 0

    for stage in ("label_r01", "screen_r01", "prove_r01", "denoise_r01", "eval_r01"):
        ours, theirs = _stage_outputs(run, stage), _stage_outputs(run, stage, moved_to=reference)
        assert ours.keys() == theirs.keys()
        for name in ours:
            assert _rows(ours[name]) == _rows(theirs[name]), (stage, name)
    ours, theirs = _weights(run / "models" / "rm_r01"), _weights(reference / "models" / "rm_r01")
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert _timeless(run / "report.json") == _timeless(reference / "report.json")


def _weights(model: Path) -> dict:
    return {k: v for f in sorted(model.glob("*.safetensors")) for k, v in load_file(f).items()}


def _timeless(report: Path) -> dict:
    """report.json less its wall times, the one part a resumed run cannot share."""
    return {k: v for k, v in json.loads(report.read_text()).items() if k not in ("stage_seconds", "total_seconds")}
