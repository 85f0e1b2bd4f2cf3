"""Engine-free parts of the judges and the server: label tokens, restricted softmax, sampling settings,
query splitting and the request gate."""

from __future__ import annotations

import math

import pytest

from gram_ray.apply.judges import JudgeCore, judgement_of
from gram_ray.apply.server import response_of, strip_ends
from gram_ray.config import JudgeConfig
from gram_ray.judging.requests import too_long
from gram_ray.judging.voting import Sample
from gram_ray.prompts.verdicts import LabelTokens


class WordTokenizer:
    """Each known string is one token; anything else takes two (so it is never a single label token)."""

    def __init__(self, vocab):
        self.vocab = {text: i for i, text in enumerate(vocab)}

    def encode(self, text, add_special_tokens=False):
        return [self.vocab[text]] if text in self.vocab else [-1, -1]


def test_label_tokens_collect_single_token_spellings():
    labels = LabelTokens.from_tokenizer(WordTokenizer(["A", "B", " A", "x"]))
    assert labels.a == (0, 2) and labels.b == (1,)
    assert labels.label_of(2) == "A" and labels.label_of(3) is None
    with pytest.raises(ValueError, match="no single token for label 'B'"):
        LabelTokens.from_tokenizer(WordTokenizer(["A", "x"]))


def test_p_a_is_the_softmax_over_label_tokens_only():
    labels = LabelTokens(a=(0, 2), b=(1,))
    # log-probs -1 (A), -2 (B), -3 (" A") and an unrelated token that must not count.
    p = labels.p_a({0: -1.0, 1: -2.0, 2: -3.0, 7: -0.1})
    expected = (math.exp(-1) + math.exp(-3)) / (math.exp(-1) + math.exp(-2) + math.exp(-3))
    assert p == pytest.approx(expected)
    assert labels.p_a({0: -1.0, 1: -1.0}) == pytest.approx(0.5)
    assert labels.p_a({7: -0.1}) is None
    assert labels.p_a({0: -math.inf, 1: -5.0}) == pytest.approx(0.0)


def test_sampling_settings_per_kind():
    tok = WordTokenizer(["A", "B"])
    label = JudgeCore(tok, "label", JudgeConfig(template="gram"))
    assert label.sampling() == {"n": 1, "max_tokens": 1, "temperature": 0.0, "logprob_token_ids": [0, 1]}
    reasoning = JudgeCore(tok, "reasoning", JudgeConfig(votes=4, temperature=0.7, max_tokens=64))
    assert reasoning.sampling()["n"] == 4 and reasoning.sampling(votes=8)["n"] == 8
    greedy = JudgeCore(tok, "reasoning", JudgeConfig())
    with pytest.raises(ValueError, match="temperature > 0"):
        greedy.sampling(votes=3)
    with pytest.raises(ValueError, match="judge kind"):
        JudgeCore(tok, "scalar")


class CharTokenizer:
    """One token per character; the chat template wraps the user turn in fixed markers."""

    def encode(self, text, add_special_tokens=False):
        return [ord(c) for c in text]

    def apply_chat_template(self, chat, add_generation_prompt, tokenize, return_dict):
        return self.encode(f"<user>{chat[0]['content']}<assistant>")


def test_a_prompt_that_fills_max_model_len_is_refused_by_the_stages_rule():
    item = ("Which is better?", "first", "second")
    fits = len(JudgeCore(CharTokenizer(), "label", JudgeConfig(template="gram")).prompt_ids(item))
    core = JudgeCore(CharTokenizer(), "label", JudgeConfig(template="gram"), max_model_len=fits + 1)
    assert core.refusal(item) is None and len(core.prompt_ids(item)) == fits
    longer = (item[0] + "?", item[1], item[2])  # one token more: no room left for the verdict token
    assert core.refusal(longer) == too_long(fits + 1, fits + 1) == f"prompt_too_long: {fits + 1} tokens, " \
        f"max_model_len {fits + 1}"
    with pytest.raises(ValueError, match="prompt_too_long"):
        core.prompt_ids(longer)
    unbounded = JudgeCore(CharTokenizer(), "label", JudgeConfig(template="gram"))  # no max_model_len: no check
    assert unbounded.refusal(("x" * 100_000, "a", "b")) is None


def test_label_kind_reads_the_first_position():
    core = JudgeCore(WordTokenizer(["A", "B"]), "label")
    sample = core.sample("B", [1], [{0: -2.0, 1: -1.0}])
    assert sample.answer == "B" and sample.p_a == pytest.approx(1 / (1 + math.e))


def test_judgement_of_votes_and_probabilities():
    j = judgement_of([Sample("x", "A", 0.8), Sample("y", "A", None), Sample("z", "B", 0.4), Sample("w", None, None)])
    assert (j.votes_a, j.votes_b, j.votes_none, j.answer) == (2, 1, 1, "A")
    assert j.p_a == pytest.approx(0.6)  # mean over the samples whose answer token was found
    only_verdict = judgement_of([Sample("x", "B", None)])
    assert only_verdict.p_a == 0.0 and only_verdict.answer == "B"
    nothing = judgement_of([Sample("x", None, None)])
    assert nothing.p_a == 0.5 and nothing.answer is None


def test_strip_and_split_openrlhf_queries():
    strings = ["<pad>", "</s>"]
    assert strip_ends("<pad><pad> hi </s>", strings) == "hi"
    assert response_of("<pad>Q: 2+2?\nA: 4</s><pad>", "Q: 2+2?", strings) == "A: 4"
    with pytest.raises(ValueError, match="does not contain its prompt"):
        response_of("something else", "Q: 2+2?", strings)


def test_serve_config_checks():
    from gram_ray.config import ConfigError, ServeConfig, parse_config

    cfg = parse_config({"engine": {"model": "m"}}, ServeConfig)
    assert (cfg.kind, cfg.judge.template, cfg.reference, cfg.host) == ("reasoning", "gram_r2", "labels", "127.0.0.1")
    with pytest.raises(ConfigError, match="needs a policy engine"):
        parse_config({"engine": {"model": "m"}, "reference": "policy"}, ServeConfig)
    with pytest.raises(ConfigError, match="max_pending_prompts"):
        parse_config({"engine": {"model": "m"}, "max_pending_prompts": 0}, ServeConfig)
