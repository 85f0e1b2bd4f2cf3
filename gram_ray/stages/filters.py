"""Denoising rules for self-labelled data (pure: no engine, no Ray).

Each rule returns None to keep a row or a reason ``"<category>: <detail>"``; the first failing rule
names the reject. Judge rules apply to rows whose label came from the judge (``votes_total`` set);
rationale rules apply to rows that carry a ``rationale``. So one ``FilterConfig`` serves both places a
pipeline filters: after labelling (drop weak labels before paying for proofs) and after proving.

A task with a checker of its own (an arithmetic check, a math answer's final value) plugs it in as
``verifier: "package.module:function"``: ``function(row, rationale, label)`` returns None to keep a
rationale row or a reason to reject it (e.g. ``gram_ray.tinykit.addition:verify_rationale``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from gram_ray.config import FilterConfig, import_callable
from gram_ray.data.schemas import LABELS
from gram_ray.prompts import split_target

_CONCLUSION = re.compile(r"conclusion\s*:", re.IGNORECASE)
_SIDE = r"(?:response|assistant|answer|output)\s*\(?([AB])\)?"
_VERDICT = re.compile(
    rf"{_SIDE}\s+(?:is|was|seems|appears)\s+(?:clearly\s+|slightly\s+|much\s+)?(?:the\s+)?"
    r"(?:better|preferred|superior|stronger|more\s+\w+|best|winner)"
    rf"|(?:prefer|choose|select|pick|favou?r)\s+{_SIDE}"
    r"|\[\[([AB])\]\]",
    re.IGNORECASE,
)
_MENTION = re.compile(rf"\b{_SIDE}\b", re.IGNORECASE)


def conclusion_verdict(rationale: str) -> str | None:
    """The label a rationale's conclusion argues for, or None when it does not say clearly.

    Reads the text after the last "Conclusion:" (the whole rationale when there is none). Explicit
    verdicts ("Response A is better", "I prefer Assistant B", "[[A]]") decide when they all agree;
    otherwise a conclusion that names exactly one response is taken to argue for it.
    """
    heads = list(_CONCLUSION.finditer(rationale))
    text = rationale[heads[-1].end():] if heads else rationale
    verdicts = {next(g for g in m.groups() if g).upper() for m in _VERDICT.finditer(text)}
    if len(verdicts) == 1:
        return verdicts.pop()
    if verdicts:
        return None
    named = {m.group(1).upper() for m in _MENTION.finditer(text)}
    return named.pop() if len(named) == 1 else None


def judge_reason(row: Mapping, cfg: FilterConfig) -> str | None:
    if row.get("votes_total") is None:
        return None
    if row.get("label") is None:
        return "no_majority: no label won the vote"
    share = row.get("vote_share")
    if share is None or share < cfg.min_vote_share:
        return f"low_vote_share: {share} < {cfg.min_vote_share}"
    if cfg.min_confidence > 0:
        conf = row.get("confidence")
        if conf is None:
            return "low_confidence: no answer-token probability"
        if conf < cfg.min_confidence:
            return f"low_confidence: {conf:.3f} < {cfg.min_confidence}"
    if cfg.require_consistent:
        if row.get("consistent") is None:
            return "no_swap_pass: require_consistent needs labels from a swap pass"
        if not row["consistent"]:
            return "inconsistent: the swapped order gave the other label"
    return None


def rationale_reason(row: Mapping, cfg: FilterConfig) -> str | None:
    if "rationale" not in row:
        return None
    rationale, label = row.get("rationale") or "", row.get("label")
    try:
        proof, target_label = split_target(row.get("target") or "")
    except ValueError:
        return "malformed_target: not <think>proof</think><answer>label</answer>"
    if target_label != label or proof.strip() != rationale.strip():
        return "malformed_target: target does not hold this rationale and label"
    if len(rationale) < cfg.min_rationale_chars:
        return f"rationale_too_short: {len(rationale)} < {cfg.min_rationale_chars} chars"
    if len(rationale) > cfg.max_rationale_chars:
        return f"rationale_too_long: {len(rationale)} > {cfg.max_rationale_chars} chars"
    if cfg.support_check == "conclusion":
        verdict = conclusion_verdict(rationale)
        if verdict is None:
            return "unsupported: the conclusion names no clear winner"
        if verdict != label:
            return f"unsupported: the conclusion argues for {verdict}, label is {label}"
    if cfg.verifier is not None:
        problem = import_callable(cfg.verifier)(row, rationale, label)
        if problem is not None:
            return f"unsupported: {problem}"
    return None


def reject_reason(row: Mapping, cfg: FilterConfig) -> str | None:
    """Why ``row`` should be dropped, or None to keep it."""
    label = row.get("label")
    if label is not None and label not in LABELS:
        return f"invalid_label: {label!r}"
    if label is None and row.get("votes_total") is None:
        return "no_label: neither a given nor a judged label"
    return judge_reason(row, cfg) or rationale_reason(row, cfg)
