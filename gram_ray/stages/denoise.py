"""Denoising: apply the FilterConfig rules to labelled pairs or rationale rows; no engine.

Kept rows keep the input's schema; every dropped row goes to ``rejects/`` with its reason. A pipeline
filters twice with one ``FilterConfig``: ``screen`` after labelling (the judge rules: weak labels go before
proofs are paid for), ``denoise`` after proving (the rationale rules; the judge rules run again on the
rows' unchanged judge fields and so drop nothing that screening kept, which also keeps a rationale file
from elsewhere, ``gram-ray denoise``, under every rule).
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
SCREEN = StageOutputs("screen", primary=KEPT)


def filter_row(row: dict, filters: FilterConfig) -> list[Request] | str:
    """A reason to drop the row, or no requests (keep it)."""
    return malformed(row) or reject_reason(row, filters) or []


def keep(pair: dict, rows: list[Settled]) -> list[tuple[str, dict]]:
    return [(KEPT, pair)]


def denoise(rows_in: str | Path | Any, out_dir: str | Path, filters: FilterConfig,
            stage: StageOutputs = DENOISE) -> StageSummary:
    """Write ``kept/`` and ``rejects/``; rationale rows (with a ``rationale`` column) keep
    RATIONALE_OUT_SCHEMA, labelled pairs LABELLED_SCHEMA."""
    rows, inputs = read_rows(rows_in)
    schema: pa.Schema = RATIONALE_OUT_SCHEMA if "rationale" in rows.column_names() else LABELLED_SCHEMA
    settled = runner.plan_settled(rows, partial(filter_row, filters=filters))
    return write_stage(settled, out_dir, stage, {KEPT: schema, REJECTS: reject_schema(schema)}, aggregate=keep,
                       inputs=inputs)


def screen(labelled: str | Path | Any, out_dir: str | Path, filters: FilterConfig) -> StageSummary:
    """Label-stage filtering: the judge rules (vote share, confidence, swap consistency) on the label
    stage's pairs, so only the kept ones go to the prover. Labelled pairs carry no rationale, so only the
    judge rules apply; ``filters.judge_rule_settings`` is what the result depends on."""
    return denoise(labelled, out_dir, filters, SCREEN)
