"""A worker's epoch order is a pure function of its rows, the seed, the epoch and the rank: whatever order
Ray Data delivers the rows in, and whichever epoch a (resumed) worker starts at, it trains the same
micro-batches in the same order."""

import random

import pytest

from gram_ray.config import TrainConfig
from gram_ray.train.epochs import ShardEpochs, epoch_order, first_window_rows, row_key
from gram_ray.train.loop import Progress, _batches_left_in_epoch


def _rows(n: int) -> list[tuple]:
    """(key, input_ids, weights) of ``n`` distinct examples of mixed length."""
    rows = []
    for i in range(n):
        ids = [i] * (1 + i % 5)
        weights = [1.0] * len(ids)
        rows.append((row_key(ids, weights), ids, weights))
    return rows


class _Shard:
    """A dataset part stand-in: delivers ``rows`` in the given order, in batches of any size, and counts its
    epochs (Ray Data streaming executions)."""

    def __init__(self, rows: list[tuple], batch_size: int | None = None) -> None:
        self.rows, self.batch_size, self.passes = rows, batch_size, 0

    def iter_batches(self, batch_size: int, **_: object):
        self.passes += 1
        size = self.batch_size or batch_size
        for start in range(0, len(self.rows), size):
            chunk = self.rows[start : start + size]
            yield {"key": [r[0] for r in chunk], "input_ids": [r[1] for r in chunk], "weights": [r[2] for r in chunk]}


def _windows(epochs: ShardEpochs, epoch: int) -> list[list[int]]:
    """Each window's examples, by their first token id."""
    return [[ids[0] for ids in window["input_ids"]] for window in epochs.windows(epoch)]


def test_row_key_is_the_content_of_ids_and_weights():
    assert row_key([1, 2, 3], [0.0, 1.0, 1.0]) == row_key([1, 2, 3], [0.0, 1.0, 1.0])
    keys = {row_key([1, 2, 3], [0.0, 1.0, 1.0]), row_key([1, 2, 4], [0.0, 1.0, 1.0]),
            row_key([1, 2, 3], [1.0, 1.0, 1.0]), row_key([1, 2], [0.0, 1.0]), row_key([], [])}
    assert len(keys) == 5 and all(len(k) == 32 for k in keys)


def test_epoch_order_depends_on_seed_epoch_and_rank_only():
    keys = [r[0] for r in _rows(50)]
    shuffled = list(keys)
    random.Random(7).shuffle(shuffled)
    by_key = [keys[i] for i in epoch_order(keys, seed=3, epoch=2, rank=1)]
    assert [shuffled[i] for i in epoch_order(shuffled, seed=3, epoch=2, rank=1)] == by_key  # input order is irrelevant
    assert sorted(by_key) == sorted(keys)  # a permutation
    others = [[keys[i] for i in epoch_order(keys, seed, epoch, rank)] for seed, epoch, rank in
              [(3, 0, 1), (3, 1, 1), (3, 3, 1), (4, 2, 1), (3, 2, 0)]]
    assert len({tuple(o) for o in [by_key, *others]}) == 6  # another epoch, seed or rank: another order
    assert epoch_order([], 0, 0, 0) == []


def test_cached_part_orders_each_epoch_alike_however_it_was_delivered_and_reads_once():
    rows = _rows(37)
    delivered = list(rows)
    random.Random(1).shuffle(delivered)
    first = ShardEpochs(_Shard(rows), window=8, micro_batch_size=2, seed=0, rank=0, cache=True)
    second = ShardEpochs(_Shard(delivered, batch_size=5), window=8, micro_batch_size=2, seed=0, rank=0, cache=True)
    epochs = [_windows(first, e) for e in range(3)]
    assert first.shard.passes == 1
    assert [_windows(second, e) for e in (2, 0, 1)] == [epochs[2], epochs[0], epochs[1]]  # a resume at epoch 2
    assert all(sorted(i for w in windows for i in w) == list(range(37)) for windows in epochs)
    assert len({tuple(i for w in windows for i in w) for windows in epochs}) == 3  # a new order every epoch
    assert [len(w) for w in epochs[0]] == [8, 8, 8, 8, 5]


def test_streamed_part_moves_window_boundaries_with_the_epoch_and_streams_every_epoch():
    rows = sorted(_rows(40))  # the driver sorts every part by key
    streamed = ShardEpochs(_Shard(rows, batch_size=3), window=8, micro_batch_size=2, seed=0, rank=0, cache=False)
    epochs = [_windows(streamed, e) for e in range(4)]
    assert streamed.shard.passes == 4
    in_key_order = [r[1][0] for r in rows]
    for epoch, windows in enumerate(epochs):
        assert [i for w in windows for i in w] == in_key_order
        first = first_window_rows(0, epoch, 0, window=8, micro_batch_size=2)
        assert len(windows[0]) == first and first % 2 == 0 and 2 <= first <= 8
        assert all(len(w) == 8 for w in windows[1:-1]) and 0 < len(windows[-1]) <= 8
    assert len({tuple(len(w) for w in windows) for windows in epochs}) > 1  # the boundaries move
    again = ShardEpochs(_Shard(rows, batch_size=16), window=8, micro_batch_size=2, seed=0, rank=0, cache=False)
    assert _windows(again, 3) == epochs[3]


def test_streamed_part_out_of_key_order_is_an_error_not_a_silent_new_order():
    rows = sorted(_rows(10))
    rows[3], rows[6] = rows[6], rows[3]
    streamed = ShardEpochs(_Shard(rows), window=4, micro_batch_size=2, seed=0, rank=0, cache=False)
    with pytest.raises(RuntimeError, match="did not arrive in key order"):
        _windows(streamed, 0)


@pytest.mark.parametrize("cache", [True, False])
def test_a_resumed_epoch_trains_the_micro_batches_an_uninterrupted_one_had_left(cache):
    cfg = TrainConfig(model="m", data=["d"], output_dir="o", micro_batch_size=2, length_group_window=3, seed=5)
    rows = sorted(_rows(29))
    delivered = rows if not cache else random.Random(2).sample(rows, len(rows))

    def epoch_batches(shard: _Shard, epoch: int, consumed: int) -> list[list[list[int]]]:
        epochs = ShardEpochs(shard, 6, 2, cfg.seed, rank=1, cache=cache)
        progress = Progress(epoch=epoch, batches_into_epoch=consumed)
        return [(i, b["input_ids"].tolist()) for i, b in _batches_left_in_epoch(epochs, progress, cfg, 0, rank=1)]

    whole = epoch_batches(_Shard(rows), epoch=3, consumed=0)
    assert len(whole) == 15
    assert epoch_batches(_Shard(delivered, batch_size=4), epoch=3, consumed=7) == whole[7:]
