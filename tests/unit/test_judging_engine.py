"""EngineConfig -> ray.data.llm processor settings (no engine is started)."""

from __future__ import annotations

from gram_ray.config import EngineConfig
from gram_ray.judging.engine import engine_env, engine_kwargs, logprob_map, placement_bundles, processor_config


def test_cpu_engine_settings():
    engine = EngineConfig(model="m", max_model_len=512, cpus_per_engine=2, cpu_kvcache_gib=3, cpu_reserved_cores=0,
                          concurrency=(1, 3), batch_size=16)
    assert placement_bundles(engine) == [{"CPU": 2}]
    assert engine_env(engine) == {"VLLM_CPU_KVCACHE_SPACE": "3", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}
    kwargs = engine_kwargs(engine)
    assert kwargs["dtype"] == "float32" and kwargs["max_model_len"] == 512
    assert kwargs["enable_chunked_prefill"] is False  # seeded requests crash vLLM's CPU chunked prefill
    cfg = processor_config(engine)
    assert cfg.concurrency == (1, 3) and cfg.batch_size == 16 and cfg.should_continue_on_error
    assert cfg.log_engine_metrics is False
    [bundle] = cfg.placement_group_config["bundles"]
    assert bundle["CPU"] == 2 and not bundle.get("GPU")
    assert cfg.runtime_env == {"env_vars": engine_env(engine)}


def test_gpu_engine_settings():
    engine = EngineConfig(model="m", accelerator="gpu", tensor_parallel_size=2, gpu_memory_utilization=0.8)
    assert placement_bundles(engine) == [{"GPU": 1, "CPU": 1}, {"GPU": 1, "CPU": 1}]
    assert engine_env(engine) == {}
    kwargs = engine_kwargs(engine)
    assert kwargs["dtype"] == "bfloat16" and kwargs["tensor_parallel_size"] == 2
    assert kwargs["gpu_memory_utilization"] == 0.8 and "enable_chunked_prefill" not in kwargs


def test_logprob_map_reads_both_shapes_arrow_may_leave():
    as_maps = {7: {"logprob": -0.5, "rank": 1, "decoded_token": "A"}}
    as_struct = {"7": {"logprob": -0.5, "rank": 1, "decoded_token": "A"}, "9": None}
    assert logprob_map(as_maps) == logprob_map(as_struct) == {7: -0.5}
    assert logprob_map(None) == {}
