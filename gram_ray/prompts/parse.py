"""Read verdicts from generated text.

The released model card's demo took the text *after* the last ``</answer>`` (always empty) and so always
answered B; here the verdict is the text *inside* the last complete ``<answer>...</answer>``.
Callers pass generated text only, never the prompt, so nothing a response says can become a verdict.
"""

from __future__ import annotations

import re

_ANSWER = re.compile(r"<\s*answer\s*>(.*?)<\s*/\s*answer\s*>", re.IGNORECASE | re.DOTALL)
_DECOR = re.compile(r"^[\s*_`'\"\[\](){}.:]*(?:(?:response|assistant|answer)\s+)?([ab])[\s*_`'\"\[\](){}.:]*$", re.I)
_TARGET = re.compile(
    r"^\s*<think>\n?(?P<proof>.*?)\n?</think>\s*<answer>\s*(?P<label>[AB])\s*</answer>\s*$", re.DOTALL
)


def parse_answer(generated_text: str | None) -> str | None:
    """'A' or 'B' from the last complete <answer> block; None when absent, empty or ambiguous.

    Whitespace, case and light decoration ("**A**", "[[B]]", "Response A") are tolerated; anything else
    ("A or B", "both", an unclosed tag) is ambiguous and returns None.
    """
    if not generated_text:
        return None
    blocks = _ANSWER.findall(generated_text)
    if not blocks:
        return None
    match = _DECOR.match(blocks[-1])
    return match.group(1).upper() if match else None


def parse_label_token(generated_text: str | None) -> str | None:
    """The GRAM judge's verdict: the first generated token after '# Preferred:' (e.g. 'A', ' [[B]]')."""
    if not generated_text:
        return None
    match = _DECOR.match(generated_text.strip().split("\n", 1)[0])
    return match.group(1).upper() if match else None


def split_target(target: str) -> tuple[str, str]:
    """Inverse of ``proof_to_target``: (proof, label). Raises ValueError on any other shape."""
    match = _TARGET.match(target)
    if not match:
        raise ValueError("not a <think>proof</think><answer>A|B</answer> target")
    return match.group("proof"), match.group("label")
