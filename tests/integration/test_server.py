"""The reward server over loopback: `gram-ray serve` in a subprocess on the tiny model, real vLLM engine.

One server for the module; the test starts and stops it. Checks: an OpenRLHF-shaped request gets the
rewards the offline judge computes, malformed / oversized / unauthenticated requests get 4xx and the
server stays up, concurrent requests share engine batches up to a bound on waiting prompts (the rest 429);
under a mixed load of valid, malformed and oversized requests no client error gets a 5xx and the server's
memory stays bounded.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import httpx
import pytest

from gram_ray.apply.judges import OfflineJudge
from gram_ray.apply.serve_process import serving
from gram_ray.config import JudgeConfig
from gram_ray.prompts.verdicts import eq3

pytestmark = pytest.mark.integration

TOKEN = "test-token-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
START_TIMEOUT_S = 900  # engine start on a loaded 2-core machine has taken over 400 s
PROMPT = "What is 23+45?"


@pytest.fixture(scope="module")
def served(tiny_kit, tmp_path_factory):
    """(URL, process) of the module's server."""
    cfg = {
        "engine": {"model": str(tiny_kit.model_dir), "max_model_len": 512, "max_num_seqs": 16},
        "kind": "label",
        "judge": {"template": "compact", "temperature": 1.0, "max_tokens": 96},
        "max_body_bytes": 4096, "max_items": 8, "max_chars": 2000,
        "max_batch_prompts": 8, "max_pending_prompts": 24, "request_timeout_s": 120,
    }
    env = {"GRAM_RAY_API_KEY": TOKEN, "VLLM_CPU_KVCACHE_SPACE": "1"}
    with serving(cfg, tmp_path_factory.mktemp("serve"), env, START_TIMEOUT_S) as (url, proc):
        yield url, proc


@pytest.fixture(scope="module")
def server(served) -> str:
    return served[0]


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


def test_a_concurrent_burst_shares_batches_and_past_the_bound_gets_429(server):
    item = {"prompt": PROMPT, "response_a": "68", "response_b": "67"}

    async def burst(n: int) -> list[int]:
        async with httpx.AsyncClient(timeout=300, headers=AUTH) as client:
            replies = await asyncio.gather(*(client.post(f"{server}/rationale", json={"items": [item, item]})
                                             for _ in range(n)))
            return [r.status_code for r in replies]

    assert asyncio.run(asyncio.wait_for(burst(12), timeout=300)) == [200] * 12  # 24 prompts: all admitted
    statuses = asyncio.run(asyncio.wait_for(burst(20), timeout=300))  # 40 prompts at once, 24 admitted
    assert set(statuses) == {200, 429} and statuses.count(200) >= 12
    assert _post(server, "/rationale", {"items": [item]}).status_code == 200


ITEM = {"prompt": PROMPT, "response_a": "68", "response_b": "67"}
VALID = [("/get_reward", {"query": [f"{PROMPT}68"], "prompts": [PROMPT], "labels": ["67"]})] * 4 + [
    ("/rationale", {"items": [ITEM], "votes": 1})] * 2
# (path, body, status): client errors, each of which must get its 4xx under load (a request is checked and
# tokenized before it is queued, so a too-long one gets 422 however busy the server is).
CLIENT_ERRORS = [
    ("/get_reward", b"{not json", 400),
    ("/get_reward", b"", 400),
    ("/get_reward", b"\xff\xfe{}", 400),  # not UTF-8
    ("/get_reward", b"[" * 2000 + b"]" * 2000, 400),  # nested past Python's recursion limit
    ("/rationale", json.dumps({"items": [ITEM]})[:-2].encode(), 400),  # truncated
    ("/get_reward", b"null", 422),
    ("/get_reward", b"[1, 2]", 422),
    ("/get_reward", json.dumps({"query": "x", "prompts": ["x"]}).encode(), 422),  # wrong type
    ("/get_reward", json.dumps({"query": [1], "prompts": ["x"], "labels": ["y"]}).encode(), 422),
    ("/get_reward", json.dumps({"prompts": ["x"], "labels": ["y"]}).encode(), 422),  # missing field
    ("/get_reward", json.dumps({"query": [], "prompts": []}).encode(), 422),
    ("/get_reward", b'{"query": ["a\\ud800b"], "prompts": ["a"], "labels": ["c"]}', 422),  # lone surrogate
    ("/rationale", json.dumps({"items": [{"prompt": "p", "response_a": "a"}]}).encode(), 422),
    ("/rationale", json.dumps({"items": [ITEM], "votes": 0}).encode(), 422),
    ("/rationale", json.dumps({"items": [ITEM], "votes": "many"}).encode(), 422),
    ("/rationale", json.dumps({"items": [{**ITEM, "response_a": "1" * 1900}]}).encode(), 422),  # too long
    ("/get_reward", json.dumps({"query": ["a" * 5000], "prompts": ["a"], "labels": ["c"]}).encode(), 413),
    ("/get_reward", json.dumps({"query": ["a" * 2500], "prompts": ["a"], "labels": ["c"]}).encode(), 413),
    ("/rationale", json.dumps({"items": [ITEM] * 9}).encode(), 413),
]
LOAD_ROUNDS = 6
RSS_GROWTH_LIMIT = 256 * 1024**2


def _tree_rss(pid: int) -> int:
    """Resident memory of the server and its children (vLLM's engine core may run in one)."""
    import psutil

    root = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])


async def _mixed_round(url: str) -> list[tuple[tuple[int, ...] | None, int]]:
    """One burst of every client error, two streamed oversized bodies and the valid requests, all at
    once: (expected statuses, or None for a valid request; status got)."""

    async def chunks():  # no Content-Length: the limit must hold on the streamed body too
        for _ in range(8):
            yield b"x" * 1024

    async with httpx.AsyncClient(timeout=300, headers={"Content-Type": "application/json", **AUTH}) as client:
        calls = [(status if isinstance(status, tuple) else (status,), client.post(f"{url}{path}", content=body))
                 for path, body, status in CLIENT_ERRORS]
        calls += [((413,), client.post(f"{url}/get_reward", content=chunks())) for _ in range(2)]
        calls += [((405,), client.get(f"{url}/get_reward"))]
        calls += [(None, client.post(f"{url}{path}", json=payload)) for path, payload in VALID]
        replies = await asyncio.gather(*(call for _, call in calls))
    return [(expected, reply.status_code) for (expected, _), reply in zip(calls, replies, strict=True)]


def test_mixed_load_gets_no_5xx_and_memory_stays_bounded(served):
    url, proc = served
    asyncio.run(_mixed_round(url))  # warm-up: first requests allocate caches that later ones reuse
    before = _tree_rss(proc.pid)
    started = time.monotonic()
    results = [r for _ in range(LOAD_ROUNDS) for r in asyncio.run(asyncio.wait_for(_mixed_round(url), 300))]
    seconds = time.monotonic() - started
    growth = _tree_rss(proc.pid) - before
    print(f"\n{len(results)} requests in {seconds:.1f} s; server RSS {before / 2**20:.0f} MiB, "
          f"growth {growth / 2**20:+.1f} MiB")

    assert all(status < 500 for _, status in results), Counter(s for _, s in results)
    wrong = [(expected, status) for expected, status in results if expected is not None and status not in expected]
    assert not wrong  # each client error got its own 4xx, under load as alone
    valid = Counter(status for expected, status in results if expected is None)
    assert set(valid) <= {200, 429} and valid[200] >= 3 * LOAD_ROUNDS
    assert growth < RSS_GROWTH_LIMIT
    assert proc.poll() is None and httpx.get(f"{url}/health", timeout=10).status_code == 200
    reply = _post(url, "/get_reward", VALID[0][1])  # and it still judges afterwards
    assert reply.status_code == 200 and 0.0 <= reply.json()["rewards"][0] <= 1.0
