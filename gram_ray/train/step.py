"""The per-step computation, callable without Ray or DeepSpeed.

``forward_loss`` is what the Ray Train worker runs inside its DeepSpeed engine; ``train_step`` wraps it in
a plain optimizer step with gradient accumulation, for checks on machines without Ray and for the
benchmark's single-process baseline.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from gram_ray.train.objectives import Objective


def to_device(batch: dict, device: torch.device | str) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def forward_loss(model: torch.nn.Module, batch: dict, objective: Objective) -> tuple[torch.Tensor, dict]:
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
    return objective(out.logits, batch)


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    micro_batches: Sequence[dict],
    objective: Objective,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    max_grad_norm: float = 1.0,
) -> dict[str, float]:
    """One optimizer step over ``micro_batches`` (gradient accumulation, each weighted equally, as
    DeepSpeed does). Returns the mean loss, the gradient norm before clipping, the learning rate used and
    the number of non-pad tokens."""
    model.train()
    device = next(model.parameters()).device
    optimizer.zero_grad(set_to_none=True)
    loss_sum, tokens = 0.0, 0
    for batch in micro_batches:
        batch = to_device(batch, device)
        loss, _ = forward_loss(model, batch, objective)
        (loss / len(micro_batches)).backward()
        loss_sum += loss.item()
        tokens += int(batch["attention_mask"].sum())
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    lr = optimizer.param_groups[0]["lr"]
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return {"loss": loss_sum / len(micro_batches), "grad_norm": float(grad_norm), "lr": lr, "tokens": tokens}


def build_optimizer(model: torch.nn.Module, learning_rate: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters; DeepSpeed ZeRO wraps it as a client optimizer."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=learning_rate, weight_decay=weight_decay)


def build_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_ratio: float, min_lr_ratio: float
) -> torch.optim.lr_scheduler.LRScheduler:
    """Linear warmup over ``warmup_ratio`` of the steps, then cosine decay to ``min_lr_ratio``."""
    from transformers import get_cosine_with_min_lr_schedule_with_warmup

    return get_cosine_with_min_lr_schedule_with_warmup(
        optimizer, num_warmup_steps=round(warmup_ratio * total_steps), num_training_steps=total_steps,
        min_lr_rate=min_lr_ratio,
    )
