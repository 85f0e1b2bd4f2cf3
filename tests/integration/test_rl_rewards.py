"""The reward model in RL, with the real clients: OpenRLHF's remote-RM client, TRL's GRPOTrainer and verl's
reward loop against `gram-ray serve` (tiny kit model, real vLLM engines, loopback HTTP).

Two servers: a label judge behind the policy's chat template (``policy_tokenizer``: prompts arrive as
OpenRLHF sends them), and a reasoning judge on bare questions (as verl sends them) whose references are
the policy's greedy outputs (``reference: policy``). Every reward is compared with the offline judge's on
the bare question.
"""

from __future__ import annotations

import asyncio

import pytest

from gram_ray.apply.group_rewards import batch_rewards, group_rewards
from gram_ray.apply.judges import OfflineJudge
from gram_ray.apply.ranking import RankTask
from gram_ray.apply.rl_client import RewardClient
from gram_ray.apply.serve_process import serving
from gram_ray.config import JudgeConfig
from gram_ray.prompts.verdicts import eq3

pytestmark = pytest.mark.integration

START_TIMEOUT_S = 900
CONCURRENT_CALLS = 256
LABEL_JUDGE = {"template": "compact"}
REASONING_JUDGE = {"template": "compact", "temperature": 0.0, "votes": 1, "max_tokens": 24}
# (question, responses, reference): distinct items, each repeated across the 256 calls
CASES = [(f"What is {a}+{b}?", [f"{a + b}", f"{a + b + 1}", f"{a + b - 10}", "I do not know"], f"{a + b}")
         for a, b in [(23, 45), (10, 11), (30, 12), (41, 7), (55, 19), (12, 34), (60, 31), (27, 27)]]


def _engine(tiny_kit) -> dict:
    return {"model": str(tiny_kit.model_dir), "max_model_len": 512, "max_num_seqs": 64}


@pytest.fixture(scope="module")
def label_server(tiny_kit, tmp_path_factory):
    cfg = {"engine": _engine(tiny_kit), "kind": "label", "judge": LABEL_JUDGE,
           "policy_tokenizer": str(tiny_kit.tokenizer_dir), "api_key_env": None}
    with serving(cfg, tmp_path_factory.mktemp("serve-label"), {"VLLM_CPU_KVCACHE_SPACE": "1"},
                 START_TIMEOUT_S) as (url, _):
        yield url


@pytest.fixture(scope="module")
def kit_tokenizer(tiny_kit):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_kit.tokenizer_dir)


@pytest.fixture(scope="module")
def offline_label(vllm_tiny_llm):
    return OfflineJudge(vllm_tiny_llm, "label", JudgeConfig(**LABEL_JUDGE))


def _templated(tokenizer, question: str) -> str:
    return tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                         add_generation_prompt=True)


def _eq3_rewards(judge, items) -> list[float]:
    p = judge(items + [(q, ref, r) for q, r, ref in items])
    return [eq3(p[i], p[len(items) + i]) for i in range(len(items))]


class ScriptedPolicy:
    """Stands in for OpenRLHF's vLLM engine: a response the test chose, as token ids ending in EOS."""

    def __init__(self, tokenizer, response: str):
        self.ids = [*tokenizer(" " + response, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]

    async def generate(self, prompt_token_ids, params, multi_modal_data=None):
        from types import SimpleNamespace

        await asyncio.sleep(0)
        return SimpleNamespace(outputs=[SimpleNamespace(token_ids=self.ids, finish_reason="stop", logprobs=None)])


def test_openrlhf_client_gets_every_reward_of_256_concurrent_calls(label_server, kit_tokenizer, offline_label):
    """OpenRLHF 0.11.2's SingleTurnAgentExecutor, unchanged: one HTTP call per rollout, all at once, each
    with the chat-templated prompt and the response decoded with special tokens."""
    from openrlhf.utils.agent import SingleTurnAgentExecutor
    from vllm import SamplingParams

    rollouts = [(q, r, ref) for q, rs, ref in CASES for r in rs]
    rollouts = (rollouts * (CONCURRENT_CALLS // len(rollouts) + 1))[:CONCURRENT_CALLS]
    executor = SingleTurnAgentExecutor(remote_rm_url=f"{label_server}/get_reward")

    async def rollout_step() -> list[dict]:
        return await asyncio.gather(*(
            executor.execute(_templated(kit_tokenizer, question), reference, SamplingParams(max_tokens=16), 256,
                             kit_tokenizer, ScriptedPolicy(kit_tokenizer, response))
            for question, response, reference in rollouts))

    outputs = asyncio.run(rollout_step())
    failed = [o for o in outputs if o["reward"] is None]
    assert not failed, f"{len(failed)} of {len(outputs)} rollouts lost their reward"
    # the server saw the bare question: the offline judge on (question, response, reference) agrees
    expected = _eq3_rewards(offline_label, rollouts)
    assert [o["reward"][0] for o in outputs] == pytest.approx(expected, abs=1e-4)
    assert len({round(r, 4) for r in expected}) > 1  # the items are told apart, not all 0.5


def test_a_templated_prompt_gets_the_reward_of_the_bare_question(label_server, kit_tokenizer, offline_label):
    question, (response, *_), reference = CASES[0]
    prompt = _templated(kit_tokenizer, question)
    client = RewardClient(label_server, api_key_env=None)
    (served,) = client.rewards([prompt], [" " + response + kit_tokenizer.eos_token], [reference])
    assert served == pytest.approx(_eq3_rewards(offline_label, [(question, response, reference)])[0], abs=1e-4)
    with pytest.raises(Exception, match="422"):  # an untemplated prompt is refused, not judged with guesswork
        client.rewards([question], [response], [reference])


def test_group_rewards_through_the_server_match_the_offline_judge(label_server, offline_label):
    client = RewardClient(label_server, api_key_env=None)
    groups = [RankTask(q, rs, ref) for q, rs, ref in CASES[:3]]
    for method in ("win_rate", "bradley_terry", "knockout", "reference"):
        served = group_rewards(client, groups, method)
        offline = group_rewards(offline_label, groups, method)
        for got, want in zip(served, offline, strict=True):
            assert got == pytest.approx(want, abs=1e-3), method


def test_trl_grpo_trainer_steps_with_sync_and_async_group_rewards(label_server, tiny_kit, kit_tokenizer,
                                                                   offline_label, tmp_path):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from gram_ray.apply.trl_rewards import AsyncGroupReward, GroupReward

    class Recording(GroupReward):
        def __call__(self, prompts, completions, **columns):
            out = super().__call__(prompts, completions, **columns)
            self.seen.append((list(prompts), list(completions), out))
            return out

    client = RewardClient(label_server, api_key_env=None)
    win_rate = Recording(client, "win_rate")
    win_rate.seen = []
    against_answer = AsyncGroupReward(client, "reference", reference_column="answer")
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": q}], "answer": ref} for q, _, ref in CASES[:2]])
    args = GRPOConfig(output_dir=str(tmp_path), use_cpu=True, per_device_train_batch_size=4, num_generations=4,
                      max_completion_length=6, max_steps=1, logging_steps=1, report_to="none", save_strategy="no")
    trainer = GRPOTrainer(model=str(tiny_kit.model_dir), reward_funcs=[win_rate, against_answer], args=args,
                          train_dataset=data, processing_class=kit_tokenizer)
    trainer.train()

    logged = {k for row in trainer.state.log_history for k in row}
    assert {"rewards/gram_ray_win_rate/mean", "rewards/gram_ray_reference/mean"} <= logged
    (prompts, completions, rewards), *_ = win_rate.seen
    questions = [p[-1]["content"] for p in prompts]
    texts = [c[-1]["content"] for c in completions]
    # the trainer's batch, regrouped by prompt, got the offline judge's win rates
    assert rewards == pytest.approx(batch_rewards(offline_label, questions, texts), abs=1e-3)


@pytest.fixture(scope="module")
def policy_server(tiny_kit, tmp_path_factory):
    """Bare questions in (as verl passes them); references from the policy's greedy decoding."""
    cfg = {"engine": _engine(tiny_kit), "kind": "reasoning", "judge": REASONING_JUDGE, "reference": "policy",
           "policy": _engine(tiny_kit), "policy_max_tokens": 8, "api_key_env": None}
    with serving(cfg, tmp_path_factory.mktemp("serve-policy"), {"VLLM_CPU_KVCACHE_SPACE": "1"},
                 START_TIMEOUT_S) as (url, _):
        yield url


@pytest.fixture(scope="module")
def policy_rewards(kit_tokenizer, vllm_tiny_llm):
    """(questions, responses) -> (greedy references, rewards) computed offline the way the server should."""
    from vllm import SamplingParams, TokensPrompt

    judge = OfflineJudge(vllm_tiny_llm, "reasoning", JudgeConfig(**REASONING_JUDGE))

    def compute(questions: list[str], responses: list[str]) -> tuple[list[str], list[float]]:
        greedy = vllm_tiny_llm.generate(
            [TokensPrompt(prompt_token_ids=kit_tokenizer(q, add_special_tokens=False)["input_ids"]) for q in questions],
            SamplingParams(temperature=0.0, max_tokens=8))
        references = [g.outputs[0].text for g in greedy]
        return references, _eq3_rewards(judge, list(zip(questions, responses, references, strict=True)))

    return compute


def test_reasoning_judge_against_the_policys_greedy_reference(policy_server, policy_rewards):
    questions = [q for q, _, _ in CASES[:4]]
    responses = [rs[0] for _, rs, _ in CASES[:4]]
    reply = RewardClient(policy_server, api_key_env=None)._post(
        "/get_reward", {"query": [q + " " + r for q, r in zip(questions, responses, strict=True)],
                        "prompts": questions})
    references, expected = policy_rewards(questions, responses)
    assert reply["extra_logs"]["references"] == references  # the policy's greedy output
    assert reply["rewards"] == pytest.approx(expected, abs=1e-3)
    assert all(0.0 <= r <= 1.0 for r in reply["rewards"])


def test_verl_reward_loop_scores_rollouts_with_the_served_rm(policy_server, kit_tokenizer, policy_rewards):
    import numpy as np
    import torch
    from omegaconf import OmegaConf
    from verl import DataProto
    from verl.experimental.reward_loop.reward_manager import get_reward_manager_cls
    from verl.trainer.ppo.reward import get_custom_reward_fn

    import gram_ray.apply.verl_reward as verl_reward

    config = OmegaConf.create({"reward": {"custom_reward_function": {
        "path": verl_reward.__file__, "name": "compute_score",
        "reward_kwargs": {"url": policy_server, "api_key_env": None}}}})
    compute_score = get_custom_reward_fn(config)
    rollouts = [(q, r, ref) for q, rs, ref in CASES[:4] for r in rs]

    def row(question: str, response: str, reference: str) -> DataProto:
        ids = kit_tokenizer(" " + response, add_special_tokens=False)["input_ids"]
        responses = torch.tensor([ids + [kit_tokenizer.pad_token_id] * (8 - len(ids))])
        prompts = torch.tensor([kit_tokenizer(question)["input_ids"]])
        mask = torch.cat([torch.ones_like(prompts), (responses != kit_tokenizer.pad_token_id).long()], dim=1)
        return DataProto.from_dict(
            tensors={"prompts": prompts, "responses": responses, "attention_mask": mask},
            non_tensors={"data_source": np.array(["addition"], dtype=object),
                         "reward_model": np.array([{"ground_truth": reference}], dtype=object),
                         "extra_info": np.array([{"question": question}], dtype=object)})

    async def reward_loop() -> list[float]:
        manager = get_reward_manager_cls("naive")(config, kit_tokenizer, compute_score)
        scored = await asyncio.gather(*(manager.run_single(row(*r)) for r in rollouts))
        return [s["reward_score"] for s in scored]

    # on a reference: policy server the ground truth is not used: the policy's greedy output is the reference
    _, expected = policy_rewards([q for q, _, _ in rollouts], [r for _, r, _ in rollouts])
    assert asyncio.run(reward_loop()) == pytest.approx(expected, abs=1e-3)
