"""Unwrapping the policy's chat template from RL prompts (the kit's template and a ChatML one)."""

from __future__ import annotations

import copy
from itertools import islice

import pytest

from gram_ray.apply.policy_chat import ChatUnwrapper
from gram_ray.apply.server import response_of
from gram_ray.tinykit.addition import corpus
from gram_ray.tinykit.tokenizer import train_tokenizer

# ChatML as Qwen2.5 writes it: a default system turn when the messages bring none
CHATML = (
    "{% if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}"
    "{% endif %}{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
QUESTION = "What is 23+45?\nShow the sum."


@pytest.fixture(scope="module")
def kit_tok():
    return train_tokenizer(islice(corpus(), 3000))  # the template matters here, not the vocabulary


@pytest.fixture(scope="module")
def chatml_tok(kit_tok):
    tok = copy.deepcopy(kit_tok)
    tok.chat_template = CHATML
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    return tok


def _render(tok, messages):
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


@pytest.mark.parametrize("which", ["kit_tok", "chatml_tok"])
def test_the_question_comes_back_with_or_without_a_system_turn(which, request):
    tok = request.getfixturevalue(which)
    unwrap = ChatUnwrapper(tok)
    user = [{"role": "user", "content": QUESTION}]
    assert unwrap.question(_render(tok, user)) == QUESTION
    assert unwrap.question(_render(tok, [{"role": "system", "content": "Be brief."}, *user])) == QUESTION
    assert unwrap.question("  " + _render(tok, user) + "\n") == QUESTION
    with pytest.raises(ValueError, match="not one user turn"):
        unwrap.question(QUESTION)  # an untemplated prompt is refused, not guessed at
    with pytest.raises(ValueError, match="not one user turn"):
        unwrap.question(_render(tok, [*user, {"role": "assistant", "content": "68"}, *user]))


def test_an_openrlhf_query_splits_into_question_and_bare_response(chatml_tok):
    # OpenRLHF decodes prompt + response token ids with special tokens kept
    prompt = _render(chatml_tok, [{"role": "user", "content": QUESTION}])
    ids = chatml_tok(prompt, add_special_tokens=False)["input_ids"] + chatml_tok(" 68<|im_end|>",
                                                                                add_special_tokens=False)["input_ids"]
    query = chatml_tok.decode(ids, skip_special_tokens=False)
    unwrap = ChatUnwrapper(chatml_tok)
    assert unwrap.question(prompt) == QUESTION
    assert "<|im_end|>" in unwrap.special_strings
    assert response_of(query, prompt, unwrap.special_strings) == "68"


def test_a_tokenizer_without_a_template_is_refused(kit_tok):
    tok = copy.deepcopy(kit_tok)
    tok.chat_template = None
    with pytest.raises(ValueError, match="no chat template"):
        ChatUnwrapper(tok)
