"""Which rows a worker trains on in which order, epoch after epoch: a pure function of the rows, the
seed, the epoch and the rank, so that a run resumed mid-epoch (a relaunched driver, a restarted worker
group) replays the very micro-batches an uninterrupted run would have trained on, and skipping the ones a
checkpoint had consumed skips the same rows.

Ray Data does not promise an order: after a restart it deals blocks and rows anew. So every example carries
a ``key``, a hash of its token ids and weights; the driver sorts the examples by it and cuts the sorted
list into one equal part per rank (``rank_parts``), and each worker orders its part itself:

- a part kept in memory (``cache``) is read once, sorted by key and shuffled whole every epoch;
- a streamed part is read in key order every epoch (Ray Data's ``preserve_order``, checked row by row), cut
  into windows whose boundaries move with the epoch; the micro-batches of each window are shuffled
  (``batching.group_by_length``). Rows do not move across windows, so its shuffle is local, as Ray
  Data's local shuffle buffer was; the key order itself is a fixed random order of the rows.

Two examples with the same key have the same tokens and weights, so their relative order changes nothing.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator, Sequence

import numpy as np

KEY = "key"


def row_key(input_ids: Sequence[int], weights: Sequence[float]) -> str:
    """The example's sort key: a 128-bit hash of its token ids (int32) and loss weights (float32)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(np.asarray(input_ids, dtype=np.int32).tobytes())
    digest.update(b"/")
    digest.update(np.asarray(weights, dtype=np.float32).tobytes())
    return digest.hexdigest()


def epoch_order(keys: Sequence[str], seed: int, epoch: int, rank: int) -> list[int]:
    """Indices into ``keys`` in the order rank ``rank`` trains them in ``epoch``: sorted by key, then
    shuffled by (seed, epoch, rank); the same whatever order the keys came in."""
    order = sorted(range(len(keys)), key=keys.__getitem__)
    random.Random(f"{seed}/{epoch}/{rank}/rows").shuffle(order)
    return order


def first_window_rows(seed: int, epoch: int, rank: int, window: int, micro_batch_size: int) -> int:
    """Rows in a streamed epoch's first window: a whole number of micro-batches, 1 up to a full window,
    drawn by (seed, epoch, rank), so that window boundaries (hence micro-batches) move every epoch while
    only an epoch's last micro-batch can be short."""
    return micro_batch_size * random.Random(f"{seed}/{epoch}/{rank}/window").randint(1, window // micro_batch_size)


def rank_parts(dataset, examples: int, world: int) -> list:
    """``dataset`` (sorted by key) cut into ``world`` parts of ``examples // world`` rows, in key order; the
    remainder (the last rows in key order) is left out, as Ray Train's equal split would leave it."""
    per_rank = examples // world
    return dataset.split_at_indices([per_rank * (r + 1) for r in range(world)])[:world]


def rank_dataset(rank: int) -> str:
    """The name under which a worker finds its part of the examples (``ray.train.get_dataset_shard``)."""
    return f"train_rank_{rank}"


class ShardEpochs:
    """This worker's part of the examples, epoch after epoch, in windows of ``window`` rows.

    Every Ray Data epoch starts a streaming execution, which on a part of a few micro-batches costs more
    than its training steps (the demo's seed sets are 2-3 micro-batches an epoch for hundreds of steps).
    A small part (``cache``) is therefore read whole before its first step (so Ray Data's work is done
    before training, not beside it on the cores the step uses) and ordered in memory; a large one streams
    every epoch.
    """

    def __init__(self, shard, window: int, micro_batch_size: int, seed: int, rank: int, cache: bool) -> None:
        self.shard, self.window, self.micro_batch_size = shard, window, micro_batch_size
        self.seed, self.rank, self.cache = seed, rank, cache
        self.rows: list[tuple] | None = None  # (key, input_ids, weights) of a cached part

    def windows(self, epoch: int) -> Iterator[dict]:
        if self.cache:
            return self._cached(epoch)
        return self._streamed(epoch)

    def _cached(self, epoch: int) -> Iterator[dict]:
        if self.rows is None:
            self.rows = [row for batch in self._read() for row in _rows(batch)]
        order = epoch_order([r[0] for r in self.rows], self.seed, epoch, self.rank)
        for start in range(0, len(order), self.window):
            yield _window([self.rows[i] for i in order[start : start + self.window]])

    def _streamed(self, epoch: int) -> Iterator[dict]:
        size = first_window_rows(self.seed, epoch, self.rank, self.window, self.micro_batch_size)
        buffer: list[tuple] = []
        previous = ""
        for batch in self._read():
            for row in _rows(batch):
                if row[0] < previous:
                    raise RuntimeError(f"rank {self.rank}'s examples did not arrive in key order ({row[0]} after "
                                       f"{previous}); the epoch's order would not survive a restart")
                previous = row[0]
                buffer.append(row)
                if len(buffer) == size:
                    yield _window(buffer)
                    buffer, size = [], self.window
        if buffer:
            yield _window(buffer)

    def _read(self) -> Iterator[dict]:
        return self.shard.iter_batches(batch_size=self.window, batch_format="numpy")


def _rows(batch: dict) -> Iterator[tuple]:
    return zip((str(k) for k in batch[KEY]), batch["input_ids"], batch["weights"], strict=True)


def _window(rows: list[tuple]) -> dict:
    return {"input_ids": [r[1] for r in rows], "weights": [r[2] for r in rows]}
