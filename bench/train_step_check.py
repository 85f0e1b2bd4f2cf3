"""The per-step training code without Ray, DeepSpeed or a tokenizer: bf16 steps of a random Llama.

    python bench/train_step_check.py --device cuda --dtype bf16     # on a GPU box with torch+transformers
    .venv/bin/python bench/train_step_check.py --device cpu --dtype fp32

Imports only ``gram_ray.train.{step,objectives,batching}`` (torch) and transformers, so it runs where Ray
is not installed. It trains the SFT and the GRAM stage-2 objective for a few steps on fixed random
batches (memorisable) and prints the loss before and after, tokens/s and peak memory.
"""

from __future__ import annotations

import argparse
import random
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from gram_ray.train.batching import collate
from gram_ray.train.objectives import make_objective
from gram_ray.train.step import build_optimizer, build_scheduler, train_step

VOCAB, LABEL_IDS = 1024, (65, 66)


def batches(objective: str, count: int, micro: int, rng: random.Random) -> list[dict]:
    """Right-padded random sequences; SFT weights the second half, stage 2 ends each row with a label."""
    out = []
    for _ in range(count):
        ids, weights = [], []
        for _ in range(micro):
            n = rng.randint(64, 256)
            seq = [rng.randrange(100, VOCAB) for _ in range(n)]
            if objective == "gram_stage2":
                seq[-1] = rng.choice(LABEL_IDS)
                w = [0.0] * (n - 1) + [1.0]
            else:
                w = [0.0] * (n // 2) + [1.0] * (n - n // 2)
            ids.append(seq)
            weights.append(w)
        out.append(collate(ids, weights, pad_id=0))
    return out


def run(objective: str, model: torch.nn.Module, args: argparse.Namespace) -> str:
    rng = random.Random(0)
    data = batches(objective, args.grad_accum, args.micro_batch, rng)
    loss_fn = make_objective(objective, LABEL_IDS, smoothing=0.1)
    optimizer = build_optimizer(model, learning_rate=1e-3, weight_decay=0.0)
    scheduler = build_scheduler(optimizer, args.steps, warmup_ratio=0.0, min_lr_ratio=0.1)
    history, tokens, start = [], 0, time.perf_counter()
    for _ in range(args.steps):
        out = train_step(model, optimizer, data, loss_fn, scheduler)
        history.append(out["loss"])
        tokens += out["tokens"]
    if args.device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return (f"{objective}: loss {history[0]:.4f} -> {history[-1]:.4f} in {args.steps} steps, "
            f"{tokens / seconds:.0f} tokens/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--micro-batch", type=int, default=4)
    parser.add_argument("--grad-accum", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=4)
    args = parser.parse_args()
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    print(f"torch {torch.__version__}, device {args.device}"
          + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else "") + f", {args.dtype}")
    for objective in ("sft", "gram_stage2"):
        torch.manual_seed(0)
        config = LlamaConfig(vocab_size=VOCAB, hidden_size=args.hidden, intermediate_size=4 * args.hidden,
                             num_hidden_layers=args.layers, num_attention_heads=args.hidden // 64,
                             num_key_value_heads=args.hidden // 64, max_position_embeddings=512)
        model = LlamaForCausalLM(config).to(device=args.device, dtype=dtype)
        print(run(objective, model, args))
    if args.device == "cuda":
        print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
