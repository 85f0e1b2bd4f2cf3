"""Request parsing of the reward server without an engine: every malformed body is a 4xx, never a 500."""

from __future__ import annotations

import pytest
from fastapi import HTTPException

from gram_ray.apply.server import RewardRequest, _check_texts, _parse
from gram_ray.config import ServeConfig


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 400),
        (b"\xff{}", 400),  # not UTF-8
        (b"[" * 5000 + b"]" * 5000, 400),  # nested past Python's recursion limit
        (b'{"query": [' + b"7" * 5000 + b"]}", 400),  # an integer over Python's 4300-digit limit
        (b'{"query": "x", "prompts": ["x"]}', 422),
        (b"[]", 422),
    ],
)
def test_malformed_bodies_are_client_errors(body, status):
    with pytest.raises(HTTPException) as caught:
        _parse(RewardRequest, body)
    assert caught.value.status_code == status


def test_lone_surrogates_are_refused_before_the_tokenizer():
    req = _parse(RewardRequest, b'{"query": ["a\\ud800b"], "prompts": ["a"], "labels": ["c"]}')
    with pytest.raises(HTTPException) as caught:
        _check_texts(ServeConfig(engine={"model": "m"}), len(req.query), [*req.query, *req.prompts])
    assert caught.value.status_code == 422
    _check_texts(ServeConfig(engine={"model": "m"}), 1, ["fine \u00e9 \U0001F600"])  # valid Unicode passes
