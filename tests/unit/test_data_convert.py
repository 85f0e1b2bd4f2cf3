"""convert_file end to end on small files written here: good rows out, each bad row quarantined with its
reason, and unreadable files rejected with an error naming the file."""

from __future__ import annotations

import errno
import gzip
import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gram_ray.cli import main
from gram_ray.config import ValidationConfig
from gram_ray.data.convert import convert_file, load_pairs, rejects_path_for
from gram_ray.data.io import InputError, iter_records
from gram_ray.data.schemas import PAIR_SCHEMA, RATIONALE_SCHEMA, pair_id

GOOD = [{"prompt": f"question {i}", "response_a": f"answer {i}", "response_b": f"reply {i}", "label": "A",
         "topic": "math"} for i in range(5)]
# (JSON line, expected reason or None when the row must pass)
BAD_LINES: list[tuple[bytes, str]] = [
    (b'{"prompt": "unterminated', "invalid_json"),
    (b'{"prompt": "caf\xe9", "response_a": "x", "response_b": "y"}', "invalid_utf8"),
    (b'["a", "list"]', "not_an_object"),
    (json.dumps({"response_a": "x", "response_b": "y"}).encode(), "missing_field:prompt"),
    (json.dumps({"prompt": "p", "response_a": 42, "response_b": "y"}).encode(), "not_string:response_a"),
    (b'{"prompt": "p\\ud800", "response_a": "x", "response_b": "y"}', "invalid_utf8:prompt"),
    (json.dumps({"prompt": "p", "response_a": "", "response_b": "y"}).encode(), "empty_field:response_a"),
    (json.dumps({"prompt": " \n ", "response_a": "x", "response_b": "y"}).encode(), "empty_field:prompt"),
    (json.dumps({"prompt": "p", "response_a": "x", "response_b": "y", "label": "maybe"}).encode(), "bad_label"),
    (json.dumps({"prompt": "p", "response_a": "same", "response_b": "same "}).encode(), "identical_responses"),
    (json.dumps(GOOD[0]).encode(), "duplicate_id"),
    (json.dumps({"prompt": "p" * 200, "response_a": "x", "response_b": "y"}).encode(), "too_long"),
]
CLEANED_LINE = json.dumps({"prompt": "5.1\x07ngle", "response_a": "x", "response_b": "y", "label": " b "}).encode()
BUDGET = ValidationConfig(max_tokens=40)


def write_jsonl(path: Path, lines: list[bytes], gz: bool = False) -> Path:
    blob = b"\n".join(lines) + b"\n"
    path.write_bytes(gzip.compress(blob) if gz else blob)
    return path


def mixed_lines() -> list[bytes]:
    return [json.dumps(GOOD[0]).encode(), *(line for line, _ in BAD_LINES), b"",
            *(json.dumps(r).encode() for r in GOOD[1:]), CLEANED_LINE]


@pytest.mark.parametrize("gz", [False, True])
def test_bad_rows_land_in_rejects_with_their_reasons(tmp_path, gz):
    src = write_jsonl(tmp_path / ("in.jsonl.gz" if gz else "in.jsonl"), mixed_lines(), gz=gz)
    out = tmp_path / "out" / "pairs.parquet"
    summary = convert_file(src, out, validation=BUDGET, chunk_rows=4)  # chunks smaller than the file

    pairs = pq.read_table(out)
    assert pairs.schema.equals(PAIR_SCHEMA)
    assert pairs["prompt"].to_pylist() == [r["prompt"] for r in GOOD] + ["5.1ngle"]
    assert pairs["label"].to_pylist() == ["A"] * 5 + ["B"]
    assert pairs["id"].to_pylist()[0] == pair_id("question 0", "answer 0", "reply 0")
    assert json.loads(pairs["meta"][0].as_py()) == {"topic": "math"}
    assert set(pairs["source"].to_pylist()) == {"in"}

    rejects = pq.read_table(rejects_path_for(out))
    assert rejects_path_for(out) == tmp_path / "out" / "pairs.rejects.parquet"
    assert rejects["reason"].to_pylist() == [reason for _, reason in BAD_LINES]
    assert rejects["input_row"].to_pylist() == [str(i) for i in range(1, len(BAD_LINES) + 1)]
    stages = dict(zip(rejects["reason"].to_pylist(), rejects["stage"].to_pylist(), strict=True))
    assert stages["invalid_json"] == "read" and stages["missing_field:prompt"] == "convert"
    assert stages["bad_label"] == "validate"
    by_reason = {r["reason"]: r for r in rejects.to_pylist()}
    assert json.loads(by_reason["not_string:response_a"]["record"])["response_a"] == 42
    assert by_reason["bad_label"]["label"] == "maybe" and by_reason["bad_label"]["prompt"] == "p"
    assert by_reason["invalid_json"]["record"] == '{"prompt": "unterminated'

    assert (summary.records, summary.written, summary.rejected, summary.cleaned) == (6 + len(BAD_LINES), 6,
                                                                                       len(BAD_LINES), 1)
    assert summary.reasons == Counter(reason for _, reason in BAD_LINES)
    assert "too_long: 1" in str(summary)


def test_parquet_chosen_rejected_input(tmp_path):
    rows = [{"prompt": "p1", "chosen": "good", "rejected": "bad", "subset": "s"},
            {"prompt": None, "chosen": "good", "rejected": "bad", "subset": "s"},
            {"prompt": "p2", "chosen": "same", "rejected": "same", "subset": "s"},
            {"prompt": "p1", "chosen": "good", "rejected": "bad", "subset": "t"}]
    src = tmp_path / "cr.parquet"
    pq.write_table(pa.Table.from_pylist(rows), src)
    summary = convert_file(src, tmp_path / "cr_pairs.parquet", seed=3)
    assert summary.fmt == "chosen_rejected"
    [pair] = pq.read_table(tmp_path / "cr_pairs.parquet").to_pylist()
    assert (pair["response_a"] if pair["label"] == "A" else pair["response_b"]) == "good"
    assert json.loads(pair["meta"]) == {"subset": "s"}
    assert summary.reasons == {"missing_field:prompt": 1, "identical_responses": 1, "duplicate_id": 1}


def test_rationale_columns_give_rationale_schema(tmp_path):
    row = {"id": "x", "prompt": "p", "response_a": "a", "response_b": "b", "label": "A", "source": "s",
           "meta": "{}", "rationale": "r", "target": "t", "producer": "m", "round": 1, "score": None}
    src = tmp_path / "r.parquet"
    pq.write_table(pa.Table.from_pylist([row, {**row, "target": ""}], schema=RATIONALE_SCHEMA), src)
    summary = convert_file(src, tmp_path / "r_out.parquet")
    assert pq.read_table(tmp_path / "r_out.parquet").schema.equals(RATIONALE_SCHEMA)
    assert summary.reasons == {"empty_field:target": 1}


def test_stale_rejects_are_replaced_by_an_empty_file(tmp_path):
    src = write_jsonl(tmp_path / "ok.jsonl", [json.dumps(r).encode() for r in GOOD])
    out = tmp_path / "ok_pairs.parquet"
    rejects_path_for(out).write_bytes(b"stale")
    convert_file(src, out)
    assert pq.read_table(rejects_path_for(out)).num_rows == 0


def test_load_pairs_refuses_rows_it_cannot_convert(tmp_path):
    src = write_jsonl(tmp_path / "some_bad.jsonl", mixed_lines())
    with pytest.raises(InputError, match=r"some_bad.jsonl: 6 record\(s\) cannot be read as 'ab'"):
        load_pairs(src)


@pytest.mark.parametrize(("content", "problem"), [
    (None, "no such file"),
    (b"", "empty file"),
    (b"   \n\n", "empty file"),
    (b"\x00\x01\x02binary", "not Parquet, JSON or JSON lines"),
    (b"prompt,response_a\nx,y\n", "not Parquet, JSON or JSON lines"),
    (b'{\n  "prompt": "pretty-printed object"\n}\n', "first line is not a complete JSON object"),
    (b'{"a": 1', "first line is not a complete JSON object"),
    (b'{"a": 1}\n', "cannot tell the record format"),
    (b"[1, 2", "not valid JSON"),
    (b"[1, 2]", "records must be JSON objects"),
    (b"PAR1 this is not really parquet", "unreadable Parquet"),
    (gzip.compress(b'{"chosen": "a", "rejected": "b"}\n' * 50)[:40], "corrupt gzip stream"),
])
def test_unreadable_file_is_a_clear_error(tmp_path, content, problem):
    path = tmp_path / "broken.data"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match=problem) as err:
        convert_file(path, tmp_path / "out.parquet")
    assert str(path) in str(err.value)
    assert not (tmp_path / "out.parquet").exists()


def test_byte_order_mark_and_json_array_input(tmp_path):
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps(GOOD[0]).encode() + b"\n")
    array = tmp_path / "array.json.gz"
    array.write_bytes(gzip.compress(json.dumps(GOOD).encode()))
    assert load_pairs(bom)["prompt"].to_pylist() == ["question 0"]
    assert load_pairs(array)["prompt"].to_pylist() == [r["prompt"] for r in GOOD]


def test_a_directory_is_not_an_input(tmp_path):
    with pytest.raises(InputError, match="is a directory"):
        list(iter_records(tmp_path))


def test_unknown_format_name(tmp_path):
    src = write_jsonl(tmp_path / "ok.jsonl", [json.dumps(GOOD[0]).encode()])
    with pytest.raises(ValueError, match="unknown format 'csv'"):
        convert_file(src, tmp_path / "o.parquet", fmt="csv")


def test_cli_convert(tmp_path, capsys):
    src = write_jsonl(tmp_path / "in.jsonl", mixed_lines())
    out = tmp_path / "cli.parquet"
    assert main(["convert", str(src), str(out), "--set", "max_tokens=40"]) == 0
    printed = capsys.readouterr().out
    assert f"-> 6 pairs in {out}" in printed and "too_long: 1" in printed
    assert main(["convert", str(tmp_path / "missing.jsonl"), str(out)]) == 2
    assert "missing.jsonl: no such file" in capsys.readouterr().err


def test_converting_converted_output_changes_nothing(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", mixed_lines())
    convert_file(src, tmp_path / "once.parquet", seed=5)
    summary = convert_file(tmp_path / "once.parquet", tmp_path / "twice.parquet", seed=9)
    assert summary.fmt == "ab" and summary.rejected == 0
    assert pq.read_table(tmp_path / "twice.parquet").equals(pq.read_table(tmp_path / "once.parquet"))
    assert load_pairs(tmp_path / "twice.parquet").equals(pq.read_table(tmp_path / "once.parquet"))


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"),
                                   PermissionError(errno.EACCES, "Permission denied")], ids=["disk_full", "denied"])
def test_a_write_failing_midway_leaves_no_partial_output(tmp_path, monkeypatch, error):
    src = write_jsonl(tmp_path / "in.jsonl", mixed_lines())
    out = tmp_path / "out" / "pairs.parquet"
    convert_file(src, out, validation=BUDGET, chunk_rows=4)
    before = {p.name: p.read_bytes() for p in out.parent.iterdir()}

    real_write, real_close, writes = pq.ParquetWriter.write_table, pq.ParquetWriter.close, []

    def write_then_fail(self, table, *args, **kwargs):
        writes.append(table.num_rows)
        if len(writes) > 2:
            raise error
        return real_write(self, table, *args, **kwargs)

    def close_unless_full(self):  # the footer cannot be written either
        if len(writes) > 2:
            self.is_open = False  # a failed close is final (pyarrow's __del__ would try again)
            raise OSError(errno.EIO, "closing failed too")
        return real_close(self)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", write_then_fail)
    monkeypatch.setattr(pq.ParquetWriter, "close", close_unless_full)
    with pytest.raises(type(error), match=error.strerror):  # the first error, not the close's
        convert_file(src, out, validation=BUDGET, chunk_rows=4)
    # the earlier complete pair of files is untouched and no temporary file is left
    assert {p.name: p.read_bytes() for p in out.parent.iterdir()} == before

    monkeypatch.undo()
    convert_file(src, out, validation=BUDGET, chunk_rows=4)
    assert {p.name: p.read_bytes() for p in out.parent.iterdir()} == before
