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


class _Core:
    """The JudgeCore surface AsyncJudge uses before the engine: sampling checks and tokenizing."""

    def sampling_params(self, votes=None):
        if votes == 99:
            raise ValueError("bad votes")

    def prompt_ids(self, item):
        return [len(item[1])]


def test_past_the_pending_bound_a_request_gets_429_with_retry_after():
    import asyncio

    from gram_ray.apply.batching import MicroBatcher
    from gram_ray.apply.server import AsyncJudge

    async def scenario():
        release = asyncio.Event()

        async def engine(prompts, key):
            await release.wait()
            return [None] * len(prompts)

        judge = AsyncJudge(None, _Core(), MicroBatcher(engine, max_batch=8, wait_s=0.0, max_pending=3))
        first = asyncio.create_task(judge.judge([("q", "a", "b"), ("q", "b", "a")]))
        await asyncio.sleep(0)
        with pytest.raises(HTTPException) as busy:
            await judge.judge([("q", "a", "b"), ("q", "b", "a")])
        with pytest.raises(HTTPException) as bad:
            await judge.judge([("q", "a", "b")], votes=99)
        release.set()
        await first
        return busy.value, bad.value

    busy, bad = asyncio.run(scenario())
    assert busy.status_code == 429 and busy.headers == {"Retry-After": "1"} and "admits 3" in busy.detail
    assert bad.status_code == 422
