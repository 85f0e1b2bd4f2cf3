"""The reward server over loopback: `gram-ray serve` in a subprocess on the tiny model, real vLLM engine.

One server for the module; the test starts and stops it. Checks: an OpenRLHF-shaped request gets the
rewards the offline judge computes, malformed / oversized / unauthenticated requests get 4xx and the
server stays up, and concurrent requests are bounded (running + queued, the rest 429) and finish in time.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time

import httpx
import pytest
import yaml

from gram_ray.apply.judges import OfflineJudge
from gram_ray.config import JudgeConfig
from gram_ray.prompts.verdicts import eq3

pytestmark = pytest.mark.integration

TOKEN = "test-token-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
START_TIMEOUT_S = 400
PROMPT = "What is 23+45?"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_kit, tmp_path_factory):
    port = _free_port()
    cfg = {
        "engine": {"model": str(tiny_kit.model_dir), "max_model_len": 512, "max_num_seqs": 16},
        "kind": "label",
        "judge": {"template": "compact", "temperature": 1.0, "max_tokens": 96},
        "host": "127.0.0.1", "port": port,
        "max_body_bytes": 4096, "max_items": 8, "max_chars": 2000,
        "max_concurrent_requests": 2, "max_queued_requests": 2, "request_timeout_s": 120,
    }
    path = tmp_path_factory.mktemp("serve") / "serve.yaml"
    path.write_text(yaml.safe_dump(cfg))
    log = path.with_suffix(".log").open("w")
    env = {**os.environ, "GRAM_RAY_API_KEY": TOKEN, "VLLM_CPU_KVCACHE_SPACE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "gram_ray.cli", "serve", "--config", str(path)],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"server exited with {proc.returncode}: {path.with_suffix('.log').read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server not healthy after {START_TIMEOUT_S} s")
            time.sleep(1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _post(url: str, path: str, payload, headers=AUTH, **kw) -> httpx.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return httpx.post(f"{url}{path}", content=body, headers={"Content-Type": "application/json", **headers},
                      timeout=120, **kw)


def test_health_needs_no_token(server):
    reply = httpx.get(f"{server}/health", timeout=10)
    assert reply.status_code == 200 and reply.json()["kind"] == "label"


def test_openrlhf_request_gets_the_offline_rewards(server, vllm_tiny_llm):
    prompts = [PROMPT, "What is 10+11?", PROMPT]
    responses, labels = ["68", "21", "68"], ["67", "12", "68"]
    payload = {"query": [f"<pad>{p}{r}</s>" for p, r in zip(prompts, responses, strict=True)],
               "prompts": prompts, "labels": labels}
    reply = _post(server, "/get_reward", payload)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    judge = OfflineJudge(vllm_tiny_llm, "label", JudgeConfig(template="compact"))
    items = list(zip(prompts, responses, labels, strict=True))
    p = judge(items + [(q, ref, r) for q, r, ref in items])
    expected = [eq3(p[i], p[3 + i]) for i in range(3)]
    assert body["rewards"] == pytest.approx(expected, abs=1e-4)
    assert body["scores"] == body["rewards"] and body["rewards"][2] == pytest.approx(0.5)
    assert body["extra_logs"]["p_response_first"] == pytest.approx(p[:3], abs=1e-4)


@pytest.mark.parametrize(
    ("payload", "headers", "status"),
    [
        ({"query": ["x"], "prompts": ["x"], "labels": ["y"]}, {}, 401),
        ({"query": ["x"], "prompts": ["x"], "labels": ["y"]}, {"Authorization": "Bearer wrong"}, 401),
        (b"{not json", AUTH, 400),
        ({"query": "x", "prompts": ["x"]}, AUTH, 422),  # query must be a list
        ({"query": ["x"], "prompts": ["x"], "labels": ["y"], "extra": 1}, AUTH, 422),
        ({"query": ["ab", "ab"], "prompts": ["a"], "labels": ["c"]}, AUTH, 422),  # lengths differ
        ({"query": ["ab"], "prompts": ["a"]}, AUTH, 422),  # no reference
        ({"query": ["zz"], "prompts": ["a"], "labels": ["c"]}, AUTH, 422),  # prompt not in query
        ({"query": ["q" * 1800 + "r"], "prompts": ["q" * 1800], "labels": ["c"]}, AUTH, 422),  # > max_model_len
        ({"query": ["ab"] * 9, "prompts": ["a"] * 9, "labels": ["c"] * 9}, AUTH, 413),  # > max_items
        ({"query": ["a" * 2500], "prompts": ["a"], "labels": ["c"]}, AUTH, 413),  # > max_chars
        ({"query": ["a" * 1500] * 3, "prompts": ["a"] * 3, "labels": ["c"] * 3}, AUTH, 413),  # body > 4096 B
    ],
)
def test_bad_requests_get_4xx_and_the_server_stays_up(server, payload, headers, status):
    reply = _post(server, "/get_reward", payload, headers=headers)
    assert reply.status_code == status, reply.text
    assert reply.json()["detail"]
    assert httpx.get(f"{server}/health", timeout=10).status_code == 200


def test_rationale_endpoint_returns_k_samples(server):
    reply = _post(server, "/rationale", {"items": [{"prompt": PROMPT, "response_a": "68", "response_b": "67"}],
                                         "votes": 3})
    assert reply.status_code == 200, reply.text
    (result,) = reply.json()["results"]
    assert len(result["rationales"]) == 3 and len(result["verdicts"]) == 3
    assert sum(result["votes"].values()) == 3 and 0.0 <= result["p_a"] <= 1.0
    assert _post(server, "/rationale", {"items": []}).status_code == 422


def test_concurrent_requests_are_bounded(server):
    item = {"prompt": PROMPT, "response_a": "68", "response_b": "67"}

    async def burst() -> list[int]:
        async with httpx.AsyncClient(timeout=300, headers=AUTH) as client:
            replies = await asyncio.gather(*(client.post(f"{server}/rationale", json={"items": [item, item]})
                                             for _ in range(8)))
            return [r.status_code for r in replies]

    started = time.monotonic()
    statuses = asyncio.run(asyncio.wait_for(burst(), timeout=300))
    assert time.monotonic() - started < 300
    assert set(statuses) <= {200, 429}
    assert statuses.count(200) >= 4  # 2 running + 2 queued always get through
    assert statuses.count(429) >= 1  # and the rest of a simultaneous burst is refused, not piled up
    assert _post(server, "/rationale", {"items": [item]}).status_code == 200
