"""Seed-rationale formats on hand-written records: ``seed`` (a rationale without a training target),
``helpsteer3`` (HelpSteer3-Preference's documented schema) and ``judgebench_judgment`` (JudgeBench's
reference judge outputs); the sniffer tells them apart, and a seed row trains the RM with the target its
rationale and label make."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gram_ray.data.formats import FORMATS, sniff_format
from gram_ray.data.records import RowError, SourceContext
from gram_ray.data.schemas import SEED_SCHEMA, pair_id
from gram_ray.prompts import judge_prompt, proof_to_target
from gram_ray.train.examples import Example, row_examples

CTX = SourceContext(Path("/data/helpsteer3_train.jsonl"), seed=3)
SEED = {"prompt": "p", "response_a": "x", "response_b": "y", "label": "B", "rationale": "y is right", "split": "t"}


def convert(fmt: str, record: dict) -> list[dict]:
    rows = FORMATS[fmt].convert(record, CTX)
    for row in rows:
        assert set(row) == set(SEED_SCHEMA.names)
    return rows


def helpsteer3(**changes) -> dict:
    record = {
        "domain": "general", "language": "english",
        "context": [{"role": "user", "content": "Name a prime."}],
        "response1": "4 is prime.", "response2": "7 is prime.",
        "overall_preference": 2,
        "individual_preference": [
            {"score": -1, "reasoning": "@Response 1 is shorter.", "feedback1": "f", "feedback2": "g"},
            {"score": 2, "reasoning": "@Response 2 is correct; @Response 1 names 4, not a prime."},
            {"score": 3, "reasoning": "second agreeing annotator"},
        ],
    }
    return {**record, **changes}


def test_seed_keeps_the_rationale_and_needs_a_label():
    [row] = convert("seed", SEED)
    assert (row["label"], row["rationale"], row["id"]) == ("B", "y is right", pair_id("p", "x", "y"))
    assert json.loads(row["meta"]) == {"split": "t"}
    with pytest.raises(RowError, match="missing_label"):
        convert("seed", {**SEED, "label": None})
    with pytest.raises(RowError, match="missing_field:rationale"):
        convert("seed", {**SEED, "rationale": None})


def test_sniffer_reads_a_file_with_rationales_but_no_target_as_seed():
    assert sniff_format(SEED, "f") == "seed"
    assert sniff_format({**SEED, "target": "t"}, "f") == "rationale"
    assert sniff_format(helpsteer3(), "f") == "helpsteer3"
    judged = {"question": "q", "response_A": "a", "response_B": "b", "label": "A>B"}
    assert sniff_format(judged, "f") == "judgebench"
    assert sniff_format({**judged, "judgments": []}, "f") == "judgebench_judgment"


def test_seed_row_trains_the_judge_on_the_target_its_rationale_makes():
    [row] = convert("seed", SEED)
    [example] = row_examples(row, "sft", "judge", "gram_r2", swap_augment=False)
    assert example == Example(judge_prompt("gram_r2", "p", "x", "y"), proof_to_target("y is right", "B"))
    with pytest.raises(ValueError, match="label must be one of"):
        row_examples({**row, "label": None}, "sft", "judge", "gram_r2", swap_augment=False)


def test_helpsteer3_keeps_sides_and_takes_an_agreeing_annotators_reasoning():
    [row] = convert("helpsteer3", helpsteer3())
    assert (row["prompt"], row["response_a"], row["response_b"], row["label"]) == (
        "Name a prime.", "4 is prime.", "7 is prime.", "B")
    assert row["rationale"] == "Response B is correct; Response A names 4, not a prime."
    assert row["source"] == "helpsteer3"
    assert json.loads(row["meta"]) == {"domain": "general", "language": "english"}
    [first_better] = convert("helpsteer3", helpsteer3(overall_preference=-1))
    assert first_better["label"] == "A" and first_better["rationale"] == "Response A is shorter."


def test_helpsteer3_multi_turn_context_becomes_a_transcript():
    context = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
               {"role": "user", "content": "Name a prime."}]
    [row] = convert("helpsteer3", helpsteer3(context=context))
    assert row["prompt"] == "User: Hi\n\nAssistant: Hello!\n\nUser: Name a prime."


@pytest.mark.parametrize(("changes", "reason"), [
    ({"overall_preference": 0}, "helpsteer3_tie"),
    ({"overall_preference": 5}, "bad_type:overall_preference"),
    ({"overall_preference": "2"}, "bad_type:overall_preference"),
    ({"individual_preference": [{"score": -2, "reasoning": "disagrees"}]}, "helpsteer3_no_reasoning"),
    ({"individual_preference": None}, "helpsteer3_no_reasoning"),
    ({"context": []}, "missing_field:context"),
    ({"context": [{"role": "robot", "content": "x"}]}, "bad_turn:context"),
    ({"response2": None}, "missing_field:response2"),
])
def test_helpsteer3_bad_records_name_their_reason(changes, reason):
    with pytest.raises(RowError, match=reason):
        convert("helpsteer3", helpsteer3(**changes))


def judged(decision: str) -> dict:
    return {"pair_id": "u1", "original_id": "o1", "source": "mmlu-pro-law", "question": "q", "response_model": "m",
            "response_A": "a", "response_B": "b", "label": "B>A", "judge_name": "arena_hard",
            "judgments": [{"decision": decision, "judgment": {"judge_model": "haiku", "prompt": "...",
                                                              "response": "\nB cites the rule. [[B>A]]"}},
                          {"decision": "A>B", "judgment": {"judge_model": "haiku", "prompt": "...",
                                                           "response": "swapped game"}}]}


def test_judgebench_judgment_takes_game_one_when_it_agrees_with_the_label():
    [row] = convert("judgebench_judgment", judged("B>A"))
    assert (row["response_a"], row["response_b"], row["label"]) == ("a", "b", "B")
    assert row["rationale"] == "B cites the rule. [[B>A]]"
    meta = json.loads(row["meta"])
    assert meta["judge_model"] == "haiku" and meta["category"] == "mmlu-pro" and "judgments" not in meta
    with pytest.raises(RowError, match="judge_disagrees"):
        convert("judgebench_judgment", judged("A>B"))
    with pytest.raises(RowError, match="missing_field:judgments"):
        convert("judgebench_judgment", {**judged("B>A"), "judgments": []})
