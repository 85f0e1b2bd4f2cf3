"""Turning rows into engine requests: the chat template, token ids, length checks, seeds, label tokens.

Prompts are rendered and tokenized here, not by ``ray.data.llm``'s chat-template and tokenize stages,
because a prompt's length must be known *before* the engine (one overlong prompt must not reach it) and
because the proof-scoring pass needs exact token ids to append the proof to.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from gram_ray.data.schemas import LABELS
from gram_ray.prompts.verdicts import LabelTokens

PAIR_TEXT = ("prompt", "response_a", "response_b")


@lru_cache(maxsize=4)
def load_tokenizer(model: str) -> Any:
    """One tokenizer per model per worker process (Ray reuses workers, so this loads once per worker)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model)


@lru_cache(maxsize=4)
def label_tokens(model: str) -> LabelTokens:
    """The label tokens of a model's tokenizer, once per worker process like the tokenizer itself."""
    return LabelTokens.from_tokenizer(load_tokenizer(model))


def chat_ids(tokenizer: Any, user_text: str) -> list[int]:
    """Token ids of one user turn and the assistant's generation prompt, as the model's template renders them."""
    chat = [{"role": "user", "content": user_text}]
    return list(tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True, return_dict=False))


def derive_seed(base: int, *keys: object) -> int:
    """A per-request sampling seed that depends only on the config seed and the request's identity, so a
    rerun (or a resumed run) samples the same text whatever batch the request lands in."""
    blob = ":".join(map(str, (base, *keys))).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:4], "big") & 0x7FFFFFFF


def malformed(row: Mapping, need_label: bool = False) -> str | None:
    """Why a pair row cannot be judged or proved, or None."""
    if not isinstance(row.get("id"), str) or not row["id"]:
        return "malformed: missing id"
    for name in PAIR_TEXT:
        if not isinstance(row.get(name), str) or not row[name].strip():
            return f"malformed: {name} missing or empty"
    if need_label and row.get("label") is None:
        return "no_label: the pair has no label to prove"
    if need_label and row.get("label") not in LABELS:
        return f"invalid_label: {row.get('label')!r}"
    return None


def too_long(num_tokens: int, max_model_len: int) -> str | None:
    """vLLM refuses a prompt that leaves no room for one generated token; refuse it here instead."""
    if num_tokens >= max_model_len:
        return f"prompt_too_long: {num_tokens} tokens, max_model_len {max_model_len}"
    return None
