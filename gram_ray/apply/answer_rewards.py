"""TRL reward functions for a policy that answers with a worked solution (the tiny kit's addition task).

``oracle_reward`` is the exact answer checker. ``FinalAnswers`` hands a judge-backed reward function
(``trl_rewards.GroupReward``) each completion's final answer instead of its whole worked solution: the
kit's reward models learned to compare bare answers, and a worked solution in a response is text they
never saw. A completion that states no final answer is handed over as written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from gram_ray.apply.trl_rewards import message_text
from gram_ray.tinykit.addition import final_answer

RewardFunc = Callable[..., list[float]]


def answer_text(completion: str) -> str:
    """What a judge sees of a completion: its final sum ("85"), or the completion stripped when it has none."""
    answer = final_answer(completion)
    return completion.strip() if answer is None else str(answer)


def oracle_reward(prompts: Sequence[Any], completions: Sequence[Any], answer: Sequence[int],
                  **columns: Any) -> list[float]:
    """1.0 where the completion's final sum is the dataset's ``answer`` column, else 0.0."""
    if len(completions) != len(answer):
        raise ValueError(f"{len(completions)} completions for {len(answer)} answers")
    return [float(final_answer(message_text(c, "assistant")) == int(a))
            for c, a in zip(completions, answer, strict=True)]


class FinalAnswers:
    """A TRL reward function that calls ``reward_func`` on the completions' final answers."""

    def __init__(self, reward_func: RewardFunc):
        self.reward_func = reward_func
        self.__name__ = getattr(reward_func, "__name__", type(reward_func).__name__)  # TRL logs by this name

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float]:
        answers = [answer_text(message_text(c, "assistant")) for c in completions]
        return self.reward_func(prompts, answers, **columns)
