"""Split a large unlabeled pool into self-training rounds, in bounded memory, never reusing a row.

Two streaming passes. Pass 1 spreads rows over ``buckets`` Parquet files by a hash of their pair id, so
duplicates (and a pair's side-swapped twin, which shares its id) land in the same bucket. Pass 2 reads
one bucket at a time, sorts it by id, drops repeated ids and ids listed in ``exclude`` (the labeled and
held-out sets: unlabeled rows must not leak them), and deals the survivors into rounds of ``round_size``.
Memory holds one row group of a source, one read batch or one bucket: the bucket count grows with the
rows (about ``BUCKET_ROWS`` a bucket, counted from the Parquet footers), so a bucket, and each row group
written from it, stays the same size whatever the pool's size, up to ``MAX_BUCKETS`` (or half the
open-file limit) buckets. Hash order doubles as a deterministic shuffle, so each round is a random sample
of the pool rather than its first rows, and the split does not depend on the order of the sources; it
does depend on the bucket count, so adding rows to a pool can reorder the whole deal.
"""

from __future__ import annotations

import math
import resource
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from gram_ray.data.io import parquet_files, parquet_rows
from gram_ray.data.schemas import PAIR_SCHEMA

CHUNK_ROWS = 65536
BUCKET_ROWS = 20_000  # rows held in memory at once in pass 2
MAX_BUCKETS = 1_000  # files open at once in pass 1; past 20M pool rows, buckets grow instead


@dataclass
class RoundSplit:
    rounds: list[Path]
    rows: list[int]
    duplicates: int = 0
    excluded: int = 0
    leftover: int = 0  # rows past the last full round, written to leftover.parquet
    buckets: int = 0
    largest_bucket: int = 0  # rows of the biggest bucket: what pass 2 holds in memory
    extra: dict = field(default_factory=dict)


def _bucket_of(ids: pa.Array, buckets: int) -> list[int]:
    return [int(i[:8], 16) % buckets for i in ids.to_pylist()]


def _scatter(files: list[Path], folder: Path, buckets: int, columns: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    writers: dict[int, pq.ParquetWriter] = {}
    schema = PAIR_SCHEMA if columns == PAIR_SCHEMA.names else None
    try:
        for path in files:
            # ParquetFile reads one row group at a time; a pyarrow dataset scan reads a whole file ahead of a
            # slow consumer whatever its read-ahead settings (measured: 715 MiB for a 1.5M-row file)
            for batch in pq.ParquetFile(path).iter_batches(batch_size=CHUNK_ROWS, columns=columns):
                table = pa.Table.from_batches([batch])
                if schema is not None:
                    table = table.cast(schema)
                keys = pa.array(_bucket_of(table["id"].combine_chunks(), buckets))
                for b in set(keys.to_pylist()):
                    part = table.filter(pc.equal(keys, b))
                    if b not in writers:
                        writers[b] = pq.ParquetWriter(folder / f"{b:05d}.parquet", part.schema)
                    writers[b].write_table(part)
    finally:
        for w in writers.values():
            w.close()


class _RoundWriter:
    """Deals rows into round files of exactly ``round_size`` rows, then into ``leftover.parquet``."""

    def __init__(self, out_dir: Path, round_size: int, rounds: int):
        self.out_dir, self.round_size, self.rounds = out_dir, round_size, rounds
        self.paths: list[Path] = []
        self.rows: list[int] = []
        self.leftover = 0
        self._writer: pq.ParquetWriter | None = None

    def _open(self, schema: pa.Schema) -> None:
        if self._writer is not None:
            self._writer.close()
        index = len(self.paths)
        path = self.out_dir / (f"round_{index + 1:02d}.parquet" if index < self.rounds else "leftover.parquet")
        self.paths.append(path)
        self.rows.append(0)
        self._writer = pq.ParquetWriter(path, schema)

    def write(self, table: pa.Table) -> None:
        while table.num_rows:
            if self._writer is None or (len(self.paths) <= self.rounds and self.rows[-1] == self.round_size):
                self._open(table.schema)
            room = table.num_rows if len(self.paths) > self.rounds else self.round_size - self.rows[-1]
            head, table = table.slice(0, room), table.slice(room)
            self._writer.write_table(head)
            self.rows[-1] += head.num_rows

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if len(self.paths) > self.rounds:
            self.leftover = self.rows.pop()
            self.paths.pop()


def _bucket_rows(path: Path, blocked: pa.Array) -> tuple[pa.Table, int, int]:
    """One bucket sorted by id (so rounds do not depend on source order), without repeated or excluded
    ids: (rows, duplicates dropped, excluded dropped)."""
    table = pq.read_table(path)
    table = table.take(pc.sort_indices(table["id"]))
    ids = table["id"].combine_chunks()
    first = pc.not_equal(ids.slice(1), ids.slice(0, len(ids) - 1)) if len(ids) > 1 else pa.array([], pa.bool_())
    unique = pa.concat_arrays([pa.array([True] * min(1, len(ids))), first.cast(pa.bool_())])
    table = table.filter(unique)
    allowed = pc.invert(pc.is_in(table["id"], value_set=blocked))
    kept = table.filter(allowed)
    return kept, len(ids) - table.num_rows, table.num_rows - kept.num_rows


def bucket_count(rows: int) -> int:
    """Buckets of about ``BUCKET_ROWS`` rows, no more than ``MAX_BUCKETS`` or half the open-file limit (pass 1
    keeps one file open per bucket)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    cap = MAX_BUCKETS if soft == resource.RLIM_INFINITY else min(MAX_BUCKETS, max(1, soft // 2))
    return min(cap, max(1, math.ceil(rows / BUCKET_ROWS)))


def _clear(out: Path) -> None:
    """Remove an earlier split's files, so that none is mistaken for this one's."""
    for old in [*out.glob("round_*.parquet"), out / "leftover.parquet"]:
        old.unlink(missing_ok=True)


def split_rounds(sources: Iterable[str | Path], out_dir: str | Path, round_size: int, rounds: int,
                 exclude: Iterable[str | Path] = (), buckets: int | None = None) -> RoundSplit:
    """Write ``round_01.parquet`` ... with ``round_size`` unique, never-excluded pairs each.

    ``buckets`` defaults to ``bucket_count`` of the pool's and the excluded files' rows. Earlier round files
    in ``out_dir`` are removed first. Raises ValueError, leaving no round file, when the pool cannot fill
    ``rounds`` rounds, naming how many rows it had."""
    if round_size < 1 or rounds < 1:
        raise ValueError("round_size and rounds must be >= 1")
    pool_files, exclude_files = parquet_files(list(sources)), parquet_files(list(exclude))
    buckets = buckets or bucket_count(parquet_rows(pool_files) + parquet_rows(exclude_files))
    out = Path(out_dir)
    _clear(out)
    work = out / ".buckets"
    shutil.rmtree(work, ignore_errors=True)
    _scatter(pool_files, work / "pool", buckets, PAIR_SCHEMA.names)
    _scatter(exclude_files, work / "exclude", buckets, ["id"])
    writer = _RoundWriter(out, round_size, rounds)
    split = RoundSplit([], [], buckets=buckets)
    for b in range(buckets):
        pool = work / "pool" / f"{b:05d}.parquet"
        if not pool.exists():
            continue
        excluded = work / "exclude" / f"{b:05d}.parquet"
        blocked = pq.read_table(excluded)["id"].combine_chunks() if excluded.exists() else pa.array([], pa.string())
        table, dup, exc = _bucket_rows(pool, blocked)
        split.largest_bucket = max(split.largest_bucket, table.num_rows + dup + exc)
        split.duplicates += dup
        split.excluded += exc
        writer.write(table)
    writer.close()
    shutil.rmtree(work, ignore_errors=True)
    if len(writer.paths) < rounds or writer.rows[-1] < round_size:
        _clear(out)
        have = sum(writer.rows) + writer.leftover
        raise ValueError(f"{rounds} rounds of {round_size} rows need {rounds * round_size} unique unlabeled pairs; "
                         f"the pool has {have} after dropping {split.duplicates} duplicates and "
                         f"{split.excluded} excluded")
    split.rounds, split.rows, split.leftover = writer.paths, writer.rows, writer.leftover
    return split
