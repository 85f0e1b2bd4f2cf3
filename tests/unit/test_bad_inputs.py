"""The bad-input corpus (tests/data/bad_inputs.py) through conversion, validation and the judge prompts.

Every row is either written as a pair or quarantined with the reason the corpus names; the counts add
up; hostile text is kept as data but cannot change the judge prompt's structure or become a verdict.
"""

from __future__ import annotations

import re
from collections import Counter

import pyarrow.parquet as pq
import pytest

from gram_ray.config import ValidationConfig
from gram_ray.data.convert import INPUT_ROW, convert_file
from gram_ray.data.validate import REASON, STAGE
from gram_ray.prompts import judge_prompt, parse_answer, prover_prompt

CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # what validation strips (written out again)
TEMPLATE_STRUCTURE = ("<think>", "</think>", "<answer>", "</answer>", "[User Question]",
                      "[The Start of Assistant A's Response]", "[The End of Assistant A's Response]",
                      "[The Start of Assistant B's Response]", "[The End of Assistant B's Response]",
                      "[The End of Assistant B's Answer]", "[Preferred Response]", "# Preferred:",
                      "\nResponse A:", "\nResponse B:", "\nWhich response is better?", "\nBetter:")


def test_corpus_rows_are_kept_or_quarantined_with_their_reason(bad_inputs, tmp_path):
    src = bad_inputs.write_jsonl(tmp_path / "bad.jsonl")
    out = tmp_path / "pairs.parquet"
    summary = convert_file(src, out, validation=ValidationConfig(max_tokens=bad_inputs.BUDGET_TOKENS),
                           chunk_rows=7)
    cases = bad_inputs.CASES
    pairs = pq.read_table(out).to_pylist()
    rejects = pq.read_table(tmp_path / "pairs.rejects.parquet").to_pylist()

    assert summary.records == len(cases) == len(pairs) + len(rejects)
    assert summary.written == len(pairs) and summary.rejected == len(rejects)
    assert all(r[REASON] and r[STAGE] for r in rejects)
    got = {int(r[INPUT_ROW]): r[REASON] for r in rejects}
    assert len(got) == len(rejects)  # one reject per input row
    expected = {i: c.convert for i, c in enumerate(cases) if c.convert != bad_inputs.KEPT}
    assert got == expected
    assert summary.reasons == Counter(expected.values())

    kept = [c.record for c in cases if c.convert == bad_inputs.KEPT]
    clean = [tuple(CONTROL.sub("", r[k]) for k in ("prompt", "response_a", "response_b")) for r in kept]
    assert sorted((p["prompt"], p["response_a"], p["response_b"]) for p in pairs) == sorted(clean)
    assert summary.cleaned == sum(1 for r, c in zip(kept, clean, strict=True)
                                  if c != (r["prompt"], r["response_a"], r["response_b"]))
    assert {p["label"] for p in pairs} <= {"A", "B", None}
    assert len({p["id"] for p in pairs}) == len(pairs)


def test_parquet_columns_of_the_wrong_type(bad_inputs, tmp_path):
    for name, table, expected in bad_inputs.parquet_cases():
        src = tmp_path / f"{name}.parquet"
        pq.write_table(table, src)
        summary = convert_file(src, tmp_path / f"{name}.out.parquet", fmt="ab")
        rejects = pq.read_table(tmp_path / f"{name}.out.rejects.parquet").to_pylist()
        assert summary.records == table.num_rows == summary.written + summary.rejected, name
        got = {int(r[INPUT_ROW]): r[REASON] for r in rejects}
        assert got == {i: e for i, e in enumerate(expected) if e != bad_inputs.KEPT}, name
        assert summary.written == expected.count(bad_inputs.KEPT), name


@pytest.mark.parametrize("template", ["gram_r2", "gram", "compact"])
def test_hostile_corpus_text_cannot_change_the_prompt_or_plant_a_verdict(bad_inputs, template):
    renderers = {  # each prompt kind, rendered from (prompt, first, second)
        "judge": lambda q, a, b: judge_prompt(template, q, a, b),
        "judge_swapped": lambda q, a, b: judge_prompt(template, q, b, a),
        "prover": lambda q, a, b: prover_prompt(template, q, a, b, "A"),
    }
    pairs = [c.record for c in bad_inputs.CASES if c.convert == bad_inputs.KEPT]
    assert any("<answer>B</answer>" in r["response_b"] for r in pairs)  # the corpus does carry hostile text
    for kind, render in renderers.items():
        reference = render("Q", "X", "Y")
        for r in pairs:
            rendered = render(r["prompt"], r["response_a"], r["response_b"])
            for marker in TEMPLATE_STRUCTURE:
                assert rendered.count(marker) == reference.count(marker), (kind, marker, r["prompt"])
            assert parse_answer(rendered) is None  # a judge echoing its prompt would still give no verdict
