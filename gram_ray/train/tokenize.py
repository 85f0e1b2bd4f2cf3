"""Examples -> token ids with per-token loss weights: chat template, prompt masking, truncation.

The prompt is rendered exactly as inference renders it (the chat template with the generation prompt)
and tokenized on its own, so training sees the same prompt tokens vLLM will; the completion's tokens
follow. Prompt tokens get weight 0, completion tokens 1 (or ``decision_weight`` for decision tokens).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from gram_ray.train.examples import Example


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    weights: list[float]  # 0 on prompt tokens; the loss is taken where weight > 0
    truncated: bool  # longer than max_length: cut to it
    target_cut: bool  # the cut reached the completion (it lost its middle; its end is kept)


def fit_to_length(
    prompt: Sequence[int], completion: Sequence[int], max_length: int
) -> tuple[list[int], list[int], bool]:
    """Cut (prompt, completion) to ``max_length`` tokens in all; the third value says whether it cut.

    The completion keeps at least half the budget (all of it when shorter), the prompt the rest, and each
    loses its middle. The prompt's head (instruction) and tail (the last response and the cue the answer
    follows) are what a judge needs most; the completion's end is what the model must learn to end with:
    a judge's ``<answer>`` verdict, a rationale's conclusion, the end-of-turn token. Cutting its tail
    instead would train verdict-less rationales that never stop.
    """
    if len(prompt) + len(completion) <= max_length:
        return list(prompt), list(completion), False
    keep_completion = min(len(completion), max(max_length - len(prompt), max_length // 2))
    return keep_ends(prompt, max_length - keep_completion), keep_ends(completion, keep_completion), True


def keep_ends(ids: Sequence[int], keep: int) -> list[int]:
    """``ids`` cut to ``keep`` tokens by removing its middle: the first half of ``keep`` from its head, the
    rest from its tail."""
    if keep >= len(ids):
        return list(ids)
    head = keep // 2
    return [*ids[:head], *ids[len(ids) - (keep - head) :]]


def single_token_id(tokenizer: PreTrainedTokenizerBase, text: str, after_space: bool) -> int | None:
    """The id of ``text`` as one token where it follows whitespace (``after_space``) or a word; byte-level
    BPE vocabularies spell the second with a leading space ("ĠA")."""
    variants = (text, " " + text) if after_space else (" " + text, text)
    for variant in variants:
        ids = tokenizer.encode(variant, add_special_tokens=False)
        if len(ids) == 1:
            return ids[0]
    return None


def label_token_ids(tokenizer: PreTrainedTokenizerBase, prompt_text: str) -> tuple[int, int]:
    """Token ids of the labels "A" and "B" as they follow ``prompt_text`` (a rendered judge prompt)."""
    after_space = not prompt_text or prompt_text[-1].isspace()
    ids = tuple(single_token_id(tokenizer, label, after_space) for label in ("A", "B"))
    if None in ids or ids[0] == ids[1]:
        pieces = {label: tokenizer.tokenize(label) for label in ("A", "B", " A", " B")}
        raise ValueError(f"gram_stage2 needs 'A' and 'B' to be single tokens after the judge prompt; tokenizer "
                         f"{tokenizer.name_or_path!r} splits them as {pieces}")
    return ids[0], ids[1]


def decision_token_ids(tokenizer: PreTrainedTokenizerBase, strings: Iterable[str]) -> frozenset[int]:
    """Ids of every single-token spelling (bare and space-prefixed) of each decision string."""
    out: set[int] = set()
    for text in strings:
        found = {single_token_id(tokenizer, text, after_space=s) for s in (True, False)} - {None}
        if not found:
            raise ValueError(f"decision token {text!r} is not a single token in {tokenizer.name_or_path!r}: "
                             f"{tokenizer.tokenize(text)}")
        out |= found
    return frozenset(out)


def render_prompt(tokenizer: PreTrainedTokenizerBase, user_message: str) -> str:
    """The prompt as inference sends it: the chat template with its generation prompt, when there is one."""
    if not tokenizer.chat_template:
        return user_message
    messages = [{"role": "user", "content": user_message}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def render_completion(tokenizer: PreTrainedTokenizerBase, user_message: str, completion: str) -> str:
    """The assistant turn after the generation prompt, with the template's end-of-turn marker."""
    eos = tokenizer.eos_token or ""
    if not tokenizer.chat_template:
        return completion + eos
    prompt = render_prompt(tokenizer, user_message)
    messages = [{"role": "user", "content": user_message}, {"role": "assistant", "content": completion}]
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    return full[len(prompt) :] if full.startswith(prompt) else completion + eos


class ExampleEncoder:
    """Turns ``Example``s into ``Encoded`` rows for one tokenizer and objective.

    ``label_ids`` (stage 2) are the (A, B) token ids; the completion is then that one token and nothing
    after it. Otherwise the completion ends the assistant turn as the chat template does.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        max_length: int,
        label_ids: tuple[int, int] | None = None,
        decision_ids: frozenset[int] = frozenset(),
        decision_weight: float = 1.0,
    ) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.label_ids = label_ids
        self.decision_ids = decision_ids
        self.decision_weight = decision_weight

    def encode(self, example: Example) -> Encoded:
        prompt_ids = self.tokenizer.encode(render_prompt(self.tokenizer, example.prompt), add_special_tokens=False)
        if self.label_ids is not None:
            completion_ids = [self.label_ids[0] if example.completion == "A" else self.label_ids[1]]
        else:
            text = render_completion(self.tokenizer, example.prompt, example.completion)
            completion_ids = self.tokenizer.encode(text, add_special_tokens=False)
        prompt_kept, completion_kept, truncated = fit_to_length(prompt_ids, completion_ids, self.max_length)
        weights = [0.0] * len(prompt_kept) + [
            self.decision_weight if t in self.decision_ids else 1.0 for t in completion_kept
        ]
        return Encoded(prompt_kept + completion_kept, weights, truncated, len(completion_kept) < len(completion_ids))
