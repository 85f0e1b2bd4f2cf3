"""A judge that asks each distinct comparison of a call once.

The completions of a small policy repeat: a GRPO group of 8 with 3 distinct answers is 56 ordered pairs to
a round-robin method, of which 6 are distinct and differ in their two responses. ``DistinctComparisons``
sends only those to the judge, in one call, and answers the rest from them; a response compared with
itself ties (0.5), which is what eq. 3 gives it over both presentation orders anyway.
"""

from __future__ import annotations

from collections.abc import Sequence

from gram_ray.apply.ranking import Judge, PairItem


class DistinctComparisons:
    """Wraps a ``Judge``; ``asked`` counts the comparisons it sent on, ``given`` those it answered."""

    def __init__(self, judge: Judge):
        self.judge = judge
        self.asked = 0
        self.given = 0

    def __call__(self, items: Sequence[PairItem]) -> list[float]:
        distinct = list(dict.fromkeys(item for item in items if item[1] != item[2]))
        probs = list(self.judge(distinct)) if distinct else []
        if len(probs) != len(distinct):
            raise ValueError(f"judge returned {len(probs)} probabilities for {len(distinct)} items")
        answer = dict(zip(distinct, probs, strict=True))
        self.asked += len(distinct)
        self.given += len(items)
        return [answer.get(item, 0.5) for item in items]
