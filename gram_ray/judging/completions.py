"""Every completion of an n > 1 request as one engine output column.

``ray.data.llm``'s engine stage reads only ``outputs[0]`` of a vLLM ``RequestOutput`` into its output row
(``generated_text``, ``generated_tokens``, ``logprobs``). ``engine_stage.AllCompletionsUDF`` adds column
``COMPLETIONS``: all n completions as JSON (token ids and the log-probabilities vLLM returned), or "" for
an n = 1 request, whose single completion the standard columns already hold. JSON, because Ray Data turns
{token id: logprob} maps into Arrow structs whose fields differ from row to row.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

COMPLETIONS = "completions_json"


@dataclass(frozen=True)
class Completion:
    """One generated sequence: text, token ids, and {token id: logprob} per generated position."""

    text: str
    token_ids: list[int]
    logprobs: list[dict[int, float]]


def encode(outputs: Sequence[Any]) -> str:
    """vLLM ``CompletionOutput``s as the ``COMPLETIONS`` value ("" for a single completion)."""
    if len(outputs) < 2:
        return ""
    return json.dumps([
        {"text": o.text, "token_ids": list(o.token_ids),
         "logprobs": [{str(t): lp.logprob for t, lp in (pos or {}).items()} for pos in o.logprobs or []]}
        for o in sorted(outputs, key=lambda o: o.index)
    ])


def decode(value: str) -> list[Completion]:
    return [Completion(c["text"], [int(t) for t in c["token_ids"]],
                       [{int(t): float(lp) for t, lp in pos.items()} for pos in c["logprobs"]])
            for c in json.loads(value)]
