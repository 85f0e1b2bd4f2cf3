"""The stage runner: read -> plan requests -> ray.data.llm -> settle -> sort by pair id -> write atomically.

Every stage is three plain functions around this runner:

* ``plan(row)`` returns the row's engine requests, or a reason to reject the row before the engine
  (malformed, no label, prompt over ``max_model_len``): one bad row never reaches, let alone kills, a batch.
* ``parse(output_row, context)`` reads one engine output (runs in the Ray Data workers).
* ``aggregate(pair, rows)`` turns all settled rows of one pair into output records (runs in the driver,
  streaming over rows sorted by pair id, so output order and file names depend only on the input).

Small inputs (Parquet of at most ``LOCAL_ROWS`` rows and ``LOCAL_BYTES`` on disk) are planned, sorted and
written in the driver as Arrow tables and only the engine pass goes through Ray Data: a Ray Data job costs
tens of seconds of task start-up here however few rows it has, which for the demo's stages of a few hundred
pairs was a third of their time. ``read_rows`` gives such an input as a list of tables (one per file) and
the planning functions turn it into single tables; the functions after it take either those or Ray Datasets
and return the same kind.

Rejects before the engine, failures inside it (``should_continue_on_error``) and duplicate ids all end
as rows of the ``rejects`` folder with a ``reason``. Everything is written into a temporary folder that is
renamed into place at the end; its ``summary.json`` says whether every input row was accounted for.
Given a ``Checkpoint`` (see ``checkpoint``), engine rows are also kept as they settle, so a stage killed
half way resumes with the requests it had not settled.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from gram_ray.config import EngineConfig
from gram_ray.data.io import parquet_files, parquet_rows

if TYPE_CHECKING:
    from gram_ray.stages.checkpoint import Checkpoint

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
REJECTS = "rejects"
ROWS_PER_FILE = 100_000
LOCAL_ROWS = 10_000  # inputs up to this many rows ...
LOCAL_BYTES = 8 << 20  # ... and Parquet bytes are handled in the driver (see the module docstring); the bytes
# bound the driver's memory, which holds every request's token ids (votes x orders of them per row)
BUCKETS = 1 << 16  # sort buckets: a hash of the id, so range partitions are even and boundaries numeric


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


Plan = Callable[[dict], "list[Request] | str"]
FollowUp = Callable[[dict, dict], "Request | None"]
Parse = Callable[[dict, dict], dict]
Aggregate = Callable[[dict, list[Settled]], list[tuple[str, dict]]]


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


def read_rows(source: Any) -> tuple[Any, int]:
    """(rows, their count): ``source`` as given if it is a Ray Dataset; for a Parquet file or folder, one
    Arrow table per file when it is small (files may disagree on column types, so each is planned on its
    own), else a Ray Dataset reading them (counted from the footers, without a job)."""
    import ray.data

    if isinstance(source, ray.data.Dataset):
        return source, source.count()
    files = parquet_files(source)
    count = parquet_rows(files)
    if count <= LOCAL_ROWS and sum(f.stat().st_size for f in files) <= LOCAL_BYTES:
        return [pq.read_table(f) for f in files], count
    return ray.data.read_parquet([str(f) for f in files]), count


def _is_local(rows: Any) -> bool:
    return isinstance(rows, pa.Table | list)


def column_names(rows: Any) -> list[str]:
    if _is_local(rows):
        return sorted({name for table in rows for name in table.column_names})
    return rows.schema().names


def num_rows(rows: Any) -> int:
    return rows.num_rows if isinstance(rows, pa.Table) else rows.count()


def _plan_batch(batch: pa.Table, plan: Plan, keep: str) -> pa.Table:
    out: list[dict] = []
    for row in batch.to_pylist():
        pair_json = json.dumps(row, ensure_ascii=False, default=str)
        row_id = row.get("id") if isinstance(row.get("id"), str) else ""
        planned = plan(row)
        if isinstance(planned, str):
            if keep == "settled":
                out.append(_settled_row(row_id, pair_json, reject=planned))
        elif keep == "requests":
            out.extend(_request_row(row_id, r.sub, pair_json, r) for r in planned)
        elif not planned:
            out.append(_settled_row(row_id, pair_json))
    return pa.Table.from_pylist(out, schema=REQUEST_SCHEMA if keep == "requests" else SETTLED_SCHEMA)


def _request_row(row_id: str, sub: str, pair_json: str, request: Request) -> dict:
    return {"id": row_id, "sub": sub, "pair_json": pair_json, "context_json": json.dumps(request.context),
            "tokenized_prompt": request.prompt_ids, "sampling_json": json.dumps(request.sampling)}


def _settled_row(row_id: str, pair_json: str, reject: str = "") -> dict:
    # id-less rows (all rejected) get distinct subs so that sorting keeps them apart (see _records_of)
    sub = str(uuid.uuid5(uuid.NAMESPACE_OID, pair_json)) if not row_id else ""
    return {"id": row_id, "sub": sub, "pair_json": pair_json, "context_json": "", "result_json": "",
            "error": "", "reject": reject}


def _plan(rows: Any, plan: Plan, keep: str) -> Any:
    if _is_local(rows):
        schema = REQUEST_SCHEMA if keep == "requests" else SETTLED_SCHEMA
        return pa.concat_tables([_plan_batch(table, plan, keep) for table in rows]) if rows else schema.empty_table()
    return rows.map_batches(_plan_batch, batch_format="pyarrow", fn_kwargs={"plan": plan, "keep": keep})


def plan_requests(rows: Any, plan: Plan) -> Any:
    """Engine requests of the rows that ``plan`` accepts."""
    return _plan(rows, plan, "requests")


def plan_settled(rows: Any, plan: Plan) -> Any:
    """Settled rows for what ``plan`` decides without an engine: rejections, and rows it plans no request
    for (a stage without an engine, like denoise, plans none)."""
    return _plan(rows, plan, "settled")


def _follow_batch(batch: pa.Table, follow: FollowUp, keep: str) -> pa.Table:
    out: list[dict] = []
    for row in batch.to_pylist():
        request = None
        if not (row["error"] or row["reject"]):
            request = follow(json.loads(row["context_json"]), json.loads(row["result_json"]))
        if keep == "requests" and request is not None:
            out.append(_request_row(row["id"], row["sub"], row["pair_json"], request))
        elif keep == "settled" and request is None:
            out.append(row)
    return pa.Table.from_pylist(out, schema=REQUEST_SCHEMA if keep == "requests" else SETTLED_SCHEMA)


def follow_up(settled: Any, follow: FollowUp) -> tuple[Any, Any]:
    """A second engine pass over settled rows: (the requests ``follow(context, result)`` asks for, keeping
    each row's id and sub; the other rows unchanged). A Ray Dataset is materialized first: both halves read it."""
    if isinstance(settled, pa.Table):
        return _follow_batch(settled, follow, "requests"), _follow_batch(settled, follow, "settled")
    settled = settled.materialize()
    requests = settled.map_batches(_follow_batch, batch_format="pyarrow",
                                   fn_kwargs={"follow": follow, "keep": "requests"})
    rest = settled.map_batches(_follow_batch, batch_format="pyarrow", fn_kwargs={"follow": follow, "keep": "settled"})
    return requests.materialize(), rest


def union(parts: Sequence[Any]) -> Any:
    if all(isinstance(p, pa.Table) for p in parts):
        return pa.concat_tables(parts)
    first, *rest = parts
    return first.union(*rest) if rest else first


def logprob_map(position: Any) -> dict[int, float]:
    """One position of an engine row's ``logprobs``/``prompt_logprobs`` as {token id: logprob}.

    Rows reach the postprocess through Arrow, which may have turned the {id: {logprob, ...}} maps into
    structs: keys become strings and ids seen only at other positions appear with None values.
    """
    if not position:
        return {}
    return {int(t): float(v["logprob"] if isinstance(v, dict) else v) for t, v in position.items() if v is not None}


def _parsed(row: dict, parse: Parse) -> dict:
    context = json.loads(row["context_json"])
    return {"id": row["id"], "sub": row["sub"], "pair_json": row["pair_json"], "context_json": row["context_json"],
            "result_json": json.dumps(parse(row, context)), "error": "", "reject": ""}


def _settle(row: dict) -> dict:
    """Same columns for every row: engine-failed rows skipped the postprocess and hold internal columns."""
    out = {c: row.get(c) or "" for c in SETTLED_COLUMNS}
    out["error"] = row.get("__inference_error__") or ""
    return out


def generate(requests: Any, engine: EngineConfig, parse: Parse, checkpoint: Checkpoint | None = None,
             name: str = "engine") -> Any:
    """Run ``requests`` through a vLLM engine pool; one settled row per request, of the same kind as the
    requests. Lazy for a Ray Dataset without a checkpoint; with one, engine pass ``name`` runs now,
    skipping requests an earlier attempt settled."""
    import ray.data

    from gram_ray.stages.engine import build_engine_processor

    local, empty = isinstance(requests, pa.Table), SETTLED_SCHEMA.empty_table()
    if local and not requests.num_rows:  # no engine pool for nothing to do
        return empty
    processor = build_engine_processor(engine, partial(_parsed, parse=parse))
    if local:  # blocks of one engine batch, so that every replica of the pool gets work
        size = max(1, engine.batch_size)
        requests = ray.data.from_arrow([requests.slice(i, size) for i in range(0, requests.num_rows, size)])
    if checkpoint is None:
        settled = processor(requests).map(_settle)
        return pa.concat_tables([empty, *settled_batches(settled)]) if local else settled
    files = checkpoint.settle(name, requests, lambda pending: processor(pending).map(_settle))
    if local:
        return pa.concat_tables([empty, *(pq.read_table(f, schema=SETTLED_SCHEMA) for f in files)])
    return ray.data.read_parquet([str(f) for f in files]) if files else ray.data.from_arrow(empty)


def settled_batches(settled: Any) -> Iterator[pa.Table]:
    """A Ray Dataset of settled rows as SETTLED_SCHEMA tables, as they stream."""
    for batch in settled.iter_batches(batch_format="pyarrow", batch_size=None):
        if batch.num_rows:
            yield batch.select(list(SETTLED_COLUMNS)).cast(SETTLED_SCHEMA)


def _add_bucket(batch: pa.Table) -> pa.Table:
    buckets = [int.from_bytes(hashlib.sha256(i.encode()).digest()[:2], "big") for i in batch.column("id").to_pylist()]
    return batch.append_column("bucket", pa.array(buckets, pa.int32()))


def sort_by_pair(settled: Any, expected_rows: int) -> Iterator[pa.Table]:
    """Batches of rows ordered by (hash bucket of id, id, sub): every pair's rows together, in an order that
    depends only on the ids. For a Ray Dataset, explicit range boundaries spare Ray's sampling pass and its
    default of 200 partitions."""
    if isinstance(settled, pa.Table):
        yield from _add_bucket(settled).sort_by([("bucket", "ascending"), ("id", "ascending"),
                                                 ("sub", "ascending")]).to_batches(4096)
        return
    partitions = max(2, min(256, expected_rows // 20_000 + 1))
    boundaries = [BUCKETS * i // partitions for i in range(1, partitions)]
    ordered = settled.map_batches(_add_bucket, batch_format="pyarrow").sort(["bucket", "id", "sub"],
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
    settled: Any,
    out_dir: str | Path,
    stage: str,
    views: dict[str, pa.Schema],
    aggregate: Aggregate,
    inputs: int,
    primary: str,
    requests_per_row: int = 1,
    rows_per_file: int = ROWS_PER_FILE,
    checkpoint: Checkpoint | None = None,
) -> StageSummary:
    """Sort settled rows by pair, aggregate each pair, write one folder per view, swap into place.

    ``views`` maps an output folder name to its schema and must include ``rejects``. The ``checkpoint``
    the engine passes used is cleared once the outputs are in place.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}")
    rejected: Counter[str] = Counter()
    try:
        writers = {name: _PartWriter(tmp / name, schema, rows_per_file) for name, schema in views.items()}
        for group in _groups(sort_by_pair(settled, inputs * requests_per_row)):
            for kind, record in _records_of(group, aggregate, stage):
                if kind == REJECTS:
                    record = fit_reject(record, views[REJECTS])
                    rejected[category(record["reason"])] += 1
                writers[kind].add(record)
        for writer in writers.values():
            writer.close()
        outputs = {name: w.rows for name, w in writers.items()}
        complete = outputs[primary] + outputs[REJECTS] == inputs
        resumed = sum(checkpoint.resumed.values()) if checkpoint else 0
        summary = StageSummary(stage, str(out_dir), inputs, outputs, dict(rejected), complete, primary, resumed)
        (tmp / "summary.json").write_text(json.dumps(asdict(summary), indent=2) + "\n")
        _swap_into_place(tmp, out_dir)
        if checkpoint is not None:
            checkpoint.clear()
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    print(summary, flush=True)
    return summary


def _swap_into_place(tmp: Path, out_dir: Path) -> None:
    """Rename ``tmp`` to ``out_dir``; an older ``out_dir`` is moved aside first and removed after."""
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(out_dir, old)
    os.rename(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old)
