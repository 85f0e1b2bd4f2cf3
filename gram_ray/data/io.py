"""Streaming readers for Parquet, JSON lines (plain or gzip) and JSON arrays, and a chunked Parquet writer.

Readers yield records in chunks so memory stays bounded by the chunk size, not the file size; the one
exception is a JSON array (the RM-Bench and HHH files), which has to be parsed whole and is meant for
benchmark-sized files: large data should come as JSON lines or Parquet.
A line (or Parquet row) that cannot be read is not an error of the file: it comes out as a `ReadFailure`,
so the caller can quarantine it. A file that cannot be read at all raises `InputError`, naming the file
and the problem.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from gram_ray.data.records import UnreadableJSON, load_json

Container = Literal["parquet", "jsonl", "json"]

DEFAULT_CHUNK_ROWS = 8192
_PARQUET_MAGIC = b"PAR1"
_GZIP_MAGIC = b"\x1f\x8b"
_SNIFF_BYTES = 1 << 16


class InputError(ValueError):
    """An input file that cannot be read at all (missing, empty, corrupt, or of no supported kind)."""


@dataclass(frozen=True)
class ReadFailure:
    """One line of a JSON-lines file that is not a JSON value (`text` is the raw line, made printable)."""

    text: str
    reason: str  # "invalid_utf8", "invalid_json" or "json_too_deep"


RawRecord = tuple[int, Any]  # (0-based row or line index in the file, parsed value or ReadFailure)


def sniff_container(path: str | Path) -> tuple[Container, bool]:
    """(container kind, gzip-compressed) from the file's first bytes, not its name."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a Parquet, JSON or JSON-lines file")
    with path.open("rb") as f:
        head = f.read(4)
    if not head:
        raise InputError(f"{path}: empty file")
    if head == _PARQUET_MAGIC:
        return "parquet", False
    gz = head[:2] == _GZIP_MAGIC
    with _open_binary(path, gz) as f:
        try:
            start = f.read(_SNIFF_BYTES)
        except (OSError, EOFError, zlib.error) as exc:
            raise InputError(f"{path}: corrupt gzip stream: {exc}") from None
    text = start.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"["):
        return "json", gz
    if text.startswith(b"{"):
        first_line, newline, _ = text.partition(b"\n")
        too_long_to_check = not newline and len(start) == _SNIFF_BYTES
        if too_long_to_check or _is_json_object(first_line):
            return "jsonl", gz
        raise InputError(f"{path}: first line is not a complete JSON object (JSON lines expected): "
                         f"{first_line[:80]!r}")
    if not text:
        raise InputError(f"{path}: empty file")
    raise InputError(f"{path}: not Parquet, JSON or JSON lines (starts with {start[:40]!r})")


def iter_records(path: str | Path, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[list[RawRecord]]:
    """Chunks of (row index, record) from any supported file; JSON-lines rows may be `ReadFailure`s."""
    path = Path(path)
    container, gz = sniff_container(path)
    if container == "parquet":
        yield from _iter_parquet(path, chunk_rows)
    elif container == "jsonl":
        yield from _iter_jsonl(path, gz, chunk_rows)
    else:
        yield from _chunks(enumerate(_load_json_array(path, gz)), chunk_rows)


def _iter_parquet(path: Path, chunk_rows: int) -> Iterator[list[RawRecord]]:
    try:
        pf = pq.ParquetFile(path)
        row = 0
        for batch in pf.iter_batches(batch_size=chunk_rows):
            yield list(enumerate(_batch_records(batch), start=row))
            row += batch.num_rows
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: unreadable Parquet: {exc}") from None


def _batch_records(batch: pa.RecordBatch) -> list[Any]:
    """The batch's rows as dicts; Parquet does not enforce UTF-8 in string columns, so a row holding
    invalid bytes becomes an ``invalid_utf8`` ReadFailure instead of failing the whole file."""
    try:
        return batch.to_pylist()
    except UnicodeDecodeError:
        return [_row_record(batch.slice(i, 1)) for i in range(batch.num_rows)]


def _row_record(row: pa.RecordBatch) -> Any:
    try:
        return row.to_pylist()[0]
    except UnicodeDecodeError:
        cells = {name: _printable_cell(column) for name, column in zip(row.schema.names, row.columns, strict=True)}
        return ReadFailure(json.dumps(cells, ensure_ascii=False, default=str), "invalid_utf8")


def _printable_cell(column: pa.Array) -> Any:
    """A one-row column's value, invalid UTF-8 shown as backslash escapes."""
    try:
        return column.to_pylist()[0]
    except UnicodeDecodeError:
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            return column.cast(pa.binary()).to_pylist()[0].decode("utf-8", "backslashreplace")
        return f"<{column.type} holding invalid UTF-8>"


def _iter_jsonl(path: Path, gz: bool, chunk_rows: int) -> Iterator[list[RawRecord]]:
    def lines() -> Iterator[RawRecord]:
        index = -1
        with _open_binary(path, gz) as f:
            try:
                for index, raw in enumerate(f):
                    if raw.strip():
                        yield index, _parse_line(raw)
            except (OSError, EOFError, zlib.error) as exc:
                raise InputError(f"{path}: corrupt gzip stream after line {index + 1}: {exc}") from None

    yield from _chunks(lines(), chunk_rows)


def _parse_line(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8-sig")  # tolerate a byte-order mark before the first line
    except UnicodeDecodeError:
        return ReadFailure(raw.decode("utf-8", "backslashreplace").rstrip("\r\n"), "invalid_utf8")
    try:
        return load_json(text)
    except UnreadableJSON as exc:
        return ReadFailure(text.rstrip("\r\n"), exc.reason)


def _load_json_array(path: Path, gz: bool) -> list:
    with _open_binary(path, gz) as f:
        try:
            value = load_json(f.read())
        except UnreadableJSON as exc:
            raise InputError(f"{path}: not valid JSON: {exc.detail}") from None
        except (OSError, EOFError, zlib.error) as exc:
            raise InputError(f"{path}: corrupt gzip stream: {exc}") from None
    if not isinstance(value, list):
        raise InputError(f"{path}: top-level JSON is a {type(value).__name__}, expected an array of records")
    return value


def _chunks(items: Iterator[RawRecord], size: int) -> Iterator[list[RawRecord]]:
    chunk: list[RawRecord] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _open_binary(path: Path, gz: bool) -> IO[bytes]:
    return gzip.open(path, "rb") if gz else path.open("rb")


def _is_json_object(line: bytes) -> bool:
    try:
        return isinstance(load_json(line), dict)
    except UnreadableJSON:
        return False


class ParquetSink:
    """Buffered `ParquetWriter`: rows are written in chunks of `chunk_rows`, under a temporary name that
    becomes `path` only on a clean close, so a failed run never leaves a truncated file that looks whole."""

    def __init__(self, path: str | Path, schema: pa.Schema, chunk_rows: int = DEFAULT_CHUNK_ROWS):
        self.path = Path(path)
        self.schema = schema
        self.chunk_rows = chunk_rows
        self.rows_written = 0
        self._tmp = self.path.with_name(f".{self.path.name}.partial")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = pq.ParquetWriter(self._tmp, schema)
        self._buffer: list[dict] = []

    def write_rows(self, rows: list[dict]) -> None:
        self._buffer.extend(rows)
        if len(self._buffer) >= self.chunk_rows:
            self._flush()

    def write_table(self, table: pa.Table) -> None:
        """Write `table` in this sink's schema; columns it lacks are written as nulls."""
        self._flush()
        if table.num_rows:
            columns = [table[f.name].cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
                       for f in self.schema]
            self._writer.write_table(pa.Table.from_arrays(columns, schema=self.schema))
            self.rows_written += table.num_rows

    def _flush(self) -> None:
        if self._buffer:
            self._writer.write_table(pa.Table.from_pylist(self._buffer, schema=self.schema))
            self.rows_written += len(self._buffer)
            self._buffer = []

    def close(self) -> None:
        self._flush()
        self._writer.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        """Drop the partial file; a close that fails too (the disk is still full) must not hide the first error."""
        with contextlib.suppress(OSError, pa.ArrowException):
            self._writer.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> ParquetSink:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def parquet_rows(files: Iterable[Path]) -> int:
    """Rows of Parquet files, from their footers (no data read)."""
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def parquet_files(paths: str | Path | list[str] | list[Path]) -> list[Path]:
    """The Parquet files of files and folders (searched recursively), in a stable order."""
    files: list[Path] = []
    for path in [paths] if isinstance(paths, str | Path) else paths:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"input not found: {path}")
        found = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
        if not found:
            raise FileNotFoundError(f"no Parquet files under {path}")
        files.extend(found)
    return files
