"""Reward server under an RL client's load vs the same judgements as one offline batch.

An RL step asks for one reward per rollout, all at once (OpenRLHF: one HTTP call per sample). Here
``--clients`` concurrent single-sample ``POST /get_reward`` calls (each = 2 judge prompts with
``both_orders``) go to ``gram-ray serve`` over loopback, and the same judge prompts run as one
``vllm.LLM.generate`` call in this process (``OfflineJudge``), on the same random-weight Llama, label judge
(one generated token per prompt, so the prompts' prefill is the work). Engine start is not timed; each
way gets a small warm-up round first, then the rounds alternate between the two ways, both engines up
(best round of each). Reported: rewards/s, per-call latency p50/p99, failed calls (any non-200 or
transport error), and how far the served rewards are from the offline ones.

Run: .venv/bin/python bench/server.py [--clients 256] [--layers 8 --hidden 768]
The last line is ``ratio_server_vs_offline=<server rewards/s / offline rewards/s> failed=<n>``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import time
from pathlib import Path

WARM_UP = 16  # calls before the timed rounds: the engines' first batches allocate what later ones reuse


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=256, help="concurrent single-sample calls")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds of each way (the best is reported)")
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--hidden", type=int, default=768)
    p.add_argument("--batch-wait-ms", type=float, default=5.0)
    p.add_argument("--work", default="runs/bench/server", help="model, data and server logs")
    return p.parse_args()


def load() -> str:
    return f"load avg {os.getloadavg()[0]:.1f}"


def build_items(args: argparse.Namespace, work: Path) -> tuple[Path, list[tuple[str, str, str]]]:
    """The bench model (built once, as bench/inference.py builds it) and ``--clients`` (question, response,
    reference) items from the tiny kit's addition pairs."""
    import pyarrow.parquet as pq
    from inference import build_inputs  # bench/inference.py, beside this script

    args.prompts = args.clients
    model, pairs, _ = build_inputs(args, work)
    rows = pq.read_table(pairs).to_pylist()
    return model, [(r["prompt"], r["response_a"], r["response_b"]) for r in rows[:args.clients]]


def engine_section(model: Path) -> dict:
    return {"model": str(model), "max_model_len": 1024, "max_num_seqs": 512, "cpu_kvcache_gib": 2}


async def client_round(url: str, items: list[tuple[str, str, str]]) -> tuple[float, list[float], list, int]:
    """(seconds, per-call latencies, rewards, failed calls) of one burst of single-sample calls."""
    import httpx

    async def call(client: httpx.AsyncClient, item: tuple[str, str, str]) -> tuple[float, float | None]:
        question, response, reference = item
        start = time.perf_counter()
        try:
            reply = await client.post(f"{url}/get_reward", json={"query": [question + response],
                                                                 "prompts": [question], "labels": [reference]})
            reward = reply.json()["rewards"][0] if reply.status_code == 200 else None
        except httpx.HTTPError:
            reward = None
        return time.perf_counter() - start, reward

    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        start = time.perf_counter()
        results = await asyncio.gather(*(call(client, item) for item in items))
        seconds = time.perf_counter() - start
    rewards = [r for _, r in results]
    return seconds, [t for t, _ in results], rewards, sum(r is None for r in rewards)


def offline_judge(model: Path):
    from gram_ray.apply.judges import OfflineJudge
    from gram_ray.config import EngineConfig, JudgeConfig

    return OfflineJudge.from_config(EngineConfig(**engine_section(model)), "label", JudgeConfig(template="compact"))


def offline_round(judge, items: list[tuple[str, str, str]]) -> tuple[float, list[float]]:
    """(seconds, rewards) of the items' judgements as one ``generate`` call."""
    from gram_ray.apply.reward import rewards

    questions, responses, references = (list(col) for col in zip(*items, strict=True))
    start = time.perf_counter()
    out = rewards(judge, questions, responses, references)
    return time.perf_counter() - start, out


def measure(args: argparse.Namespace, model: Path, items: list, work: Path) -> tuple[tuple, tuple]:
    """The best server round and the best offline round. Rounds alternate (server, offline, server, ...)
    with both engines up, so a change in the machine's load falls on both ways alike."""
    from gram_ray.apply.serve_process import serving

    os.environ["VLLM_CPU_KVCACHE_SPACE"] = "2"
    cfg = {"engine": engine_section(model), "kind": "label", "judge": {"template": "compact"},
           "api_key_env": None, "batch_wait_ms": args.batch_wait_ms}
    with serving(cfg, work / "serve", {"VLLM_CPU_KVCACHE_SPACE": "2"}) as (url, _):
        judge = offline_judge(model)
        asyncio.run(client_round(url, items[:WARM_UP]))
        offline_round(judge, items[:WARM_UP])
        best_server = best_offline = None
        for _ in range(args.rounds):
            result = asyncio.run(client_round(url, items))
            print(f"server round: {len(items)} calls in {result[0]:.2f}s, {result[3]} failed ({load()})", flush=True)
            if best_server is None or result[0] < best_server[0]:
                best_server = result
            seconds, rewards = offline_round(judge, items)
            print(f"offline round: {len(items)} rewards in {seconds:.2f}s, one generate call ({load()})", flush=True)
            if best_offline is None or seconds < best_offline[0]:
                best_offline = (seconds, rewards)
    return best_server, best_offline


def main() -> None:
    args = parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    model, items = build_items(args, work)
    print(f"model {model}; {len(items)} single-sample calls, label judge, both orders; {os.cpu_count()} CPUs, "
          f"{platform.processor() or platform.machine()}; {load()}", flush=True)

    (s_time, latencies, s_rewards, failed), (o_time, o_rewards) = measure(args, model, items, work)
    s_rate, o_rate = len(items) / s_time, len(items) / o_time
    q = statistics.quantiles(latencies, n=100)
    gap = max((abs(a - b) for a, b in zip(s_rewards, o_rewards, strict=True) if a is not None), default=float("nan"))
    print(f"server:  {s_rate:.1f} rewards/s ({s_time:.2f}s for {len(items)} calls); latency p50 {q[49]:.2f}s "
          f"p99 {q[98]:.2f}s; failed {failed}")
    print(f"offline: {o_rate:.1f} rewards/s ({o_time:.2f}s, one batch of {2 * len(items)} judge prompts)")
    print(f"largest |served - offline| reward: {gap:.2e}")
    print(f"ratio_server_vs_offline={s_rate / o_rate:.2f} failed={failed}")


if __name__ == "__main__":
    main()
