"""Rewards for RLHF: a response scored against a reference by the generative RM (GRAM eq. 3).

The reward is P(response beats reference), in [0, 1]; 0.5 means "as good as the reference". GRAM uses
the policy's own greedy output as the reference, so the reward measures improvement over what the policy
would say anyway; ``greedy_references`` produces it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gram_ray.apply.ranking import Judge, preferences


def rewards(
    judge: Judge, prompts: Sequence[str], responses: Sequence[str], references: Sequence[str],
    both_orders: bool = True,
) -> list[float]:
    """P(response_i beats reference_i) for every i, in one judge call."""
    if not len(prompts) == len(responses) == len(references):
        raise ValueError(f"prompts, responses and references differ in length: "
                         f"{len(prompts)}, {len(responses)}, {len(references)}")
    return preferences(judge, list(zip(prompts, responses, references, strict=True)), both_orders)


def greedy_references(policy: Any, prompts: Sequence[str], max_tokens: int = 512) -> list[str]:
    """The policy's greedy responses (a ``vllm.LLM``), given each prompt text exactly as the policy saw it."""
    from vllm import SamplingParams

    outputs = policy.generate(list(prompts), SamplingParams(temperature=0.0, max_tokens=max_tokens),
                              use_tqdm=len(prompts) > 64)
    return [out.outputs[0].text for out in outputs]
