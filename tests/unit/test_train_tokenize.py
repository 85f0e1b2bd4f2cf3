"""Prompt masking, chat rendering, truncation, label and decision tokens, on the tiny kit's tokenizer."""

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from gram_ray.prompts import judge_prompt, proof_to_target
from gram_ray.tinykit.addition import corpus
from gram_ray.tinykit.tokenizer import train_tokenizer
from gram_ray.train.examples import Example
from gram_ray.train.tokenize import (
    ExampleEncoder,
    decision_token_ids,
    fit_to_length,
    keep_ends,
    label_token_ids,
    render_prompt,
)


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(corpus())


@pytest.fixture(scope="module")
def raw_tok(tok):
    """The same vocabulary without a chat template: prompts are sent as they are."""
    plain = train_tokenizer(corpus())
    plain.chat_template = None
    return plain


def test_prompt_tokens_are_masked_and_the_completion_ends_the_turn(tok):
    example = Example("What is 12+30?", "2+0=2, carry 0. 1+3=4. sum 42.")
    enc = ExampleEncoder(tok, max_length=512).encode(example)
    prompt_ids = tok.apply_chat_template([{"role": "user", "content": example.prompt}], add_generation_prompt=True,
                                         tokenize=True, return_dict=False)
    n = len(prompt_ids)
    assert enc.input_ids[:n] == list(prompt_ids)  # exactly what inference would send
    assert enc.weights[:n] == [0.0] * n
    assert enc.weights[n:] == [1.0] * (len(enc.input_ids) - n)
    assert tok.decode(enc.input_ids[n:]) == example.completion + tok.eos_token
    assert not enc.truncated


def test_decision_tokens_get_their_weight_in_the_completion_only(tok):
    ids = decision_token_ids(tok, ["yes", "no"])
    assert {tok.convert_tokens_to_ids(t) for t in ("yes", "Ġyes", "no", "Ġno")} <= ids
    enc = ExampleEncoder(tok, 512, decision_ids=ids, decision_weight=10.0).encode(
        Example("Is it no? yes or no", "A: 4 vs 4 yes. B: 5 vs 4 no.")
    )
    weighted = [t for t, w in zip(enc.input_ids, enc.weights, strict=True) if w == 10.0]
    assert len(weighted) == 2 and set(weighted) <= ids
    with pytest.raises(ValueError, match="not a single token"):
        decision_token_ids(tok, ["carry 1"])


def test_label_tokens_follow_the_prompt_with_or_without_a_leading_space(tok, raw_tok):
    prompt = judge_prompt("gram", "q", "a", "b")
    chat = render_prompt(tok, prompt)
    assert chat.endswith("\n")  # after the generation prompt: bare "A"
    assert label_token_ids(tok, chat) == (tok.convert_tokens_to_ids("A"), tok.convert_tokens_to_ids("B"))
    raw = render_prompt(raw_tok, prompt)
    assert raw.endswith("# Preferred:")  # right after the cue: " A"
    assert label_token_ids(raw_tok, raw) == (raw_tok.convert_tokens_to_ids("ĠA"), raw_tok.convert_tokens_to_ids("ĠB"))


def test_stage2_example_is_prompt_plus_one_label_token(tok):
    ids = label_token_ids(tok, render_prompt(tok, "x"))
    enc = ExampleEncoder(tok, 512, label_ids=ids).encode(Example(judge_prompt("compact", "q", "1", "2"), "B"))
    assert enc.input_ids[-1] == ids[1]
    assert enc.weights[-1] == 1.0 and sum(enc.weights) == 1.0


def test_labels_that_are_not_single_tokens_are_a_clear_error():
    word_level = Tokenizer(models.WordLevel({"[UNK]": 0, "hello": 1}, unk_token="[UNK]"))
    word_level.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=word_level, unk_token="[UNK]")
    with pytest.raises(ValueError, match="single tokens"):
        label_token_ids(tok, "hello ")


@pytest.mark.parametrize(
    ("prompt_len", "completion_len", "max_length", "kept_prompt", "kept_completion", "truncated"),
    [
        (10, 5, 20, 10, 5, False),
        (10, 10, 20, 10, 10, False),
        (10, 30, 20, 10, 10, True),  # completion loses its middle
        (30, 1, 20, 19, 1, True),  # stage 2: the label always survives, the prompt loses its middle
        (30, 30, 20, 10, 10, True),  # both long: half each
        (4, 30, 20, 4, 16, True),  # a short prompt is kept whole, the completion takes the rest
        (30, 8, 20, 12, 8, True),  # a completion under half the budget is kept whole
    ],
)
def test_fit_to_length(prompt_len, completion_len, max_length, kept_prompt, kept_completion, truncated):
    prompt, completion = list(range(prompt_len)), list(range(100, 100 + completion_len))
    p, c, cut = fit_to_length(prompt, completion, max_length)
    assert (len(p), len(c), cut) == (kept_prompt, kept_completion, truncated)
    assert len(p) + len(c) == min(max_length, prompt_len + completion_len)
    assert p == keep_ends(prompt, len(p)) and c == keep_ends(completion, len(c))
    assert c[-1] == completion[-1]  # the completion's end (verdict, end of turn) always survives


@pytest.mark.parametrize(("keep", "kept"), [
    (10, list(range(10))),
    (12, list(range(10))),
    (4, [0, 1, 8, 9]),
    (5, [0, 1, 7, 8, 9]),  # an odd budget gives the tail the extra token
    (1, [9]),
    (0, []),
])
def test_keep_ends_removes_the_middle(keep, kept):
    assert keep_ends(list(range(10)), keep) == kept


def test_a_long_target_keeps_its_verdict_and_end_of_turn(tok):
    """A judge target longer than max_length loses its middle, not the ``<answer>`` block and the end of
    turn that close it; the cut is counted as truncated and as reaching the target."""
    target = proof_to_target(" ".join(["2+0=2, carry 0."] * 30), "B")
    example = Example("What is 12+30? A: 42. B: 43.", target)
    whole = ExampleEncoder(tok, max_length=100_000).encode(example)
    prompt_len = whole.weights.count(0.0)
    assert len(whole.input_ids) > 4 * prompt_len
    short = ExampleEncoder(tok, max_length=4 * prompt_len).encode(example)
    assert short.truncated and short.target_cut and len(short.input_ids) == 4 * prompt_len
    assert short.input_ids[:prompt_len] == whole.input_ids[:prompt_len]  # a short prompt is kept whole
    learned = [t for t, w in zip(short.input_ids, short.weights, strict=True) if w > 0]
    assert len(learned) == 3 * prompt_len
    text = tok.decode(learned)
    assert text.startswith("<think>") and text.endswith("</think>\n<answer>\nB\n</answer>" + tok.eos_token)
    assert not whole.truncated and not whole.target_cut


def test_encoder_counts_truncation(tok):
    enc = ExampleEncoder(tok, max_length=12).encode(Example("What is 12+30? " * 3, "2+0=2, carry 0. 1+3=4. sum 42."))
    assert enc.truncated and len(enc.input_ids) == 12 and enc.weights.count(0.0) == 6
    assert enc.target_cut  # the prompt is cut to half the budget, the completion to the other half
