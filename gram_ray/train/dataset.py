"""Parquet -> tokenized, loss-weighted examples as a materialized Ray Dataset sorted by each example's
``key`` (``gram_ray.train.epochs``), plus the counts a run reports (examples, truncated, targets cut,
rejected).

Rows that cannot become an example (a missing label, an empty target) are written, whole and with their
``reason``, to a rejects Parquet folder; the run goes on without them and says how many there were.
Tokenizing happens once, before the workers start (in Ray Data tasks, or in the driver for small inputs);
The trainer then cuts the sorted dataset into one equal part per worker (``epochs.rank_parts``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray.data
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from gram_ray.config import TrainConfig
from gram_ray.data.io import parquet_files, parquet_rows
from gram_ray.prompts import judge_prompt
from gram_ray.train.epochs import KEY, row_key
from gram_ray.train.examples import row_examples
from gram_ray.train.tokenize import ExampleEncoder, decision_token_ids, label_token_ids, render_prompt

log = logging.getLogger(__name__)

REJECT_STAGE = "train"


@dataclass(frozen=True)
class TrainData:
    dataset: ray.data.Dataset  # columns: key, input_ids, weights; sorted by key
    examples: int
    tokens: int
    truncated: int
    targets_cut: int  # of the truncated: those whose completion lost its middle (tokenize.fit_to_length)
    rejected: int
    rejects_path: str | None
    label_ids: tuple[int, int] | None
    pad_id: int


@lru_cache(maxsize=4)
def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(name)


def make_encoder(cfg: TrainConfig) -> ExampleEncoder:
    """The encoder every tokenizing task builds; label and decision ids are resolved here, once."""
    tokenizer = load_tokenizer(cfg.model)
    label_ids = None
    if cfg.objective == "gram_stage2":
        rendered = render_prompt(tokenizer, judge_prompt(cfg.template, "question", "first", "second"))
        label_ids = label_token_ids(tokenizer, rendered)
    return ExampleEncoder(tokenizer, cfg.max_length, label_ids=label_ids,
                          decision_ids=decision_token_ids(tokenizer, cfg.decision_tokens),
                          decision_weight=cfg.decision_weight)


def pad_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise ValueError(f"tokenizer {tokenizer.name_or_path!r} has neither a pad nor an eos token")
    return pad


def _prepare(batch: pa.Table, cfg: TrainConfig) -> dict:
    """Encoded examples of every good row; one row with a ``reason`` (and the source row as JSON) for
    every row that cannot be trained on."""
    encoder = make_encoder(cfg)
    columns = (KEY, "input_ids", "weights", "length", "truncated", "target_cut", "reason", "source")
    cols: dict[str, list] = {k: [] for k in columns}

    def add(ids: list, weights: list, cut: tuple[bool, bool], reason: str | None, source: str | None) -> None:
        values = (row_key(ids, weights), ids, weights, len(ids), int(cut[0]), int(cut[1]), reason, source)
        for column, value in zip(cols, values, strict=True):
            cols[column].append(value)

    for row in batch.to_pylist():
        try:
            examples = row_examples(row, cfg.objective, cfg.role, cfg.template, cfg.swap_augment)
        except ValueError as exc:
            add([], [], (False, False), str(exc), json.dumps(row))
            continue
        for example in examples:
            enc = encoder.encode(example)
            add(enc.input_ids, enc.weights, (enc.truncated, enc.target_cut), None, None)
    return {
        KEY: pa.array(cols[KEY], pa.string()),
        "input_ids": pa.array(cols["input_ids"], pa.list_(pa.int32())),
        "weights": pa.array(cols["weights"], pa.list_(pa.float32())),
        "length": pa.array(cols["length"], pa.int32()),
        "truncated": pa.array(cols["truncated"], pa.int8()),
        "target_cut": pa.array(cols["target_cut"], pa.int8()),
        "reason": pa.array(cols["reason"], pa.string()),
        "source": pa.array(cols["source"], pa.string()),
    }


def _accepted(batch: pa.Table) -> pa.Table:
    return batch.filter(pc.is_null(batch["reason"])).select([KEY, "input_ids", "weights"])


def _rejected(batch: pa.Table) -> pa.Table:
    rejected = batch.filter(pc.is_valid(batch["reason"]))
    rows = [{**json.loads(source), "reason": reason, "stage": REJECT_STAGE}
            for source, reason in zip(rejected["source"].to_pylist(), rejected["reason"].to_pylist(), strict=True)]
    return pa.Table.from_pylist(rows)


class Counts(NamedTuple):
    examples: int
    tokens: int
    truncated: int
    targets_cut: int
    rejected: int


def _counts(batches: Iterable[pa.Table]) -> Counts:
    """What the prepared batches hold (a Ray Data aggregate would start a shuffle for five numbers)."""
    examples = tokens = truncated = targets_cut = rejected = 0
    for batch in batches:
        bad = pc.sum(pc.is_valid(batch["reason"])).as_py() or 0
        rejected += bad
        examples += len(batch) - bad
        tokens += pc.sum(batch["length"]).as_py() or 0
        truncated += pc.sum(batch["truncated"]).as_py() or 0
        targets_cut += pc.sum(batch["target_cut"]).as_py() or 0
    return Counts(examples, tokens, truncated, targets_cut, rejected)


def _prepare_files(cfg: TrainConfig, rejects_path: Path) -> tuple[ray.data.Dataset, Counts]:
    """(accepted examples as a materialized dataset sorted by key, counts); rejected rows are written to
    ``rejects_path``.

    Inputs of at most ``cfg.local_prepare_rows`` rows are tokenized in the driver: Ray Data's seconds per
    execution outweigh tokenizing a seed set. Larger ones are tokenized by Ray Data tasks."""
    files = parquet_files(cfg.data)
    if parquet_rows(files) <= cfg.local_prepare_rows:
        table = pa.concat_tables([pa.table(_prepare(pq.read_table(f), cfg)) for f in files])
        counts = _counts([table])
        if counts.rejected:
            rejects_path.mkdir(parents=True, exist_ok=True)
            pq.write_table(_rejected(table), rejects_path / "part-00000.parquet")
        return ray.data.from_arrow(_accepted(table).sort_by(KEY)), counts
    prepared = ray.data.read_parquet([str(f) for f in files]).map_batches(
        _prepare, batch_format="pyarrow", fn_kwargs={"cfg": cfg}
    ).materialize()
    counts = _counts(prepared.select_columns(["length", "truncated", "target_cut", "reason"])
                     .iter_batches(batch_format="pyarrow"))
    if counts.rejected:
        prepared.map_batches(_rejected, batch_format="pyarrow").write_parquet(str(rejects_path))
    return prepared.map_batches(_accepted, batch_format="pyarrow").sort(KEY).materialize(), counts


def build_train_data(cfg: TrainConfig, rejects_path: Path) -> TrainData:
    encoder = make_encoder(cfg)  # fails fast, on the driver, on label or decision tokens
    dataset, (examples, tokens, truncated, targets_cut, rejected) = _prepare_files(cfg, rejects_path)
    if rejected:
        log.warning("%d row(s) cannot be trained on under objective %s; written with their reason to %s",
                    rejected, cfg.objective, rejects_path)
    if not examples:
        raise ValueError(f"no trainable rows in {cfg.data} for objective {cfg.objective}"
                         + (f"; see {rejects_path}" if rejected else ""))
    if truncated:
        log.warning("%d of %d example(s) were longer than max_length=%d and were cut to it in the middle; %d of "
                    "them lost part of their target (its end, e.g. the verdict and end of turn, kept)",
                    truncated, examples, cfg.max_length, targets_cut)
    return TrainData(
        dataset=dataset,
        examples=examples,
        tokens=tokens,
        truncated=truncated,
        targets_cut=targets_cut,
        rejected=rejected,
        rejects_path=str(rejects_path) if rejected else None,
        label_ids=encoder.label_ids,
        pad_id=pad_token_id(encoder.tokenizer),
    )
