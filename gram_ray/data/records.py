"""Building blocks of the converters: one pair row, the seeded chosen side, and per-row conversion errors."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gram_ray.data.schemas import pair_id


class RowError(ValueError):
    """A record that cannot become a pair; `reason` is a short code such as ``"missing_field:prompt"``."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class SourceContext:
    """What a converter may know besides the record: the file it came from and the side seed."""

    path: Path
    seed: int = 0

    @property
    def name(self) -> str:
        """File name without its data suffixes: ``chat_filtered.json`` -> ``chat_filtered``."""
        name = self.path.name
        for suffix in (".gz", ".jsonl", ".json", ".parquet"):
            name = name.removesuffix(suffix)
        return name


def text_field(record: Mapping[str, Any], key: str) -> str:
    """The string at `key`, or a RowError saying why there is none (emptiness is validation's job)."""
    return check_text(record.get(key), key)


def check_text(value: Any, key: str) -> str:
    if value is None:
        raise RowError(f"missing_field:{key}")
    if not isinstance(value, str):
        raise RowError(f"not_string:{key}")
    if not is_utf8_encodable(value):
        raise RowError(f"invalid_utf8:{key}")
    return value


class UnreadableJSON(ValueError):
    """Untrusted text that is not JSON Python can load; ``reason`` is the quarantine reason."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def load_json(raw: str | bytes) -> Any:
    """``json.loads`` for untrusted text, every failure one ``UnreadableJSON``: malformed text or bytes and
    integers past Python's 4300-digit limit are ``invalid_json``; nesting past the recursion limit (~1000
    levels) is ``json_too_deep``."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise UnreadableJSON("json_too_deep", "nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, the digit limit
        raise UnreadableJSON("invalid_json", str(exc)) from None


def is_utf8_encodable(text: str) -> bool:
    """False for strings holding lone surrogates (JSON escapes like "\\ud800"), which Arrow cannot store."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def chosen_side(seed: int, pid: str) -> str:
    """Side ("A" or "B") that gets the chosen response: a hash of (seed, pair id), so the placement is
    balanced, reproducible, and the same whatever the row order or sharding of the input."""
    digest = hashlib.sha256(f"{seed}:{pid}".encode()).digest()
    return "A" if digest[0] & 1 == 0 else "B"


def pair_row(prompt: str, response_a: str, response_b: str, label: str | None, source: str | None,
             meta: Mapping[str, Any], pid: str | None = None) -> dict[str, Any]:
    """A PAIR_SCHEMA row; the id is the content hash, so the same comparison always gets the same id
    (`pid`, when the caller has already computed it)."""
    return {
        "id": pid or pair_id(prompt, response_a, response_b),
        "prompt": prompt,
        "response_a": response_a,
        "response_b": response_b,
        "label": label,
        "source": source,
        "meta": to_json(meta),
    }


def placed_pair(prompt: str, chosen: str, rejected: str, seed: int, source: str,
                meta: Mapping[str, Any]) -> dict[str, Any]:
    """A labelled pair with the chosen response on the seeded side (see `chosen_side`)."""
    pid = pair_id(prompt, chosen, rejected)
    side = chosen_side(seed, pid)
    a, b = (chosen, rejected) if side == "A" else (rejected, chosen)
    return pair_row(prompt, a, b, side, source, meta, pid)


def to_json(value: Any) -> str:
    """JSON text that Arrow can store: non-JSON values (datetimes, bytes) become strings, lone surrogates
    are escaped rather than failing the row."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if is_utf8_encodable(text) else json.dumps(value, default=str)
