"""TrainConfig validation, the shipped recipes, the run plan and the export/resume bookkeeping."""

import json
from pathlib import Path

import pytest

from gram_ray.config import ConfigError, TrainConfig, config_hash, load_config
from gram_ray.train.deepspeed_config import deepspeed_config
from gram_ray.train.export import MANIFEST, write_manifest
from gram_ray.train.loop import Progress
from gram_ray.train.trainer import (
    RAY_TRAIN_SNAPSHOT,
    _complete_export,
    make_plan,
    registered_checkpoint,
    run_location,
)

CONFIGS = Path(__file__).resolve().parents[2] / "pipelines" / "configs" / "train"
BASE = {"model": "m", "data": ["d.parquet"], "output_dir": "out"}


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_train_recipe_loads(path):
    cfg = load_config(path, TrainConfig)
    assert cfg.objective in ("sft", "gram_stage1", "gram_stage2")
    ds = deepspeed_config(cfg, world_size=cfg.num_workers)
    assert ds["train_batch_size"] == cfg.micro_batch_size * cfg.grad_accum * cfg.num_workers
    assert ds["bf16"]["enabled"] == cfg.use_gpu


def test_gpu_recipes_follow_the_papers():
    stage1 = load_config(CONFIGS / "gram_stage1.yaml", TrainConfig)
    stage2 = load_config(CONFIGS / "gram_stage2.yaml", TrainConfig)
    assert (stage1.learning_rate, stage1.epochs, stage1.max_length, stage1.zero_stage) == (2e-5, 1, 2048, 3)
    assert (stage2.learning_rate, stage2.label_smoothing, stage2.template) == (1e-5, 0.1, "gram")
    for cfg in (stage1, stage2):
        assert cfg.micro_batch_size * cfg.grad_accum * cfg.num_workers == 256
        assert cfg.resolved_precision == "bf16"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"objective": "gram_stage2", "template": "gram_r2"}, "label-only judge"),
        ({"decision_weight": 10.0}, "decision_weight needs decision_tokens"),
        ({"precision": "bf16"}, "bf16 needs use_gpu"),
        ({"data": []}, "data"),
        ({"zero_stage": 1}, "zero_stage"),
    ],
)
def test_bad_settings_are_rejected(tmp_path, extra, message):
    path = tmp_path / "bad.yaml"
    path.write_text(__import__("yaml").safe_dump({**BASE, **extra}))
    with pytest.raises(ConfigError, match=message):
        load_config(path, TrainConfig)


def test_precision_follows_the_device():
    assert TrainConfig(**BASE).resolved_precision == "fp32"
    assert TrainConfig(**BASE, use_gpu=True).resolved_precision == "bf16"
    assert TrainConfig(**BASE, use_gpu=True, precision="fp32").resolved_precision == "fp32"


@pytest.mark.parametrize(
    ("examples", "workers", "micro", "accum", "epochs", "max_steps", "total", "per_epoch", "ckpt_every"),
    [
        (64, 2, 4, 1, 1.0, None, 8, 8, 8),  # 32 rows per worker -> 8 micro-batches -> 8 steps
        (65, 2, 4, 2, 2.0, None, 8, 8, 4),  # the odd row is dropped by the equal split
        (10, 1, 4, 1, 1.0, 7, 7, 3, 3),  # max_steps wins over epochs
        (10, 1, 4, 4, 0.5, None, 1, 3, 1),  # never zero steps
    ],
)
def test_plan(examples, workers, micro, accum, epochs, max_steps, total, per_epoch, ckpt_every):
    cfg = TrainConfig(**BASE, num_workers=workers, micro_batch_size=micro, grad_accum=accum, epochs=epochs,
                      max_steps=max_steps)
    plan = make_plan(cfg, examples, truncated=0, targets_cut=0, rejected=0, pad_id=0, label_ids=None)
    assert (plan.total_steps, plan.micro_batches_per_epoch, plan.checkpoint_every) == (total, per_epoch, ckpt_every)
    assert plan.config_hash == config_hash(cfg)


def test_plan_needs_a_row_per_worker():
    with pytest.raises(ValueError, match="cannot feed 4 workers"):
        make_plan(TrainConfig(**BASE, num_workers=4), 3, 0, 0, 0, 0, None)


def test_run_location_is_stable_and_changes_with_the_settings(tmp_path):
    cfg = TrainConfig(**{**BASE, "output_dir": str(tmp_path / "model")})
    storage, name = run_location(cfg)
    assert storage == str(tmp_path / "model.ray_train") and run_location(cfg) == (storage, name)
    assert run_location(cfg.model_copy(update={"learning_rate": 1e-4}))[1] != name
    assert run_location(cfg.model_copy(update={"run_name": "mine", "storage_path": "/s"})) == ("/s", "mine")


def test_existing_output_is_reused_only_when_it_is_this_configs_export(tmp_path):
    out = tmp_path / "model"
    cfg = TrainConfig(**{**BASE, "output_dir": str(out)})
    assert not _complete_export(out, cfg)
    out.mkdir()
    with pytest.raises(ValueError, match=f"{MANIFEST} missing"):
        _complete_export(out, cfg)
    write_manifest(out, {"config_hash": "somethingelse"})
    with pytest.raises(ValueError, match="other settings"):
        _complete_export(out, cfg)
    write_manifest(out, {"config_hash": config_hash(cfg)})
    assert _complete_export(out, cfg)


def test_progress_round_trip(tmp_path):
    history = [{"step": 1, "loss": 2.5}, {"step": 7, "loss": 1.25}]
    progress = Progress(step=7, epoch=1, batches_into_epoch=3, history=history)
    progress.save(tmp_path)
    assert Progress.load(tmp_path) == progress


def test_registered_checkpoint_is_the_snapshots_latest_and_nothing_else(tmp_path):
    (tmp_path / "step_00000003").mkdir()  # written by a worker, not yet registered by the controller
    assert registered_checkpoint(tmp_path) is None
    snapshot = tmp_path / RAY_TRAIN_SNAPSHOT
    snapshot.write_text('{"checkpoint_results": [{"checkpoint_dir_name": "step_0000')  # caught half-written
    assert registered_checkpoint(tmp_path) is None
    snapshot.write_text(json.dumps({"checkpoint_results": [], "latest_checkpoint_result": None}))
    assert registered_checkpoint(tmp_path) is None
    latest = {"checkpoint_dir_name": "step_00000006", "metrics": {"step": 6}}
    snapshot.write_text(json.dumps({"checkpoint_results": [{"checkpoint_dir_name": "step_00000003"}, latest],
                                    "latest_checkpoint_result": latest}))
    assert registered_checkpoint(tmp_path) == "step_00000006"
