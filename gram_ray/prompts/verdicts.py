"""Verdict arithmetic shared by the inference stages and the applications (pure: no engine).

``LabelTokens``: which token ids spell each label, and P(A) from their log-probabilities with the softmax
restricted to the label tokens. ``majority_vote``: voting@k. ``eq3``: GRAM's reward from both orders.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

LABEL_SPELLINGS = {"A": ("A", " A"), "B": ("B", " B")}


@dataclass(frozen=True)
class LabelTokens:
    """Token ids that spell each label as one token."""

    a: tuple[int, ...]
    b: tuple[int, ...]

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> LabelTokens:
        ids: dict[str, tuple[int, ...]] = {}
        for label, spellings in LABEL_SPELLINGS.items():
            found = []
            for text in spellings:
                enc = tokenizer.encode(text, add_special_tokens=False)
                if len(enc) == 1 and enc[0] not in found:
                    found.append(enc[0])
            if not found:
                raise ValueError(f"the tokenizer has no single token for label {label!r} (tried {spellings})")
            ids[label] = tuple(found)
        if set(ids["A"]) & set(ids["B"]):
            raise ValueError("labels A and B share a token id")
        return cls(a=ids["A"], b=ids["B"])

    @property
    def ids(self) -> list[int]:
        return [*self.a, *self.b]

    def label_of(self, token_id: int) -> str | None:
        return "A" if token_id in self.a else "B" if token_id in self.b else None

    def p_a(self, logprobs: Mapping[int, Any]) -> float | None:
        """P(A) with the softmax restricted to the label tokens; ``logprobs`` maps id -> logprob (or an
        object with ``.logprob``). None when no label token is in the map."""
        def value(tid: int) -> float | None:
            lp = logprobs.get(tid)
            return None if lp is None else float(getattr(lp, "logprob", lp))

        a = [v for v in map(value, self.a) if v is not None and v > -math.inf]
        b = [v for v in map(value, self.b) if v is not None and v > -math.inf]
        if not a and not b:
            return None
        top = max(a + b)
        mass_a, mass_b = sum(math.exp(v - top) for v in a), sum(math.exp(v - top) for v in b)
        return mass_a / (mass_a + mass_b)


@dataclass(frozen=True)
class Vote:
    """Counts of k verdicts; ``answer`` is None on a tie or when no sample gave a readable verdict."""

    answer: str | None
    votes_a: int
    votes_b: int
    votes_none: int


def majority_vote(verdicts: Sequence[str | None]) -> Vote:
    """Majority over 'A'/'B' verdicts (None = unreadable sample). Ties give no answer rather than an
    arbitrary one, so a caller can tell a split vote from a decision."""
    bad = {v for v in verdicts if v not in ("A", "B", None)}
    if bad:
        raise ValueError(f"verdicts must be 'A', 'B' or None, got {sorted(map(str, bad))}")
    a, b = verdicts.count("A"), verdicts.count("B")
    answer = "A" if a > b else "B" if b > a else None
    return Vote(answer=answer, votes_a=a, votes_b=b, votes_none=len(verdicts) - a - b)


def eq3(p_first: float, p_second: float) -> float:
    """GRAM eq. 3: P(y beats y') from P(A) with y shown first and P(A) with y' shown first."""
    return (p_first + 1.0 - p_second) / 2
