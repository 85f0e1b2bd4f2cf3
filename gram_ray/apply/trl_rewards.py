"""Reward functions for TRL's ``GRPOTrainer(reward_funcs=[...])``, from a pairwise generative RM.

``GroupReward(judge, method)`` scores each completion within its group (the completions of one prompt in
the batch) by ``apply.group_rewards``; ``AsyncGroupReward`` is the same as a coroutine, which TRL runs on
its own event loop beside other async reward functions. The judge is an in-process ``OfflineJudge`` or a
``RewardClient`` on ``gram-ray serve``.

TRL calls a reward function with the batch's ``prompts`` and ``completions`` (text, or chat messages
for conversational datasets: the judge gets the last user turn and the assistant's text) and every other
dataset column as a keyword argument; the ``reference`` method reads its reference answers from
``reference_column``. Groups are the rows that share a prompt, so every completion of a group must be in
the same call: true on one process; with several, use ``reference``, which scores each row on its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from gram_ray.apply.group_rewards import GroupMethod, batch_rewards
from gram_ray.apply.ranking import Judge


def message_text(value: str | Sequence[dict[str, Any]], role: str) -> str:
    """A plain-text prompt or completion, or the last ``role`` turn's content of a chat-format one."""
    if isinstance(value, str):
        return value
    turns = [m.get("content", "") for m in value if m.get("role") == role]
    if not turns:
        raise ValueError(f"no {role!r} turn in {list(value)[:3]!r}")
    return str(turns[-1])


class GroupReward:
    """A synchronous TRL reward function: one reward in [0, 1] per completion."""

    def __init__(self, judge: Judge, method: GroupMethod = "win_rate", reference_column: str = "reference",
                 both_orders: bool = True, prior: float = 0.1, name: str | None = None):
        self.judge, self.method, self.reference_column = judge, method, reference_column
        self.both_orders, self.prior = both_orders, prior
        self.__name__ = name or f"gram_ray_{method}"  # TRL logs rewards/<__name__>/mean

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float]:
        references = None
        if self.method == "reference":
            if self.reference_column not in columns:
                raise ValueError(f"method 'reference' reads the dataset column {self.reference_column!r}; "
                                 f"this batch has {sorted(columns)}")
            references = [str(r) for r in columns[self.reference_column]]
        return batch_rewards(self.judge, [message_text(p, "user") for p in prompts],
                             [message_text(c, "assistant") for c in completions], references, self.method,
                             self.both_orders, self.prior)


class AsyncGroupReward(GroupReward):
    """``GroupReward`` as a coroutine: the judge calls run in a worker thread, so TRL's event loop goes on
    with its other async reward functions meanwhile."""

    async def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float]:
        return await asyncio.to_thread(GroupReward.__call__, self, prompts, completions, **columns)
