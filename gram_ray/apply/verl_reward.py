"""A verl custom reward function backed by the reward server: each rollout's GRAM eq. 3 reward.

verl's reward loop (``NaiveRewardManager``) calls ``compute_score(data_source, solution_str,
ground_truth, extra_info)`` once per rollout, all rollouts concurrently when the function is a coroutine;
the server batches those calls into engine batches. The reference is the sample's ``ground_truth``
(``reward_model.ground_truth`` in verl's data) or, on a ``reference: policy`` server, the policy's greedy
output. verl does not pass the prompt, so it is read from ``extra_info[prompt_key]`` (verl's example
preprocessors store the question there). In verl's config::

    reward:
      custom_reward_function:
        path: <site-packages>/gram_ray/apply/verl_reward.py
        name: compute_score
        reward_kwargs: {url: "http://rm-host:5000", prompt_key: question}
"""

from __future__ import annotations

from typing import Any

from gram_ray.apply.rl_client import RewardClient

_CLIENTS: dict[tuple[str, str | None], RewardClient] = {}


async def compute_score(data_source: Any, solution_str: str, ground_truth: Any, extra_info: dict | None = None, *,
                        url: str, prompt_key: str = "question", api_key_env: str | None = "GRAM_RAY_API_KEY",
                        **verl_extras: Any) -> float:
    """P(solution beats the reference), in [0, 1]. ``verl_extras``: what verl adds for its own reward
    models (``reward_router_address``...), unused here."""
    prompt = (extra_info or {}).get(prompt_key)
    if not isinstance(prompt, str) or not prompt:
        raise ValueError(f"extra_info has no prompt text under {prompt_key!r} (keys: {sorted(extra_info or {})})")
    client = _CLIENTS.setdefault((url, api_key_env), RewardClient(url, api_key_env))
    reference = None if ground_truth is None else [str(ground_truth)]
    (reward,) = await client.arewards([prompt], [solution_str], reference)
    return float(reward)
