"""Denoising: apply the FilterConfig rules to labelled pairs or rationale rows; no engine.

Kept rows keep the input's schema; every dropped row goes to ``rejects/`` with its reason.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa

from gram_ray.config import FilterConfig
from gram_ray.judging.requests import malformed
from gram_ray.stages import runner
from gram_ray.stages.filters import reject_reason
from gram_ray.stages.outputs import REJECTS, StageOutputs, StageSummary, write_stage
from gram_ray.stages.rows import Request, Settled, read_rows
from gram_ray.stages.schemas import LABELLED_SCHEMA, RATIONALE_OUT_SCHEMA, reject_schema

KEPT = "kept"
DENOISE = StageOutputs("denoise", primary=KEPT)


def filter_row(row: dict, filters: FilterConfig) -> list[Request] | str:
    """A reason to drop the row, or no requests (keep it)."""
    return malformed(row) or reject_reason(row, filters) or []


def keep(pair: dict, rows: list[Settled]) -> list[tuple[str, dict]]:
    return [(KEPT, pair)]


def denoise(rows_in: str | Path | Any, out_dir: str | Path, filters: FilterConfig) -> StageSummary:
    """Write ``kept/`` and ``rejects/``; rationale rows (with a ``rationale`` column) keep
    RATIONALE_OUT_SCHEMA, labelled pairs LABELLED_SCHEMA."""
    rows, inputs = read_rows(rows_in)
    schema: pa.Schema = RATIONALE_OUT_SCHEMA if "rationale" in rows.column_names() else LABELLED_SCHEMA
    settled = runner.plan_settled(rows, partial(filter_row, filters=filters))
    return write_stage(settled, out_dir, DENOISE, {KEPT: schema, REJECTS: reject_schema(schema)}, aggregate=keep,
                       inputs=inputs)
