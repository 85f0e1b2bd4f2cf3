"""Atomic writes, the folder swap and the fingerprint that resume decisions compare."""

from __future__ import annotations

import os

import pytest

from gram_ray.data.files import atomic_write, atomic_write_text, fingerprint, replace_folder


def test_atomic_write_replaces_a_file_whole_or_not_at_all(tmp_path):
    path = tmp_path / "sub" / "manifest.json"
    atomic_write_text(path, "first")
    atomic_write_text(path, "second")
    assert path.read_text() == "second" and os.listdir(path.parent) == ["manifest.json"]

    def dies_half_way(tmp):
        tmp.write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        atomic_write(path, dies_half_way)
    assert path.read_text() == "second" and os.listdir(path.parent) == ["manifest.json"]


def test_replace_folder_swaps_an_older_output_out(tmp_path):
    out, tmp = tmp_path / "label", tmp_path / ".label.tmp"
    out.mkdir()
    (out / "old.txt").write_text("old")
    tmp.mkdir()
    (tmp / "summary.json").write_text("{}")
    replace_folder(tmp, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["label"]
    assert [p.name for p in out.iterdir()] == ["summary.json"]
    fresh = tmp_path / ".fresh.tmp"
    fresh.mkdir()
    replace_folder(fresh, tmp_path / "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["label", "new"]


def test_fingerprint_sees_content_not_only_size_and_time(tmp_path):
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "weights.bin").write_bytes(b"abcd")
    (folder / "sub" / "config.json").write_text("{}")
    (folder / ".weights.bin.x.tmp").write_bytes(b"half")  # a write in progress is not part of it
    before = fingerprint(folder)
    assert sorted(before) == ["sub/config.json", "weights.bin"] and before["weights.bin"]["bytes"] == 4
    stat = (folder / "weights.bin").stat()
    (folder / "weights.bin").write_bytes(b"abce")
    os.utime(folder / "weights.bin", ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size, same time
    assert fingerprint(folder) != before
    assert fingerprint(folder / "weights.bin") == {"weights.bin": fingerprint(folder)["weights.bin"]}
