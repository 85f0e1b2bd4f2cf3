"""The kit tokenizer: numbers and side names whole, reasoning tags whole, a chat template trainers can split."""

from __future__ import annotations

import pytest

from gram_ray.tinykit.addition import DECISION_WORDS, OPERANDS, corpus
from gram_ray.tinykit.tokenizer import TAG_TOKENS, train_tokenizer


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(corpus())


def pieces(tok, text: str) -> list[str]:
    return [tok.decode([i]) for i in tok.encode(text, add_special_tokens=False)]


def test_vocab_is_a_few_hundred_tokens(tok):
    assert 256 < len(tok) <= 512


def test_every_number_the_task_writes_is_one_token(tok):
    # after a space: first operands, responses, sums; after "+": second operands
    numbers = [f" {n}" for n in range(min(OPERANDS), 2 * max(OPERANDS) + 1)] + [str(n) for n in OPERANDS]
    assert [text for text in numbers if pieces(tok, text) != [text]] == []


def test_a_quote_is_one_token_after_its_side_name_and_its_digits_one_each(tok):
    assert pieces(tok, "Response B: 72\nx. B: 72 = 7 2, 7 7 same 2 5 diff, no.") == [
        "Response", " B:", " 72", "\n", "x", ".", " B:", " 72", " =", " 7", " 2", ",", " 7", " 7", " same", " 2",
        " 5", " diff", ",", " no", "."]


def test_worked_steps_stay_digit_by_digit(tok):
    assert pieces(tok, "7+5=12, carry 1. 3+3+1=7.") == [
        "7", "+", "5", "=", "12", ",", " carry", " 1", ".", " 3", "+", "3", "+", "1", "=", "7", "."]


def test_tags_are_whole_and_survive_skip_special_tokens(tok):
    text = "<think>\n3+4=7. sum 7.\n</think>\n<answer>\nB\n</answer>"
    ids = tok.encode(text, add_special_tokens=False)
    for tag in TAG_TOKENS:
        assert tok.convert_tokens_to_ids(tag) in ids
    assert tok.decode(ids, skip_special_tokens=True) == text


@pytest.mark.parametrize("word", ["A", "B"])
def test_labels_are_single_tokens_inside_answer_tags(tok, word):
    assert pieces(tok, f"<answer>\n{word}\n</answer>") == ["<answer>", "\n", word, "\n", "</answer>"]


@pytest.mark.parametrize("word", DECISION_WORDS)
def test_decision_words_are_single_tokens(tok, word):
    assert pieces(tok, word) == [word]


def test_any_text_round_trips(tok):
    text = "Héllo, wörld ✓ 世界 — tabs\tand\nnewlines"
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text


def test_plain_encoding_starts_with_bos(tok):
    assert tok("hi").input_ids[0] == tok.bos_token_id


def test_chat_template_splits_at_generation_prompt(tok):
    user = [{"role": "user", "content": "What is 1+2?"}]
    prompt = tok.apply_chat_template(user, add_generation_prompt=True, tokenize=False)
    full = tok.apply_chat_template([*user, {"role": "assistant", "content": "sum 3."}], tokenize=False)
    assert prompt.startswith(tok.bos_token) and "What is 1+2?" in prompt
    assert full == prompt + "sum 3." + tok.eos_token
    ids = tok.apply_chat_template(user, add_generation_prompt=True, tokenize=True, return_dict=False)
    assert list(ids).count(tok.bos_token_id) == 1


def test_chat_template_rejects_unknown_roles(tok):
    with pytest.raises(Exception, match="unknown chat role"):
        tok.apply_chat_template([{"role": "tool", "content": "x"}], tokenize=False)
