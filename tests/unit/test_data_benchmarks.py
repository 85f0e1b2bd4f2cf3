"""Every benchmark file converts, with the record counts, label splits and groupings SOURCES.md states."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from gram_ray.data.benchmarks import benchmark_files, load_benchmark
from gram_ray.data.convert import load_pairs
from gram_ray.data.formats import RM_BENCH_STYLES
from gram_ray.data.schemas import PAIR_SCHEMA


def _meta(table) -> list[dict]:
    return [json.loads(m) for m in table["meta"].to_pylist()]


def test_every_benchmark_file_is_found(benchmarks_dir):
    files = benchmark_files(benchmarks_dir)
    assert {name: len(paths) for name, paths in files.items()} == {
        "judgebench": 2, "rm_bench": 4, "hhh": 1, "hh_rlhf": 1}


@pytest.mark.parametrize(("model", "rows", "a_wins", "b_wins", "sources"), [
    ("gpt-4o-2024-05-13", 350, 193, 157, (154, 98, 56, 42)),
    ("claude-3-5-sonnet-20240620", 270, 143, 127, (154, 51, 34, 31)),
])
def test_judgebench(benchmarks_dir, model, rows, a_wins, b_wins, sources):
    path = benchmarks_dir / "judgebench" / f"dataset=judgebench,response_model={model}.jsonl"
    table = load_pairs(path)  # format sniffed
    assert table.schema.equals(PAIR_SCHEMA)
    assert table.num_rows == rows
    assert Counter(table["label"].to_pylist()) == {"A": a_wins, "B": b_wins}
    meta = _meta(table)
    categories = Counter(m["category"] for m in meta)
    expected = dict(zip(("mmlu-pro", "livebench-reasoning", "livebench-math", "livecodebench"), sources, strict=True))
    assert categories == expected
    assert all(m["source"].startswith(m["category"]) and m["response_model"] == model for m in meta)
    assert len({m["pair_id"] for m in meta}) == rows and all("original_id" in m for m in meta)
    raw = [json.loads(line) for line in path.read_text().splitlines()]
    assert table["prompt"].to_pylist() == [r["question"] for r in raw]
    assert table["response_a"].to_pylist() == [r["response_A"] for r in raw]


@pytest.mark.parametrize(("domain", "prompts", "subsets"), [
    ("chat", 129, {"alpacaeval"}),
    ("code", 228, {"bigcode/humanevalpack"}),
    ("safety-refuse", 284, {"refusals-dangerous", "refusals-offensive", "xstest-should-refuse"}),
    ("safety-response", 157, {"xstest-should-respond"}),
])
def test_rm_bench_domain_file(benchmarks_dir, domain, prompts, subsets):
    path = benchmarks_dir / "rm-bench" / f"{domain}_filtered.json"
    table = load_pairs(path)
    assert table.num_rows == 9 * prompts
    meta = _meta(table)
    assert {m["domain"] for m in meta} == {domain}
    assert {m["subset"] for m in meta} == subsets
    cells = Counter((m["chosen_style"], m["rejected_style"]) for m in meta)
    assert cells == {(c, r): prompts for c in RM_BENCH_STYLES for r in RM_BENCH_STYLES}
    assert Counter(Counter(m["bench_id"] for m in meta).values()) == {9: prompts}

    records = {r["id"]: r for r in json.loads(path.read_text())}
    for row, m in zip(table.to_pylist(), meta, strict=True):
        record = records[m["bench_id"]]
        chosen = record["chosen"][m["chosen_index"]]
        rejected = record["rejected"][m["rejected_index"]]
        placed = (row["response_a"], row["response_b"]) if row["label"] == "A" else (row["response_b"],
                                                                                     row["response_a"])
        assert row["prompt"] == record["prompt"] and placed == (chosen, rejected)


def test_rm_bench_keeps_domain_specific_fields(benchmarks_dir):
    code = _meta(load_pairs(benchmarks_dir / "rm-bench" / "code_filtered.json"))
    chat = _meta(load_pairs(benchmarks_dir / "rm-bench" / "chat_filtered.json"))
    assert all({"language", "task_id"} <= m.keys() for m in code)
    assert all({"error_key", "error"} <= m.keys() for m in chat)


def test_hhh(benchmarks_dir):
    path = benchmarks_dir / "hhh-alignment" / "hhh_alignment_eval.json"
    table = load_pairs(path)
    assert table.num_rows == 221
    assert Counter(m["category"] for m in _meta(table)) == {"honest": 61, "helpful": 59, "harmless": 58, "other": 43}
    assert len(set(table["prompt"].to_pylist())) == 102
    assert not any("###" in text for col in ("prompt", "response_a", "response_b")
                   for text in table[col].to_pylist())
    first = json.loads(path.read_text())[0]
    row = table.slice(0, 1).to_pylist()[0]
    chosen = row["response_a"] if row["label"] == "A" else row["response_b"]
    assert f"###The instruction to evaluate:\n{row['prompt']}\n\n###Response to evaluate:\n{chosen}\n\n###Score" \
        in first["chosen_instruction"]


def test_hh_rlhf(benchmarks_dir):
    table = load_benchmark("hh_rlhf", benchmarks_dir)
    assert table.num_rows == 2312
    assert set(table["source"].to_pylist()) == {"hh-rlhf"}
    for row in table.slice(0, 200).to_pylist():
        assert row["prompt"].startswith("Human:") and not row["prompt"].endswith("Assistant:")


@pytest.mark.parametrize("name", ["rm_bench", "hhh", "hh_rlhf"])
def test_chosen_side_is_balanced_and_seeded(benchmarks_dir, name):
    first = load_benchmark(name, benchmarks_dir, seed=0)
    again = load_benchmark(name, benchmarks_dir, seed=0)
    other = load_benchmark(name, benchmarks_dir, seed=1)
    labels = first["label"].to_pylist()
    share_a = labels.count("A") / len(labels)
    assert abs(share_a - 0.5) < 1.5 / len(labels) ** 0.5  # within 3 standard deviations of a fair coin
    assert labels == again["label"].to_pylist()
    flipped = sum(x != y for x, y in zip(labels, other["label"].to_pylist(), strict=True))
    assert 0.3 < flipped / len(labels) < 0.7  # another seed re-draws the sides
    assert first["id"].to_pylist() == other["id"].to_pylist()  # ids do not depend on the side


def test_unknown_benchmark_is_an_error(benchmarks_dir):
    with pytest.raises(ValueError, match="unknown benchmark"):
        load_benchmark("rewardbench", benchmarks_dir)
