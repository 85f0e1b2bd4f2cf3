"""What a stage writes: its declared outputs, and the writing itself (sort by pair -> aggregate -> part
files -> summary -> swap into place).

Each stage declares its name and output folders once, as a ``StageOutputs``; the stage writes them and
the pipelines and reports read them by those names. Settled rows are sorted by pair, each pair's rows are
aggregated (generic outcomes first: rejected before the engine, failed in it, id not unique), and the
records are written into a temporary folder that replaces the output folder at the end; its
``summary.json`` says whether every input row was accounted for.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from gram_ray.data.files import replace_folder
from gram_ray.stages.resume import Checkpoint
from gram_ray.stages.rows import SETTLED_SCHEMA, LocalRows, Rows, Settled

REJECTS = "rejects"
ROWS_PER_FILE = 100_000
BUCKETS = 1 << 16  # sort buckets: a hash of the id, so range partitions are even and boundaries numeric

Aggregate = Callable[[dict, list[Settled]], list[tuple[str, dict]]]


@dataclass(frozen=True)
class StageOutputs:
    """A stage's name and the output folders it writes: ``primary`` (one row per input row that made it
    through), the ``extra`` evidence folders, and ``rejects``."""

    name: str
    primary: str
    extra: tuple[str, ...] = ()

    @property
    def views(self) -> tuple[str, ...]:
        return (self.primary, *self.extra, REJECTS)


def category(reason: str) -> str:
    """The part of a reason that summaries count ("low_confidence: 0.41 < 0.6" -> "low_confidence")."""
    return reason.split(":", 1)[0]


@dataclass
class StageSummary:
    """What a stage wrote: row counts per output folder and rejected rows per reason category."""

    stage: str
    out_dir: str
    inputs: int
    outputs: dict[str, int]
    rejected: dict[str, int]
    complete: bool
    primary: str
    resumed: int = 0  # engine rows taken from an earlier, interrupted attempt

    @property
    def kept(self) -> int:
        return self.outputs.get(self.primary, 0)

    @property
    def paths(self) -> dict[str, str]:
        return {name: str(Path(self.out_dir) / name) for name in self.outputs}

    def __str__(self) -> str:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.rejected.items())) or "none"
        state = "complete" if self.complete else "INCOMPLETE: kept + rejected != input"
        resumed = f", {self.resumed} engine rows resumed" if self.resumed else ""
        return (f"[{self.stage}] {self.inputs} in: {self.kept} {self.primary}, {sum(self.rejected.values())} "
                f"rejected ({reasons}) -> {self.out_dir} ({state}{resumed})")


def _add_bucket(batch: pa.Table) -> pa.Table:
    buckets = [int.from_bytes(hashlib.sha256(i.encode()).digest()[:2], "big") for i in batch.column("id").to_pylist()]
    return batch.append_column("bucket", pa.array(buckets, pa.int32()))


def sort_by_pair(settled: Rows, expected_rows: int) -> Iterator[pa.Table]:
    """Batches of rows ordered by (hash bucket of id, id, sub): every pair's rows together, in an order that
    depends only on the ids. For a Ray Dataset, explicit range boundaries spare Ray's sampling pass and its
    default of 200 partitions."""
    if isinstance(settled, LocalRows):
        yield from _add_bucket(settled.table(SETTLED_SCHEMA)).sort_by(
            [("bucket", "ascending"), ("id", "ascending"), ("sub", "ascending")]).to_batches(4096)
        return
    partitions = max(2, min(256, expected_rows // 20_000 + 1))
    boundaries = [BUCKETS * i // partitions for i in range(1, partitions)]
    ordered = settled.dataset.map_batches(_add_bucket, batch_format="pyarrow").sort(["bucket", "id", "sub"],
                                                                                    boundaries=boundaries)
    yield from ordered.iter_batches(batch_format="pyarrow", batch_size=4096)


def _groups(batches: Iterator[pa.Table | pa.RecordBatch]) -> Iterator[list[dict]]:
    """Consecutive rows with the same id (the rows are sorted by id)."""
    group: list[dict] = []
    for batch in batches:
        for row in batch.to_pylist():
            if group and row["id"] != group[0]["id"]:
                yield group
                group = []
            group.append(row)
    if group:
        yield group


def reject_record(pair: dict, reason: str, stage: str) -> tuple[str, dict]:
    return REJECTS, {**pair, "reason": reason, "stage": stage}


def fit_reject(record: dict, schema: pa.Schema) -> dict:
    """A reject made to fit its file's schema: a malformed input row may hold values of other types. A
    value a text column cannot take is kept as its JSON text; one that another column cannot take is
    dropped and named in the reason, so the file can always be written and the evidence stays."""
    out, dropped = dict(record), []
    for column in schema:
        value = out.get(column.name)
        if value is None or (isinstance(value, str) and pa.types.is_string(column.type)):
            continue
        try:
            pa.array([value], column.type)
        except (pa.ArrowException, ValueError, TypeError, OverflowError):
            if pa.types.is_string(column.type):
                out[column.name] = json.dumps(value, ensure_ascii=False, default=str)
            else:
                out[column.name] = None
                dropped.append(column.name)
    if dropped:
        out["reason"] = f"{out['reason']} (values of the wrong type left out: {', '.join(dropped)})"
    return out


def _records_of(group: list[dict], aggregate: Aggregate, stage: str) -> list[tuple[str, dict]]:
    """A pair's output records; the generic outcomes (rejected before the engine, failed in it, id not
    unique) are decided here so that stages only aggregate complete, unique pairs."""
    rejected = [r for r in group if r["reject"]]
    engine_rows = [r for r in group if not r["reject"]]
    if not group[0]["id"]:
        return [reject_record(json.loads(r["pair_json"]), r["reject"], stage) for r in rejected]
    subs = Counter(r["sub"] for r in engine_rows)
    copies = max(subs.values(), default=0)
    if len(rejected) + copies > 1:
        most = subs.most_common(1)[0][0] if subs else None
        pairs = [r["pair_json"] for r in rejected] + [r["pair_json"] for r in engine_rows if r["sub"] == most]
        reason = f"duplicate_id: {len(pairs)} input rows share this id"
        return [reject_record(json.loads(p), reason, stage) for p in pairs]
    pair = json.loads(group[0]["pair_json"])
    if rejected:
        return [reject_record(pair, rejected[0]["reject"], stage)]
    errors = [r["error"] for r in engine_rows if r["error"]]
    if errors:
        return [reject_record(pair, f"engine_error: {errors[0]}", stage)]
    settled = [Settled(r["sub"], json.loads(r["context_json"] or "{}"), json.loads(r["result_json"] or "{}"))
               for r in engine_rows]
    return aggregate(pair, settled)


class _PartWriter:
    """Parquet part files of a fixed number of rows: part-00000.parquet, part-00001.parquet, ..."""

    def __init__(self, folder: Path, schema: pa.Schema, rows_per_file: int):
        self.folder, self.schema, self.rows_per_file = folder, schema, rows_per_file
        self.buffer: list[dict] = []
        self.parts = 0
        self.rows = 0
        folder.mkdir(parents=True)

    def add(self, record: dict) -> None:
        self.buffer.append(record)
        self.rows += 1
        if len(self.buffer) >= self.rows_per_file:
            self._flush()

    def _flush(self) -> None:
        table = pa.Table.from_pylist(self.buffer, schema=self.schema)
        pq.write_table(table, self.folder / f"part-{self.parts:05d}.parquet")
        self.parts += 1
        self.buffer = []

    def close(self) -> None:
        if self.buffer or not self.parts:
            self._flush()


def write_stage(
    settled: Rows,
    out_dir: str | Path,
    outputs: StageOutputs,
    schemas: Mapping[str, pa.Schema],
    aggregate: Aggregate,
    inputs: int,
    requests_per_row: int = 1,
    rows_per_file: int = ROWS_PER_FILE,
    checkpoint: Checkpoint | None = None,
) -> StageSummary:
    """Sort settled rows by pair, aggregate each pair, write one folder per output, swap into place.

    ``schemas`` gives the schema of each of ``outputs.views``. The ``checkpoint`` the engine passes used
    is cleared once the outputs are in place.
    """
    if set(schemas) != set(outputs.views):
        raise ValueError(f"stage {outputs.name}: schemas for {sorted(schemas)}, outputs {list(outputs.views)}")
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}")
    rejected: Counter[str] = Counter()
    try:
        writers = {name: _PartWriter(tmp / name, schemas[name], rows_per_file) for name in outputs.views}
        for group in _groups(sort_by_pair(settled, inputs * requests_per_row)):
            for kind, record in _records_of(group, aggregate, outputs.name):
                if kind == REJECTS:
                    record = fit_reject(record, schemas[REJECTS])
                    rejected[category(record["reason"])] += 1
                writers[kind].add(record)
        for writer in writers.values():
            writer.close()
        counts = {name: w.rows for name, w in writers.items()}
        complete = counts[outputs.primary] + counts[REJECTS] == inputs
        resumed = sum(checkpoint.resumed.values()) if checkpoint else 0
        summary = StageSummary(outputs.name, str(out_dir), inputs, counts, dict(rejected), complete, outputs.primary,
                               resumed)
        (tmp / "summary.json").write_text(json.dumps(asdict(summary), indent=2) + "\n")
        replace_folder(tmp, out_dir)
        if checkpoint is not None:
            checkpoint.clear()
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    print(summary, flush=True)
    return summary
