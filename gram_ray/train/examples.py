"""Rows -> (user message, assistant completion) examples, one rule per objective and role.

This is the only place that knows which columns each training recipe reads; everything after it sees
plain prompt/completion text. A row that cannot make an example raises ``ValueError`` with the reason,
which the loader turns into a reject row rather than a crash or a silent drop.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gram_ray.data.schemas import LABELS
from gram_ray.prompts import judge_prompt, proof_to_target, prover_prompt

# Stage 1 trains on both responses as one completion; a blank line keeps their boundary visible.
PAIR_SEPARATOR = "\n\n"


@dataclass(frozen=True)
class Example:
    prompt: str  # the user message
    completion: str  # what the assistant should say; for gram_stage2 the label "A" or "B"


def row_examples(row: Mapping, objective: str, role: str, template: str, swap_augment: bool) -> list[Example]:
    """The training examples one row yields (two for stage 1 with swap augmentation)."""
    if objective == "gram_stage1":
        prompt, a, b = _text(row, "prompt"), _text(row, "response_a"), _text(row, "response_b")
        orders = [(a, b), (b, a)] if swap_augment else [(a, b)]
        return [Example(prompt, first + PAIR_SEPARATOR + second) for first, second in orders]
    if objective == "gram_stage2":
        return [Example(_judge(row, template), _label(row))]
    if role == "judge":
        return [Example(_judge(row, template), _target(row))]
    if role == "prover":
        prompt = prover_prompt(template, _text(row, "prompt"), _text(row, "response_a"), _text(row, "response_b"),
                               _label(row))
        return [Example(prompt, _text(row, "rationale"))]
    return [Example(_text(row, "prompt"), _text(row, "completion"))]


def _judge(row: Mapping, template: str) -> str:
    return judge_prompt(template, _text(row, "prompt"), _text(row, "response_a"), _text(row, "response_b"))


def _target(row: Mapping) -> str:
    """The row's ``target``, or for a seed row (SEED_SCHEMA: a rationale, no target) the one its
    rationale and label make."""
    if row.get("target") is None and "rationale" in row:
        return proof_to_target(_text(row, "rationale"), _label(row))
    return _text(row, "target")


def _text(row: Mapping, column: str) -> str:
    if column not in row:
        raise ValueError(f"missing column {column!r}")
    value = row[column]
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"empty {column!r}")
    return value


def _label(row: Mapping) -> str:
    label = row.get("label")
    if label not in LABELS:
        raise ValueError(f"label must be one of {LABELS}, got {label!r}")
    return label
