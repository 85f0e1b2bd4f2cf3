"""The step loop every Ray Train worker runs (``train_loop_per_worker``): logging, checkpointing and the
export are all in it, in the order they happen; the helpers below it do one thing each.

A checkpoint is this worker's DeepSpeed engine state (model, optimizer and LR scheduler) and RNG states
plus, from rank 0, ``progress.json``; Ray Train merges every rank's folder into one. With the epoch order
of ``gram_ray.train.epochs`` that is all a resumed worker needs to go on exactly as if never stopped. The
last report carries the Hugging Face export instead, which the driver (``gram_ray.train.trainer``) moves
into place.
"""

from __future__ import annotations

import json
import logging
import random
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np
import torch

from gram_ray.config import TrainConfig
from gram_ray.train.batching import batches_from_windows
from gram_ray.train.epochs import ShardEpochs, rank_dataset
from gram_ray.train.export import MANIFEST, save_hf_model, write_manifest
from gram_ray.train.objectives import make_objective
from gram_ray.train.step import build_optimizer, build_scheduler, forward_loss, to_device

log = logging.getLogger(__name__)

PROGRESS = "progress.json"
ENGINE_TAG = "engine"


@dataclass(frozen=True)
class StepPlan:
    """What the driver works out before the workers start; every worker follows it to the step."""

    total_steps: int
    micro_batches_per_epoch: int
    checkpoint_every: int
    pad_id: int
    label_ids: tuple[int, int] | None
    config_hash: str
    examples: int
    truncated: int
    targets_cut: int
    rejected: int


@dataclass
class Progress:
    """Where a run is, saved with every checkpoint so that a relaunch continues the count and the history."""

    step: int = 0
    epoch: int = 0
    batches_into_epoch: int = 0
    resumed_from_step: int | None = None
    history: list[dict] = field(default_factory=list)  # the metrics of every log

    def save(self, folder: Path) -> None:
        (folder / PROGRESS).write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, folder: Path) -> Progress:
        return cls(**json.loads((folder / PROGRESS).read_text()))


def train_loop_per_worker(config: dict) -> None:
    """Micro-batches forward and backward, an optimizer step every ``grad_accum`` of them; every
    ``log_every`` steps the metrics, every ``checkpoint_every`` a checkpoint; the export after the last."""
    import ray.train

    began = time.perf_counter()
    cfg, plan = TrainConfig.model_validate(config["cfg"]), StepPlan(**config["plan"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    checkpoint = ray.train.get_checkpoint()
    if _is_export(checkpoint):
        _say(rank, f"the run had finished (checkpoint {Path(checkpoint.path).name} is its export); nothing left "
                   "to train")
        return
    engine, scheduler = _deepspeed_engine(cfg, plan.total_steps, world)
    progress = _resume(engine, checkpoint, rank, plan.total_steps)
    _say(rank, f"worker ready in {time.perf_counter() - began:.1f}s (model, DeepSpeed ZeRO-{cfg.zero_stage}, "
               f"{world} worker(s))")
    objective = make_objective(cfg.objective, plan.label_ids, cfg.label_smoothing)
    window = cfg.micro_batch_size * cfg.length_group_window
    shard = ShardEpochs(ray.train.get_dataset_shard(rank_dataset(rank)), window, cfg.micro_batch_size, cfg.seed, rank,
                        cache=plan.examples // cfg.num_workers <= cfg.cache_shard_rows)
    meter = _Metrics(engine.device, rank, plan.total_steps, plan.truncated, scheduler, cfg.report_every_s)

    while progress.step < plan.total_steps:
        for index, batch in _batches_left_in_epoch(shard, progress, cfg, plan.pad_id, rank):
            batch = to_device(batch, engine.device)
            loss, metrics = forward_loss(engine, batch, objective)
            engine.backward(loss)
            stepped = _optimizer_step(engine)
            progress.batches_into_epoch = index + 1
            meter.add(metrics, batch)
            if not stepped:
                continue  # still accumulating gradients
            progress.step += 1
            if progress.step >= plan.total_steps:
                break  # the last step's metrics go with the export
            save = progress.step % plan.checkpoint_every == 0
            if save or progress.step % cfg.log_every == 0:
                logged, report_due = meter.log(progress)
                if save:
                    with tempfile.TemporaryDirectory() as folder:
                        save_checkpoint(engine, progress, folder, rank)
                        meter.report(logged, folder, f"step_{progress.step:08d}")
                elif report_due:
                    meter.report(logged)
        else:
            progress.epoch, progress.batches_into_epoch = progress.epoch + 1, 0

    logged, _ = meter.log(progress)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "model"
        export_model(engine, cfg, plan, progress, logged, out, rank)
        meter.report(logged, out if rank == 0 else None, f"export_step_{progress.step:08d}")


def _is_export(checkpoint) -> bool:
    """Whether the checkpoint Ray Train hands this worker is the run's export: the run finished and
    reported it before the driver could copy it."""
    if checkpoint is None:
        return False
    with checkpoint.as_directory() as folder:
        return (Path(folder) / MANIFEST).exists()


def _deepspeed_engine(cfg: TrainConfig, total_steps: int, world: int):
    """(DeepSpeed ZeRO engine, LR scheduler) for ``cfg.model`` with its optimizer and cosine schedule."""
    from gram_ray.train.deepspeed_config import deepspeed_config, use_environment_op_cache

    use_environment_op_cache()
    import deepspeed
    from transformers import AutoModelForCausalLM

    torch.manual_seed(cfg.seed)
    dtype = torch.bfloat16 if cfg.resolved_precision == "bf16" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(cfg.model, dtype=dtype)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    optimizer = build_optimizer(model, cfg.learning_rate, cfg.weight_decay)
    scheduler = build_scheduler(optimizer, total_steps, cfg.warmup_ratio, cfg.min_lr_ratio)
    engine, _, _, _ = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=scheduler, config=deepspeed_config(cfg, world)
    )
    return engine, scheduler


def _resume(engine, checkpoint, rank: int, total_steps: int) -> Progress:
    """Step 0 of a new run, or the engine state, RNG states and progress of the checkpoint Ray Train hands
    a relaunched or restarted worker."""
    if checkpoint is None:
        return Progress()
    with checkpoint.as_directory() as folder:
        loaded, _ = engine.load_checkpoint(folder, tag=ENGINE_TAG, load_optimizer_states=True,
                                           load_lr_scheduler_states=True)
        if loaded is None:
            raise RuntimeError(f"checkpoint {checkpoint.path} holds no DeepSpeed state for rank {rank}")
        _load_rng_states(Path(folder), rank)
        progress = Progress.load(Path(folder))
    progress.resumed_from_step = progress.step
    _say(rank, f"resumed from step {progress.step}/{total_steps} (epoch {progress.epoch})")
    return progress


def _batches_left_in_epoch(shard: ShardEpochs, progress: Progress, cfg: TrainConfig, pad_id: int,
                           rank: int) -> Iterator[tuple[int, dict]]:
    """(index, micro-batch) of the epoch ``progress`` is in, after those it had consumed (a resumed run
    skips them by count: the epoch's order is the same in every run)."""
    windows = shard.windows(progress.epoch)
    rng = random.Random(f"{cfg.seed}/{progress.epoch}/{rank}")
    batches = batches_from_windows(windows, cfg.micro_batch_size, pad_id, rng)
    return islice(enumerate(batches), progress.batches_into_epoch, None)


def _optimizer_step(engine) -> bool:
    """``engine.step()``; whether it stepped the optimizer (DeepSpeed steps once every ``grad_accum``)."""
    steps_before = engine.global_steps
    engine.step()
    return engine.global_steps != steps_before


def save_checkpoint(engine, progress: Progress, folder: str, rank: int) -> None:
    """This rank's DeepSpeed state (ZeRO shards included) and RNG states and, from rank 0, the progress
    into ``folder``."""
    engine.save_checkpoint(folder, tag=ENGINE_TAG)
    _save_rng_states(Path(folder), rank)
    if rank == 0:
        progress.save(Path(folder))


def _rng_file(folder: Path, rank: int) -> Path:
    return folder / f"rng_rank_{rank}.pt"


def _save_rng_states(folder: Path, rank: int) -> None:
    """Python's, NumPy's and torch's generators (CUDA's too on a GPU): whatever draws from them after a
    resume (dropout, a library's sampling) draws what it would have drawn."""
    states = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    torch.save(states, _rng_file(folder, rank))


def _load_rng_states(folder: Path, rank: int) -> None:
    states = torch.load(_rng_file(folder, rank), weights_only=False)  # our own file: Python and NumPy tuples
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states:
        torch.cuda.set_rng_state_all(states["cuda"])


def export_model(engine, cfg: TrainConfig, plan: StepPlan, progress: Progress, metrics: dict, out: Path,
                 rank: int) -> None:
    """The Hugging Face model and its manifest into ``out`` on rank 0 (every rank calls it: the ZeRO-3
    shards are gathered from all)."""
    from transformers import AutoTokenizer

    save_hf_model(engine, cfg.zero_stage, AutoTokenizer.from_pretrained(cfg.model), out, rank)
    if rank == 0:
        write_manifest(out, {
            "config_hash": plan.config_hash,
            "objective": cfg.objective,
            "base_model": cfg.model,
            "steps": progress.step,
            "resumed_from_step": progress.resumed_from_step,
            "history": progress.history,
            "final_loss": metrics["loss"],
            "examples": plan.examples,
            "truncated": plan.truncated,
            "targets_cut": plan.targets_cut,
            "rejected": plan.rejected,
            "precision": cfg.resolved_precision,
            "zero_stage": cfg.zero_stage,
            "num_workers": cfg.num_workers,
        })


class _Metrics:
    """Metrics since the last log, summed over all workers, and their reports to Ray Train.

    Ray Train's controller takes one report per worker every 2 s and a report made sooner blocks the step
    loop, so metrics go to Ray Train at most every ``report_every_s`` (rank 0's clock decides, carried in
    the metrics all-reduce so that every worker reports equally often), plus with every checkpoint and the
    export. The full history is kept in the checkpoints and the export's manifest.
    """

    def __init__(self, device: torch.device, rank: int, total_steps: int, truncated: int, scheduler,
                 report_every_s: float) -> None:
        self.device, self.rank, self.total_steps, self.truncated = device, rank, total_steps, truncated
        self.scheduler, self.report_every_s = scheduler, report_every_s
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

    def log(self, progress: Progress) -> tuple[dict, bool]:
        """(metrics of the steps since the last log, whether a Ray Train report is due); the metrics join
        ``progress.history`` and rank 0 logs a progress line."""
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
                       step=progress.step, epoch=progress.epoch, lr=self.scheduler.get_last_lr()[0],
                       elapsed_s=time.perf_counter() - self.began)
        progress.history.append(metrics)
        self._reset()
        _say(self.rank, _progress_line(metrics, self.total_steps))
        reported = {**metrics, "total_steps": self.total_steps, "truncated_examples": self.truncated}
        return reported, due_anywhere > 0

    def report(self, metrics: dict, folder: str | Path | None = None, name: str | None = None) -> None:
        """``metrics`` to Ray Train, with ``folder`` as this rank's part of checkpoint ``name`` if given."""
        import ray.train

        checkpoint = ray.train.Checkpoint.from_directory(folder) if folder is not None else None
        ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=name)
        self.last_report = time.perf_counter()
        self.start = self.last_report  # waiting on Ray Train is not training time


def _progress_line(m: dict, total_steps: int) -> str:
    extra = f" acc {m['accuracy']:.3f}" if "accuracy" in m else ""
    return (f"step {m['step']}/{total_steps} loss {m['loss']:.4f}{extra} lr {m['lr']:.2e} "
            f"tok/s {m['tokens_per_s']:.0f} pad {m['padding_waste']:.1%} [{m['elapsed_s']:.0f}s]")


def _say(rank: int, line: str) -> None:
    """Progress lines from rank 0, through the logger Ray Train forwards to the driver."""
    if rank == 0:
        log.info("[gram-ray train] %s", line)
