"""Length-grouped micro-batches and their padding.

Examples arrive in windows of ``length_group_window`` micro-batches; each window is sorted by length,
cut into micro-batches and the micro-batches are shuffled. Neighbours in length share a batch, so padding
stays small on mixed-length data, while the shuffle keeps long and short batches spread over the epoch.
Every worker gets the same number of rows, hence the same number of micro-batches, which DeepSpeed's
collectives and Ray Train's report barrier need.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence

import torch


def group_by_length(lengths: Sequence[int], batch_size: int, rng: random.Random | None) -> list[list[int]]:
    """Index lists of micro-batches: sorted by length and shuffled when ``rng`` is given, else in order."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i]) if rng else list(range(len(lengths)))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if rng:
        rng.shuffle(batches)
    return batches


def padding_waste(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """Share of pad tokens when each batch is padded to its longest example."""
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    return 1.0 - sum(lengths) / padded if padded else 0.0


def micro_batches_per_epoch(rows: int, micro_batch_size: int) -> int:
    """Windows are whole multiples of the micro-batch size, so only the last batch can be short."""
    return math.ceil(rows / micro_batch_size)


def collate(input_ids: Sequence[Sequence[int]], weights: Sequence[Sequence[float]], pad_id: int) -> dict:
    """Right-padded tensors: ``input_ids``, ``attention_mask`` and ``weights`` (0 on padding)."""
    width = max(len(ids) for ids in input_ids)
    ids = torch.full((len(input_ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(input_ids), width), dtype=torch.long)
    w = torch.zeros((len(input_ids), width), dtype=torch.float32)
    for row, (seq, seq_w) in enumerate(zip(input_ids, weights, strict=True)):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
        w[row, : len(seq)] = torch.tensor(seq_w, dtype=torch.float32)
    return {"input_ids": ids, "attention_mask": mask, "weights": w}


def batches_from_windows(
    windows: Iterator[dict], micro_batch_size: int, pad_id: int, rng: random.Random | None
) -> Iterator[dict]:
    """Collated micro-batches from windows of rows (dicts of ``input_ids`` and ``weights`` columns)."""
    for window in windows:
        ids, weights = window["input_ids"], window["weights"]
        for batch in group_by_length([len(x) for x in ids], micro_batch_size, rng):
            yield collate([ids[i] for i in batch], [weights[i] for i in batch], pad_id)

