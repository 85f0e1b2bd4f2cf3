"""The tiny kit's checkpoint must load and agree in both engines the pipelines use: transformers
(training, export) and vLLM on CPU (inference stages)."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from gram_ray.prompts import judge_prompt

pytestmark = pytest.mark.integration

MAX_NEW = 12


@pytest.fixture(scope="module")
def hf(tiny_kit):
    tok = AutoTokenizer.from_pretrained(tiny_kit.model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_kit.model_dir, dtype=torch.float32).eval()
    return tok, model


@pytest.fixture(scope="module")
def chats(tiny_kit):
    rows = pq.read_table(tiny_kit.heldout).slice(0, 3).to_pylist()
    return [
        [{"role": "user", "content": judge_prompt("compact", r["prompt"], r["response_a"], r["response_b"])}]
        for r in rows
    ]


def test_vllm_chat_path_renders_the_kit_template(vllm_tiny_llm, hf, chats):
    from vllm import SamplingParams

    tok, _ = hf
    outs = vllm_tiny_llm.chat(chats, SamplingParams(temperature=0, max_tokens=1), use_tqdm=False)
    for chat, out in zip(chats, outs, strict=True):
        expected = tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=True, return_dict=False)
        assert out.prompt_token_ids == list(expected)
        assert out.prompt_token_ids.count(tok.bos_token_id) == 1


def test_greedy_outputs_and_prompt_logprobs_agree(vllm_tiny_llm, hf, chats):
    from vllm import SamplingParams, TokensPrompt

    tok, model = hf
    prompts = [tok.apply_chat_template(c, add_generation_prompt=True, tokenize=True, return_dict=False)
               for c in chats] + [tok("What is 12+34?").input_ids]
    params = SamplingParams(temperature=0, max_tokens=MAX_NEW, prompt_logprobs=0)
    outs = vllm_tiny_llm.generate([TokensPrompt(prompt_token_ids=list(p)) for p in prompts], params,
                                  use_tqdm=False)
    for ids, out in zip(prompts, outs, strict=True):
        x = torch.tensor([list(ids)])
        with torch.no_grad():
            hf_new = model.generate(x, do_sample=False, max_new_tokens=MAX_NEW)[0, x.shape[1]:].tolist()
            logp = torch.log_softmax(model(x).logits[0].float(), dim=-1)
        vllm_new = list(out.outputs[0].token_ids)
        assert vllm_new == hf_new and vllm_new
        # prompt_logprobs[i] holds the logprob of prompt token i given tokens < i (None for the first).
        hf_lp = [logp[i - 1, ids[i]].item() for i in range(1, len(ids))]
        vllm_lp = [out.prompt_logprobs[i][ids[i]].logprob for i in range(1, len(ids))]
        assert vllm_lp == pytest.approx(hf_lp, abs=2e-3)
