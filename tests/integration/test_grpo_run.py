"""A 2-step GRPO run with TRL's real GRPOTrainer on the CPU, rewarded by the exact answer checker and pulled
towards its start by a KL term (as the demo is): the policy it saves is a different, loadable model, and the
oracle's reward and the KL were logged at every step.

The policy is the kit's model after a short SFT on worked solutions, in this process (``train.step``, no
Ray: seconds): a random-weight model never states a right sum, so every reward of a group would be 0 and
GRPO would have nothing to follow."""

from __future__ import annotations

import pytest

from gram_ray.apply.answer_rewards import oracle_reward
from gram_ray.config import GrpoSettings
from gram_ray.eval.policy import accuracy, generate
from gram_ray.tinykit.addition import question, split_questions, worked_solution
from gram_ray.train.grpo import train_grpo

pytestmark = pytest.mark.integration

SFT_STEPS, SFT_BATCH = 150, 32


@pytest.fixture(scope="module")
def warm_policy(tiny_kit, tmp_path_factory):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gram_ray.train.batching import collate
    from gram_ray.train.examples import Example
    from gram_ray.train.objectives import make_objective
    from gram_ray.train.step import build_optimizer, train_step
    from gram_ray.train.tokenize import ExampleEncoder

    tokenizer = AutoTokenizer.from_pretrained(tiny_kit.model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_kit.model_dir)
    encoder = ExampleEncoder(tokenizer, max_length=64)
    examples = [encoder.encode(Example(question(a, b), worked_solution(a, b)))
                for a, b in split_questions(0, "train", 1024)]
    optimizer = build_optimizer(model, learning_rate=3e-3, weight_decay=0.0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on a busy 2-core machine a second OpenMP thread waits for a core: 1.9 s a step, not 0.3
    try:
        for step in range(SFT_STEPS):
            chunk = [examples[(step * SFT_BATCH + i) % len(examples)] for i in range(SFT_BATCH)]
            batch = collate([e.input_ids for e in chunk], [e.weights for e in chunk], tokenizer.pad_token_id)
            train_step(model, optimizer, [batch], make_objective("sft"))
    finally:
        torch.set_num_threads(threads)
    out = tmp_path_factory.mktemp("warm-policy")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def test_two_grpo_steps_with_the_oracle_reward_train_and_save_the_policy(warm_policy, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    rows = [{"question": question(a, b), "answer": a + b} for a, b in split_questions(0, "train", 16)]
    settings = GrpoSettings(steps=2, prompts_per_step=4, num_generations=4, max_completion_length=32,
                            beta=0.1)  # the demo's KL pull: TRL then keeps a reference model
    history = train_grpo(warm_policy, rows, [oracle_reward], settings, tmp_path / "policy")

    steps = [h for h in history if "rewards/oracle_reward/mean" in h]
    assert [h["step"] for h in steps] == [1, 2]
    assert any(0.0 < h["rewards/oracle_reward/mean"] < 1.0 for h in steps)  # right and wrong sums: a gradient
    assert all("kl" in h for h in steps)
    before = AutoModelForCausalLM.from_pretrained(warm_policy).state_dict()
    after = AutoModelForCausalLM.from_pretrained(tmp_path / "policy").state_dict()
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert not (tmp_path / "policy.trainer").exists()

    completions = generate(tmp_path / "policy", [r["question"] for r in rows], samples=2, temperature=1.0)
    assert [len(c) for c in completions] == [2] * len(rows)
    assert 0.0 <= accuracy([c[0] for c in completions], [r["answer"] for r in rows]) <= 1.0
