"""Inference throughput: the label stage on Ray Data vs plain vLLM vs the model card's sequential loop.

The same judge prompts and the same random-weight Llama (tens of millions of parameters, so compute
rather than per-call overhead dominates), greedy, a fixed generation length (``ignore_eos``):

  (a) our label stage: ``gram_ray.stages.label_pairs`` (Ray Data + ray.data.llm engine pool), Parquet to
      Parquet, including planning, postprocessing, sorting and writing;
  (b) plain ``vllm.LLM.generate`` in one process, on the token ids and sampling parameters the stage
      itself plans (so both ask for the same label-token log-probabilities);
  (c) the model card's way: one transformers ``generate`` per pair, sequentially (measured on the first
      ``--sequential`` prompts; its rate does not depend on how many follow), in float32 and in the engines'
      dtype, and the faster of the two is the baseline (one sequence at a time is bound by reading weights,
      where CPU bfloat16 kernels are no faster than float32).

Both vLLM ways run the model in ``--dtype``: bfloat16 by default on CPUs with bfloat16 matrix units
(AMX / AVX512-BF16), where vLLM's CPU backend decodes ~2.5x faster than in float32.

Engine start is reported apart from throughput: for (b) the ``vllm.LLM`` construction; for (a) the time
of a run over 16 prompts (engine start plus per-run fixed costs), and (a)'s throughput is the marginal
rate (N - 16) / (T_N - T_16). Also voting@k with plain vLLM: one request with ``n=k`` versus k requests
with their own seeds (what the stage sends, since ray.data.llm keeps only a request's first completion).

Run: .venv/bin/python bench/inference.py [--prompts 2000] [--tokens 64]
The last line is ``ratio_stage_vs_vllm=<a/b> ratio_stage_vs_sequential=<a/c>``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import time
from pathlib import Path

SMALL = 16


def default_engine_dtype() -> str:
    """bfloat16 where the CPU has bfloat16 matrix instructions, else float32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "float32"
    return "bfloat16" if ("amx_bf16" in flags or "avx512_bf16" in flags) else "float32"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompts", type=int, default=2000)
    p.add_argument("--tokens", type=int, default=64, help="generated tokens per prompt (ignore_eos)")
    p.add_argument("--sequential", type=int, default=40, help="prompts timed for (c)")
    p.add_argument("--votes", type=int, default=8, help="k for the voting@k comparison")
    p.add_argument("--vote-prompts", type=int, default=100)
    p.add_argument("--reserved-cores", type=int, default=1,
                   help="VLLM_CPU_NUM_OF_RESERVED_CPU for both vLLM ways (cores kept for vLLM's front end)")
    p.add_argument("--hf-threads", type=int, default=1,
                   help="torch threads for (c); 1 = the one compute core each vLLM engine gets with one reserved")
    p.add_argument("--dtype", default=default_engine_dtype(), help="dtype of both vLLM ways")
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--hidden", type=int, default=768)
    p.add_argument("--work", default="runs/bench/inference", help="model, data and stage outputs")
    return p.parse_args()


def build_inputs(args: argparse.Namespace, work: Path) -> tuple[Path, Path, int]:
    """The bench model (built once) and ``--prompts`` addition pairs from the tiny kit's generator."""
    from gram_ray.tinykit import LlamaShape, TaskSizes, build_bench_model, count_parameters
    from gram_ray.tinykit.addition import write_task

    model = work / f"model-{args.layers}x{args.hidden}"
    if not (model / "config.json").exists():
        shape = LlamaShape(layers=args.layers, hidden=args.hidden, heads=args.hidden // 64,
                           intermediate=4 * args.hidden, max_positions=1024)
        build_bench_model(model, shape, seed=0)
    sizes = TaskSizes(seed=1, labeled=1, unlabeled_rounds=1, unlabeled_per_round=args.prompts, heldout=1, pretrain=1)
    pairs = write_task(work / "data", seed=0, sizes=sizes).unlabeled[0]
    return model, pairs, count_parameters(model)


def load() -> str:
    return f"load avg {os.getloadavg()[0]:.1f}"


def rate(n: float, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("nan")


def run_stage(pairs_path: Path, out: Path, engine, judge, n: int) -> float:
    """Seconds for the label stage over the first ``n`` pairs (Parquet in, Parquet out)."""
    import pyarrow.parquet as pq

    from gram_ray.stages import label_pairs

    src = out.parent / f"pairs-{n}.parquet"
    pq.write_table(pq.read_table(pairs_path).slice(0, n), src)
    start = time.perf_counter()
    summary = label_pairs(src, out, engine, judge, extra_sampling={"ignore_eos": True})
    seconds = time.perf_counter() - start
    if not summary.complete or summary.kept != n:
        raise RuntimeError(f"stage run over {n} pairs incomplete: {summary}")
    return seconds


def sequential_transformers(model_dir: Path, prompts: list[list[int]], tokens: int, threads: int, dtype: str
                            ) -> tuple[float, float]:
    """(load seconds, generate seconds) for one ``generate`` call per prompt, as in the model card."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    start = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype)).eval()
    load = time.perf_counter() - start
    start = time.perf_counter()
    with torch.no_grad():
        for ids in prompts:
            out = model.generate(torch.tensor([ids]), max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False)
            assert out.shape[1] == len(ids) + tokens
    return load, time.perf_counter() - start


def main() -> None:
    args = parse_args()
    os.environ["VLLM_CPU_NUM_OF_RESERVED_CPU"] = str(args.reserved_cores)
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)

    import pyarrow.parquet as pq

    from gram_ray.config import EngineConfig, JudgeConfig
    from gram_ray.judging.engine import engine_kwargs
    from gram_ray.stages.label import judge_requests

    model, pairs_path, params = build_inputs(args, work)
    engine = EngineConfig(model=str(model), max_model_len=1024, batch_size=128, max_concurrent_batches=4,
                          max_num_seqs=512, cpu_kvcache_gib=2, cpu_reserved_cores=args.reserved_cores,
                          dtype=args.dtype)
    judge = JudgeConfig(template="compact", votes=1, temperature=0.0, max_tokens=args.tokens)
    rows = pq.read_table(pairs_path).to_pylist()
    requests = [judge_requests(r, engine, judge, {"ignore_eos": True})[0] for r in rows]
    n, gen_tokens = len(requests), len(requests) * args.tokens
    prompt_tokens = sum(len(r.prompt_ids) for r in requests)
    print(f"model {model} ({params / 1e6:.1f}M params); {n} prompts, {prompt_tokens / n:.1f} prompt tokens "
          f"and {args.tokens} generated tokens each; vLLM dtype {args.dtype}; "
          f"VLLM_CPU_NUM_OF_RESERVED_CPU={args.reserved_cores}; "
          f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}", flush=True)

    # (c) the model card's way, sequential transformers
    m = min(args.sequential, n)
    c_rates = {}
    for dtype in dict.fromkeys(["float32", args.dtype]):
        c_load, c_time = sequential_transformers(model, [r.prompt_ids for r in requests[:m]], args.tokens,
                                                 args.hf_threads, dtype)
        c_rates[dtype] = rate(m, c_time)
        print(f"(c) transformers sequential, {dtype}: load {c_load:.1f}s; {m} prompts in {c_time:.1f}s = "
              f"{c_rates[dtype]:.2f} ex/s, {c_rates[dtype] * args.tokens:.0f} gen tok/s "
              f"({args.hf_threads} torch threads; {load()})", flush=True)
    c_dtype = max(c_rates, key=c_rates.get)
    c_rate = c_rates[c_dtype]
    print(f"(c) baseline: the faster dtype, {c_dtype}", flush=True)

    # (b) plain vLLM in one process, and voting@k
    from vllm import LLM, SamplingParams, TokensPrompt

    start = time.perf_counter()
    llm = LLM(str(model), **engine_kwargs(engine))  # the stage's own engine settings
    b_start = time.perf_counter() - start
    prompts = [TokensPrompt(prompt_token_ids=r.prompt_ids) for r in requests]
    params_b = [SamplingParams(**r.sampling) for r in requests]
    start = time.perf_counter()
    outs = llm.generate(prompts, params_b, use_tqdm=False)
    b_time = time.perf_counter() - start
    assert all(len(o.outputs[0].token_ids) == args.tokens for o in outs)
    b_rate = rate(n, b_time)
    print(f"(b) vllm.LLM.generate: engine start {b_start:.1f}s; {n} prompts in {b_time:.1f}s = {b_rate:.2f} ex/s, "
          f"{rate(gen_tokens, b_time):.0f} gen tok/s ({load()})", flush=True)

    k, v = args.votes, min(args.vote_prompts, n)
    vote_prompts = prompts[:v]
    sampling = {"temperature": 1.0, "max_tokens": args.tokens, "ignore_eos": True}
    start = time.perf_counter()
    llm.generate(vote_prompts, SamplingParams(n=k, seed=0, **sampling), use_tqdm=False)
    one_request = time.perf_counter() - start
    start = time.perf_counter()
    llm.generate([p for p in vote_prompts for _ in range(k)],
                 [SamplingParams(n=1, seed=s, **sampling) for _ in vote_prompts for s in range(k)], use_tqdm=False)
    k_requests = time.perf_counter() - start
    print(f"voting@{k} on {v} prompts (plain vLLM): one n={k} request {one_request:.1f}s "
          f"({rate(v * k * args.tokens, one_request):.0f} gen tok/s); {k} separate requests {k_requests:.1f}s "
          f"({rate(v * k * args.tokens, k_requests):.0f} gen tok/s); ratio {k_requests / one_request:.2f} ({load()})",
          flush=True)
    llm.llm_engine.engine_core.shutdown()
    del llm

    # (a) our stage on Ray Data
    import ray

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"VLLM_CPU_KVCACHE_SPACE": os.environ["VLLM_CPU_KVCACHE_SPACE"],
                                       "TOKENIZERS_PARALLELISM": "false"}})
    stage_dir = work / "stage"
    shutil.rmtree(stage_dir, ignore_errors=True)
    stage_dir.mkdir()
    a_small = run_stage(pairs_path, stage_dir / "small", engine, judge, SMALL)
    a_full = run_stage(pairs_path, stage_dir / "full", engine, judge, n)
    ray.shutdown()
    a_rate = rate(n - SMALL, a_full - a_small)
    print(f"(a) label stage on Ray Data: {SMALL} prompts in {a_small:.1f}s (engine start + fixed costs); {n} prompts "
          f"in {a_full:.1f}s; marginal {a_rate:.2f} ex/s, {a_rate * args.tokens:.0f} gen tok/s; "
          f"end to end {rate(n, a_full):.2f} ex/s ({load()})", flush=True)

    print(f"ratio_stage_vs_vllm={a_rate / b_rate:.2f} ratio_stage_vs_sequential={a_rate / c_rate:.1f}")


if __name__ == "__main__":
    main()
