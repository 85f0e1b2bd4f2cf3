"""Any supported preference file -> pair Parquet, streaming, with every unusable row quarantined.

`convert_file` is `gram-ray convert`: read in chunks, convert, validate, write pairs and rejects.
`load_pairs` reads a whole (benchmark-sized) file into one table for code that wants every record.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
from tqdm import tqdm

from gram_ray.config import ValidationConfig
from gram_ray.data.formats import FORMATS, check_format_name, sniff_format
from gram_ray.data.io import DEFAULT_CHUNK_ROWS, InputError, ParquetSink, RawRecord, ReadFailure, iter_records
from gram_ray.data.records import RowError, SourceContext, to_json
from gram_ray.data.validate import REASON, STAGE, PairValidator

INPUT_ROW = "input_row"  # 0-based row (Parquet, JSON array) or line (JSON lines) index in the input file
RECORD = "record"  # the original record as JSON, for rows rejected before they became pairs


@dataclass
class ConvertedChunk:
    records: int  # input records in this chunk
    pairs: pa.Table  # the format's schema plus INPUT_ROW
    rejects: list[dict[str, Any]]  # INPUT_ROW, RECORD, REASON, STAGE


class PairReader:
    """Converted chunks of one file, in one pass. The record format is sniffed from the first record
    unless given."""

    def __init__(self, path: str | Path, fmt: str = "auto", seed: int = 0, chunk_rows: int = DEFAULT_CHUNK_ROWS):
        check_format_name(fmt)
        self.path = Path(path)
        self.context = SourceContext(self.path, seed)
        self._chunks = iter_records(self.path, chunk_rows)
        self._first = next(self._chunks, [])
        if fmt == "auto":
            if not self._first:
                raise InputError(f"{self.path}: no records, so no format to detect")
            first_value = self._first[0][1]
            if isinstance(first_value, ReadFailure):
                raise InputError(f"{self.path}: first record unreadable ({first_value.reason})")
            if not isinstance(first_value, dict):
                raise InputError(f"{self.path}: records must be JSON objects, the first is "
                                 f"{type(first_value).__name__}")
            fmt = sniff_format(first_value, str(self.path))
        self.fmt = fmt
        self.schema: pa.Schema = FORMATS[fmt].schema
        self._table_schema = self.schema.append(pa.field(INPUT_ROW, pa.int64()))

    def __iter__(self) -> Iterator[ConvertedChunk]:
        if self._first:
            yield self._convert(self._first)
        for chunk in self._chunks:
            yield self._convert(chunk)

    def _convert(self, chunk: list[RawRecord]) -> ConvertedChunk:
        convert = FORMATS[self.fmt].convert
        pairs: list[dict[str, Any]] = []
        rejects: list[dict[str, Any]] = []
        for row, value in chunk:
            if isinstance(value, ReadFailure):
                rejects.append(_reject(row, value.text, value.reason, "read"))
            elif not isinstance(value, dict):
                rejects.append(_reject(row, to_json(value), "not_an_object", "read"))
            else:
                try:
                    converted = convert(value, self.context)
                except RowError as exc:
                    rejects.append(_reject(row, to_json(value), exc.reason, "convert"))
                    continue
                pairs.extend({**pair, INPUT_ROW: row} for pair in converted)
        return ConvertedChunk(len(chunk), pa.Table.from_pylist(pairs, schema=self._table_schema), rejects)


def load_pairs(path: str | Path, fmt: str = "auto", seed: int = 0) -> pa.Table:
    """Every record of a file as one table in the format's schema, unvalidated (benchmarks are scored on
    all their pairs, as published). A record that cannot be converted raises: quarantining is
    `convert_file`'s job."""
    reader = PairReader(path, fmt, seed)
    tables, failures = [], []
    for chunk in reader:
        tables.append(chunk.pairs.drop_columns([INPUT_ROW]))
        failures.extend(chunk.rejects)
    if failures:
        shown = "; ".join(f"row {r[INPUT_ROW]}: {r[REASON]}" for r in failures[:5])
        raise InputError(f"{path}: {len(failures)} record(s) cannot be read as {reader.fmt!r} ({shown}); "
                         "use `gram-ray convert` to quarantine them")
    return pa.concat_tables(tables) if tables else reader.schema.empty_table()


@dataclass
class ConvertSummary:
    input: str
    output: str
    rejects_path: str
    fmt: str
    records: int = 0  # input records, including unreadable lines
    written: int = 0
    cleaned: int = 0  # written rows whose text had control characters stripped
    reasons: Counter = field(default_factory=Counter)

    @property
    def rejected(self) -> int:
        return sum(self.reasons.values())

    def __str__(self) -> str:
        lines = [f"{self.input} ({self.fmt}): {self.records} records -> {self.written} pairs in {self.output}",
                 f"  control characters stripped in {self.cleaned} written rows",
                 f"  {self.rejected} rejected -> {self.rejects_path}"]
        lines += [f"    {reason}: {count}" for reason, count in sorted(self.reasons.items())]
        return "\n".join(lines)


def rejects_path_for(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(f"{output.stem}.rejects.parquet")


def convert_file(input: str | Path, output: str | Path, fmt: str = "auto", seed: int = 0,
                 validation: ValidationConfig | None = None,
                 chunk_rows: int = DEFAULT_CHUNK_ROWS) -> ConvertSummary:
    """Convert, validate and write `output` (Parquet) plus `<output-stem>.rejects.parquet`, which is
    always written (possibly empty) so that a stale one from an earlier run cannot mislead."""
    reader = PairReader(input, fmt, seed, chunk_rows)
    validator = PairValidator(validation)
    rejects_path = rejects_path_for(output)
    summary = ConvertSummary(str(input), str(output), str(rejects_path), reader.fmt)
    reject_schema = pa.schema([pa.field(name, pa.string())
                               for name in (INPUT_ROW, *reader.schema.names, RECORD, REASON, STAGE)])
    with (ParquetSink(output, reader.schema, chunk_rows) as pairs_out,
          ParquetSink(rejects_path, reject_schema, chunk_rows) as rejects_out,
          tqdm(desc=f"convert {Path(input).name}", unit=" records", disable=None) as progress):
        for chunk in reader:
            good, bad = validator.split(chunk.pairs)
            pairs_out.write_table(good.drop_columns([INPUT_ROW]))
            rejects_out.write_rows(chunk.rejects)
            rejects_out.write_table(bad)
            summary.records += chunk.records
            summary.reasons.update(r[REASON] for r in chunk.rejects)
            summary.reasons.update(bad[REASON].to_pylist())
            progress.update(chunk.records)
    summary.written = pairs_out.rows_written
    summary.cleaned = validator.cleaned_rows
    return summary


def _reject(row: int, record: str, reason: str, stage: str) -> dict[str, Any]:
    return {INPUT_ROW: str(row), RECORD: record, REASON: reason, STAGE: stage}
