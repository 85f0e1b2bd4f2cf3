"""Proof scoring and selection of the rationale-synthesis stage (pure: no engine, no Ray).

GRAM-R2 keeps, of k sampled proofs, the one most specific to its context, scored roughly as
``-log p(proof | input, label) / log p(proof)``: the share of the proof's unconditional surprise that is
left once the input and label are known, negated, so the range is (-inf, 0] and higher means the input
explains more of the proof. ``log p(proof | input, label)`` is the sum of the generated tokens'
log-probabilities; ``log p(proof)`` comes from a prompt-logprob pass over the same token ids after an
empty user turn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gram_ray.prompts import proof_to_target


@dataclass(frozen=True)
class Candidate:
    sample: int
    proof: str
    num_tokens: int
    logp_cond: float | None
    logp_uncond: float | None = None

    @property
    def wellformed(self) -> bool:
        return is_wellformed(self.proof)

    @property
    def score(self) -> float | None:
        if self.logp_cond is None or self.logp_uncond is None:
            return None
        return specificity(self.logp_cond, self.logp_uncond)


def sequence_logprob(token_ids: Sequence[int], logprobs: Sequence[Mapping[int, float]]) -> float:
    """Sum of each token's log-probability at its own position (``logprobs[t]`` holds ``token_ids[t]``)."""
    if len(logprobs) < len(token_ids):
        raise ValueError(f"{len(token_ids)} tokens but only {len(logprobs)} logprob positions")
    return sum(float(logprobs[t][tok]) for t, tok in enumerate(token_ids))


def specificity(logp_cond: float, logp_uncond: float) -> float | None:
    """``-logp_cond / logp_uncond``; None when the proof has no unconditional surprise to explain."""
    if logp_uncond >= 0.0:
        return None
    return -logp_cond / logp_uncond


def is_wellformed(proof: str) -> bool:
    """Non-empty and convertible to the RM target (no reasoning tags of its own)."""
    if not proof.strip():
        return False
    try:
        proof_to_target(proof, "A")
    except ValueError:
        return False
    return True


def choose(candidates: Sequence[Candidate], selection: str) -> Candidate | None:
    """The well-formed candidate to keep: the most specific (ties: lowest sample) or simply the first."""
    usable = sorted((c for c in candidates if c.wellformed), key=lambda c: c.sample)
    if selection == "first":
        return usable[0] if usable else None
    if selection != "specificity":
        raise ValueError(f"unknown proof selection {selection!r}")
    if len(usable) == 1:
        return usable[0]
    scored = [c for c in usable if c.score is not None]
    if not scored:
        return None
    return max(scored, key=lambda c: (c.score, -c.sample))
