"""Label-stage screening: the judge rules drop weak labels before proving, each reject quarantined with
its reason, every labelled pair accounted for; denoising after proving then drops nothing more by them."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gram_ray.config import FilterConfig
from gram_ray.prompts import proof_to_target
from gram_ray.stages import SCREEN, denoise, screen
from gram_ray.stages.outputs import category
from gram_ray.stages.schemas import LABELLED_SCHEMA, RATIONALE_OUT_SCHEMA

NO_RULES = FilterConfig(support_check="none")  # votes: a majority; no confidence or consistency rule


def labelled(pair_id: str, **judge) -> dict:
    """A label stage's row: a pair judged by the RM, ground truth in meta, judge fields as given."""
    fields = {"label": "A", "votes": 4, "votes_total": 4, "vote_share": 1.0, "confidence": 0.9,
              "consistent": True, **judge}
    return {"id": pair_id, "prompt": "What is 37+48?", "response_a": "85", "response_b": "84", "source": "test",
            "meta": json.dumps({"gold_label": "A"}), "input_label": None, "judge": "rm", **fields}


ROWS = {
    "strong": labelled("strong"),
    "split_vote": labelled("split_vote", label="B", votes=2, vote_share=0.5),
    "unsure": labelled("unsure", confidence=0.55),
    "no_probability": labelled("no_probability", confidence=None),
    "swapped_disagrees": labelled("swapped_disagrees", consistent=False),
    "no_majority": labelled("no_majority", label=None, votes=0, vote_share=None, confidence=None),
}


@pytest.fixture
def labelled_pairs(tmp_path):
    path = tmp_path / "labelled"
    path.mkdir()
    pq.write_table(pa.Table.from_pylist(list(ROWS.values()), schema=LABELLED_SCHEMA), path / "part-00000.parquet")
    return path


def _ids(folder) -> list[str]:
    return sorted(pq.read_table(folder).column("id").to_pylist())


def _reasons(folder) -> dict[str, str]:
    table = pq.read_table(folder)
    return dict(zip(table.column("id").to_pylist(), table.column("reason").to_pylist(), strict=True))


def test_screening_applies_every_judge_rule_and_accounts_for_every_pair(labelled_pairs, tmp_path):
    rules = FilterConfig(min_vote_share=0.75, min_confidence=0.6, require_consistent=True, support_check="none")
    summary = screen(labelled_pairs, tmp_path / "screen", rules)

    assert summary.stage == SCREEN.name == "screen" and summary.complete
    assert summary.inputs == len(ROWS) == summary.kept + sum(summary.rejected.values())
    assert summary.outputs == {"kept": 1, "rejects": 5}
    assert summary.rejected == {"low_vote_share": 1, "low_confidence": 2, "inconsistent": 1, "no_majority": 1}
    assert _ids(tmp_path / "screen" / "kept") == ["strong"]
    reasons = _reasons(tmp_path / "screen" / "rejects")
    assert reasons == {
        "split_vote": "low_vote_share: 0.5 < 0.75",
        "unsure": "low_confidence: 0.550 < 0.6",
        "no_probability": "low_confidence: no answer-token probability",
        "swapped_disagrees": "inconsistent: the swapped order gave the other label",
        "no_majority": "no_majority: no label won the vote",
    }
    rejects = pq.read_table(tmp_path / "screen" / "rejects")
    assert set(rejects.column("stage").to_pylist()) == {"screen"}
    kept = pq.read_table(tmp_path / "screen" / "kept")
    assert kept.schema.equals(LABELLED_SCHEMA) and kept.to_pylist() == [ROWS["strong"]]


@pytest.mark.parametrize(("rule", "dropped"), [
    ({}, {"no_majority"}),  # a pair without a label never reaches the prover
    ({"min_vote_share": 0.75}, {"no_majority", "split_vote"}),
    ({"min_confidence": 0.6}, {"no_majority", "unsure", "no_probability"}),
    ({"require_consistent": True}, {"no_majority", "swapped_disagrees"}),
])
def test_each_judge_rule_drops_only_the_pairs_it_is_about(labelled_pairs, tmp_path, rule, dropped):
    summary = screen(labelled_pairs, tmp_path / "screen", NO_RULES.model_copy(update=rule))
    assert set(_reasons(tmp_path / "screen" / "rejects")) == dropped
    assert _ids(tmp_path / "screen" / "kept") == sorted(set(ROWS) - dropped)
    assert summary.complete


def test_denoising_after_proving_drops_no_screened_pair_by_a_judge_rule(labelled_pairs, tmp_path):
    """The after-proving denoise runs the same FilterConfig: the judge rules pass the screened rows again
    (their judge fields are unchanged), so its rejects are the rationale rules' alone."""
    rules = FilterConfig(min_vote_share=0.5, min_confidence=0.6, support_check="none", max_rationale_chars=10)
    screen(labelled_pairs, tmp_path / "screen", rules)
    proved = [{**row, "rationale": text, "target": proof_to_target(text, row["label"]), "producer": "prover",
               "round": 1, "score": None}
              for row, text in zip(pq.read_table(tmp_path / "screen" / "kept").to_pylist(),
                                   ["short", "a rationale over ten characters", "fine"], strict=False)]
    path = tmp_path / "rationales.parquet"
    pq.write_table(pa.Table.from_pylist(proved, schema=RATIONALE_OUT_SCHEMA), path)
    summary = denoise(path, tmp_path / "denoise", rules)
    assert [category(r) for r in _reasons(tmp_path / "denoise" / "rejects").values()] == ["rationale_too_long"]
    assert summary.inputs == len(proved) and summary.complete


def test_screening_depends_on_the_judge_rules_alone():
    base = FilterConfig()
    assert base.judge_rule_settings == {"min_vote_share": 0.5, "min_confidence": 0.0, "require_consistent": False}
    rationale_rules = base.model_copy(update={"max_rationale_chars": 10, "support_check": "none",
                                              "verifier": "gram_ray.tinykit.addition:verify_rationale"})
    assert rationale_rules.judge_rule_settings == base.judge_rule_settings
    assert base.model_copy(update={"min_confidence": 0.7}).judge_rule_settings != base.judge_rule_settings
