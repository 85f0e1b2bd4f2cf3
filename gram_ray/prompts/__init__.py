"""Judge and prover prompt templates, the proof <-> target transform and the answer parser."""

from gram_ray.prompts.parse import parse_answer, parse_label_token, split_target
from gram_ray.prompts.templates import (
    JUDGE_TEMPLATES,
    PROVER_TEMPLATES,
    judge_prompt,
    neutralise,
    proof_to_target,
    prover_prompt,
)

__all__ = [
    "JUDGE_TEMPLATES",
    "PROVER_TEMPLATES",
    "judge_prompt",
    "neutralise",
    "parse_answer",
    "parse_label_token",
    "proof_to_target",
    "prover_prompt",
    "split_target",
]
