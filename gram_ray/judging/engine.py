"""EngineConfig -> vLLM: the one place that knows vLLM's and ``ray.data.llm``'s knobs.

Prompts arrive as token ids with per-row sampling parameters (see ``requests``), so the processor's own
chat-template, tokenize and detokenize stages are switched off. Rows that fail in the engine come back
with ``__inference_error__`` instead of failing the job (``should_continue_on_error``); such rows skip
the postprocess function, which ``engine_pass`` allows for. A request with ``n = k`` keeps all k
completions (``completions_of``; see ``engine_stage``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Any

from gram_ray.config import EngineConfig
from gram_ray.judging.completions import COMPLETIONS, Completion, decode


def engine_kwargs(engine: EngineConfig) -> dict[str, Any]:
    """Keyword arguments of the vLLM engine (``AsyncEngineArgs``)."""
    kwargs: dict[str, Any] = {
        "max_model_len": engine.max_model_len,
        "tensor_parallel_size": engine.tensor_parallel_size,
        "max_num_seqs": engine.max_num_seqs,
        "enable_prefix_caching": engine.enable_prefix_caching,
        "dtype": engine.resolved_dtype,
        "enforce_eager": engine.enforce_eager,
        "seed": engine.seed,
    }
    if engine.accelerator == "gpu":
        kwargs["gpu_memory_utilization"] = engine.gpu_memory_utilization
    else:
        # vLLM 0.32 on CPU kills the engine ("CPU Generator does not use offset") when a request with a
        # sampling seed is prefilled in chunks; the stages seed every request for reproducibility.
        kwargs["enable_chunked_prefill"] = False
    return kwargs


def engine_env(engine: EngineConfig) -> dict[str, str]:
    """Environment of the engine actors (vLLM's CPU backend reads its settings from the environment)."""
    if engine.accelerator != "cpu":
        return {}
    env = {"VLLM_CPU_KVCACHE_SPACE": str(engine.cpu_kvcache_gib)}
    if engine.cpu_reserved_cores is not None:
        env["VLLM_CPU_NUM_OF_RESERVED_CPU"] = str(engine.cpu_reserved_cores)
    if engine.cpu_worker_in_engine_process:
        # vLLM's CPU platform picks its multiprocess executor only while this is 1; the async engine that
        # ray.data.llm drives keeps its engine core in a process of its own either way
        env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    return env


def placement_bundles(engine: EngineConfig) -> list[dict[str, float]]:
    """Resources of one engine replica: a CPU bundle, or one GPU bundle per tensor-parallel rank."""
    if engine.accelerator == "cpu":
        return [{"CPU": engine.cpus_per_engine}]
    return [{"GPU": 1, "CPU": 1} for _ in range(engine.tensor_parallel_size)]


def processor_config(engine: EngineConfig) -> Any:
    from ray.data.llm import vLLMEngineProcessorConfig

    return vLLMEngineProcessorConfig(
        model_source=engine.model,
        engine_kwargs=engine_kwargs(engine),
        batch_size=engine.batch_size,
        max_concurrent_batches=engine.max_concurrent_batches,
        concurrency=tuple(engine.concurrency),
        placement_group_config={"bundles": placement_bundles(engine)},
        runtime_env={"env_vars": engine_env(engine)},
        log_engine_metrics=False,  # vLLM's Ray metrics wrapper needs ray[serve]
        should_continue_on_error=True,
        chat_template_stage=False,
        tokenize_stage=False,
        detokenize_stage=False,
    )


def build_engine_processor(engine: EngineConfig, postprocess: Callable[[dict], dict]) -> Any:
    """A processor for rows holding ``tokenized_prompt`` and ``sampling_json``; ``postprocess`` sees the
    engine's output row (``generated_tokens``, ``generated_text``, ``logprobs``, ``prompt_logprobs``, ...)
    with the input columns carried along."""
    from ray.data.llm import build_processor

    from gram_ray.judging.engine_stage import AllCompletionsUDF

    processor = build_processor(
        processor_config(engine),
        preprocess=lambda row: {"sampling_params": json.loads(row["sampling_json"])},
        postprocess=postprocess,
    )
    # a copy, not an assignment: assigning re-runs the stage's validator, which has already moved
    # placement_group_config into the Ray remote arguments and would fall back to one GPU per replica
    name = "vLLMEngineStage"
    processor.stages[name] = processor.get_stage_by_name(name).model_copy(update={"fn": AllCompletionsUDF})
    return processor


def engine_pass(requests: Any, engine: EngineConfig, postprocess: Callable[[dict], dict],
                columns: Sequence[str]) -> Any:
    """``requests`` (a Ray Dataset of rows with ``tokenized_prompt``, ``sampling_json`` and any columns to
    carry) through an engine pool, lazily: one row per request holding ``columns`` and ``error``. A request
    the engine failed skipped ``postprocess``: its ``columns`` are those it carried ("" for the others) and
    ``error`` says why; every other row has ``error`` "".
    """
    processor = build_engine_processor(engine, postprocess)

    def settle(row: dict) -> dict:
        out = {c: row.get(c) or "" for c in columns}
        out["error"] = row.get("__inference_error__") or ""
        return out

    return processor(requests).map(settle)


def logprob_map(position: Any) -> dict[int, float]:
    """One position of an engine row's ``logprobs``/``prompt_logprobs`` as {token id: logprob}.

    Rows reach the postprocess through Arrow, which may have turned the {id: {logprob, ...}} maps into
    structs: keys become strings and ids seen only at other positions appear with None values.
    """
    if not position:
        return {}
    return {int(t): float(v["logprob"] if isinstance(v, dict) else v) for t, v in position.items() if v is not None}


def completions_of(row: dict) -> list[Completion]:
    """Every completion of an engine output row: the ``COMPLETIONS`` column of an n > 1 request, else the
    row's own first-completion columns."""
    if row.get(COMPLETIONS):
        return decode(row[COMPLETIONS])
    return [Completion(row.get("generated_text") or "", [int(t) for t in row.get("generated_tokens") or []],
                       [logprob_map(pos) for pos in row.get("logprobs") or []])]


def llm_kwargs(cfg: EngineConfig) -> dict[str, Any]:
    """``vllm.LLM`` / ``AsyncEngineArgs`` keyword arguments of an engine section; sets the CPU backend's
    environment (vLLM reads it when the engine starts)."""
    for key, value in engine_env(cfg).items():
        os.environ.setdefault(key, value)
    return {"model": cfg.model, **engine_kwargs(cfg)}
