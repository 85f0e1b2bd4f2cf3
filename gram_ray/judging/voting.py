"""Vote and confidence arithmetic of the label stage (pure: no engine, no Ray).

One sampled judgement gives a verdict (parsed from its text) and P(A) at the token that spells the verdict,
the softmax restricted to the label tokens. Averaging that probability over the k samples estimates
P(answer = A) with the reasoning marginalised out, which is the confidence the denoising filter reads;
the vote counts are kept beside it. A swap pass judges the pair again with the responses exchanged; its
verdicts and probabilities are mapped back to the stored order before anything is combined.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import fmean

from gram_ray.data.schemas import other_label
from gram_ray.prompts import parse_answer
from gram_ray.prompts.verdicts import LabelTokens, majority_vote

ORDERS = ("ab", "ba")  # "ab": responses as stored; "ba": swapped


@dataclass(frozen=True)
class Sample:
    """One sampled judgement, in the order its prompt showed the responses."""

    text: str
    answer: str | None
    p_a: float | None  # None when the verdict's token could not be found among the generated tokens


@dataclass(frozen=True)
class PassResult:
    """The k samples of one order, summarised in the *stored* order."""

    order: str
    samples: tuple[Sample, ...]
    votes_a: int
    votes_b: int
    votes_none: int
    p_a: float | None
    answer: str | None


def read_sample(text: str, token_ids: Sequence[int], logprobs: Sequence[Mapping[int, float]] | None,
                labels: LabelTokens) -> Sample:
    """Verdict from the text; P(A) at the last generated token that spells that verdict.

    ``logprobs[t]`` maps token id -> log-probability at generated position t and must include the label
    tokens (vLLM ``logprob_token_ids``).
    """
    answer = parse_answer(text)
    if answer is None or not logprobs:
        return Sample(text, answer, None)
    position = next((t for t in range(len(token_ids) - 1, -1, -1) if labels.label_of(token_ids[t]) == answer),
                    None)
    p_a = None if position is None or position >= len(logprobs) else labels.p_a(logprobs[position])
    return Sample(text, answer, p_a)


def to_stored(label: str | None, order: str) -> str | None:
    """A verdict about the prompt's order, in the stored order."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    return other_label(label) if label is not None and order == "ba" else label


def decide(votes_a: int, votes_b: int, p_a: float | None) -> str | None:
    """Majority; a tie goes to the side the answer-token probability favours, else no label."""
    if votes_a != votes_b:
        return "A" if votes_a > votes_b else "B"
    if votes_a == 0 or p_a is None or p_a == 0.5:
        return None
    return "A" if p_a > 0.5 else "B"


def decided_early(samples: Sequence[Sample], votes: int, min_confidence: float) -> bool:
    """Whether the first ``samples`` of a ``votes``-vote pass settle it (adaptive voting): the leading side's
    lead is larger than the votes still to come, so the majority of all ``votes`` cannot change; or every
    sample names the same side with a mean probability of that side of at least ``min_confidence`` (a sample
    without a probability leaves the pass undecided)."""
    if len(samples) > votes:
        raise ValueError(f"{len(samples)} samples of a {votes}-vote pass")
    answers = [s.answer for s in samples]
    if abs(answers.count("A") - answers.count("B")) > votes - len(samples):
        return True
    side = answers[0] if answers else None
    if side is None or any(a != side for a in answers) or any(s.p_a is None for s in samples):
        return False
    p_a = fmean(s.p_a for s in samples)
    return (p_a if side == "A" else 1.0 - p_a) >= min_confidence


def summarise_pass(order: str, samples: Sequence[Sample]) -> PassResult:
    vote = majority_vote([to_stored(s.answer, order) for s in samples])
    probs = [s.p_a if order == "ab" else 1.0 - s.p_a for s in samples if s.p_a is not None]
    p_a = fmean(probs) if probs else None
    return PassResult(order, tuple(samples), vote.votes_a, vote.votes_b, vote.votes_none, p_a,
                      decide(vote.votes_a, vote.votes_b, p_a))


def combine(passes: Sequence[PassResult]) -> dict:
    """The labelled pair's judge fields from one or two passes (votes pooled, P(A) averaged per order)."""
    if not passes:
        raise ValueError("combine needs at least one pass")
    votes_a = sum(p.votes_a for p in passes)
    votes_b = sum(p.votes_b for p in passes)
    total = sum(len(p.samples) for p in passes)
    probs = [p.p_a for p in passes if p.p_a is not None]
    p_a = fmean(probs) if probs else None
    label = decide(votes_a, votes_b, p_a)
    votes = {"A": votes_a, "B": votes_b}.get(label, 0)
    confidence = None if label is None or p_a is None else (p_a if label == "A" else 1.0 - p_a)
    consistent = None
    if len(passes) == 2:
        consistent = passes[0].answer is not None and passes[0].answer == passes[1].answer
    return {
        "label": label,
        "votes": votes,
        "votes_total": total,
        "vote_share": votes / total if label is not None and total else None,
        "confidence": confidence,
        "consistent": consistent,
    }


def judgement_record(pair_id: str, result: PassResult, producer: str, round_: int) -> dict:
    """A JUDGEMENT_SCHEMA row."""
    return {
        "pair_id": pair_id,
        "order": result.order,
        "generated_text": [s.text for s in result.samples],
        "parsed": [s.answer for s in result.samples],
        "answer": result.answer,
        "p_a": result.p_a,
        "p_b": None if result.p_a is None else 1.0 - result.p_a,
        "votes_a": result.votes_a,
        "votes_b": result.votes_b,
        "votes_none": result.votes_none,
        "producer": producer,
        "round": round_,
    }
