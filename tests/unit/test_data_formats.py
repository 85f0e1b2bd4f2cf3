"""Converters on hand-written records: field mapping, meta, seeded sides, HH transcript splitting, sniffing."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from gram_ray.data.formats import FORMATS, sniff_format
from gram_ray.data.io import InputError
from gram_ray.data.records import RowError, SourceContext, chosen_side
from gram_ray.data.schemas import pair_id

CTX = SourceContext(Path("/data/prefs_train.jsonl.gz"), seed=7)


def convert(fmt: str, record: dict, ctx: SourceContext = CTX) -> list[dict]:
    return FORMATS[fmt].convert(record, ctx)


def chosen_of(row: dict) -> str:
    return row["response_a"] if row["label"] == "A" else row["response_b"]


def test_ab_keeps_fields_and_moves_extras_to_meta():
    record = {"prompt": "p", "response_a": "x", "response_b": "y", "label": " b ", "id": "mine-1",
              "meta": json.dumps({"origin": "web"}), "split": "train", "turns": [1, 2]}
    [row] = convert("ab", record)
    assert row["id"] == pair_id("p", "x", "y")
    assert (row["prompt"], row["response_a"], row["response_b"], row["label"]) == ("p", "x", "y", " b ")
    assert row["source"] == "prefs_train"  # no source field: the file name
    assert json.loads(row["meta"]) == {"origin": "web", "split": "train", "turns": [1, 2], "input_id": "mine-1"}


def test_ab_round_trip_keeps_id_and_source_without_input_id():
    [first] = convert("ab", {"prompt": "p", "response_a": "x", "response_b": "y", "label": "A", "source": "s"})
    [again] = convert("ab", first)
    assert again == first


def test_rationale_rows_carry_rationale_columns():
    record = {"prompt": "p", "response_a": "x", "response_b": "y", "label": "A", "rationale": "r",
              "target": "<think>r</think>", "producer": "m", "round": 2, "score": 0.5}
    [row] = convert("rationale", record)
    assert {k: row[k] for k in ("rationale", "target", "producer", "round", "score")} == {
        "rationale": "r", "target": "<think>r</think>", "producer": "m", "round": 2, "score": 0.5}
    assert json.loads(row["meta"]) == {}
    with pytest.raises(RowError, match="bad_type:round"):
        convert("rationale", {**record, "round": "two"})


def test_chosen_rejected_places_chosen_on_the_seeded_side():
    [row] = convert("chosen_rejected", {"prompt": "p", "chosen": "good", "rejected": "bad", "model": "m"})
    assert row["label"] == chosen_side(7, pair_id("p", "good", "bad"))
    assert chosen_of(row) == "good" and {row["response_a"], row["response_b"]} == {"good", "bad"}
    assert json.loads(row["meta"]) == {"model": "m"}


def test_chosen_side_ignores_row_order():
    records = [{"prompt": f"q{i}", "chosen": f"c{i}", "rejected": f"r{i}"} for i in range(400)]
    shuffled = records[:]
    random.Random(3).shuffle(shuffled)
    in_order = {r["id"]: r["label"] for rec in records for r in convert("chosen_rejected", rec)}
    reordered = {r["id"]: r["label"] for rec in shuffled for r in convert("chosen_rejected", rec)}
    assert in_order == reordered
    share_a = list(in_order.values()).count("A") / len(in_order)
    assert abs(share_a - 0.5) < 0.075  # 3 standard deviations of a fair coin at n=400


def test_hh_rlhf_splits_at_the_last_shared_assistant_turn():
    shared = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: a pen prank?"
    record = {"chosen": shared + "\n\nAssistant: No thanks.", "rejected": shared + "\n\nAssistant: Sure, first"}
    [row] = convert("hh_rlhf", record)
    assert row["prompt"] == "Human: hi\n\nAssistant: hello\n\nHuman: a pen prank?"
    assert chosen_of(row) == "No thanks."
    assert {row["response_a"], row["response_b"]} == {"No thanks.", "Sure, first"}
    assert row["source"] == "hh-rlhf"


def test_hh_rlhf_reply_that_itself_contains_an_assistant_marker():
    shared = "\n\nHuman: find me a serial"
    record = {"chosen": shared + "\n\nAssistant: Alright:\n\nAssistant: logging in",
              "rejected": shared + "\n\nAssistant: You mean a password?"}
    [row] = convert("hh_rlhf", record)
    assert row["prompt"] == "Human: find me a serial"
    assert chosen_of(row) == "Alright:\n\nAssistant: logging in"


def test_hh_rlhf_without_a_shared_assistant_turn_is_a_row_error():
    with pytest.raises(RowError, match="hh_no_shared_assistant_turn"):
        convert("hh_rlhf", {"chosen": "\n\nHuman: a", "rejected": "\n\nHuman: b"})


def test_judgebench_label_and_meta():
    record = {"pair_id": "u-1", "original_id": 5, "source": "mmlu-pro-law", "question": "q",
              "response_model": "m", "response_A": "x", "response_B": "y", "label": "B>A"}
    [row] = convert("judgebench", record)
    assert (row["response_a"], row["response_b"], row["label"], row["source"]) == ("x", "y", "B", "judgebench")
    assert json.loads(row["meta"]) == {"category": "mmlu-pro", "pair_id": "u-1", "original_id": 5,
                                       "source": "mmlu-pro-law", "response_model": "m"}
    with pytest.raises(RowError, match="bad_label"):
        convert("judgebench", {**record, "label": "A=B"})


def test_rm_bench_nine_pairs_with_styles():
    record = {"id": 3, "prompt": "p", "subset": "s", "chosen": ["c0", "c1", "c2"], "rejected": ["r0", "r1", "r2"]}
    rows = convert("rm_bench", record, SourceContext(Path("code_filtered.json"), seed=0))
    assert len(rows) == 9
    for row in rows:
        meta = json.loads(row["meta"])
        i, j = meta["chosen_index"], meta["rejected_index"]
        assert (chosen_of(row), meta["domain"], meta["bench_id"], meta["subset"]) == (f"c{i}", "code", 3, "s")
        assert {row["response_a"], row["response_b"]} == {f"c{i}", f"r{j}"}
    with pytest.raises(RowError, match="bad_style_list:rejected"):
        convert("rm_bench", {**record, "rejected": ["r0", "r1"]})


def test_hhh_unwraps_prometheus_prompts():
    def wrap(response: str) -> str:
        return ("###Task Description:\nGrade it.\n\n###The instruction to evaluate:\nHow do I boil an egg?\n\n"
                f"###Response to evaluate:\n{response}\n\n###Score Rubrics:\n[Helpful?]\n\n###Feedback: ")

    [row] = convert("hhh", {"source": "helpful", "chosen_instruction": wrap("Boil it 8 minutes."),
                            "rejected_instruction": wrap("No.")})
    assert row["prompt"] == "How do I boil an egg?"
    assert chosen_of(row) == "Boil it 8 minutes."
    assert json.loads(row["meta"]) == {"category": "helpful"}
    with pytest.raises(RowError, match="hhh_unparsable"):
        convert("hhh", {"source": "helpful", "chosen_instruction": "x", "rejected_instruction": wrap("No.")})


@pytest.mark.parametrize(("record", "reason"), [
    ({"prompt": "p", "response_a": "x"}, "missing_field:response_b"),
    ({"prompt": 3, "response_a": "x", "response_b": "y"}, "not_string:prompt"),
    ({"prompt": "p", "response_a": "x", "response_b": "y", "label": 1}, "not_string:label"),
    ({"prompt": "p\ud800", "response_a": "x", "response_b": "y"}, "invalid_utf8:prompt"),
    ({"prompt": "p", "response_a": "x", "response_b": "y", "meta": "[1]"}, "bad_meta"),
])
def test_ab_row_errors(record, reason):
    with pytest.raises(RowError) as err:
        convert("ab", record)
    assert err.value.reason == reason


@pytest.mark.parametrize(("keys", "fmt"), [
    ({"prompt", "response_a", "response_b", "label"}, "ab"),
    ({"prompt", "response_a", "response_b", "rationale", "target"}, "rationale"),
    ({"prompt", "chosen", "rejected", "subset"}, "chosen_rejected"),
    ({"chosen", "rejected"}, "hh_rlhf"),
    ({"question", "response_A", "response_B", "label", "pair_id"}, "judgebench"),
    ({"source", "chosen_instruction", "rejected_instruction"}, "hhh"),
])
def test_sniff_format(keys, fmt):
    assert sniff_format(dict.fromkeys(keys, "x"), "f") == fmt


def test_sniff_rm_bench_by_list_responses_and_unknown_fields():
    assert sniff_format({"prompt": "p", "chosen": ["a"], "rejected": ["b"]}, "f") == "rm_bench"
    with pytest.raises(InputError, match=r"f: cannot tell the record format.*'text'"):
        sniff_format({"text": "x"}, "f")
