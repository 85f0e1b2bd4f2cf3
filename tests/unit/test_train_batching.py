"""Length grouping keeps padding low on mixed-length data and never loses or repeats an example."""

import random

import torch

from gram_ray.train.batching import (
    batches_from_windows,
    collate,
    group_by_length,
    micro_batches_per_epoch,
    padding_waste,
)


def _mixed_lengths(n: int, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [rng.choice([rng.randint(20, 60), rng.randint(200, 400), rng.randint(800, 1200)]) for _ in range(n)]


def test_grouping_cuts_padding_below_ten_percent_on_mixed_lengths():
    lengths = _mixed_lengths(512)
    grouped = group_by_length(lengths, 8, random.Random(0))
    in_order = group_by_length(lengths, 8, None)
    assert sorted(i for b in grouped for i in b) == list(range(512))
    assert [i for b in in_order for i in b] == list(range(512))
    assert padding_waste(lengths, grouped) < 0.10 < padding_waste(lengths, in_order)


def test_grouped_batches_are_shuffled_not_sorted():
    lengths = _mixed_lengths(256, seed=1)
    batches = group_by_length(lengths, 4, random.Random(0))
    firsts = [lengths[b[0]] for b in batches]
    assert firsts != sorted(firsts)


def test_padding_waste_counts_pad_tokens():
    assert padding_waste([2, 4, 3, 3], [[0, 1], [2, 3]]) == 1 - 12 / 14
    assert padding_waste([], []) == 0.0


def test_collate_pads_right_and_zeroes_padding_weights():
    batch = collate([[1, 2, 3], [4]], [[0.0, 1.0, 1.0], [1.0]], pad_id=0)
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["weights"].tolist() == [[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]]
    assert batch["input_ids"].dtype == torch.long


def test_windows_yield_every_example_once_in_micro_batches():
    lengths = _mixed_lengths(37, seed=2)
    rows = [list(range(n)) for n in lengths]
    windows = [{"input_ids": rows[i : i + 16], "weights": [[1.0] * len(r) for r in rows[i : i + 16]]}
               for i in range(0, 37, 16)]
    batches = list(batches_from_windows(iter(windows), 4, pad_id=0, rng=random.Random(0)))
    assert len(batches) == micro_batches_per_epoch(37, 4) == 10
    seen = sorted(int(b["attention_mask"][r].sum()) for b in batches for r in range(len(b["input_ids"])))
    assert seen == sorted(lengths)

