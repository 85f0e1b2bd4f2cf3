import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gram_ray.cli import main
from gram_ray.data import rounds
from gram_ray.data.rounds import bucket_count, split_rounds
from gram_ray.data.schemas import PAIR_SCHEMA, pair_id


def _pairs(n: int, offset: int = 0, swap: bool = False) -> pa.Table:
    rows = []
    for i in range(offset, offset + n):
        a, b = f"right {i}", f"wrong {i}"
        if swap:
            a, b = b, a
        rows.append({"id": pair_id(f"q{i}", a, b), "prompt": f"q{i}", "response_a": a, "response_b": b,
                     "label": None, "source": "t", "meta": "{}"})
    return pa.Table.from_pylist(rows, schema=PAIR_SCHEMA)


def test_rounds_are_disjoint_unique_and_exclude_labeled(tmp_path):
    pq.write_table(_pairs(500), tmp_path / "pool1.parquet")
    # the second file repeats 100 rows verbatim and 50 side-swapped (same id), and adds 200 new ones
    pq.write_table(pa.concat_tables([_pairs(100), _pairs(50, 100, swap=True), _pairs(200, 500)]),
                   tmp_path / "pool2.parquet")
    pq.write_table(_pairs(30, 600), tmp_path / "heldout.parquet")  # 30 of the pool's rows are held out
    split = split_rounds([tmp_path / "pool1.parquet", tmp_path / "pool2.parquet"], tmp_path / "rounds",
                         round_size=200, rounds=3, exclude=[tmp_path / "heldout.parquet"], buckets=8)
    assert split.duplicates == 150 and split.excluded == 30
    assert split.rows == [200, 200, 200] and split.leftover == 700 - 30 - 600
    ids = [pq.read_table(p)["id"].to_pylist() for p in split.rounds]
    flat = [i for r in ids for i in r]
    assert len(flat) == len(set(flat)) == 600
    assert not set(flat) & set(pq.read_table(tmp_path / "heldout.parquet")["id"].to_pylist())
    assert pq.read_table(split.rounds[0]).schema == PAIR_SCHEMA


def test_split_is_deterministic_and_order_independent(tmp_path):
    table = _pairs(300)
    pq.write_table(table, tmp_path / "a.parquet")
    pq.write_table(table.take(list(reversed(range(300)))), tmp_path / "b.parquet")
    one = split_rounds([tmp_path / "a.parquet"], tmp_path / "r1", 100, 2, buckets=4)
    two = split_rounds([tmp_path / "b.parquet"], tmp_path / "r2", 100, 2, buckets=4)
    for p, q in zip(one.rounds, two.rounds, strict=True):
        assert sorted(pq.read_table(p)["id"].to_pylist()) == sorted(pq.read_table(q)["id"].to_pylist())


def test_too_small_pool_is_a_clear_error_and_leaves_no_round_file(tmp_path):
    pq.write_table(_pairs(50), tmp_path / "a.parquet")
    with pytest.raises(ValueError, match="need 100 unique unlabeled pairs; the pool has 50"):
        split_rounds([tmp_path / "a.parquet"], tmp_path / "r", 50, 2)
    assert not list((tmp_path / "r").glob("*.parquet"))


def test_a_new_split_removes_the_files_of_an_earlier_one(tmp_path):
    pq.write_table(_pairs(250), tmp_path / "a.parquet")
    split_rounds([tmp_path / "a.parquet"], tmp_path / "r", 50, 4)
    assert (tmp_path / "r" / "round_04.parquet").exists() and (tmp_path / "r" / "leftover.parquet").exists()
    split_rounds([tmp_path / "a.parquet"], tmp_path / "r", 125, 2)
    assert sorted(p.name for p in (tmp_path / "r").glob("*.parquet")) == ["round_01.parquet", "round_02.parquet"]


def test_buckets_grow_with_the_pool_so_memory_holds_a_fixed_number_of_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(rounds, "BUCKET_ROWS", 100)
    assert [bucket_count(n) for n in (0, 1, 100, 101, 700)] == [1, 1, 1, 2, 7]
    monkeypatch.setattr(rounds, "MAX_BUCKETS", 5)
    assert bucket_count(700) == 5
    monkeypatch.setattr(rounds, "MAX_BUCKETS", 1000)
    monkeypatch.setattr(rounds.resource, "getrlimit", lambda _: (8, 8))  # 8 open files: at most 4 buckets
    assert bucket_count(700) == 4
    monkeypatch.undo()
    monkeypatch.setattr(rounds, "BUCKET_ROWS", 100)
    for n in (350, 1400):  # 4x the rows: 4x the buckets, about the same rows per bucket
        pq.write_table(_pairs(n), tmp_path / f"pool{n}.parquet")
        split = split_rounds([tmp_path / f"pool{n}.parquet"], tmp_path / f"r{n}", 100, 3)
        assert split.buckets == n // 100 + (n % 100 > 0)
        assert split.largest_bucket <= 200, split.largest_bucket  # hash buckets: 100 rows on average
        assert sum(split.rows) + split.leftover == n


def test_cli_rounds(tmp_path, capsys):
    pq.write_table(_pairs(250), tmp_path / "pool.parquet")
    pq.write_table(_pairs(10), tmp_path / "labeled.parquet")
    assert main(["rounds", str(tmp_path / "pool.parquet"), "--out", str(tmp_path / "r"), "--round-size", "100",
                 "--rounds", "2", "--exclude", str(tmp_path / "labeled.parquet")]) == 0
    out = capsys.readouterr().out
    assert "round_01.parquet: 100 pairs" in out and "round_02.parquet: 100 pairs" in out
    assert "dropped 0 repeated and 10 excluded pairs; 40 left over" in out
    assert pq.read_table(tmp_path / "r" / "leftover.parquet").num_rows == 40
