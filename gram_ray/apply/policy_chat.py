"""The user's question inside a policy's chat-templated prompt, so the judge never sees the policy's markup.

RL clients send the prompt exactly as the policy saw it: OpenRLHF's ``prompts`` are the chat-templated
text and its ``query`` is that text plus the response, decoded with special tokens. The policy's own
template, rendered around marker strings, shows where the user's content sits: one user turn, with or
without a system turn (a default system prompt is part of the frame). Anything else (several turns: a
match whose content holds the template's special tokens) is refused rather than judged with its markup.
"""

from __future__ import annotations

import re
from typing import Any

_MARK = "\x00GRAMRAY{}\x00"


def _frame(tokenizer: Any, roles: tuple[str, ...]) -> re.Pattern[str] | None:
    messages = [{"role": role, "content": _MARK.format(i)} for i, role in enumerate(roles)]
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception:  # a template may refuse a system turn
        return None
    parts, rest = [], text
    for i in range(len(roles)):
        before, found, rest = rest.partition(_MARK.format(i))
        if not found:
            return None
        parts.append(re.escape(before))
    return re.compile(r"\s*" + "(.*?)".join([*parts, re.escape(rest)]) + r"\s*", re.DOTALL)


class ChatUnwrapper:
    """``question(prompt)``: the user turn of a prompt the policy's chat template rendered."""

    def __init__(self, tokenizer: Any):
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("policy_tokenizer has no chat template to unwrap")
        self.frames = [f for f in (_frame(tokenizer, ("user",)), _frame(tokenizer, ("system", "user"))) if f]
        if not self.frames:
            raise ValueError("policy_tokenizer's chat template renders no single user turn")
        # the policy's special-token text, stripped from the ends of responses (end of turn, padding)
        self.special_strings = [t for t in getattr(tokenizer, "all_special_tokens", []) if t]

    @classmethod
    def load(cls, name_or_path: str) -> ChatUnwrapper:
        from transformers import AutoTokenizer

        return cls(AutoTokenizer.from_pretrained(name_or_path))

    def question(self, prompt: str) -> str:
        for frame in self.frames:
            match = frame.fullmatch(prompt)
            # a turn's content holds no special tokens: a match spanning them is several turns
            if match and not any(t in match.group(match.lastindex or 0) for t in self.special_strings):
                return match.group(match.lastindex or 0)
        raise ValueError("prompt is not one user turn in the policy's chat template (policy_tokenizer): "
                         f"{prompt[:80]!r}")
