"""Training losses over a causal LM's logits; pure torch, no Ray, no DeepSpeed.

A batch is right-padded ``input_ids``, ``attention_mask`` and per-token ``weights`` (0 on prompt and
padding). The logit at position t predicts token t+1, so every loss reads ``logits[:, :-1]`` against
``input_ids[:, 1:]`` and ``weights[:, 1:]``: the same shift for SFT, GRAM stage 1 and stage 2, which is
what keeps stage 2 from reading its logits one position off.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F

Objective = Callable[[torch.Tensor, dict], tuple[torch.Tensor, dict[str, torch.Tensor]]]


def completion_loss(logits: torch.Tensor, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted negative log-likelihood of the weighted tokens, divided by their count.

    SFT and GRAM stage 1 (-log p([y_a, y_b] | x), per token) both use it; a decision token with weight
    10 counts ten times as much as another completion token.
    """
    weights = batch["weights"][:, 1:]
    selected = weights > 0
    nll = F.cross_entropy(logits[:, :-1][selected].float(), batch["input_ids"][:, 1:][selected], reduction="none")
    loss = (nll * weights[selected]).sum() / selected.sum().clamp(min=1)
    return loss, {"loss": loss.detach()}


def label_loss(
    logits: torch.Tensor, batch: dict, label_ids: tuple[int, int], smoothing: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """GRAM stage 2: two-way cross-entropy over the A/B logits at the position before each label token.

    Each example carries exactly one weighted token, its label. The target puts 1 - ``smoothing`` on the
    true label and ``smoothing`` on the other, so with d = Z_true - Z_other the loss is
    -log sigmoid(d) + smoothing * d (GRAM eq. 8). Averaged over every example of the batch.
    """
    selected = batch["weights"][:, 1:] > 0
    if not torch.all(selected.sum(dim=1) == 1):
        raise ValueError("gram_stage2 needs exactly one label token per example")
    rows = torch.arange(logits.shape[0], device=logits.device)
    position = selected.int().argmax(dim=1)  # logits[:, p] predict the label at input position p + 1
    label_token = batch["input_ids"][rows, position + 1]
    id_a, id_b = label_ids
    if not torch.all((label_token == id_a) | (label_token == id_b)):
        raise ValueError("gram_stage2 label token is neither the A nor the B token")
    pair_logits = logits[rows, position][:, [id_a, id_b]].float()
    target = (label_token == id_b).long()
    log_p = F.log_softmax(pair_logits, dim=-1)
    true_lp = log_p.gather(1, target[:, None]).squeeze(1)
    other_lp = log_p.gather(1, (1 - target)[:, None]).squeeze(1)
    loss = -((1 - smoothing) * true_lp + smoothing * other_lp).mean()
    accuracy = (pair_logits.argmax(dim=-1) == target).float().mean()
    return loss, {"loss": loss.detach(), "accuracy": accuracy}


def make_objective(objective: str, label_ids: tuple[int, int] | None = None, smoothing: float = 0.0) -> Objective:
    if objective == "gram_stage2":
        if label_ids is None:
            raise ValueError("gram_stage2 needs the label token ids")
        return partial(label_loss, label_ids=tuple(label_ids), smoothing=smoothing)
    return completion_loss
