"""Training throughput: our Ray Train + DeepSpeed path against a plain single-process transformers loop,
on the same random-weight Llama, the same mixed-length data and the same effective batch; and the
padding waste of length-grouped batches against batches in data order.

    .venv/bin/python bench/train.py                  # ~2 min on 2 CPU cores
    .venv/bin/python bench/train.py --steps 40 --layers 6

Both paths tokenize with the same encoder, batch with the same length grouping, compute the same loss
(``gram_ray.train.step``) and run ``--threads`` threads (default 2; our path: 1 worker with that many CPUs,
ZeRO-2, fp32). Throughput is non-pad tokens per second of each optimizer step after ``--warmup`` (start-up
is not counted); the figure compared is the median step, because the machine is shared and a neighbour's
burst can slow any stretch of steps. The plain loop runs before and after our run and its steps are pooled.
To show where a gap comes from, the same plain loop also runs inside a Ray Train worker (1 worker, no DeepSpeed):
that isolates what the Ray Train worker's surroundings cost from what DeepSpeed, data loading (Ray Data
shard, collation inside the timed step) and our step loop cost. And it runs in this process beside
``--idle-actors`` Python actors that do nothing, as many as the Ray Train and Ray Data helpers a 1-worker
run starts (controller, preemption watcher, placement-group cleaner, synchronization, autoscaling
coordinator, dataset manager, split coordinator, stats): each Python actor's main thread wakes every
10 ms, and on a box with no core to spare each wake-up can preempt a thread of the step.
The last line is ``ratio_vs_plain=<ours/plain tokens per s> padding_waste=<pad share with grouping>``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import ray


def write_mixed_lengths(path: Path, rows: int, seed: int) -> None:
    """Worked additions repeated 1, 4 or 12 times: completions of ~25, ~100 and ~300 tokens, shuffled."""
    from gram_ray.tinykit import worked_solution

    rng = random.Random(seed)
    records = []
    for _ in range(rows):
        a, b = rng.randint(10, 49), rng.randint(10, 49)
        repeat = rng.choice([1, 4, 12])
        records.append({"prompt": f"What is {a}+{b}?", "completion": " ".join([worked_solution(a, b)] * repeat)})
    pq.write_table(pa.Table.from_pylist(records), path)


def encoded_examples(cfg) -> tuple[list, int]:
    from gram_ray.train.dataset import make_encoder, pad_token_id
    from gram_ray.train.examples import row_examples

    encoder = make_encoder(cfg)
    rows = pq.read_table(cfg.data[0]).to_pylist()
    examples = [encoder.encode(e) for r in rows for e in row_examples(r, cfg.objective, cfg.role, cfg.template, False)]
    return examples, pad_token_id(encoder.tokenizer)


def padding_waste_both_ways(lengths: list[int], micro_batch_size: int) -> tuple[float, float]:
    from gram_ray.train.batching import group_by_length, padding_waste

    grouped = padding_waste(lengths, group_by_length(lengths, micro_batch_size, random.Random(0)))
    in_order = padding_waste(lengths, group_by_length(lengths, micro_batch_size, None))
    return grouped, in_order


def plain_loop(cfg, examples: list, pad_id: int, steps: int, warmup: int) -> list[float]:
    """tokens/s of each ``train_step`` in this process after ``warmup`` steps."""
    import torch
    from transformers import AutoModelForCausalLM

    from gram_ray.train.batching import collate, group_by_length
    from gram_ray.train.objectives import make_objective
    from gram_ray.train.step import build_optimizer, build_scheduler, train_step

    torch.set_num_threads(cfg.cpus_per_worker)
    torch.manual_seed(cfg.seed)
    model = AutoModelForCausalLM.from_pretrained(cfg.model, dtype=torch.float32)
    optimizer = build_optimizer(model, cfg.learning_rate, cfg.weight_decay)
    scheduler = build_scheduler(optimizer, steps, cfg.warmup_ratio, cfg.min_lr_ratio)
    lengths = [len(e.input_ids) for e in examples]
    order = group_by_length(lengths, cfg.micro_batch_size, random.Random(cfg.seed))
    batches = [collate([examples[i].input_ids for i in b], [examples[i].weights for i in b], pad_id) for b in order]
    objective = make_objective(cfg.objective)
    per_step = []
    for step in range(steps):
        micro = [batches[(step * cfg.grad_accum + k) % len(batches)] for k in range(cfg.grad_accum)]
        start = time.perf_counter()
        out = train_step(model, optimizer, micro, objective, scheduler, cfg.max_grad_norm)
        if step >= warmup:
            per_step.append(out["tokens"] / (time.perf_counter() - start))
    return per_step


def plain_loop_in_ray_train(cfg, examples: list, pad_id: int, steps: int, warmup: int) -> list[float]:
    """``plain_loop`` run as the train function of a 1-worker ``TorchTrainer``; results come back in a file."""
    import json

    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    out = Path(cfg.output_dir).with_name("plain_in_ray_train.json")

    def loop(_: dict) -> None:
        out.write_text(json.dumps(plain_loop(cfg, examples, pad_id, steps, warmup)))

    TorchTrainer(loop, torch_config=TorchConfig(backend="gloo"),
                 scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": cfg.cpus_per_worker}),
                 run_config=RunConfig(name="plain", storage_path=str(out.with_name("plain_ray_train")))).fit()
    return json.loads(out.read_text())


@ray.remote(num_cpus=0)
class _IdleActor:
    def ready(self) -> bool:
        return True


def plain_loop_beside_idle_actors(cfg, examples: list, pad_id: int, steps: int, warmup: int,
                                  actors: int) -> list[float]:
    """``plain_loop`` in this process while ``actors`` idle Ray actors live (Ray already started)."""
    idle = [_IdleActor.remote() for _ in range(actors)]
    ray.get([a.ready.remote() for a in idle])
    try:
        return plain_loop(cfg, examples, pad_id, steps, warmup)
    finally:
        for a in idle:
            ray.kill(a)


def ours(cfg, warmup: int) -> tuple[list[float], float]:
    """(tokens/s of each step after ``warmup``, measured share of pad tokens), from the run's metrics
    history (``log_every: 1``: one entry per optimizer step)."""
    from gram_ray.train import train
    from gram_ray.train.export import read_manifest

    history = read_manifest(train(cfg))["history"]
    slots = sum(m["tokens"] / (1 - m["padding_waste"]) for m in history)
    return [m["tokens_per_s"] for m in history if m["step"] > warmup], 1 - sum(m["tokens"] for m in history) / slots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--warmup", type=int, default=4, help="steps left out of the throughput")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--micro-batch", type=int, default=8)
    parser.add_argument("--grad-accum", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2,
                        help="torch threads of the plain loop = CPUs of our one worker; 1 leaves a core of this "
                             "2-core box to Ray's own processes")
    parser.add_argument("--idle-actors", type=int, default=8,
                        help="idle Ray actors beside the last plain-loop row (a 1-worker run's helper actors)")
    args = parser.parse_args()

    from gram_ray.config import TrainConfig
    from gram_ray.tinykit import LlamaShape, build_bench_model, count_parameters

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shape = LlamaShape(layers=args.layers, hidden=args.hidden, heads=args.hidden // 32,
                           intermediate=4 * args.hidden, max_positions=1024)
        model = build_bench_model(root / "model", shape)
        rows = args.steps * args.micro_batch * args.grad_accum
        write_mixed_lengths(root / "data.parquet", rows, seed=0)
        cfg = TrainConfig(objective="sft", role="plain", template="compact", model=str(model),
                          data=[str(root / "data.parquet")], output_dir=str(root / "out"), num_workers=1,
                          cpus_per_worker=args.threads, zero_stage=2, learning_rate=1e-3, warmup_ratio=0.0,
                          max_steps=args.steps, micro_batch_size=args.micro_batch, grad_accum=args.grad_accum,
                          max_length=512, checkpoint_every=10**6, length_group_window=64)
        examples, pad_id = encoded_examples(cfg)
        lengths = [len(e.input_ids) for e in examples]
        grouped, in_order = padding_waste_both_ways(lengths, args.micro_batch)
        mean = sum(lengths) / len(lengths)
        print(f"model: {count_parameters(model) / 1e6:.1f}M params ({args.layers} layers, hidden {args.hidden}); "
              f"{len(examples)} examples, {min(lengths)}-{max(lengths)} tokens (mean {mean:.0f})")
        print(f"padding waste, micro-batch {args.micro_batch}: length-grouped {grouped:.1%}, data order {in_order:.1%}")

        plain = plain_loop(cfg, examples, pad_id, args.steps, args.warmup)
        print(f"plain transformers loop (1 process, {args.threads} threads): {_summary(plain)}")
        ray.init(num_cpus=args.threads, include_dashboard=False, log_to_driver=False)
        ours_steps, ours_waste = ours(cfg, args.warmup)
        print(f"ray train + deepspeed (1 worker x {args.threads} CPUs, ZeRO-2): {_summary(ours_steps)}; "
              f"measured padding waste {ours_waste:.1%}")
        in_worker = plain_loop_in_ray_train(cfg, examples, pad_id, args.steps, args.warmup)
        print(f"plain loop inside a Ray Train worker (1 x {args.threads} CPUs, no DeepSpeed): {_summary(in_worker)}")
        beside = plain_loop_beside_idle_actors(cfg, examples, pad_id, args.steps, args.warmup, args.idle_actors)
        ray.shutdown()
        print(f"plain loop in this process beside {args.idle_actors} idle Ray actors: {_summary(beside)}")
        again = plain_loop(cfg, examples, pad_id, args.steps, args.warmup)
        print(f"plain transformers loop again: {_summary(again)}")
        plain += again
        print(f"effective batch {args.micro_batch * args.grad_accum} examples, {args.steps} steps, "
              f"first {args.warmup} not timed")
    plain_median, worker_median = statistics.median(plain), statistics.median(in_worker)
    print(f"plain loop in a Ray Train worker / in this process: {worker_median / plain_median:.3f}; "
          f"ours / plain loop in a Ray Train worker: {statistics.median(ours_steps) / worker_median:.3f}; "
          f"plain loop beside {args.idle_actors} idle Ray actors / alone: "
          f"{statistics.median(beside) / plain_median:.3f}")
    print(f"ratio_vs_plain={statistics.median(ours_steps) / plain_median:.3f} "
          f"padding_waste={ours_waste:.4f}")


def _summary(per_step: list[float]) -> str:
    return (f"median {statistics.median(per_step):.0f} tokens/s per step "
            f"(min {min(per_step):.0f}, max {max(per_step):.0f}, {len(per_step)} steps)")


if __name__ == "__main__":
    main()
