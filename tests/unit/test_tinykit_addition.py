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
    check_line,
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


def test_digit_verify_checks_each_response_digit_by_digit_and_concludes():
    assert digit_verify(37, 48, "85", "84") == (
        "7+8=15, carry 1. 3+4+1=8. sum 85. A: 85 = 8 5, 8 8 same 5 5 same, yes. "
        "B: 84 = 8 4, 8 8 same 4 5 diff, no. Conclusion: response A."
    )
    assert digit_verify(37, 48, "75", "85").endswith(
        "A: 75 = 7 5, 7 8 diff 5 5 same, no. B: 85 = 8 5, 8 8 same 5 5 same, yes. Conclusion: response B.")


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


def checks(written: str, a: str = "85", b: str = "84") -> str:
    """Both responses' checks against ``written``, as a correct judge writes them."""
    return f"{check_line('A', a, written)} {check_line('B', b, written)}"


def test_a_consistent_wrong_sum_still_supports_its_label():
    # The filter checks the proof, not the answer key: steps that add up (on a misread 7) give sum 84.
    rationale = f"7+7=14, carry 1. 3+4+1=8. sum 84. {checks('84')}"
    assert verify_rationale(PAIR, rationale, "B") is None


@pytest.mark.parametrize(
    ("steps", "response_b", "reason"),
    [  # a wrong label "proved" by writing the labelled response as the sum: the steps give it away
        ("7+8=15, carry 1. 3+4+1=8. sum 84.", "84", "the steps give 85, not"),
        ("7+8=14, carry 1. 3+4+1=8. sum 84.", "84", "false step: 7+8=14"),
        ("7+8=15, carry 0. 3+4=7. sum 75.", "75", "false step: 7+8=15, carry 0"),
        ("7+8=15, carry 1. 3+4=7. sum 75.", "75", "false step: 3+4=7"),
        ("7+8=15, carry 1. 3+4+1=9. sum 95.", "95", "false step: 3+4+1=9"),
        ("sum 84.", "84", "no worked steps"),
    ],
)
def test_a_sum_the_steps_do_not_give_is_not_proved(steps, response_b, reason):
    written = steps.split("sum ")[1].rstrip(".")
    got = verify_rationale({**PAIR, "response_b": response_b}, f"{steps} {checks(written, b=response_b)}", "B")
    assert got is not None and reason in got, got


GOOD_A, GOOD_B = check_line("A", "85", "85"), check_line("B", "84", "85")


@pytest.mark.parametrize(
    ("rationale", "label", "reason"),
    [
        (f"sum 85. {GOOD_A} {GOOD_B}", "B", "supports A"),
        (f"7+8=15, carry 1. 3+4+1=8. {GOOD_A} {GOOD_B}", "A", "no sum line"),
        (f"sum 85. sum 84. {GOOD_A} {GOOD_B}", "A", "several sum lines"),
        (f"sum 85. {GOOD_A}", "A", "no check of B"),
        (f"sum 85. {GOOD_A} {GOOD_B} {GOOD_B}", "A", "several checks of B"),
        (f"sum 85. {GOOD_A} {check_line('B', '85', '85')}", "A", "B: quoted as '85'"),
        (f"sum 85. A: 85 = 8 4, 8 8 same 4 5 diff, no. {GOOD_B}", "A", "A: 85 spelled as '8 4'"),
        (f"sum 85. {check_line('A', '85', '84')} {GOOD_B}", "A", "A: digits of 85 not paired with the written"),
        (f"sum 85. A: 85 = 8 5, 8 8 same 5 5 diff, no. {GOOD_B}", "A", "A: '5 5 diff' is false"),
        (f"sum 85. A: 85 = 8 5, 8 8 same 5 5 same, no. {GOOD_B}", "A", "A: verdict 'no' is wrong"),
        (f"sum 85. {GOOD_A} B: 84 = 8 4, 8 8 same 4 5 diff, yes.", "A", "B: verdict 'yes' is wrong"),
        (f"sum 86. {checks('86')}", "A", "no response matches"),
    ],
)
def test_unsupporting_rationales_get_a_reason(rationale, label, reason):
    got = verify_rationale(PAIR, rationale, label)
    assert got is not None and reason in got, got


def test_both_sides_matching_is_not_support():
    same = {**PAIR, "response_b": "85"}
    got = verify_rationale(same, f"sum 85. {checks('85', b='85')}", "A")
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
        assert row["completion"] == f"{worked_solution(a, b)} {check_line(side, answer, str(a + b))}"
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
        # sum and quotes right, a digit comparison wrong, so the verdict and the label too
        (proof_to_target(f"sum 85. {GOOD_A} B: 84 = 8 4, 8 8 same 4 5 same, yes.", "B"),
         {"sum": True, "quote": True, "verdict": False, "label": False}),
        # a wrong sum compared correctly: the verdicts are true of the comparisons as written
        (proof_to_target(f"sum 84. {checks('84')}", "B"), {"sum": False, "quote": True, "verdict": True,
                                                          "label": False}),
        (proof_to_target(f"sum 85. {checks('85', a='86')}", "A"), {"sum": True, "quote": False,
                                                                  "verdict": True, "label": True}),
        (proof_to_target(f"sum 85. {GOOD_A}", "A"), {"sum": True, "quote": False, "verdict": False,
                                                    "label": True}),
        (f"sum 85. sum 85. {GOOD_A} {GOOD_B}", {"sum": False, "quote": True, "verdict": False,
                                               "label": False}),  # no one sum, no <answer>: no final label
        ("", {"sum": False, "quote": False, "verdict": False, "label": False}),
    ],
)
def test_rationale_steps_judges_each_step_on_its_own(rationale, steps):
    assert rationale_steps(GOLD, rationale) == steps
