"""GRPO group rewards from a pairwise generative RM: one reward per completion of a group.

GRPO samples a group of n completions per prompt and normalises their rewards within the group, so a
pairwise judge can score the completions against each other instead of against an absolute scale. Each
``RankTask`` is one group (``responses`` = its completions). Four methods, all batched across groups
(every group's comparisons of a round go in the same judge call):

=================  ==========================================  =================  ======================
method             reward of completion i                      judge calls        judge prompts per group
                                                                (all groups)       (``both_orders``)
=================  ==========================================  =================  ======================
``reference``      P(i beats the group's reference), eq. 3     1                  2n   (n without)
``win_rate``       mean over j != i of P(i beats j)            1                  n(n-1)   (n(n-1)/2)
``bradley_terry``  P(i beats a member of average strength)     1                  n(n-1)   (n(n-1)/2)
                   under a Bradley-Terry fit of the same
                   pairwise table
``knockout``       its place in a single-elimination           ceil(log2 n)       2(n-1)   (n-1)
                   tournament, 1 (winner) .. 0 (last)
=================  ==========================================  =================  ======================

The reference is a given answer (the dataset's label) or the policy's greedy output
(``apply.reward.greedy_references``: one more policy generation per group). ``win_rate`` and
``bradley_terry`` read the same round-robin table; with ``both_orders`` the table holds every ordered
pair (i, j) and P(i beats j) is eq. 3 over the two presentation orders, so P(i beats j) + P(j beats i) = 1.
A group of one completion gets 0.5 from the within-group methods (nothing to compare).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import combinations
from typing import Literal

from gram_ray.apply.ranking import Judge, RankTask, knockout, preferences, reference_rewards

GroupMethod = Literal["reference", "win_rate", "bradley_terry", "knockout"]
GROUP_METHODS: tuple[str, ...] = ("reference", "win_rate", "bradley_terry", "knockout")


def judge_cost(method: GroupMethod, n: int, both_orders: bool = True) -> tuple[int, int]:
    """(judge calls, judge prompts) that ``group_rewards`` spends on one group of n completions."""
    order_factor = 2 if both_orders else 1
    if method == "reference":
        return 1, order_factor * n
    if method in ("win_rate", "bradley_terry"):
        return (1 if n > 1 else 0), order_factor * n * (n - 1) // 2
    if method == "knockout":
        return math.ceil(math.log2(n)) if n > 1 else 0, order_factor * (n - 1)
    raise ValueError(f"unknown group reward method {method!r}; choose one of {GROUP_METHODS}")


def win_matrices(judge: Judge, groups: Sequence[RankTask], both_orders: bool = True) -> list[list[list[float]]]:
    """Per group the round-robin table P[i][j] = P(completion i beats j) (diagonal 0.5), one judge call."""
    pairs = [(g, i, j) for g, task in enumerate(groups) for i, j in combinations(range(len(task.responses)), 2)]
    probs = preferences(judge, [(groups[g].prompt, groups[g].responses[i], groups[g].responses[j])
                                for g, i, j in pairs], both_orders)
    tables = [[[0.5] * len(t.responses) for _ in t.responses] for t in groups]
    for (g, i, j), p in zip(pairs, probs, strict=True):
        tables[g][i][j], tables[g][j][i] = p, 1.0 - p
    return tables


def win_rates(table: Sequence[Sequence[float]]) -> list[float]:
    """Mean probability of beating each other member of the group."""
    n = len(table)
    if n == 1:
        return [0.5]
    return [sum(p for j, p in enumerate(row) if j != i) / (n - 1) for i, row in enumerate(table)]


def bradley_terry(table: Sequence[Sequence[float]], prior: float = 0.1, iterations: int = 1000,
                  tol: float = 1e-12) -> list[float]:
    """Bradley-Terry strengths fitted to a table of soft wins, as P(i beats a member of average strength).

    Each pair (i, j) counts as one game that i won with weight P[i][j], plus ``prior`` pseudo-wins on each
    side (so a completion that beats everyone keeps a finite strength). Strengths s solve the likelihood
    equations sum_j W[i][j] = sum_j s_i / (s_i + s_j) by Hunter's MM iteration, normalised to geometric
    mean 1; the reward is s_i / (s_i + 1).
    """
    n = len(table)
    if n == 1:
        return [0.5]
    if prior < 0 or (prior == 0 and any(table[i][j] in (0.0, 1.0) for i in range(n) for j in range(n) if i != j)):
        raise ValueError("bradley_terry needs prior > 0 when a comparison is certain (P = 0 or 1)")
    weight = 1.0 + 2.0 * prior
    wins = [sum((table[i][j] + prior) / weight for j in range(n) if j != i) for i in range(n)]
    s = [1.0] * n
    for _ in range(iterations):
        new = [wins[i] / sum(1.0 / (s[i] + s[j]) for j in range(n) if j != i) for i in range(n)]
        scale = math.exp(sum(math.log(x) for x in new) / n)
        new = [x / scale for x in new]
        done = max(abs(a - b) for a, b in zip(new, s, strict=True)) < tol
        s = new
        if done:
            break
    return [x / (x + 1.0) for x in s]


def rank_rewards(order: Sequence[int]) -> list[float]:
    """A ranking (indices best first) as rewards: 1 for the first, 0 for the last, evenly spaced."""
    n = len(order)
    if n == 1:
        return [0.5]
    out = [0.0] * n
    for place, i in enumerate(order):
        out[i] = (n - 1 - place) / (n - 1)
    return out


def group_rewards(judge: Judge, groups: Sequence[RankTask], method: GroupMethod = "win_rate",
                  both_orders: bool = True, prior: float = 0.1) -> list[list[float]]:
    """One reward in [0, 1] per completion of every group (``prior``: the Bradley-Terry pseudo-wins)."""
    if method == "reference":
        return reference_rewards(judge, groups, both_orders)
    if method == "win_rate":
        return [win_rates(t) for t in win_matrices(judge, groups, both_orders)]
    if method == "bradley_terry":
        return [bradley_terry(t, prior) for t in win_matrices(judge, groups, both_orders)]
    if method == "knockout":
        return [rank_rewards(k.order()) for k in knockout(judge, groups, both_orders)]
    raise ValueError(f"unknown group reward method {method!r}; choose one of {GROUP_METHODS}")


def split_groups(prompts: Sequence[str], completions: Sequence[str],
                 references: Sequence[str | None] | None = None) -> tuple[list[RankTask], list[tuple[int, int]]]:
    """A flat RL batch (one row per completion) as groups of completions sharing a prompt, in first-seen
    order; with the (group, member) of every row, to put the rewards back in row order.

    Rows of one prompt must agree on their reference (GRPO repeats a prompt with its label).
    """
    if len(prompts) != len(completions) or (references is not None and len(references) != len(prompts)):
        raise ValueError(f"prompts, completions and references differ in length: {len(prompts)}, "
                         f"{len(completions)}, {len(references) if references is not None else '-'}")
    index: dict[str, int] = {}
    members: list[list[str]] = []
    refs: list[str | None] = []
    where: list[tuple[int, int]] = []
    for row, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
        ref = references[row] if references is not None else None
        g = index.setdefault(prompt, len(members))
        if g == len(members):
            members.append([])
            refs.append(ref)
        elif refs[g] != ref:
            raise ValueError(f"row {row}: prompt {prompt[:60]!r} has two different references")
        where.append((g, len(members[g])))
        members[g].append(completion)
    groups = [RankTask(p, m, r) for p, m, r in zip(index, members, refs, strict=True)]
    return groups, where


def batch_rewards(judge: Judge, prompts: Sequence[str], completions: Sequence[str],
                  references: Sequence[str | None] | None = None, method: GroupMethod = "win_rate",
                  both_orders: bool = True, prior: float = 0.1) -> list[float]:
    """``group_rewards`` for a flat RL batch: rewards in row order (what TRL and verl reward functions return)."""
    groups, where = split_groups(prompts, completions, references)
    per_group = group_rewards(judge, groups, method, both_orders, prior)
    return [per_group[g][m] for g, m in where]
