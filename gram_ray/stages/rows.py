"""The rows a stage moves between its steps, and where they are held.

An engine request of a row is a ``Request``; after the engine (or instead of it: a row rejected before the
engine, or one a stage plans no request for) each request is one *settled* row of ``SETTLED_SCHEMA``,
which the stage's aggregate function sees as a ``Settled``.

Rows are held in one of two ways, decided once when the stage reads its input (``read_rows``):

* ``LocalRows``: Arrow tables in the driver. Small inputs (at most ``LOCAL_ROWS`` rows and ``LOCAL_BYTES``
  of Parquet) are planned, sorted and written this way, and only the engine pass goes through Ray Data: a
  Ray Data job costs tens of seconds of task start-up here however few rows it has, which for the demo's
  stages of a few hundred pairs was a third of their time.
* ``DatasetRows``: a Ray Dataset, for everything else.

Both offer the same few operations, so the runner never asks which one it holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from gram_ray.data.io import parquet_files, parquet_rows

if TYPE_CHECKING:
    from ray.data import Dataset

SETTLED_COLUMNS = ("id", "sub", "pair_json", "context_json", "result_json", "error", "reject")
SETTLED_SCHEMA = pa.schema([pa.field(c, pa.string()) for c in SETTLED_COLUMNS])
REQUEST_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string()),
        pa.field("sub", pa.string()),
        pa.field("pair_json", pa.string()),
        pa.field("context_json", pa.string()),
        pa.field("tokenized_prompt", pa.list_(pa.int64())),
        pa.field("sampling_json", pa.string()),
    ]
)
LOCAL_ROWS = 10_000  # inputs up to this many rows ...
LOCAL_BYTES = 8 << 20  # ... and Parquet bytes are held in the driver (see the module docstring); the bytes
# bound the driver's memory, which holds every request's token ids (votes x orders of them per row)

Batch = Callable[..., pa.Table]  # an Arrow table -> an Arrow table (a Ray Data ``map_batches`` function)


@dataclass(frozen=True)
class Request:
    """One engine request of a row: ``sub`` orders and names it among the row's requests."""

    sub: str
    prompt_ids: list[int]
    sampling: dict
    context: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Settled:
    """One request's outcome (or a row's rejection) as the aggregate function sees it."""

    sub: str
    context: dict
    result: dict


@dataclass(frozen=True)
class LocalRows:
    """Rows held in the driver: one Arrow table per input file (files may disagree on column types, so
    each is planned on its own), and one per step after that."""

    tables: tuple[pa.Table, ...]

    def map_batches(self, fn: Batch, **kwargs: Any) -> LocalRows:
        return LocalRows(tuple(fn(table, **kwargs) for table in self.tables))

    def materialize(self) -> LocalRows:
        return self

    def count(self) -> int:
        return sum(table.num_rows for table in self.tables)

    def column_names(self) -> list[str]:
        return sorted({name for table in self.tables for name in table.column_names})

    def table(self, schema: pa.Schema) -> pa.Table:
        """All rows as one table; rows of a step share ``schema``, which an empty set of rows takes."""
        return pa.concat_tables(self.tables) if self.tables else schema.empty_table()


@dataclass(frozen=True)
class DatasetRows:
    """Rows in a Ray Dataset (lazy until something consumes or materializes it)."""

    dataset: Dataset

    def map_batches(self, fn: Batch, **kwargs: Any) -> DatasetRows:
        return DatasetRows(self.dataset.map_batches(fn, batch_format="pyarrow", fn_kwargs=kwargs))

    def materialize(self) -> DatasetRows:
        return DatasetRows(self.dataset.materialize())

    def count(self) -> int:
        return self.dataset.count()

    def column_names(self) -> list[str]:
        return self.dataset.schema().names


Rows = LocalRows | DatasetRows


def read_rows(source: str | Path | Dataset) -> tuple[Rows, int]:
    """(rows, their count): a Ray Dataset as given; a Parquet file or folder held in the driver when it is
    small, else read by Ray Data (counted from the footers, without a job)."""
    import ray.data

    if isinstance(source, ray.data.Dataset):
        return DatasetRows(source), source.count()
    files = parquet_files(source)
    count = parquet_rows(files)
    if count <= LOCAL_ROWS and sum(f.stat().st_size for f in files) <= LOCAL_BYTES:
        return LocalRows(tuple(pq.read_table(f) for f in files)), count
    return DatasetRows(ray.data.read_parquet([str(f) for f in files])), count


def union(parts: Sequence[Rows]) -> Rows:
    """The rows of every part, in order; all parts come from one input, so they are held alike."""
    if all(isinstance(p, LocalRows) for p in parts):
        return LocalRows(tuple(table for p in parts for table in p.tables))
    if not all(isinstance(p, DatasetRows) for p in parts):
        raise TypeError("cannot union rows held in the driver with rows in a Ray Dataset")
    first, *rest = (p.dataset for p in parts)
    return DatasetRows(first.union(*rest) if rest else first)


def settled_batches(dataset: Dataset) -> Iterator[pa.Table]:
    """A Ray Dataset of settled rows as SETTLED_SCHEMA tables, as they stream."""
    for batch in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
        if batch.num_rows:
            yield batch.select(list(SETTLED_COLUMNS)).cast(SETTLED_SCHEMA)
