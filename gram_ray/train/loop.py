"""``train(cfg)``: tokenize on Ray Data, train on Ray Train ``TorchTrainer`` workers with DeepSpeed ZeRO,
checkpoint through Ray Train, export one Hugging Face directory.

Resume: checkpoints are DeepSpeed engine states (each rank's shards, merged by Ray Train into one
folder) plus ``progress.json`` (step, epoch, micro-batches consumed in the epoch, loss history). A run
relaunched with the same ``RunConfig(name, storage_path)`` gets the latest one from
``ray.train.get_checkpoint()``, reloads the engine and skips the micro-batches it had consumed. Ray Data
does not promise the same row order across runs, so a mid-epoch resume continues with the same count of
examples, not necessarily the same ones.
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from gram_ray.config import TrainConfig, config_hash
from gram_ray.train.batching import ShardEpochs, batches_from_windows, micro_batches_per_epoch
from gram_ray.train.export import MANIFEST, read_manifest, save_hf_model, write_manifest

log = logging.getLogger(__name__)

PROGRESS = "progress.json"
ENGINE_TAG = "engine"
# Ray Train V2's record of the checkpoints it has registered, in <storage_path>/<run name>/; a relaunch
# restores from it alone (ray.train.v2._internal.constants.CHECKPOINT_MANAGER_SNAPSHOT_FILENAME)
RAY_TRAIN_SNAPSHOT = "checkpoint_manager_snapshot.json"


@dataclass(frozen=True)
class Plan:
    """What the driver works out before the workers start; every worker follows it to the step."""

    total_steps: int
    micro_batches_per_epoch: int
    checkpoint_every: int
    pad_id: int
    label_ids: tuple[int, int] | None
    config_hash: str
    examples: int
    truncated: int
    rejected: int


@dataclass
class Progress:
    """Where a run is, saved with every checkpoint so that a relaunch continues the count and the history."""

    step: int = 0
    epoch: int = 0
    batches_into_epoch: int = 0
    resumed_from_step: int | None = None
    history: list[dict] = field(default_factory=list)  # the metrics of every report

    def save(self, folder: Path) -> None:
        (folder / PROGRESS).write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, folder: Path) -> Progress:
        return cls(**json.loads((folder / PROGRESS).read_text()))


def make_plan(cfg: TrainConfig, examples: int, truncated: int, rejected: int, pad_id: int,
              label_ids: tuple[int, int] | None) -> Plan:
    rows_per_worker = examples // cfg.num_workers  # Ray Train splits equally, dropping the remainder
    if rows_per_worker == 0:
        raise ValueError(f"{examples} example(s) cannot feed {cfg.num_workers} workers")
    per_epoch = micro_batches_per_epoch(rows_per_worker, cfg.micro_batch_size)
    steps_per_epoch = max(1, per_epoch // cfg.grad_accum)
    total = cfg.max_steps or max(1, math.floor(cfg.epochs * per_epoch / cfg.grad_accum))
    return Plan(
        total_steps=total,
        micro_batches_per_epoch=per_epoch,
        checkpoint_every=cfg.checkpoint_every or steps_per_epoch,
        pad_id=pad_id,
        label_ids=label_ids,
        config_hash=config_hash(cfg),
        examples=examples,
        truncated=truncated,
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
    plan = make_plan(cfg, data.examples, data.truncated, data.rejected, data.pad_id, data.label_ids)
    log.info("training %s on %d examples (%d tokens, %d truncated, %d rejected; tokenized in %.1fs): %d steps on "
             "%d worker(s)", cfg.objective, data.examples, data.tokens, data.truncated, data.rejected,
             time.perf_counter() - began, plan.total_steps, cfg.num_workers)
    storage, name = run_location(cfg)
    if "://" not in storage:
        latest = registered_checkpoint(Path(storage) / name)
        state = f"resuming from its registered checkpoint {latest}" if latest else "no registered checkpoint, step 0"
        log.info("Ray Train run %s in %s: %s", name, storage, state)
    trainer = TorchTrainer(
        _worker,
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
        datasets={"train": data.dataset},
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


def _worker(config: dict) -> None:
    """The Ray Train worker: DeepSpeed engine, resume, the step loop, checkpoints, the export."""
    from gram_ray.train.deepspeed_config import deepspeed_config, use_environment_op_cache

    use_environment_op_cache()
    import deepspeed
    import ray.train
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gram_ray.train.objectives import make_objective
    from gram_ray.train.step import build_optimizer, build_scheduler, forward_loss, to_device

    began = time.perf_counter()
    cfg = TrainConfig.model_validate(config["cfg"])
    plan = Plan(**config["plan"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            if (Path(folder) / MANIFEST).exists():  # reported before the driver could copy it
                _say(rank, f"the run had finished (checkpoint {Path(checkpoint.path).name} is its export); "
                           "nothing left to train")
                return

    torch.manual_seed(cfg.seed)
    dtype = torch.bfloat16 if cfg.resolved_precision == "bf16" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(cfg.model, dtype=dtype)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    optimizer = build_optimizer(model, cfg.learning_rate, cfg.weight_decay)
    scheduler = build_scheduler(optimizer, plan.total_steps, cfg.warmup_ratio, cfg.min_lr_ratio)
    engine, _, _, _ = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=scheduler, config=deepspeed_config(cfg, world)
    )

    progress = Progress()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            engine.load_checkpoint(folder, tag=ENGINE_TAG)
            progress = Progress.load(Path(folder))
        progress.resumed_from_step = progress.step
        _say(rank, f"resumed from step {progress.step}/{plan.total_steps} (epoch {progress.epoch})")

    _say(rank, f"worker ready in {time.perf_counter() - began:.1f}s (model, DeepSpeed ZeRO-{cfg.zero_stage}, "
               f"{world} worker(s))")
    objective = make_objective(cfg.objective, plan.label_ids, cfg.label_smoothing)
    shard = ShardEpochs(ray.train.get_dataset_shard("train"), cfg.micro_batch_size * cfg.length_group_window,
                        cfg.seed, rank, cache=plan.examples // cfg.num_workers <= cfg.cache_shard_rows)
    reporter = _Reporter(engine.device, rank, progress, plan, scheduler, cfg.report_every_s)
    while progress.step < plan.total_steps:
        windows = shard.windows(progress.epoch)
        rng = random.Random(f"{cfg.seed}/{progress.epoch}/{rank}")
        for index, batch in enumerate(batches_from_windows(windows, cfg.micro_batch_size, plan.pad_id, rng)):
            if index < progress.batches_into_epoch:
                continue
            batch = to_device(batch, engine.device)
            loss, metrics = forward_loss(engine, batch, objective)
            engine.backward(loss)
            steps_before = engine.global_steps
            engine.step()
            progress.batches_into_epoch = index + 1
            reporter.add(metrics, batch)
            if engine.global_steps == steps_before:
                continue  # still accumulating
            progress.step += 1
            if progress.step >= plan.total_steps:
                break
            save = progress.step % plan.checkpoint_every == 0
            if save or progress.step % cfg.log_every == 0:
                metrics, due = reporter.log()
                if save:
                    reporter.checkpoint(engine, metrics)
                elif due:
                    reporter.report(metrics)
        else:
            progress.epoch += 1
            progress.batches_into_epoch = 0
    reporter.export(engine, cfg, AutoTokenizer.from_pretrained(cfg.model))


class _Reporter:
    """Metrics since the last log, summed over all workers, logged every ``log_every`` steps.

    Ray Train's controller takes one report per worker every 2 s and a report made sooner blocks the step
    loop, so metrics go to Ray Train at most every ``report_every_s`` (rank 0's clock decides, carried in
    the metrics all-reduce so that every worker reports equally often), plus at every checkpoint and at
    the end. The full history is kept in the checkpoints and the export's manifest.
    """

    def __init__(self, device: torch.device, rank: int, progress: Progress, plan: Plan, scheduler,
                 report_every_s: float) -> None:
        self.device, self.rank, self.progress, self.plan, self.scheduler = device, rank, progress, plan, scheduler
        self.report_every_s = report_every_s
        self.last_report = self.began = time.perf_counter()
        self._reset()

    def _reset(self) -> None:
        self.sums: dict[str, float] = {}
        self.micro_batches = self.tokens = self.slots = 0
        self.start = time.perf_counter()

    def add(self, metrics: dict[str, torch.Tensor], batch: dict) -> None:
        for key, value in metrics.items():
            self.sums[key] = self.sums.get(key, 0.0) + float(value)
        self.micro_batches += 1
        self.tokens += int(batch["attention_mask"].sum())
        self.slots += batch["attention_mask"].numel()

    def log(self) -> tuple[dict, bool]:
        """(metrics of the steps since the last log, whether a Ray Train report is due)."""
        due = self.rank == 0 and time.perf_counter() - self.last_report >= self.report_every_s
        keys = sorted(self.sums)
        values = torch.tensor([self.sums[k] for k in keys] + [self.micro_batches, self.tokens, self.slots, due],
                              dtype=torch.float64, device=self.device)
        if torch.distributed.is_initialized():
            torch.distributed.all_reduce(values)
        *sums, micro_batches, tokens, slots, due_anywhere = values.tolist()
        elapsed = time.perf_counter() - self.start
        metrics = {k: v / max(micro_batches, 1) for k, v in zip(keys, sums, strict=True)}
        metrics.update(tokens=int(tokens), tokens_per_s=tokens / elapsed, padding_waste=1 - tokens / max(slots, 1),
                       step=self.progress.step, epoch=self.progress.epoch, lr=self.scheduler.get_last_lr()[0],
                       elapsed_s=time.perf_counter() - self.began)
        self.progress.history.append(metrics)
        self._reset()
        _say(self.rank, _progress_line(metrics, self.plan.total_steps))
        reported = {**metrics, "total_steps": self.plan.total_steps, "truncated_examples": self.plan.truncated}
        return reported, due_anywhere > 0

    def report(self, metrics: dict, folder: Path | None = None, name: str | None = None) -> None:
        import ray.train

        checkpoint = ray.train.Checkpoint.from_directory(folder) if folder is not None else None
        ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=name)
        self.last_report = time.perf_counter()
        self.start = self.last_report  # waiting on Ray Train is not training time

    def checkpoint(self, engine, metrics: dict) -> None:
        """DeepSpeed state (every rank's shards) + progress, merged by Ray Train into one checkpoint."""
        with tempfile.TemporaryDirectory() as folder:
            engine.save_checkpoint(folder, tag=ENGINE_TAG)
            if self.rank == 0:
                self.progress.save(Path(folder))
            self.report(metrics, Path(folder), f"step_{self.progress.step:08d}")

    def export(self, engine, cfg: TrainConfig, tokenizer) -> None:
        """The last step's metrics, the Hugging Face export and its manifest, reported as the final
        checkpoint (by rank 0; the other ranks take part in gathering ZeRO-3 shards)."""
        metrics, _ = self.log()
        with tempfile.TemporaryDirectory() as folder:
            export = Path(folder) / "model"
            save_hf_model(engine, cfg.zero_stage, tokenizer, export, self.rank)
            if self.rank == 0:
                write_manifest(export, {
                    "config_hash": self.plan.config_hash,
                    "objective": cfg.objective,
                    "base_model": cfg.model,
                    "steps": self.progress.step,
                    "resumed_from_step": self.progress.resumed_from_step,
                    "history": self.progress.history,
                    "final_loss": metrics["loss"],
                    "examples": self.plan.examples,
                    "truncated": self.plan.truncated,
                    "rejected": self.plan.rejected,
                    "precision": cfg.resolved_precision,
                    "zero_stage": cfg.zero_stage,
                    "num_workers": cfg.num_workers,
                })
            self.report(metrics, export if self.rank == 0 else None, f"export_step_{self.progress.step:08d}")


def _progress_line(m: dict, total_steps: int) -> str:
    extra = f" acc {m['accuracy']:.3f}" if "accuracy" in m else ""
    return (f"step {m['step']}/{total_steps} loss {m['loss']:.4f}{extra} lr {m['lr']:.2e} "
            f"tok/s {m['tokens_per_s']:.0f} pad {m['padding_waste']:.1%} [{m['elapsed_s']:.0f}s]")


def _say(rank: int, line: str) -> None:
    """Progress lines from rank 0, through the logger Ray Train forwards to the driver."""
    if rank == 0:
        log.info("[gram-ray train] %s", line)
