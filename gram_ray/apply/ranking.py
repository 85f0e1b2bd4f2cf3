"""Listwise ranking and best-of-n from a pairwise judge, batched across prompts.

Every algorithm works on many ``RankTask``s at once and sends each of its rounds to the judge as one
batch, so a vLLM engine or a Ray Data pipeline sees few large calls instead of many small ones:

* ``reference``: GRAM's reward of each response against one reference (eq. 3), one call for all.
* ``knockout``: a single-elimination tournament, one call per round, ceil(log2 n) rounds; an odd
  survivor out gets a bye.
* ``scan``: the model card's linear scan (the challenger replaces the incumbent only when it wins),
  n - 1 sequential calls for best-of-n, n(n-1)/2 for a full ranking by repeated scans.

A judge is any callable mapping (prompt, first, second) items to P(first is better); with
``both_orders`` each comparison is asked in both presentation orders within the same call and the two
answers are averaged (GRAM eq. 3), which cancels position bias.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from gram_ray.prompts.verdicts import eq3

PairItem = tuple[str, str, str]  # (prompt, first response, second response)
Judge = Callable[[Sequence[PairItem]], Sequence[float]]
Method = Literal["reference", "knockout", "scan"]
METHODS: tuple[str, ...] = ("reference", "knockout", "scan")


@dataclass(frozen=True)
class RankTask:
    """One prompt's candidates; ``reference`` is needed by the reference method only."""

    prompt: str
    responses: Sequence[str]
    reference: str | None = None

    def __post_init__(self) -> None:
        if not self.responses:
            raise ValueError("a ranking task needs at least one response")


@dataclass(frozen=True)
class Knockout:
    """Outcome of one tournament: the winner, and per response the round it lost in (None for the
    winner) and its probability of winning that match (the tie-break among same-round losers)."""

    winner: int
    rounds: int
    lost_in: tuple[int | None, ...]
    lost_with: tuple[float | None, ...]

    def order(self) -> list[int]:
        """Best first: later elimination ranks higher; closer defeats rank higher within a round."""
        n = len(self.lost_in)
        return sorted(range(n), key=lambda i: (
            math.inf if self.lost_in[i] is None else self.lost_in[i],
            self.lost_with[i] if self.lost_with[i] is not None else 1.0,
            -i,
        ), reverse=True)


def preferences(judge: Judge, comparisons: Sequence[PairItem], both_orders: bool = True) -> list[float]:
    """P(a beats b) for each (prompt, a, b), in one judge call (eq. 3 when ``both_orders``)."""
    if not comparisons:
        return []
    items = list(comparisons)
    if both_orders:
        items += [(p, b, a) for p, a, b in comparisons]
    probs = list(judge(items))
    if len(probs) != len(items):
        raise ValueError(f"judge returned {len(probs)} probabilities for {len(items)} items")
    if any(not 0.0 <= p <= 1.0 for p in probs):
        raise ValueError("judge returned a probability outside [0, 1]")
    n = len(comparisons)
    if not both_orders:
        return probs
    return [eq3(probs[i], probs[n + i]) for i in range(n)]


def reference_rewards(judge: Judge, tasks: Sequence[RankTask], both_orders: bool = True) -> list[list[float]]:
    """GRAM reward of every response against its task's reference, all in one judge call."""
    missing = [i for i, t in enumerate(tasks) if t.reference is None]
    if missing:
        raise ValueError(f"the reference method needs a reference response (tasks {missing[:5]} have none)")
    comps = [(t.prompt, r, t.reference) for t in tasks for r in t.responses]
    flat = preferences(judge, comps, both_orders)
    out, start = [], 0
    for t in tasks:
        out.append(flat[start : start + len(t.responses)])
        start += len(t.responses)
    return out


def knockout(judge: Judge, tasks: Sequence[RankTask], both_orders: bool = True) -> list[Knockout]:
    """Single-elimination tournaments, all tasks' matches of a round in one judge call.

    Survivors are paired in order (0 v 1, 2 v 3, ...); the last one of an odd field gets a bye. A match
    goes to the earlier candidate when P = 0.5 exactly, so results are deterministic.
    """
    alive = [list(range(len(t.responses))) for t in tasks]
    lost_in: list[list[int | None]] = [[None] * len(t.responses) for t in tasks]
    lost_with: list[list[float | None]] = [[None] * len(t.responses) for t in tasks]
    rounds = [0] * len(tasks)
    rnd = 0
    while any(len(a) > 1 for a in alive):
        rnd += 1
        matches = [(ti, a[k], a[k + 1]) for ti, a in enumerate(alive) for k in range(0, len(a) - 1, 2)]
        probs = preferences(judge, [(tasks[ti].prompt, tasks[ti].responses[i], tasks[ti].responses[j])
                                    for ti, i, j in matches], both_orders)
        losers: set[tuple[int, int]] = set()
        for (ti, i, j), p in zip(matches, probs, strict=True):
            loser, p_loser = (j, 1.0 - p) if p >= 0.5 else (i, p)
            lost_in[ti][loser], lost_with[ti][loser] = rnd, p_loser
            losers.add((ti, loser))
        for ti, a in enumerate(alive):
            if len(a) > 1:
                rounds[ti] = rnd
                alive[ti] = [i for i in a if (ti, i) not in losers]
    return [
        Knockout(winner=a[0], rounds=r, lost_in=tuple(li), lost_with=tuple(lw))
        for a, r, li, lw in zip(alive, rounds, lost_in, lost_with, strict=True)
    ]


def linear_scan(
    judge: Judge, tasks: Sequence[RankTask], both_orders: bool = True, candidates: Sequence[Sequence[int]] | None = None
) -> list[int]:
    """The best candidate per task by a linear scan: a challenger replaces the incumbent only when
    P(challenger better) > 0.5. Step s of every task goes in one judge call."""
    pools = [list(c) for c in candidates] if candidates is not None else [list(range(len(t.responses))) for t in tasks]
    best = [pool[0] for pool in pools]
    for step in range(1, max(len(pool) for pool in pools)):
        active = [ti for ti, pool in enumerate(pools) if step < len(pool)]
        comps = [(tasks[ti].prompt, tasks[ti].responses[pools[ti][step]], tasks[ti].responses[best[ti]])
                 for ti in active]
        for ti, p in zip(active, preferences(judge, comps, both_orders), strict=True):
            if p > 0.5:
                best[ti] = pools[ti][step]
    return best


def scan_order(judge: Judge, tasks: Sequence[RankTask], both_orders: bool = True) -> list[list[int]]:
    """Full ranking by repeated linear scans (selection): each scan picks the best of the rest."""
    remaining = [list(range(len(t.responses))) for t in tasks]
    order: list[list[int]] = [[] for _ in tasks]
    while any(remaining):
        active = [ti for ti, r in enumerate(remaining) if r]
        picks = linear_scan(judge, [tasks[ti] for ti in active], both_orders, [remaining[ti] for ti in active])
        for ti, pick in zip(active, picks, strict=True):
            order[ti].append(pick)
            remaining[ti].remove(pick)
    return order


def rank(
    judge: Judge, tasks: Sequence[RankTask], method: Method = "knockout", both_orders: bool = True
) -> list[list[int]]:
    """Indices of each task's responses, best first."""
    if method == "reference":
        rewards = reference_rewards(judge, tasks, both_orders)
        return [sorted(range(len(r)), key=lambda i, r=r: -r[i]) for r in rewards]
    if method == "knockout":
        return [k.order() for k in knockout(judge, tasks, both_orders)]
    if method == "scan":
        return scan_order(judge, tasks, both_orders)
    raise ValueError(f"unknown ranking method {method!r}; choose one of {METHODS}")


def best_of_n(
    judge: Judge, tasks: Sequence[RankTask], method: Method = "knockout", both_orders: bool = True
) -> list[int]:
    """Index of each task's best response (the cheapest call pattern for each method)."""
    if method == "reference":
        rewards = reference_rewards(judge, tasks, both_orders)
        return [max(range(len(r)), key=lambda i, r=r: (r[i], -i)) for r in rewards]
    if method == "knockout":
        return [k.winner for k in knockout(judge, tasks, both_orders)]
    if method == "scan":
        return linear_scan(judge, tasks, both_orders)
    raise ValueError(f"unknown ranking method {method!r}; choose one of {METHODS}")
