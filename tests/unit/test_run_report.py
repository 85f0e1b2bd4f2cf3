"""The self-training report's figures from hand-made stage outputs: label precision filter by filter,
reasoning-step accuracy on held-out judgements, and report.json / report.md with a verifier arm."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gram_ray.config import FilterConfig, JudgeConfig
from gram_ray.eval.harness import RESULT_SCHEMA
from gram_ray.prompts import proof_to_target
from gram_ray.run.manifest import RunDir
from gram_ray.run.report import (
    build_report,
    denoising_settings,
    dropped_by_reason,
    filter_precision,
    label_counts,
    step_accuracy,
    write_report,
)
from gram_ray.stages.schemas import LABELLED_SCHEMA, reject_schema
from gram_ray.tinykit.addition import check_line, digit_verify, rationale_steps

REJECT_SCHEMA = reject_schema(LABELLED_SCHEMA)


def row(pair_id: str, label: str | None, gold: str | None = "A", **extra) -> dict:
    meta = json.dumps({"gold_label": gold} if gold else {})
    return {"id": pair_id, "prompt": "What is 37+48?", "response_a": "85", "response_b": "84", "label": label,
            "meta": meta, **extra}


def write(path, rows: list[dict], schema: pa.Schema = LABELLED_SCHEMA) -> str:
    path.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path / "part-00000.parquet")
    return str(path)


def test_label_counts_score_only_rows_with_a_gold_label_and_count_a_missing_label_wrong(tmp_path):
    path = write(tmp_path / "labelled", [row("1", "A"), row("2", "B"), row("3", None), row("4", "A", gold=None),
                                         row("5", "B", gold="B")])
    assert label_counts(path) == {"rows": 5, "scored": 4, "correct": 2, "precision": 0.5}
    unknown = write(tmp_path / "no_truth", [row("1", "A", gold=None)])
    assert label_counts(unknown) == {"rows": 1, "scored": 0, "correct": 0, "precision": None}


def test_dropped_rows_per_reason_count_those_that_were_right(tmp_path):
    rejects = write(tmp_path / "rejects", [
        row("1", "A", reason="low_vote_share: 0.5 < 0.75", stage="screen"),
        row("2", "B", reason="low_vote_share: 0.25 < 0.75", stage="screen"),
        row("3", "B", reason="inconsistent: the swapped order gave the other label", stage="screen"),
        row("4", None, reason="no_majority: no label won the vote", stage="screen"),
        {**row("5", "A"), "meta": "not json", "reason": "malformed: meta", "stage": "screen"},
        row("6", "A", gold=None, reason="low_vote_share: 0.5 < 0.75", stage="screen"),  # truth unknown
    ], REJECT_SCHEMA)
    assert dropped_by_reason(rejects, "screen") == [
        {"stage": "screen", "reason": "inconsistent", "rows": 1, "scored": 1, "correct": 0},
        {"stage": "screen", "reason": "low_vote_share", "rows": 3, "scored": 2, "correct": 1},
        {"stage": "screen", "reason": "malformed", "rows": 1, "scored": 0, "correct": 0},
        {"stage": "screen", "reason": "no_majority", "rows": 1, "scored": 1, "correct": 0},
    ]
    assert dropped_by_reason(write(tmp_path / "none", [], REJECT_SCHEMA), "denoise") == []


def test_filter_precision_follows_a_round_from_labels_to_kept_proofs(tmp_path):
    """Ten labelled pairs, seven right: screening drops three (one of them right), proving one, denoising
    two; the counts add up and precision rises filter by filter."""
    labels = ["A"] * 7 + ["B"] * 3  # gold is A everywhere
    labelled = [row(str(i), label) for i, label in enumerate(labels)]
    screened_out = {"7": "low_confidence: 0.4 < 0.6", "8": "low_confidence: 0.5 < 0.6", "0": "inconsistent: x"}
    unproved = {"1": "no_usable_proof: none of 1 proofs is well formed and scored"}
    denoised_out = {"9": "unsupported: rationale supports A, label is B", "2": "rationale_too_long: 500 > 400 chars"}

    def rejects(name: str, reasons: dict) -> str:
        return write(tmp_path / name, [{**labelled[int(i)], "reason": r, "stage": name} for i, r in reasons.items()],
                     REJECT_SCHEMA)

    after_screen = [r for r in labelled if r["id"] not in screened_out]
    after_denoise = [r for r in after_screen if r["id"] not in unproved and r["id"] not in denoised_out]
    got = filter_precision(
        write(tmp_path / "labelled", labelled),
        {"label": write(tmp_path / "label", [], REJECT_SCHEMA), "screen": rejects("screen", screened_out),
         "prove": rejects("prove", unproved), "denoise": rejects("denoise", denoised_out)},
        write(tmp_path / "kept_screen", after_screen), write(tmp_path / "kept_denoise", after_denoise))

    assert got["labelled"] == {"rows": 10, "scored": 10, "correct": 7, "precision": 0.7}
    assert got["after_screen"] == {"rows": 7, "scored": 7, "correct": 6, "precision": 6 / 7}
    assert got["after_denoise"] == {"rows": 4, "scored": 4, "correct": 4, "precision": 1.0}
    assert got["dropped"] == [
        {"stage": "screen", "reason": "inconsistent", "rows": 1, "scored": 1, "correct": 1},
        {"stage": "screen", "reason": "low_confidence", "rows": 2, "scored": 2, "correct": 0},
        {"stage": "prove", "reason": "no_usable_proof", "rows": 1, "scored": 1, "correct": 1},
        {"stage": "denoise", "reason": "rationale_too_long", "rows": 1, "scored": 1, "correct": 1},
        {"stage": "denoise", "reason": "unsupported", "rows": 1, "scored": 1, "correct": 0},
    ]
    assert got["labelled"]["rows"] == sum(d["rows"] for d in got["dropped"]) + got["after_denoise"]["rows"]


def test_round_0_counts_the_labeled_sets_proofs_without_a_screening_step(tmp_path):
    """Round 0 proves the labeled set (labels given, no gold in meta, as from real data): its prove and
    denoise rejects per reason are counted, nothing is screened, and precision is unknown."""
    labeled = [row(str(i), "A", gold=None) for i in range(8)]
    unproved = write(tmp_path / "prove", [{**labeled[0], "reason": "no_usable_proof: none of 2", "stage": "prove"}],
                     REJECT_SCHEMA)
    denoised = write(tmp_path / "denoise", [{**r, "reason": "unsupported: no clear winner", "stage": "denoise"}
                                            for r in labeled[1:6]], REJECT_SCHEMA)
    got = filter_precision(write(tmp_path / "labeled", labeled), {"prove": unproved, "denoise": denoised}, None,
                           write(tmp_path / "kept", labeled[6:]))
    assert got == {
        "labelled": {"rows": 8, "scored": 0, "correct": 0, "precision": None},
        "dropped": [{"stage": "prove", "reason": "no_usable_proof", "rows": 1, "scored": 0, "correct": 0},
                    {"stage": "denoise", "reason": "unsupported", "rows": 5, "scored": 0, "correct": 0}],
        "after_screen": None,
        "after_denoise": {"rows": 2, "scored": 0, "correct": 0, "precision": None},
    }


def _judgements(tmp_path, texts: dict[str, str | None]) -> tuple[str, str]:
    pairs = [row(i, "A") | {"meta": json.dumps({"sum": 85, "gold_label": "A"})} for i in texts]
    pairs_path = tmp_path / "heldout.parquet"
    pq.write_table(pa.Table.from_pylist(pairs), pairs_path)
    results = [{"id": i, "benchmark": "pairs", "label": "A", "rationale_1": text, "correct": True,
                "meta": pairs[0]["meta"]} for i, text in texts.items()]
    judgements = tmp_path / "judgements.parquet"
    pq.write_table(pa.Table.from_pylist(results, schema=RESULT_SCHEMA), judgements)
    return str(judgements), str(pairs_path)


def test_step_accuracy_shows_each_reasoning_step_on_its_own(tmp_path):
    texts = {
        "right": proof_to_target(digit_verify(37, 48, "85", "84"), "A"),
        "bad_verdict": proof_to_target(f"sum 85. {check_line('A', '85', '85')} B: 84 = 8 4, 8 8 same 4 5 same, yes.",
                                       "B"),
        "bad_sum": proof_to_target(f"sum 84. {check_line('A', '85', '84')} {check_line('B', '84', '84')}", "B"),
        "no_text": None,
    }
    got = step_accuracy(*_judgements(tmp_path, texts), rationale_steps)
    assert got == {"pairs": 4, "share_right": {"sum": 0.5, "quote": 0.75, "verdict": 0.5, "label": 0.25}}


def test_step_accuracy_refuses_judgements_of_pairs_it_was_not_given(tmp_path):
    judgements, pairs = _judgements(tmp_path, {"p": "sum 85."})
    pq.write_table(pa.Table.from_pylist([row("other", "A")]), pairs)
    with pytest.raises(ValueError, match="judgement of pair 'p'"):
        step_accuracy(judgements, pairs, rationale_steps)


def _arm(tmp_path, name: str, accuracies: list[float], verifier: str | None) -> dict:
    run = RunDir(tmp_path / name)
    rounds = [{"round": r, "model": f"rm_r{r:02d}", "heldout_accuracy": acc} for r, acc in enumerate(accuracies)]
    precision = {"labelled": {"rows": 10, "scored": 10, "correct": 7, "precision": 0.7},
                 "dropped": [{"stage": "screen", "reason": "low_confidence", "rows": 3, "scored": 3, "correct": 1}],
                 "after_screen": {"rows": 7, "scored": 7, "correct": 6, "precision": 6 / 7},
                 "after_denoise": {"rows": 7, "scored": 7, "correct": 6, "precision": 6 / 7}}
    rounds[1] |= {"precision": precision, "pseudo_label_accuracy": 0.7, "kept_label_accuracy": 6 / 7}
    rounds[0]["precision"] = {  # the labeled set's proofs: no screening, truth unknown
        "labelled": {"rows": 8, "scored": 0, "correct": 0, "precision": None},
        "dropped": [{"stage": "denoise", "reason": "unsupported", "rows": 6, "scored": 0, "correct": 0}],
        "after_screen": None, "after_denoise": {"rows": 2, "scored": 0, "correct": 0, "precision": None}}
    for entry in rounds:
        entry["reasoning_steps"] = {"pairs": 4, "share_right": {"sum": 1.0, "verdict": 0.5}}
    filters = FilterConfig(min_confidence=0.6, require_consistent=True, verifier=verifier)
    judge = JudgeConfig(votes=4, temperature=0.8, swap_pass=True)
    return build_report(run, rounds, {"control_heldout_accuracy": 0.55}, "model", denoising_settings(filters, judge))


def test_report_json_and_markdown_hold_both_arms_side_by_side(tmp_path):
    headline = _arm(tmp_path, "demo", [0.5, 0.6], None)
    verifier = _arm(tmp_path, "demo-verifier", [0.5, 0.8], "gram_ray.tinykit.addition:verify_rationale")
    paths = write_report(RunDir(tmp_path / "demo"), headline, verifier_arm=verifier)

    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert [r["heldout_accuracy"] for r in report["rounds"]] == [0.5, 0.6]
    assert report["final_heldout_accuracy"] == 0.6 and report["control_heldout_accuracy"] == 0.55
    assert "label_only_heldout_accuracy" in report and report["label_only_heldout_accuracy"] is None
    assert report["denoising"] == {
        "min_vote_share": 0.5, "min_confidence": 0.6, "require_consistent": True, "min_rationale_chars": 1,
        "max_rationale_chars": 8000, "support_check": "conclusion", "verifier": None, "votes": 4,
        "temperature": 0.8, "swap_pass": True}
    arm = report["verifier_arm"]
    assert arm["run"] == "demo-verifier" and arm["final_heldout_accuracy"] == 0.8
    assert arm["denoising"]["verifier"] == "gram_ray.tinykit.addition:verify_rationale"
    assert set(arm) == {"run", "rounds", "final_heldout_accuracy", "control_heldout_accuracy",
                        "label_only_heldout_accuracy", "denoising"}
    assert report["rounds"][1]["precision"]["dropped"][0]["reason"] == "low_confidence"

    text = (tmp_path / "demo" / "report.md").read_text()
    assert "| round 1 | 60.0% | 70.0% | 85.7% | 10 -> 7 -> 7 |" in text
    assert "| 1 | 10 (70.0%) | 7 (85.7%) | 7 (85.7%) |" in text
    assert "| 1 | screen | low_confidence | 3 | 1 (33.3%) |" in text
    assert "| initial RM | 50.0% | n/a | n/a | 8 -> - -> 2 |" in text  # round 0: the labeled set's proofs
    assert "| 0 | 8 (n/a) | - | 2 (n/a) |" in text and "| 0 | denoise | unsupported | 6 | n/a |" in text
    assert report["rounds"][0]["precision"]["dropped"][0]["rows"] == 6
    assert "| model | sum | verdict |" in text and "| round 1 | 100.0% | 50.0% |" in text
    assert "| round 1 | 60.0% | 80.0% |" in text and "| control | 55.0% | 55.0% |" in text
    assert "## Verifier arm: `demo-verifier`" in text and "### Verifier arm: label precision per filter" in text
    assert (tmp_path / "demo" / "report.png").stat().st_size > 0 and paths["json"].endswith("report.json")


def test_a_report_without_an_arm_or_a_step_checker_leaves_their_sections_out(tmp_path):
    headline = _arm(tmp_path, "demo", [0.5, 0.6], None)
    for entry in headline["rounds"]:
        del entry["reasoning_steps"]
    write_report(RunDir(tmp_path / "demo"), headline)
    text = (tmp_path / "demo" / "report.md").read_text()
    assert "Verifier arm" not in text and "Reasoning steps" not in text and "## Label precision per filter" in text
    assert json.loads((tmp_path / "demo" / "report.json").read_text())["verifier_arm"] is None


def test_an_arms_time_leaves_out_the_stages_it_took_over_and_names_them(tmp_path):
    run = RunDir(tmp_path / "demo-verifier")
    entry = {"config_hash": "h", "outputs": {}, "info": {}, "finished_at": ""}
    run.adopt("prover", {**entry, "seconds": 26.0, "taken_from": "demo"})
    run.adopt("rm_r00", {**entry, "seconds": 40.0})
    arm = _arm(tmp_path, "demo-verifier", [0.5, 0.8], "gram_ray.tinykit.addition:verify_rationale")
    assert arm["stage_seconds"] == {"rm_r00": 40.0} and arm["total_seconds"] == 40.0
    assert arm["taken_over"] == {"prover": "demo"}
    write_report(run, arm)
    text = (tmp_path / "demo-verifier" / "report.md").read_text()
    assert "| rm_r00 | 40.0 |" in text and "| prover |" not in text
    assert "Taken over from another run (the same settings): prover (`demo`)." in text
