"""GRPO of a policy with TRL's ``GRPOTrainer``: questions in, the trained policy's Hugging Face folder out.

TRL samples the completions (transformers' ``generate``; no vLLM, so it runs on a CPU), calls the reward
functions once per step with the whole step's completions, so a group-reward function sees every group
of the step in one call, and normalises each group's rewards before the policy-gradient step. This is
training like ``trainer.train`` but not on Ray Train: TRL's loop is the one users of its reward
functions run, and a policy small enough for a CPU needs no cluster.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from gram_ray.config import GrpoSettings


def train_grpo(model_dir: str | Path, rows: Sequence[Mapping[str, Any]], reward_funcs: list[Callable[..., Any]],
               settings: GrpoSettings, output_dir: str | Path, reward_weights: list[float] | None = None) -> list[dict]:
    """Train the policy in ``model_dir`` on ``rows`` (each a ``question`` and the columns its reward
    functions read) and save it to ``output_dir``; returns TRL's log history, one entry per step. A reward
    function of weight 0 (``reward_weights``) is logged and does not steer."""
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    out = Path(output_dir)
    if out.exists():  # what an interrupted attempt left; the stage records the folder only when complete
        shutil.rmtree(out)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": r["question"]}],
                               **{k: v for k, v in r.items() if k != "question"}} for r in rows])
    args = GRPOConfig(
        output_dir=str(out.with_name(out.name + ".trainer")), use_cpu=not settings.use_gpu,
        per_device_train_batch_size=settings.prompts_per_step * settings.num_generations,
        num_generations=settings.num_generations, max_completion_length=settings.max_completion_length,
        max_steps=settings.steps, learning_rate=settings.learning_rate, temperature=settings.temperature,
        beta=settings.beta, seed=settings.seed, reward_weights=reward_weights, logging_steps=1, report_to="none",
        save_strategy="no", disable_tqdm=True,
    )
    trainer = GRPOTrainer(model=str(model_dir), reward_funcs=reward_funcs, args=args, train_dataset=data,
                          processing_class=tokenizer)
    trainer.train()
    trainer.save_model(str(out))
    shutil.rmtree(args.output_dir, ignore_errors=True)
    return list(trainer.state.log_history)
