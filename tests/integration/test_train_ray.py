"""Training on real Ray Train + DeepSpeed (2 CPU workers, gloo), one objective after another, each
starting from the previous run's export (so the later two are also adaptations of a trained model):

1. GRAM stage 1 (ZeRO-3) on the kit's pairs, both orders;
2. reasoning-RM SFT (ZeRO-2) on digit-verify rationales, decision tokens weighted, some truncated;
3. GRAM stage 2 (ZeRO-2), launched with `gram-ray train` in a separate driver that is killed after its
   first checkpoint, then relaunched here with the same config: it must resume, not start over;
4. GRAM stage 2 from the kit's model, killed in the second epoch once a checkpoint is registered and
   resumed, twice: the driver killed and relaunched (parts kept in memory), and one Ray Train worker process
   SIGKILLed, the worker group restarted by Ray Train (parts streamed). Each must export the very weights an
   uninterrupted run of the same settings exports, bit for bit.

Each run must lower its loss; the ZeRO-3 and ZeRO-2 exports must load in vLLM and generate. Stage 2
(two launches: killed, resumed) is marked slow. Its labels are all "A" (the correct sum is put on side
A): a tiny label-only judge cannot learn the task in a dozen steps (nor in thousands), but it can learn the
label prior, which is enough to see the loss fall; that the loss reads the right logits of every sample
is the unit tests' job.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer

from gram_ray.config import TrainConfig, dump_config, load_config
from gram_ray.data.schemas import PAIR_SCHEMA, RATIONALE_SCHEMA
from gram_ray.prompts import judge_prompt, proof_to_target
from gram_ray.tinykit import digit_verify
from gram_ray.train.batching import micro_batches_per_epoch
from gram_ray.train.export import read_manifest
from gram_ray.train.trainer import RAY_TRAIN_SNAPSHOT, registered_checkpoint, run_location

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "pipelines" / "configs"
TWO_WORKERS = {"num_workers": 2, "cpus_per_worker": 1, "warmup_ratio": 0.0, "log_every": 1}
# 56 pairs on 2 workers at micro-batch 2: 14 steps an epoch. A kill once step 15 is registered lands in the
# second epoch (the resume must find epoch 1's order, not epoch 0's), with checkpoints left to come after it.
MID_EPOCH = {"max_steps": 40, "checkpoint_every": 5}
KILL_AFTER_STEP = 15


def _losses(out: Path) -> list[float]:
    return [m["loss"] for m in read_manifest(out)["history"]]


def _assert_loss_fell(out: Path, margin: float) -> None:
    """The loss of the first step (before any update) against the mean of the last two."""
    losses = _losses(out)
    assert sum(losses[-2:]) / 2 < losses[0] - margin, losses


def _rationale_row(row: dict) -> dict:
    meta = json.loads(row["meta"])
    rationale = digit_verify(meta["a"], meta["b"], row["response_a"], row["response_b"])
    return {**row, "rationale": rationale, "target": proof_to_target(rationale, row["label"]),
            "producer": "test", "round": 0, "score": None}


@pytest.fixture(scope="module")
def pairs(tiny_kit) -> list[dict]:
    return pq.read_table(tiny_kit.labeled).to_pylist() + pq.read_table(tiny_kit.heldout).to_pylist()


@pytest.fixture(scope="module")
def stage1(ray_local, tiny_kit, tmp_path_factory) -> tuple[Path, TrainConfig]:
    out = tmp_path_factory.mktemp("stage1") / "model"
    cfg = load_config(CONFIGS / "train" / "tiny_gram_stage1.yaml", TrainConfig, {
        **TWO_WORKERS, "model": str(tiny_kit.model_dir), "output_dir": str(out), "zero_stage": 3,
        "data": [str(p) for p in tiny_kit.unlabeled] + [str(tiny_kit.labeled)],  # 80 pairs -> 160 examples
        "micro_batch_size": 8, "max_steps": 10,
    })
    from gram_ray.train import train

    assert train(cfg) == out
    return out, cfg


@pytest.fixture(scope="module")
def judge(stage1, pairs, tmp_path_factory) -> tuple[Path, TrainConfig]:
    root = tmp_path_factory.mktemp("judge")
    rows = [_rationale_row(row) for row in pairs]
    pq.write_table(pa.Table.from_pylist(rows, schema=RATIONALE_SCHEMA), root / "rationales.parquet")
    cfg = load_config(CONFIGS / "train" / "tiny_rm.yaml", TrainConfig, {
        **TWO_WORKERS, "model": str(stage1[0]), "data": [str(root / "rationales.parquet")],
        "output_dir": str(root / "model"), "zero_stage": 2, "micro_batch_size": 4, "max_steps": 7,
        "max_length": 91,  # the kit's judge examples are 90 or 92 tokens long (92: a carry step)
    })
    from gram_ray.train import train

    train(cfg)
    return root / "model", cfg


def _stage2_config(root: Path, judge_model: Path, pairs: list[dict], **settings) -> TrainConfig:
    """GRAM stage 2 on the kit's pairs, every label turned to "A", plus 3 unlabeled rows it must reject."""
    rows = []
    for row in pairs:
        a, b = (row["response_a"], row["response_b"]) if row["label"] == "A" else (row["response_b"], row["response_a"])
        rows.append({**row, "response_a": a, "response_b": b, "label": "A"})
    unlabeled = [{**rows[0], "id": f"unlabeled-{i}", "label": None} for i in range(3)]
    pq.write_table(pa.Table.from_pylist(rows + unlabeled, schema=PAIR_SCHEMA), root / "pairs.parquet")
    return load_config(CONFIGS / "train" / "tiny_gram_stage2.yaml", TrainConfig, {
        **TWO_WORKERS, "model": str(judge_model), "data": [str(root / "pairs.parquet")],
        "output_dir": str(root / "model"), "zero_stage": 2, "micro_batch_size": 2, "learning_rate": 2e-3,
        **settings,
    })


def _snapshot(cfg: TrainConfig) -> Path:
    storage, name = run_location(cfg)
    return Path(storage) / name / RAY_TRAIN_SNAPSHOT


def _registered_step(run_folder: Path) -> int:
    """The step of the latest checkpoint Ray Train registered for the run (0 when none is)."""
    name = registered_checkpoint(run_folder)
    return int(name.rsplit("_", 1)[1]) if name else 0


def _kill_driver_then_relaunch(cfg: TrainConfig, root: Path, ray_local, after_step: int) -> Path:
    """Launch `gram-ray train` in its own driver, SIGKILL it once Ray Train has registered a checkpoint of
    a step past ``after_step``, relaunch the same config here; the export."""
    config_path = root / "train.yaml"
    dump_config(cfg, config_path)
    run_folder = _snapshot(cfg).parent
    log = root / "killed_driver.log"
    env = {**os.environ, "RAY_ADDRESS": ray_local.get_runtime_context().gcs_address, "PYTHONUNBUFFERED": "1"}
    driver = subprocess.Popen([sys.executable, "-m", "gram_ray.cli", "train", "--config", str(config_path)],
                              cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while _registered_step(run_folder) <= after_step:
            assert driver.poll() is None, f"driver ended before a checkpoint:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no checkpoint in time:\n{log.read_text()[-3000:]}"
            time.sleep(0.2)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    assert not cfg_output(cfg).exists(), "the killed run must not have finished"
    deadline = time.monotonic() + 120  # the dead driver's workers give their CPUs back
    while ray_local.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    from gram_ray.train import train

    assert train(cfg) == cfg_output(cfg)
    return cfg_output(cfg)


@pytest.fixture(scope="module")
def stage2(judge, pairs, ray_local, tmp_path_factory) -> tuple[Path, TrainConfig, Path]:
    """Launched by `gram-ray train` in its own driver, killed (SIGKILL) once a checkpoint is registered,
    relaunched here with the same config."""
    root = tmp_path_factory.mktemp("stage2")
    cfg = _stage2_config(root, judge[0], pairs, max_steps=12, checkpoint_every=3)
    return _kill_driver_then_relaunch(cfg, root, ray_local, after_step=0), cfg, root


def cfg_output(cfg: TrainConfig) -> Path:
    return Path(cfg.output_dir)


def _kill_a_worker_once_checkpointed(snapshot: Path, job_id: str, after_step: int, killed: list,
                                     stop: threading.Event) -> None:
    """SIGKILL one Ray Train worker process of this job as soon as Ray Train has registered a checkpoint of
    a step past ``after_step``; an error here goes into ``killed`` too, so that the test reports it rather
    than a missing kill."""
    from ray._private.state import actors

    try:
        while not stop.is_set():
            if _registered_step(snapshot.parent) > after_step:
                workers = [a for a in actors(actor_state_name="ALIVE").values()
                           if a["ActorClassName"] == "RayTrainWorker" and a["JobID"] == job_id and a["Pid"]]
                if workers:
                    os.kill(workers[-1]["Pid"], signal.SIGKILL)
                    killed.append(workers[-1]["Pid"])
                    return
            time.sleep(0.1)
    except Exception as error:  # handed to the test
        killed.append(error)


def _uninterrupted(root: Path, model: Path, pairs: list[dict], **settings) -> Path:
    from gram_ray.train import train

    return train(_stage2_config(root, model, pairs, **settings))


@pytest.fixture(scope="module")
def stage2_driver_killed(tiny_kit, pairs, ray_local, tmp_path_factory) -> tuple[Path, Path, TrainConfig]:
    """(resumed export, uninterrupted export, config): stage 2 from the kit's model, parts kept in memory,
    the driver killed in the second epoch and relaunched; and the same settings uninterrupted."""
    root = tmp_path_factory.mktemp("stage2_driver_killed")
    cfg = _stage2_config(root, tiny_kit.model_dir, pairs, **MID_EPOCH)
    resumed = _kill_driver_then_relaunch(cfg, root, ray_local, after_step=KILL_AFTER_STEP)
    return resumed, _uninterrupted(tmp_path_factory.mktemp("stage2_whole"), tiny_kit.model_dir, pairs,
                                   **MID_EPOCH), cfg


@pytest.fixture(scope="module")
def stage2_worker_killed(tiny_kit, pairs, ray_local, tmp_path_factory) -> tuple[Path, Path, TrainConfig, list]:
    """(resumed export, uninterrupted export, config, killed pids): stage 2 from the kit's model, tokenized
    and sorted by Ray Data tasks, parts streamed every epoch, trained in this process with ``max_failures`` 1
    while a thread kills one of its two workers in the second epoch; and the same settings uninterrupted."""
    root = tmp_path_factory.mktemp("stage2_worker_killed")
    streamed = {**MID_EPOCH, "cache_shard_rows": 0, "local_prepare_rows": 0}
    cfg = _stage2_config(root, tiny_kit.model_dir, pairs, **streamed, max_failures=1)
    killed: list[int] = []
    stop = threading.Event()
    job_id = ray_local.get_runtime_context().get_job_id()
    killer = threading.Thread(target=_kill_a_worker_once_checkpointed,
                              args=(_snapshot(cfg), job_id, KILL_AFTER_STEP, killed, stop), daemon=True)
    killer.start()
    from gram_ray.train import train

    try:
        out = train(cfg)
    finally:
        stop.set()
        killer.join()
    whole = _uninterrupted(tmp_path_factory.mktemp("stage2_streamed_whole"), tiny_kit.model_dir, pairs, **streamed)
    return out, whole, cfg, killed


def _assert_resumed_mid_second_epoch(out: Path, cfg: TrainConfig) -> None:
    manifest = read_manifest(out)
    resumed = manifest["resumed_from_step"]
    per_worker = manifest["examples"] // cfg.num_workers
    steps_per_epoch = micro_batches_per_epoch(per_worker, cfg.micro_batch_size) // cfg.grad_accum
    assert steps_per_epoch == 14 and resumed is not None and resumed % cfg.checkpoint_every == 0, resumed
    assert steps_per_epoch < resumed < cfg.max_steps and resumed % steps_per_epoch != 0, resumed  # mid epoch 1+
    history = manifest["history"]
    assert [m["step"] for m in history] == list(range(1, cfg.max_steps + 1))  # no step repeated or lost
    assert [m["epoch"] for m in history] == [(s - 1) // steps_per_epoch for s in range(1, cfg.max_steps + 1)]
    assert manifest["rejected"] == 3


def _assert_same_model(resumed: Path, whole: Path) -> None:
    """Bit for bit: every tensor of the export, and every step's loss."""
    mine, theirs = load_file(resumed / "model.safetensors"), load_file(whole / "model.safetensors")
    assert sorted(mine) == sorted(theirs)
    assert [name for name in mine if not torch.equal(mine[name], theirs[name])] == []
    assert _losses(resumed) == _losses(whole)


def test_stage1_zero3_lowers_the_pair_lm_loss(stage1):
    out, _ = stage1
    manifest = read_manifest(out)
    assert (manifest["objective"], manifest["zero_stage"], manifest["num_workers"]) == ("gram_stage1", 3, 2)
    assert manifest["examples"] == 160 and manifest["steps"] == 10
    _assert_loss_fell(out, margin=0.5)


def test_judge_sft_zero2_adapts_the_trained_model_and_counts_truncation(judge, pairs):
    out, cfg = judge
    manifest = read_manifest(out)
    assert manifest["base_model"] == cfg.model and manifest["zero_stage"] == 2
    _assert_loss_fell(out, margin=0.2)
    tok = AutoTokenizer.from_pretrained(cfg.model)  # count, independently, examples over max_length
    too_long = 0
    for row in map(_rationale_row, pairs):
        prompt = judge_prompt("compact", row["prompt"], row["response_a"], row["response_b"])
        chat = [{"role": "user", "content": prompt}, {"role": "assistant", "content": row["target"]}]
        too_long += len(tok.apply_chat_template(chat, tokenize=True, return_dict=False)) > cfg.max_length
    assert 0 < manifest["truncated"] == too_long < len(pairs)


@pytest.mark.slow
def test_stage2_killed_after_a_checkpoint_resumes_from_it(stage2):
    out, cfg, _ = stage2
    manifest = read_manifest(out)
    resumed = manifest["resumed_from_step"]
    assert resumed is not None and resumed % 3 == 0 and 3 <= resumed < cfg.max_steps
    steps = [m["step"] for m in manifest["history"]]
    assert steps == list(range(1, cfg.max_steps + 1))  # the step counter went on: none repeated, none lost
    losses = _losses(out)
    assert losses[resumed] < losses[0], losses  # the first step after resuming starts from trained weights
    _assert_loss_fell(out, margin=0.05)


@pytest.mark.slow
def test_stage2_rejects_unlabeled_rows_with_their_reason(stage2):
    out, _, _ = stage2
    assert read_manifest(out)["rejected"] == 3
    rejects = pq.read_table(out.with_name(out.name + ".rejects")).to_pylist()
    assert {r["id"] for r in rejects} == {f"unlabeled-{i}" for i in range(3)}
    assert {(r["reason"], r["stage"]) for r in rejects} == {("label must be one of ('A', 'B'), got None", "train")}


def test_a_worker_killed_mid_epoch_is_restarted_and_makes_the_uninterrupted_model(stage2_worker_killed):
    out, whole, cfg, killed = stage2_worker_killed
    assert killed, "no worker was killed: the run ended before Ray Train registered a checkpoint"
    assert len(killed) == 1 and isinstance(killed[0], int), killed
    _assert_resumed_mid_second_epoch(out, cfg)
    _assert_loss_fell(out, margin=0.05)
    _assert_same_model(out, whole)


@pytest.mark.slow
def test_a_driver_killed_mid_epoch_resumes_to_the_uninterrupted_model(stage2_driver_killed):
    out, whole, cfg = stage2_driver_killed
    _assert_resumed_mid_second_epoch(out, cfg)
    _assert_same_model(out, whole)


def test_finished_export_is_returned_without_training(stage1):
    from gram_ray.train import train

    out, cfg = stage1
    storage, name = run_location(cfg)
    before = (read_manifest(out), sorted(p.name for p in (Path(storage) / name).iterdir()))
    assert train(cfg) == out
    assert (read_manifest(out), sorted(p.name for p in (Path(storage) / name).iterdir())) == before


def test_zero3_and_zero2_exports_load_in_vllm_and_generate(stage1, judge):
    from vllm import LLM, SamplingParams

    chat = [{"role": "user", "content": "Question: What is 12+30?\nResponse A: 42\nResponse B: 41\n"
                                        "Which response is better?"}]
    for model in (stage1[0], judge[0]):
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
            llm = LLM(str(model), dtype="float32", enforce_eager=True, max_model_len=256, seed=0)
        try:
            out = llm.chat([chat], SamplingParams(temperature=0, max_tokens=8), use_tqdm=False)[0]
            assert len(out.outputs[0].token_ids) > 0
        finally:
            llm.llm_engine.engine_core.shutdown()
