"""Inference stages at scale: cost per row as rows grow, voting@k on Ray Data against the offline n = k
request, prefix caching, adaptive voting.

Each part runs in a process of its own (fresh Ray, fresh engines, its own peak RSS) and writes
``<work>/<part>.json``; ``summary`` prints the last line from those files, so the parts can run one at a
time (each well under the machine's time slot for a heavy job):

  rows --rows N   the label stage over N pairs through Ray Data (every step a Ray Dataset, as inputs over
                  ``stages.rows.LOCAL_ROWS`` go), random-weight tiny judge, greedy, ``--tokens`` generated
                  tokens each (``ignore_eos``). A 16-pair run first gives the stage's fixed cost (engine
                  start, actor pools, the sort's tasks); the per-row cost is the marginal one,
                  (T_N - T_16) / (N - 16). ``--repeats R`` alternates the two runs R times and takes the
                  median marginal cost: at 1,000 rows the marginal work is the size of the fixed cost's
                  run-to-run spread. Peak RSS of the driver and of its descendant processes (the local
                  Ray cluster: raylet, workers, engine actors and their vLLM engine cores), sampled every
                  0.2 s during the runs. The 16-pair run's fixed cost is split into the engine pass
                  (of which vLLM's own engine start, timed alone in this process first) and the sort,
                  aggregation and writing of the outputs (gram-ray's own, on Ray Data); the N-pair run's
                  total into the same two.
  votes           voting@k, same judge and pairs both ways: the label stage on Ray Data (one n = k request
                  per pair; marginal rate between 16 pairs and ``--pairs``) against ``vllm.LLM.generate`` in
                  one process on the very requests the stage plans (engine start not timed).
  prefix          SmolLM2-135M-Instruct (``gram_ray.tinykit.smollm2``), the ``gram_r2`` template, real HHH
                  pairs in both orders, greedy, ``--tokens`` generated tokens: prompt tokens computed
                  (prompt tokens less vLLM's ``num_cached_tokens``) and prompts/s with and without
                  ``enable_prefix_caching``, each engine in a subprocess.
  adaptive        a trained judge (``--model``, e.g. the demo's ``runs/demo/models/rm_r01``) on
                  ``--pairs-file`` with the demo's judge settings, once with full k-voting and once with
                  ``judge.adaptive``: label agreement, generated tokens of each (its tokenizer over the
                  judgement texts) and the share saved. ``--model smollm2`` judges real HHH pairs with
                  SmolLM2-135M-Instruct and the ``gram_r2`` template instead (``--pairs-file`` unused).

Run: .venv/bin/python bench/scaling.py all   (or one part, then ``summary``). The last line of ``summary``
is ``cost_per_row_16k_vs_1k=<x> rss_16k_vs_1k=<y> prefix_cache_speedup=<z> ray_votes_vs_offline=<w>``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from statistics import mean, median

SMALL = 16
ROWS = (1000, 4000, 16000)
REPEATS = {1000: 3}  # rows runs per size in ``all``: 1,000 rows' marginal work is the fixed cost's spread
PROMPT_LIMIT = 2048  # judge prompt tokens of the real pairs SmolLM2 judges
DISTINCT_PAIRS = 10_000  # addition pairs drawn at most (see task_pairs)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("part", choices=["rows", "votes", "prefix", "prefix-one", "adaptive", "summary", "all"])
    p.add_argument("--work", default="runs/bench/scaling", help="models, data, stage outputs and part results")
    p.add_argument("--rows", type=int, default=1000, help="rows: pairs labelled")
    p.add_argument("--repeats", type=int, default=1, help="rows: 16-pair and N-pair runs, alternated; the "
                   "per-row cost is the median of the runs' marginal costs")
    p.add_argument("--tokens", type=int, default=8, help="generated tokens per sample (ignore_eos)")
    p.add_argument("--pairs", type=int, default=200, help="votes / prefix / adaptive: pairs judged")
    p.add_argument("--votes", type=int, default=8, help="votes: k")
    p.add_argument("--caching", choices=["on", "off"], help="prefix-one: enable_prefix_caching")
    p.add_argument("--model", help="adaptive: the trained judge's folder, or smollm2")
    p.add_argument("--pairs-file", help="adaptive: pair Parquet file")
    p.add_argument("--name", default="adaptive", help="adaptive: the result's name")
    return p.parse_args(argv)


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "unknown CPU")
    return f"{model}, {os.cpu_count()} CPUs, load avg {os.getloadavg()[0]:.1f}"


def save(work: Path, name: str, result: dict) -> None:
    result = {**result, "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    (work / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"[{name}] {json.dumps(result)}", flush=True)


class PeakRss:
    """Peak RSS of this process and the sum over its descendants (the local Ray cluster), in MiB."""

    def __init__(self, every_s: float = 0.2):
        import psutil

        self.me, self.every_s = psutil.Process(), every_s
        self.driver = self.workers = self.largest_worker = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        import psutil

        while not self._stop.is_set():
            self.driver = max(self.driver, self.me.memory_info().rss / 2**20)
            sizes = []
            for child in self.me.children(recursive=True):
                try:
                    sizes.append(child.memory_info().rss / 2**20)
                except psutil.Error:  # gone between listing and reading
                    continue
            self.workers = max(self.workers, sum(sizes))
            self.largest_worker = max([self.largest_worker, *sizes])
            self._stop.wait(self.every_s)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def as_dict(self) -> dict:
        return {"driver_mib": round(self.driver), "workers_mib": round(self.workers),
                "largest_worker_mib": round(self.largest_worker), "total_mib": round(self.driver + self.workers)}


def bench_model(work: Path) -> Path:
    """A random-weight tiny judge (4 layers, hidden 256) with the kit's tokenizer, built once."""
    from gram_ray.tinykit import LlamaShape, build_bench_model

    model = work / "model-4x256"
    if not (model / "config.json").exists():
        build_bench_model(model, LlamaShape(layers=4, hidden=256, heads=4, intermediate=1024, max_positions=512))
    return model


def task_pairs(work: Path, n: int) -> Path:
    """``n`` pairs of the tiny kit's addition task. The task holds about 12.7k distinct comparisons, so past
    ``DISTINCT_PAIRS`` the pairs are the drawn ones again with their responses swapped (new ids): every
    prompt is still distinct, and the same length as the pair it copies."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from gram_ray.tinykit.addition import TaskSizes, write_task

    path = work / f"pairs-{n}.parquet"
    if not path.exists():
        drawn = min(n, DISTINCT_PAIRS)
        sizes = TaskSizes(seed=1, labeled=1, unlabeled_rounds=1, unlabeled_per_round=drawn, heldout=1, pretrain=1)
        table = pq.read_table(write_task(work / f"task-{n}", seed=0, sizes=sizes).unlabeled[0])
        copies = table.slice(0, n - drawn)
        swapped = copies.set_column(0, "id", pc.binary_join_element_wise(copies["id"], "swapped", "-"))
        a, b = copies.schema.get_field_index("response_a"), copies.schema.get_field_index("response_b")
        swapped = swapped.set_column(a, "response_a", copies["response_b"]).set_column(b, "response_b",
                                                                                   copies["response_a"])
        pq.write_table(pa.concat_tables([table, swapped.cast(table.schema)]), path)
    return path


def head(path: Path, n: int) -> Path:
    import pyarrow.parquet as pq

    out = path.with_name(f"{path.stem}-head{n}.parquet")
    pq.write_table(pq.read_table(path).slice(0, n), out)
    return out


def engine_for(model: Path, **overrides: object):
    from gram_ray.config import EngineConfig

    settings = {"max_model_len": 512, "batch_size": 128, "max_concurrent_batches": 4, "max_num_seqs": 256,
                "cpu_kvcache_gib": 2, "cpu_reserved_cores": 1, **overrides}
    return EngineConfig(model=str(model), **settings)


@contextmanager
def local_ray():
    import ray

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"VLLM_CPU_KVCACHE_SPACE": os.environ["VLLM_CPU_KVCACHE_SPACE"],
                                       "TOKENIZERS_PARALLELISM": "false"}})
    try:
        yield
    finally:
        ray.shutdown()


@contextmanager
def phase_timers():
    """Seconds spent in the label stage's engine passes and in its sort-aggregate-write step, summed over
    the stage runs inside the block (the wrappers only time the stage's own calls)."""
    from gram_ray.stages import label

    seconds = {"engine_pass_s": 0.0, "sort_aggregate_write_s": 0.0}
    originals = {"generate": label.runner.generate, "write_stage": label.write_stage}

    def timing(name: str, fn):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                seconds[name] += time.perf_counter() - start
        return timed

    label.runner.generate = timing("engine_pass_s", originals["generate"])
    label.write_stage = timing("sort_aggregate_write_s", originals["write_stage"])
    try:
        yield seconds
    finally:
        label.runner.generate, label.write_stage = originals["generate"], originals["write_stage"]


@contextmanager
def offline_engine(engine):
    """(a ``vllm.LLM`` of ``engine`` in this process, its start-up seconds); the engine core is shut down on
    leaving, so that a later local Ray has the cores."""
    from vllm import LLM

    from gram_ray.judging.engine import llm_kwargs

    start = time.perf_counter()
    llm = LLM(**llm_kwargs(engine))
    try:
        yield llm, time.perf_counter() - start
    finally:
        llm.llm_engine.engine_core.shutdown()


def engine_start_seconds(engine) -> float:
    """Wall time of starting one vLLM engine of ``engine`` in this process."""
    with offline_engine(engine) as (_, seconds):
        return seconds


def timed_stage(pairs: Path, out: Path, engine, judge, extra: dict | None) -> float:
    from gram_ray.stages import label_pairs

    start = time.perf_counter()
    summary = label_pairs(pairs, out, engine, judge, extra_sampling=extra)
    seconds = time.perf_counter() - start
    if not summary.complete:
        raise RuntimeError(f"incomplete stage run: {summary}")
    return seconds


def part_rows(args: argparse.Namespace, work: Path) -> None:
    from gram_ray.config import JudgeConfig
    from gram_ray.stages import rows as held

    held.LOCAL_ROWS = 0  # every step on Ray Data, whatever the size
    model, pairs = bench_model(work), task_pairs(work, args.rows)
    engine = engine_for(model)
    judge = JudgeConfig(template="compact", votes=1, temperature=0.0, max_tokens=args.tokens)
    extra = {"ignore_eos": True}
    engine_start = engine_start_seconds(engine)
    fixed, total = [], []
    phases: Counter[str] = Counter()
    large_phases: Counter[str] = Counter()
    with local_ray(), PeakRss() as peak:
        for run in range(args.repeats):  # each N-pair run right after a 16-pair one: a drift hits both alike
            with phase_timers() as seconds:
                fixed.append(timed_stage(head(pairs, SMALL), work / "out" / f"rows-small-{args.rows}-{run}",
                                         engine, judge, extra))
            phases.update(seconds)
            with phase_timers() as seconds:
                total.append(timed_stage(pairs, work / "out" / f"rows-{args.rows}-{run}", engine, judge, extra))
            large_phases.update(seconds)
    marginals = [1e3 * (t - f) / (args.rows - SMALL) for f, t in zip(fixed, total, strict=True)]
    breakdown = {"vllm_engine_start_s": round(engine_start, 1),
                 **{k: round(v / args.repeats, 1) for k, v in phases.items()},
                 "other_s": round(mean(fixed) - sum(phases.values()) / args.repeats, 1)}
    breakdown_large = {k: round(v / args.repeats, 1) for k, v in large_phases.items()}
    save(work, f"rows-{args.rows}", {"rows": args.rows, "tokens": args.tokens, "repeats": args.repeats,
                                     "fixed_s": round(mean(fixed), 1), "fixed_runs_s": [round(f, 1) for f in fixed],
                                     "fixed_breakdown": breakdown, "total_s": round(mean(total), 1),
                                     "total_runs_s": [round(t, 1) for t in total],
                                     "total_breakdown": breakdown_large,
                                     "marginal_ms_per_row": round(median(marginals), 3),
                                     "marginal_runs_ms_per_row": [round(m, 3) for m in sorted(marginals)],
                                     "end_to_end_ms_per_row": round(1e3 * mean(total) / args.rows, 3),
                                     "peak_rss": peak.as_dict()})


def part_votes(args: argparse.Namespace, work: Path) -> None:
    import pyarrow.parquet as pq
    from vllm import SamplingParams, TokensPrompt

    from gram_ray.config import JudgeConfig
    from gram_ray.stages.label import judge_requests

    model, pairs = bench_model(work), task_pairs(work, args.pairs)
    engine = engine_for(model)
    judge = JudgeConfig(template="compact", votes=args.votes, temperature=1.0, max_tokens=args.tokens)
    extra = {"ignore_eos": True}
    requests = [judge_requests(r, engine, judge, extra)[0] for r in pq.read_table(pairs).to_pylist()]
    with offline_engine(engine) as (llm, _):
        start = time.perf_counter()
        outs = llm.generate([TokensPrompt(prompt_token_ids=r.prompt_ids) for r in requests],
                            [SamplingParams(**r.sampling) for r in requests], use_tqdm=False)
        offline = time.perf_counter() - start
    assert all(len(o.outputs) == args.votes for o in outs)
    with local_ray():
        fixed = timed_stage(head(pairs, SMALL), work / "out" / "votes-small", engine, judge, extra)
        total = timed_stage(pairs, work / "out" / "votes", engine, judge, extra)
    stage_rate, offline_rate = (args.pairs - SMALL) / (total - fixed), args.pairs / offline
    save(work, "votes", {"pairs": args.pairs, "votes": args.votes, "tokens": args.tokens,
                         "offline_s": round(offline, 1), "offline_pairs_per_s": round(offline_rate, 3),
                         "stage_fixed_s": round(fixed, 1), "stage_total_s": round(total, 1),
                         "stage_marginal_pairs_per_s": round(stage_rate, 3),
                         "ray_votes_vs_offline": round(stage_rate / offline_rate, 3)})


def hhh_pairs(pairs: int, model: Path) -> list[tuple[dict, list[list[int]]]]:
    """The first ``pairs`` HHH pairs whose judge prompts (gram_r2, both orders) fit in ``PROMPT_LIMIT``
    tokens, each with those two prompts."""
    from gram_ray.data.benchmarks import load_benchmark
    from gram_ray.judging.requests import chat_ids, load_tokenizer
    from gram_ray.prompts import judge_prompt

    root = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "benchmarks"
    tokenizer = load_tokenizer(str(model))
    kept = []
    for row in load_benchmark("hhh", root).to_pylist():
        both = [chat_ids(tokenizer, judge_prompt("gram_r2", row["prompt"], a, b))
                for a, b in ((row["response_a"], row["response_b"]), (row["response_b"], row["response_a"]))]
        if max(map(len, both)) < PROMPT_LIMIT:
            kept.append((row, both))
        if len(kept) >= pairs:
            break
    return kept


def prefix_requests(pairs: int, model: Path) -> list[list[int]]:
    return [prompt for _, both in hhh_pairs(pairs, model) for prompt in both]


def part_prefix_one(args: argparse.Namespace, work: Path) -> None:
    from vllm import SamplingParams, TokensPrompt

    from gram_ray.tinykit.smollm2 import smollm2_model

    model = smollm2_model()
    prompts = prefix_requests(args.pairs, model)
    engine = engine_for(model, max_model_len=PROMPT_LIMIT + args.tokens, max_num_seqs=32,
                        enable_prefix_caching=args.caching == "on")
    params = SamplingParams(temperature=0.0, max_tokens=args.tokens, ignore_eos=True)
    with offline_engine(engine) as (llm, _):
        start = time.perf_counter()
        outs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False)
        seconds = time.perf_counter() - start
    prompt_tokens = sum(map(len, prompts))
    cached = sum(o.num_cached_tokens or 0 for o in outs)
    save(work, f"prefix-{args.caching}", {"prompts": len(prompts), "prompt_tokens": prompt_tokens,
                                          "prompt_tokens_computed": prompt_tokens - cached,
                                          "seconds": round(seconds, 1),
                                          "prompts_per_s": round(len(prompts) / seconds, 3)})


def part_prefix(args: argparse.Namespace, work: Path) -> None:
    for caching in ("off", "on"):
        subprocess.run([sys.executable, __file__, "prefix-one", "--work", str(work), "--pairs", str(args.pairs),
                        "--tokens", str(args.tokens), "--caching", caching], check=True)
    on, off = (json.loads((work / f"prefix-{c}.json").read_text()) for c in ("on", "off"))
    save(work, "prefix", {"with": on, "without": off,
                          "computed_share_with": round(on["prompt_tokens_computed"] / on["prompt_tokens"], 3),
                          "prefix_cache_speedup": round(on["prompts_per_s"] / off["prompts_per_s"], 3)})


def generated_tokens(folder: Path, model: str) -> int:
    import pyarrow.parquet as pq

    from gram_ray.judging.requests import load_tokenizer

    tokenizer = load_tokenizer(model)
    texts = [t for j in pq.read_table(folder / "judgements").to_pylist() for t in j["generated_text"]]
    return sum(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])


def part_adaptive(args: argparse.Namespace, work: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from gram_ray.config import AdaptiveVoting, EngineConfig, JudgeConfig

    pairs = work / f"{args.name}-pairs.parquet"
    if args.model == "smollm2":
        from gram_ray.data.schemas import PAIR_SCHEMA
        from gram_ray.tinykit.smollm2 import smollm2_model

        model = smollm2_model()
        rows = [row for row, _ in hhh_pairs(args.pairs, model)]
        pq.write_table(pa.Table.from_pylist(rows, schema=PAIR_SCHEMA), pairs)
        engine = EngineConfig(model=str(model), max_model_len=PROMPT_LIMIT + args.tokens, batch_size=32,
                              max_num_seqs=32, cpu_kvcache_gib=2)
        full = JudgeConfig(template="gram_r2", votes=4, temperature=0.7, swap_pass=True, max_tokens=args.tokens)
    else:
        pq.write_table(pq.read_table(args.pairs_file).slice(0, args.pairs), pairs)
        engine = EngineConfig(model=args.model, max_model_len=512, batch_size=128, max_num_seqs=256,
                              cpu_kvcache_gib=2)
        full = JudgeConfig(template="compact", votes=4, temperature=0.7, swap_pass=True, max_tokens=96)  # the demo's
    adaptive = full.model_copy(update={"adaptive": AdaptiveVoting()})
    result: dict = {"pairs": args.pairs, "model": engine.model, "judge": full.model_dump(),
                    "adaptive": adaptive.adaptive.model_dump()}
    labels = {}
    with local_ray():
        for name, judge in (("full", full), ("adaptive", adaptive)):
            out = work / "out" / f"{args.name}-{name}"
            result[f"{name}_s"] = round(timed_stage(pairs, out, engine, judge, None), 1)
            result[f"{name}_tokens"] = generated_tokens(out, engine.model)
            table = pq.read_table(out / "labelled").to_pylist()
            labels[name] = {r["id"]: r["label"] for r in table}
            result[f"{name}_samples"] = sum(r["votes_total"] for r in table)
    result["label_agreement"] = round(sum(labels["full"][i] == labels["adaptive"][i] for i in labels["full"])
                                      / len(labels["full"]), 4)
    result["tokens_saved"] = round(1 - result["adaptive_tokens"] / result["full_tokens"], 4)
    save(work, args.name, result)


def summary(work: Path) -> None:
    def read(name: str) -> dict:
        return json.loads((work / f"{name}.json").read_text())

    rows = {n: read(f"rows-{n}") for n in ROWS if (work / f"rows-{n}.json").exists()}
    for n, r in rows.items():
        print(f"rows {n}: fixed {r['fixed_s']}s, total {r['total_s']}s, marginal {r['marginal_ms_per_row']} ms/row, "
              f"peak RSS {r['peak_rss']}")
    small, large = rows[ROWS[0]], rows[ROWS[-1]]
    cost = large["marginal_ms_per_row"] / small["marginal_ms_per_row"]
    rss = large["peak_rss"]["total_mib"] / small["peak_rss"]["total_mib"]
    print(f"cost_per_row_16k_vs_1k={cost:.3f} rss_16k_vs_1k={rss:.3f} "
          f"prefix_cache_speedup={read('prefix')['prefix_cache_speedup']:.3f} "
          f"ray_votes_vs_offline={read('votes')['ray_votes_vs_offline']:.3f}")


def main() -> None:
    args = parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "1")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.part == "all":
        for part in [*(["rows", "--rows", str(n), "--repeats", str(REPEATS.get(n, 1))] for n in ROWS), ["votes"],
                     ["prefix"]]:
            subprocess.run([sys.executable, __file__, *part, "--work", str(work)], check=True)
        summary(work)
        return
    {"rows": part_rows, "votes": part_votes, "prefix": part_prefix, "prefix-one": part_prefix_one,
     "adaptive": part_adaptive}.get(args.part, lambda _, w: summary(w))(args, work)


if __name__ == "__main__":
    main()
