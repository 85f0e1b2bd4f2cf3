"""Checks on the pairs a user brings (``gram-ray convert`` and ``validate``)."""

from __future__ import annotations

from pydantic import Field

from gram_ray.config.loading import Section


class ValidationConfig(Section):
    """Input checks applied when pairs are read; the rules are listed in gram_ray/data/validate.py."""

    max_tokens: int | None = Field(None, ge=1, description="token budget for prompt + both responses")
    tokenizer: str | None = Field(None, description="tokenizer for the budget; characters/4 when unset")
    require_label: bool = False
