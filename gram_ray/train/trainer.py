"""``train(cfg)``: tokenize on Ray Data, launch the step loop (``gram_ray.train.loop``) on Ray Train
``TorchTrainer`` workers with DeepSpeed ZeRO, and move the exported Hugging Face directory into place.

Resume: checkpoints are DeepSpeed engine states (each rank's model, optimizer and scheduler state,
merged by Ray Train into one folder), each rank's RNG states, and ``progress.json`` (step, epoch,
micro-batches consumed in the epoch, loss history). A run relaunched with the same
``RunConfig(name, storage_path)`` gets the latest one from ``ray.train.get_checkpoint()``, reloads all of it
and skips the micro-batches it had consumed. Each worker's rows and their order in every epoch are a pure
function of the examples, the seed, the epoch and the rank (``gram_ray.train.epochs``: one key-sorted part
per rank, handed to Ray Train unsplit), so the skipped micro-batches are the ones trained on and the resumed
run makes the model an uninterrupted one would have.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import asdict
from pathlib import Path

from gram_ray.config import TrainConfig, config_hash
from gram_ray.train.batching import micro_batches_per_epoch
from gram_ray.train.epochs import rank_dataset, rank_parts
from gram_ray.train.export import MANIFEST, read_manifest
from gram_ray.train.loop import StepPlan, train_loop_per_worker

log = logging.getLogger(__name__)

# Ray Train V2's record of the checkpoints it has registered, in <storage_path>/<run name>/; a relaunch
# restores from it alone (ray.train.v2._internal.constants.CHECKPOINT_MANAGER_SNAPSHOT_FILENAME)
RAY_TRAIN_SNAPSHOT = "checkpoint_manager_snapshot.json"


def make_plan(cfg: TrainConfig, examples: int, truncated: int, targets_cut: int, rejected: int, pad_id: int,
              label_ids: tuple[int, int] | None) -> StepPlan:
    rows_per_worker = examples // cfg.num_workers  # equal parts, the remainder left out (epochs.rank_parts)
    if rows_per_worker == 0:
        raise ValueError(f"{examples} example(s) cannot feed {cfg.num_workers} workers")
    per_epoch = micro_batches_per_epoch(rows_per_worker, cfg.micro_batch_size)
    steps_per_epoch = max(1, per_epoch // cfg.grad_accum)
    total = cfg.max_steps or max(1, math.floor(cfg.epochs * per_epoch / cfg.grad_accum))
    return StepPlan(
        total_steps=total,
        micro_batches_per_epoch=per_epoch,
        checkpoint_every=cfg.checkpoint_every or steps_per_epoch,
        pad_id=pad_id,
        label_ids=label_ids,
        config_hash=config_hash(cfg),
        examples=examples,
        truncated=truncated,
        targets_cut=targets_cut,
        rejected=rejected,
    )


def run_location(cfg: TrainConfig) -> tuple[str, str]:
    """(storage_path, run name): defaults are stable for a config, so a relaunch finds its checkpoints."""
    out = Path(cfg.output_dir).resolve()
    storage = cfg.storage_path or str(out.with_name(out.name + ".ray_train"))
    return storage, cfg.run_name or f"train-{config_hash(cfg)}"


def discard_training(cfg: TrainConfig) -> None:
    """Remove ``cfg``'s export and its Ray Train run, so that ``train(cfg)`` starts from step 0. For a
    redo: both are keyed by the config, which names the start model and data by path, so a retrain after
    a redone upstream stage would otherwise resume, or return, what the old inputs made."""
    import pyarrow.fs

    out = Path(cfg.output_dir).resolve()
    for path in (out, _staging(out)):
        shutil.rmtree(path, ignore_errors=True)
    storage, name = run_location(cfg)
    fs, folder = pyarrow.fs.FileSystem.from_uri(storage if "://" in storage else str(Path(storage).resolve()))
    if fs.get_file_info(f"{folder}/{name}").type != pyarrow.fs.FileType.NotFound:
        fs.delete_dir(f"{folder}/{name}")


def registered_checkpoint(run_folder: Path) -> str | None:
    """The folder name of the latest checkpoint Ray Train has registered for the run in ``run_folder``
    (``<storage_path>/<run name>``), the one a relaunch resumes from; None when there is none yet.

    A worker writes its checkpoint folder into the run folder before reporting it, but the controller
    registers it (and writes the snapshot) only when it next polls the workers, every 2 s: a checkpoint
    folder on disk that the snapshot does not list is ignored by a relaunch, which starts from step 0.
    A snapshot caught half-written reads as None.
    """
    try:
        snapshot = json.loads((run_folder / RAY_TRAIN_SNAPSHOT).read_text())
        return snapshot["latest_checkpoint_result"]["checkpoint_dir_name"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def train(cfg: TrainConfig) -> Path:
    """Train as ``cfg`` says and return the exported Hugging Face directory.

    Returns at once when ``output_dir`` already holds a complete export of this config; resumes from the
    run's latest Ray Train checkpoint when there is one.
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from gram_ray.train.dataset import build_train_data

    out = Path(cfg.output_dir).resolve()
    if _complete_export(out, cfg):
        log.info("%s already holds this run's export; skipping training", out)
        return out
    began = time.perf_counter()
    data = build_train_data(cfg, rejects_path=out.with_name(out.name + ".rejects"))
    plan = make_plan(cfg, data.examples, data.truncated, data.targets_cut, data.rejected, data.pad_id, data.label_ids)
    log.info("training %s on %d examples (%d tokens, %d truncated, %d of them in the target, %d rejected; tokenized "
             "in %.1fs): %d steps on %d worker(s)", cfg.objective, data.examples, data.tokens, data.truncated,
             data.targets_cut, data.rejected, time.perf_counter() - began, plan.total_steps, cfg.num_workers)
    storage, name = run_location(cfg)
    if "://" not in storage:
        latest = registered_checkpoint(Path(storage) / name)
        state = f"resuming from its registered checkpoint {latest}" if latest else "no registered checkpoint, step 0"
        log.info("Ray Train run %s in %s: %s", name, storage, state)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"cfg": cfg.model_dump(mode="json"), "plan": asdict(plan)},
        torch_config=TorchConfig(backend="nccl" if cfg.use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=cfg.num_workers, use_gpu=cfg.use_gpu, resources_per_worker={"CPU": cfg.cpus_per_worker}
        ),
        run_config=RunConfig(
            name=name,
            storage_path=storage,
            failure_config=FailureConfig(max_failures=cfg.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.checkpoints_to_keep),
        ),
        datasets=_rank_datasets(data.dataset, data.examples, cfg.num_workers),
        dataset_config=_ordered_parts(),
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"run {name} in {storage} ended without a checkpoint")
    staging = _staging(out)
    shutil.rmtree(staging, ignore_errors=True)
    result.checkpoint.to_directory(str(staging))
    if read_manifest(staging) is None:
        raise RuntimeError(f"the last checkpoint of run {name} is not a finished export: {result.checkpoint.path}")
    staging.rename(out)
    log.info("model exported to %s (%.1fs in all)", out, time.perf_counter() - began)
    return out


def _rank_datasets(dataset, examples: int, world: int) -> dict:
    """Each rank's part under its name, without Ray Data's progress bar: a worker redraws it for every batch
    it reads, thousands of lines in the driver's log for one training stage. (Each part has its own copy of
    the DataContext, so the driver's own stages keep theirs.)"""
    parts = rank_parts(dataset, examples, world)
    for part in parts:
        part.context.enable_progress_bars = False
    return {rank_dataset(r): part for r, part in enumerate(parts)}


def _ordered_parts():
    """Ray Train's data config for the per-rank parts: none split again (each goes whole to its rank), each
    read in its stored order, which ``ShardEpochs`` checks."""
    from ray.train import DataConfig

    options = DataConfig.default_ingest_options()
    options.preserve_order = True
    return DataConfig(datasets_to_split=[], execution_options=options)


def _staging(out: Path) -> Path:
    """Where the export is written before it is renamed to ``out``: a crash never leaves half an export."""
    return out.with_name(out.name + ".partial")


def _complete_export(out: Path, cfg: TrainConfig) -> bool:
    if not out.exists():
        return False
    manifest = read_manifest(out)
    if manifest is None:
        raise ValueError(f"output_dir {out} exists but holds no finished export ({MANIFEST} missing); "
                         "remove it or choose another output_dir")
    if manifest["config_hash"] != config_hash(cfg):
        raise ValueError(f"output_dir {out} holds a model trained with other settings "
                         f"(config hash {manifest['config_hash']}); choose another output_dir")
    return True
