"""A client of the reward server (``gram-ray serve``) for RL trainers that call Python, not HTTP.

``RewardClient`` is a ranking ``Judge`` (``client(items)`` -> P(first better), via ``POST /preferences``),
so ``apply.group_rewards`` and ``apply.ranking`` run against a served RM as they do against an in-process
one; ``reward``/``areward`` are one response's eq. 3 reward against a reference (``POST /get_reward``).
Both have sync and async forms. A 429 (the server's queue is full) is retried after its Retry-After;
any other error is raised, so a lost reward is never silently replaced.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from typing import Any

import httpx

from gram_ray.apply.ranking import PairItem


class RewardClient:
    """Calls one reward server; ``api_key_env`` names the variable holding its bearer token, if any."""

    def __init__(self, url: str, api_key_env: str | None = "GRAM_RAY_API_KEY", timeout_s: float = 600.0,
                 busy_retries: int = 30):
        self.url = url.rstrip("/")
        token = os.environ.get(api_key_env, "") if api_key_env else ""
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout_s, self.busy_retries = timeout_s, busy_retries
        self._async: httpx.AsyncClient | None = None
        self._async_loop: asyncio.AbstractEventLoop | None = None

    @staticmethod
    def _pairs(items: Sequence[PairItem]) -> dict[str, Any]:
        return {"items": [{"prompt": p, "response_a": a, "response_b": b} for p, a, b in items]}

    @staticmethod
    def _reward_body(prompts: Sequence[str], responses: Sequence[str], references: Sequence[str] | None) -> dict:
        body: dict[str, Any] = {"query": [p + r for p, r in zip(prompts, responses, strict=True)],
                                "prompts": list(prompts)}
        if references is not None:
            body["labels"] = list(references)
        return body

    @staticmethod
    def _wait_s(reply: httpx.Response) -> float:
        value = reply.headers.get("retry-after", "1")
        return float(value) if value.replace(".", "", 1).isdigit() else 1.0

    def _post(self, path: str, body: dict) -> dict:
        with httpx.Client(timeout=self.timeout_s, headers=self.headers) as client:
            for _ in range(self.busy_retries):
                reply = client.post(f"{self.url}{path}", json=body)
                if reply.status_code != 429:
                    reply.raise_for_status()
                    return reply.json()
                time.sleep(self._wait_s(reply))
        raise RuntimeError(f"{self.url}{path} stayed busy (429) for {self.busy_retries} tries")

    async def _apost(self, path: str, body: dict) -> dict:
        loop = asyncio.get_running_loop()
        if self._async is None or self._async_loop is not loop:  # one connection pool per event loop
            self._async = httpx.AsyncClient(timeout=self.timeout_s, headers=self.headers,
                                            limits=httpx.Limits(max_connections=None))
            self._async_loop = loop
        for _ in range(self.busy_retries):
            reply = await self._async.post(f"{self.url}{path}", json=body)
            if reply.status_code != 429:
                reply.raise_for_status()
                return reply.json()
            await asyncio.sleep(self._wait_s(reply))
        raise RuntimeError(f"{self.url}{path} stayed busy (429) for {self.busy_retries} tries")

    def __call__(self, items: Sequence[PairItem]) -> list[float]:
        """P(first better) for each (prompt, first, second): a ranking ``Judge``."""
        return self._post("/preferences", self._pairs(items))["p_a"] if items else []

    async def apreferences(self, items: Sequence[PairItem]) -> list[float]:
        return (await self._apost("/preferences", self._pairs(items)))["p_a"] if items else []

    def rewards(self, prompts: Sequence[str], responses: Sequence[str],
                references: Sequence[str] | None = None) -> list[float]:
        """The server's eq. 3 reward of each response against its reference (omit for ``reference: policy``)."""
        return self._post("/get_reward", self._reward_body(prompts, responses, references))["rewards"]

    async def arewards(self, prompts: Sequence[str], responses: Sequence[str],
                       references: Sequence[str] | None = None) -> list[float]:
        return (await self._apost("/get_reward", self._reward_body(prompts, responses, references)))["rewards"]

    async def aclose(self) -> None:
        if self._async is not None:
            await self._async.aclose()
            self._async = None
