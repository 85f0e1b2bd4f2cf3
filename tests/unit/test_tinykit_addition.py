"""The synthetic addition task: answers, rationales, the support check, and the splits on disk."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import replace

import pyarrow.parquet as pq
import pytest

from gram_ray.data.schemas import PAIR_SCHEMA, RATIONALE_SCHEMA, pair_id
from gram_ray.prompts import judge_prompt, proof_to_target
from gram_ray.tinykit.addition import (
    OPERANDS,
    SMALL_SIZES,
    TaskSizes,
    digit_verify,
    question,
    rationale_steps,
    verify_rationale,
    worked_solution,
    write_task,
    wrong_answers,
)

ALL_OPERANDS = [(a, b) for a in OPERANDS for b in OPERANDS]


def test_worked_solution_matches_the_probe_format():
    assert worked_solution(37, 48) == "7+8=15, carry 1. 3+4+1=8. sum 85."
    assert worked_solution(12, 34) == "2+4=6, carry 0. 1+3=4. sum 46."


def test_worked_solution_lines_are_true_and_end_in_the_sum():
    for a, b in ALL_OPERANDS:
        text = worked_solution(a, b)
        steps = re.findall(r"([\d+]+)=(\d+)", text)
        assert len(steps) == 2
        for lhs, rhs in steps:
            assert sum(int(x) for x in lhs.split("+")) == int(rhs)
        assert text.endswith(f"sum {a + b}.")


def test_digit_verify_matches_the_probe_rationale():
    assert digit_verify(37, 48, "85", "84") == (
        "7+8=15, carry 1. 3+4+1=8. sum 85. A: 85 vs 85 yes. B: 84 vs 85 no."
    )


@pytest.mark.parametrize("split", ["labeled", "heldout"])
def test_wrong_answers_differ_from_the_sum_with_equal_length(full_task, split):
    for row in full_task[split]:
        meta = json.loads(row["meta"])
        right, wrong = str(meta["sum"]), str(meta["wrong"])
        assert wrong != right and len(wrong) == len(right)
        assert abs(meta["wrong"] - meta["sum"]) in {1, 2, 9, 10, 11}
        assert {row["response_a"], row["response_b"]} == {right, wrong}


# ---- verify_rationale ---------------------------------------------------------------------------

PAIR = {"prompt": "What is 37+48?", "response_a": "85", "response_b": "84"}


def test_correct_rationale_supports_its_label():
    assert verify_rationale(PAIR, digit_verify(37, 48, "85", "84"), "A") is None
    swapped = {**PAIR, "response_a": "84", "response_b": "85"}
    assert verify_rationale(swapped, digit_verify(37, 48, "84", "85"), "B") is None


def test_rationale_inside_a_generated_target_is_read():
    target = proof_to_target(digit_verify(37, 48, "85", "84"), "A")
    assert verify_rationale(PAIR, target, "A") is None


def test_a_consistent_wrong_sum_still_supports_its_label():
    # The filter checks the proof, not the answer key: steps that add up (on a misread 7) give sum 84.
    rationale = "7+7=14, carry 1. 3+4+1=8. sum 84. A: 85 vs 84 no. B: 84 vs 84 yes."
    assert verify_rationale(PAIR, rationale, "B") is None


@pytest.mark.parametrize(
    ("rationale", "reason"),
    [  # a wrong label "proved" by writing the labelled response as the sum: the steps give it away
        ("7+8=15, carry 1. 3+4+1=8. sum 84. A: 85 vs 84 no. B: 84 vs 84 yes.", "the steps give 85, not"),
        ("7+8=14, carry 1. 3+4+1=8. sum 84. A: 85 vs 84 no. B: 84 vs 84 yes.", "false step: 7+8=14"),
        ("7+8=15, carry 0. 3+4=7. sum 75. A: 85 vs 75 no. B: 75 vs 75 yes.", "false step: 7+8=15, carry 0"),
        ("7+8=15, carry 1. 3+4=7. sum 75. A: 85 vs 75 no. B: 75 vs 75 yes.", "false step: 3+4=7"),
        ("7+8=15, carry 1. 3+4+1=9. sum 95. A: 85 vs 95 no. B: 95 vs 95 yes.", "false step: 3+4+1=9"),
        ("sum 84. A: 85 vs 84 no. B: 84 vs 84 yes.", "no worked steps"),
    ],
)
def test_a_sum_the_steps_do_not_give_is_not_proved(rationale, reason):
    pair = {**PAIR, "response_b": rationale.split("B: ")[1].split(" ")[0]}
    got = verify_rationale(pair, rationale, "B")
    assert got is not None and reason in got, got


@pytest.mark.parametrize(
    ("rationale", "label", "reason"),
    [
        ("7+8=15, carry 1. 3+4+1=8. sum 85. A: 85 vs 85 yes. B: 84 vs 85 no.", "B", "supports A"),
        ("7+8=15, carry 1. 3+4+1=8. A: 85 vs 85 yes. B: 84 vs 85 no.", "A", "no sum line"),
        ("sum 85. sum 84. A: 85 vs 85 yes. B: 84 vs 85 no.", "A", "several sum lines"),
        ("sum 85. A: 85 vs 85 yes.", "A", "no verdict for B"),
        ("sum 85. A: 85 vs 85 yes. B: 84 vs 85 no. B: 84 vs 85 no.", "A", "several verdicts for B"),
        ("sum 85. A: 85 vs 85 yes. B: 85 vs 85 yes.", "A", "B quoted as '85'"),
        ("sum 85. A: 85 vs 84 yes. B: 84 vs 85 no.", "A", "A compared with 84"),
        ("sum 85. A: 85 vs 85 no. B: 84 vs 85 no.", "A", "A verdict 'no' is wrong"),
        ("sum 85. A: 85 vs 85 yes. B: 84 vs 85 yes.", "A", "B verdict 'yes' is wrong"),
        ("sum 86. A: 85 vs 86 no. B: 84 vs 86 no.", "A", "no response matches"),
    ],
)
def test_unsupporting_rationales_get_a_reason(rationale, label, reason):
    got = verify_rationale(PAIR, rationale, label)
    assert got is not None and reason in got


def test_both_sides_matching_is_not_support():
    same = {**PAIR, "response_b": "85"}
    got = verify_rationale(same, "sum 85. A: 85 vs 85 yes. B: 85 vs 85 yes.", "A")
    assert got is not None and "both" in got


def test_invalid_label_is_an_error():
    with pytest.raises(ValueError, match="label"):
        verify_rationale(PAIR, digit_verify(37, 48, "85", "84"), "C")


# ---- splits on disk -----------------------------------------------------------------------------


def read_task(files) -> dict[str, list[dict]]:
    out = {name: pq.read_table(getattr(files, name)).to_pylist()
           for name in ("seed_rationales", "labeled", "heldout", "pretrain")}
    out["unlabeled"] = [row for path in files.unlabeled for row in pq.read_table(path).to_pylist()]
    return out


@pytest.fixture(scope="module")
def full_files(tmp_path_factory):
    return write_task(tmp_path_factory.mktemp("addition"), seed=3)


@pytest.fixture(scope="module")
def full_task(full_files):
    return read_task(full_files)


def test_default_sizes_are_the_probes(full_files, full_task):
    assert [len(full_task[k]) for k in ("seed_rationales", "labeled", "heldout", "pretrain")] == [
        200, 2000, 400, 20000]
    assert [pq.read_metadata(p).num_rows for p in full_files.unlabeled] == [2000, 2000]
    assert [p.name for p in full_files.unlabeled] == ["round_01.parquet", "round_02.parquet"]


def test_small_sizes_are_tens_of_rows(tmp_path):
    files = write_task(tmp_path, seed=0, sizes=SMALL_SIZES)
    task = read_task(files)
    assert all(8 <= len(task[k]) <= 100 for k in ("seed_rationales", "labeled", "heldout", "unlabeled", "pretrain"))


def test_schemas_match(full_files):
    assert pq.read_schema(full_files.seed_rationales).remove_metadata() == RATIONALE_SCHEMA
    for path in [full_files.labeled, full_files.heldout, *full_files.unlabeled]:
        assert pq.read_schema(path).remove_metadata() == PAIR_SCHEMA
    assert pq.read_schema(full_files.pretrain).names == ["prompt", "completion"]


def operands(row) -> tuple[int, int]:
    a, b = map(int, re.search(r"What is (\d+)\+(\d+)\?", row["prompt"]).groups())
    return a, b


def operand_set(row) -> frozenset[int]:
    return frozenset(operands(row))


def test_heldout_operands_never_appear_in_training(full_task):
    heldout = {operand_set(r) for r in full_task["heldout"]}
    for split in ("seed_rationales", "labeled", "unlabeled", "pretrain"):
        assert heldout.isdisjoint(operand_set(r) for r in full_task[split]), split


def test_no_comparison_repeats_across_splits(full_task):
    rows = [r for k in ("seed_rationales", "labeled", "unlabeled", "heldout") for r in full_task[k]]
    assert all(r["id"] == pair_id(r["prompt"], r["response_a"], r["response_b"]) for r in rows)
    assert len({r["id"] for r in rows}) == len(rows)


@pytest.mark.parametrize("split", ["seed_rationales", "labeled", "unlabeled", "heldout"])
def test_correct_side_is_balanced_and_true(full_task, split):
    golds = Counter()
    for row in full_task[split]:
        meta = json.loads(row["meta"])
        gold = meta["gold_label"]
        assert row[f"response_{gold.lower()}"] == str(meta["a"] + meta["b"]) == str(meta["sum"])
        assert row["prompt"] == f"What is {meta['a']}+{meta['b']}?"
        assert row["label"] == (None if split == "unlabeled" else gold)
        golds[gold] += 1
    assert abs(golds["A"] - golds["B"]) <= 1


def test_seed_rationales_are_correct_human_proofs(full_task):
    for row in full_task["seed_rationales"]:
        assert verify_rationale(row, row["rationale"], row["label"]) is None
        meta = json.loads(row["meta"])
        assert f"sum {meta['sum']}." in row["rationale"]
        assert row["target"] == proof_to_target(row["rationale"], row["label"])
        assert (row["producer"], row["round"], row["score"]) == ("human", 0, None)


def test_pretrain_rows_are_worked_solutions_or_checked_responses_without_preferences(full_task):
    kinds = Counter()
    check = re.compile(r"What is \d+\+\d+\?\nResponse A: (\d+)\nResponse B: (\d+)\nCheck response ([AB])\.")
    for row in full_task["pretrain"][:2000]:
        a, b = operands(row)
        if row["prompt"] == question(a, b):
            kinds["worked"] += 1
            assert row["completion"] == worked_solution(a, b)
            continue
        responses = re.search(r"Response A: (\d+)\nResponse B: (\d+)", row["prompt"]).groups()
        assert sorted(int(r) == a + b for r in responses) == [False, True]  # one right, one plausible slip
        assert all(int(r) == a + b or int(r) in wrong_answers(a, b) for r in responses)
        if row["prompt"] == judge_prompt("compact", question(a, b), *responses):
            kinds["in_context"] += 1
            assert row["completion"] == worked_solution(a, b)  # the sum only: no verdict, no preference
            continue
        response_a, response_b, side = check.fullmatch(row["prompt"]).groups()
        answer = response_a if side == "A" else response_b
        kinds[f"check_{side}_{'right' if answer == str(a + b) else 'wrong'}"] += 1
        verdict = "yes" if answer == str(a + b) else "no"
        assert row["completion"] == f"{worked_solution(a, b)} {side}: {answer} vs {a + b} {verdict}."
        assert "better" not in row["prompt"].lower() + row["completion"].lower()
    assert kinds["worked"] > 800 and kinds["in_context"] > 350, kinds
    assert all(kinds[f"check_{s}_{v}"] > 60 for s in "AB" for v in ("right", "wrong")), kinds
    assert len({r["prompt"] for r in full_task["pretrain"]}) > 1000


def test_same_seed_same_files_other_seed_differs(tmp_path):
    one = read_task(write_task(tmp_path / "one", seed=5, sizes=SMALL_SIZES))
    two = read_task(write_task(tmp_path / "two", seed=5, sizes=SMALL_SIZES))
    other = read_task(write_task(tmp_path / "other", seed=6, sizes=SMALL_SIZES))
    assert one == two
    assert one["labeled"] != other["labeled"]


def test_another_round_size_leaves_the_other_splits_as_they_were(tmp_path):
    one = read_task(write_task(tmp_path / "one", seed=5, sizes=SMALL_SIZES))
    more = read_task(write_task(tmp_path / "more", seed=5, sizes=replace(SMALL_SIZES, unlabeled_per_round=40)))
    assert {name: rows for name, rows in one.items() if name != "unlabeled"} == {
        name: rows for name, rows in more.items() if name != "unlabeled"}
    assert len(more["unlabeled"]) == 2 * 40
    assert not {r["id"] for r in more["unlabeled"]} & {r["id"] for r in more["labeled"] + more["seed_rationales"]}


def test_impossible_sizes_are_refused(tmp_path):
    with pytest.raises(ValueError, match="distinct problems"):
        write_task(tmp_path, sizes=TaskSizes(heldout=100_000))


def test_rewriting_with_fewer_rounds_leaves_no_stale_shards(tmp_path):
    write_task(tmp_path, sizes=TaskSizes(**{**SMALL_SIZES.__dict__, "unlabeled_rounds": 3}))
    files = write_task(tmp_path, sizes=SMALL_SIZES)
    assert sorted((tmp_path / "unlabeled").iterdir()) == files.unlabeled


# ---- rationale_steps ------------------------------------------------------------------------------

GOLD = {**PAIR, "meta": json.dumps({"sum": 85, "gold_label": "A"})}


@pytest.mark.parametrize(
    ("rationale", "steps"),
    [
        (proof_to_target(digit_verify(37, 48, "85", "84"), "A"), {"sum": True, "quote": True, "verdict": True,
                                                                 "label": True}),
        # the failure issue 25 measured: sum and quotes right, a verdict wrong, so the label too
        (proof_to_target("sum 85. A: 85 vs 85 yes. B: 84 vs 85 yes.", "B"), {"sum": True, "quote": True,
                                                                            "verdict": False, "label": False}),
        # a wrong sum compared correctly: the verdicts are true of the comparisons as written
        (proof_to_target("sum 84. A: 85 vs 84 no. B: 84 vs 84 yes.", "B"), {"sum": False, "quote": True,
                                                                           "verdict": True, "label": False}),
        (proof_to_target("sum 85. A: 86 vs 85 no. B: 84 vs 85 no.", "A"), {"sum": True, "quote": False,
                                                                          "verdict": True, "label": True}),
        (proof_to_target("sum 85. A: 85 vs 85 yes.", "A"), {"sum": True, "quote": False, "verdict": False,
                                                           "label": True}),
        ("sum 85. sum 85. A: 85 vs 85 yes. B: 84 vs 85 no.", {"sum": False, "quote": True, "verdict": True,
                                                             "label": False}),  # no <answer>: no final label
        ("", {"sum": False, "quote": False, "verdict": False, "label": False}),
    ],
)
def test_rationale_steps_judges_each_step_on_its_own(rationale, steps):
    assert rationale_steps(GOLD, rationale) == steps
