"""The stage runner: read -> plan requests -> ray.data.llm -> settle, for ``outputs.write_stage`` to sort,
aggregate and write.

Every stage is three plain functions around this runner:

* a ``Planner`` (``plan(row)``) returns the row's engine requests, or a reason to reject the row before the
  engine (malformed, no label, prompt over ``max_model_len``): one bad row never reaches, let alone kills,
  a batch.
* a ``Parse`` (``parse(output_row, context)``) reads one engine output (runs in the Ray Data workers).
* an ``Aggregate`` (``aggregate(pair, rows)``) turns all settled rows of one pair into output records
  (runs in the driver, streaming over rows sorted by pair id, so output order and file names depend only
  on the input; see ``outputs``).

Rows are ``rows.Rows`` (held in the driver for small inputs, else a Ray Dataset); every function here
takes and returns the same kind. Rejects before the engine, failures inside it (``should_continue_on_error``)
and duplicate ids all end as rows of the ``rejects`` folder with a ``reason``. Given a ``Checkpoint`` (see
``resume``), engine rows are also kept as they settle, so a stage killed half way resumes with the
requests it had not settled.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from functools import partial

import pyarrow as pa
import pyarrow.parquet as pq

from gram_ray.config import EngineConfig
from gram_ray.judging.engine import engine_pass
from gram_ray.stages.resume import Checkpoint
from gram_ray.stages.rows import (
    REQUEST_SCHEMA,
    SETTLED_COLUMNS,
    SETTLED_SCHEMA,
    DatasetRows,
    LocalRows,
    Request,
    Rows,
    settled_batches,
)

Planner = Callable[[dict], "list[Request] | str"]
FollowUp = Callable[[dict, dict], "Request | None"]
Parse = Callable[[dict, dict], dict]


def _planned(batch: pa.Table, plan: Planner) -> Iterator[tuple[str, str, list[Request] | str]]:
    """(id, the row as JSON, what ``plan`` says) for every row of ``batch``."""
    for row in batch.to_pylist():
        row_id = row.get("id") if isinstance(row.get("id"), str) else ""
        yield row_id, json.dumps(row, ensure_ascii=False, default=str), plan(row)


def _request_rows(batch: pa.Table, plan: Planner) -> pa.Table:
    out = [_request_row(row_id, r.sub, pair_json, r)
           for row_id, pair_json, planned in _planned(batch, plan) if not isinstance(planned, str) for r in planned]
    return pa.Table.from_pylist(out, schema=REQUEST_SCHEMA)


def _settled_rows(batch: pa.Table, plan: Planner) -> pa.Table:
    out = [_settled_row(row_id, pair_json, reject=planned if isinstance(planned, str) else "")
           for row_id, pair_json, planned in _planned(batch, plan) if isinstance(planned, str) or not planned]
    return pa.Table.from_pylist(out, schema=SETTLED_SCHEMA)


def _request_row(row_id: str, sub: str, pair_json: str, request: Request) -> dict:
    return {"id": row_id, "sub": sub, "pair_json": pair_json, "context_json": json.dumps(request.context),
            "tokenized_prompt": request.prompt_ids, "sampling_json": json.dumps(request.sampling)}


def _settled_row(row_id: str, pair_json: str, reject: str = "") -> dict:
    # id-less rows (all rejected) get distinct subs so that sorting keeps them apart (see outputs._records_of)
    sub = str(uuid.uuid5(uuid.NAMESPACE_OID, pair_json)) if not row_id else ""
    return {"id": row_id, "sub": sub, "pair_json": pair_json, "context_json": "", "result_json": "",
            "error": "", "reject": reject}


def plan_requests(rows: Rows, plan: Planner) -> Rows:
    """Engine requests of the rows that ``plan`` accepts."""
    return rows.map_batches(_request_rows, plan=plan)


def plan_settled(rows: Rows, plan: Planner) -> Rows:
    """Settled rows for what ``plan`` decides without an engine: rejections, and rows it plans no request
    for (a stage without an engine, like denoise, plans none)."""
    return rows.map_batches(_settled_rows, plan=plan)


def _follow_requests(batch: pa.Table, follow: FollowUp) -> pa.Table:
    out = []
    for row in batch.to_pylist():
        request = None if row["error"] or row["reject"] else follow(json.loads(row["context_json"]),
                                                                    json.loads(row["result_json"]))
        if request is not None:
            out.append(_request_row(row["id"], row["sub"], row["pair_json"], request))
    return pa.Table.from_pylist(out, schema=REQUEST_SCHEMA)


def _not_followed(batch: pa.Table, follow: FollowUp) -> pa.Table:
    out = [row for row in batch.to_pylist()
           if row["error"] or row["reject"]
           or follow(json.loads(row["context_json"]), json.loads(row["result_json"])) is None]
    return pa.Table.from_pylist(out, schema=SETTLED_SCHEMA)


def follow_up(settled: Rows, follow: FollowUp) -> tuple[Rows, Rows]:
    """A second engine pass over settled rows: (the requests ``follow(context, result)`` asks for, keeping
    each row's id and sub; the other rows unchanged). Both halves read ``settled``, so a Ray Dataset is
    materialized first, and so are the requests."""
    settled = settled.materialize()
    return (settled.map_batches(_follow_requests, follow=follow).materialize(),
            settled.map_batches(_not_followed, follow=follow))


def _parsed(row: dict, parse: Parse) -> dict:
    context = json.loads(row["context_json"])
    return {"id": row["id"], "sub": row["sub"], "pair_json": row["pair_json"], "context_json": row["context_json"],
            "result_json": json.dumps(parse(row, context)), "error": "", "reject": ""}


def generate(requests: Rows, engine: EngineConfig, parse: Parse, checkpoint: Checkpoint | None = None,
             name: str = "engine") -> Rows:
    """Run ``requests`` through a vLLM engine pool; one settled row per request. Lazy for a Ray Dataset
    without a checkpoint; with one, engine pass ``name`` runs now, skipping requests an earlier attempt
    settled."""
    import ray.data

    if isinstance(requests, LocalRows):
        table = requests.table(REQUEST_SCHEMA)
        if not table.num_rows:  # no engine pool for nothing to do
            return LocalRows(())
        size = max(1, engine.batch_size)  # blocks of one engine batch, so that every replica of the pool gets work
        dataset = ray.data.from_arrow([table.slice(i, size) for i in range(0, table.num_rows, size)])
    else:
        dataset = requests.dataset
    run = partial(engine_pass, engine=engine, postprocess=partial(_parsed, parse=parse), columns=SETTLED_COLUMNS)
    if checkpoint is None:
        settled = run(dataset)
        return LocalRows(tuple(settled_batches(settled))) if isinstance(requests, LocalRows) else DatasetRows(settled)
    pending = checkpoint.pending(name, dataset)
    if pending is not None:
        checkpoint.keep(name, run(pending))
    files = checkpoint.files(name)
    if isinstance(requests, LocalRows):
        return LocalRows(tuple(pq.read_table(f, schema=SETTLED_SCHEMA) for f in files))
    return DatasetRows(ray.data.read_parquet([str(f) for f in files]) if files
                       else ray.data.from_arrow(SETTLED_SCHEMA.empty_table()))
