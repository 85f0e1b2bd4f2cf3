"""The inference stages' sections: the vLLM engine pool, the judge, the prover and the denoising filters."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from gram_ray.config.loading import Section

# The prompt templates of gram_ray.prompts; judge, prover and training must name the same one.
TemplateName = Literal["gram_r2", "gram", "compact"]


class EngineSettings(Section):
    """A pool of vLLM engines behind ``ray.data.llm`` (one per replica; tensor parallel inside), without
    the model: a pipeline's ``engine`` section, which the driver points at each stage's model.

    On CPU each replica is placed on a bundle of ``cpus_per_engine`` CPUs; on GPU on
    ``tensor_parallel_size`` bundles of one GPU each. Rows that fail inside the engine are kept with
    their error (``should_continue_on_error``) and end in the stage's rejects; a dead engine actor is
    restarted by Ray Data and its batch retried.
    """

    accelerator: Literal["cpu", "gpu"] = "cpu"
    tensor_parallel_size: int = Field(1, ge=1)
    max_model_len: int = Field(4096, ge=16, description="longer prompts are rejected before the engine")
    batch_size: int = Field(64, ge=1, description="rows per Ray Data batch sent to an engine")
    max_concurrent_batches: int = Field(4, ge=1, description="batches in flight per engine replica")
    concurrency: tuple[int, int] = Field((1, 1), description="(min, max) engine replicas; autoscaling")
    cpus_per_engine: int = Field(1, ge=1, description="CPU bundle of one CPU engine replica")
    max_num_seqs: int = Field(64, ge=1)
    enable_prefix_caching: bool = Field(True, description="compute a prompt prefix once for all requests that "
                                        "share it (the judge template's instruction, both orders of a pair): "
                                        "3.5x judge prompts/s for SmolLM2 on HHH pairs (BENCHMARKS.md)")
    dtype: str = Field("auto", description="'auto' = float32 on CPU, bfloat16 on GPU; bfloat16 decodes ~2.5x "
                       "faster on CPUs with AMX/AVX512-BF16 (BENCHMARKS.md)")
    enforce_eager: bool = Field(True, description="skip CUDA-graph/compile warm-up; faster start")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    cpu_kvcache_gib: int = Field(1, ge=1, description="VLLM_CPU_KVCACHE_SPACE on CPU engines")
    cpu_reserved_cores: int | None = Field(
        None, ge=0, description="VLLM_CPU_NUM_OF_RESERVED_CPU: cores vLLM keeps for its front end; None = its default"
    )
    cpu_worker_in_engine_process: bool = Field(
        False, description="run vLLM's CPU model worker inside its engine-core process (no OpenMP core pinning): "
        "one process fewer to spawn and import per engine, ~15 s of start-up on a small machine")
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> EngineSettings:
        lo, hi = self.concurrency
        if not 1 <= lo <= hi:
            raise ValueError(f"concurrency must be (min, max) with 1 <= min <= max, got {self.concurrency}")
        if self.accelerator == "cpu" and self.tensor_parallel_size != 1:
            raise ValueError("tensor_parallel_size > 1 needs accelerator: gpu")
        return self

    @property
    def resolved_dtype(self) -> str:
        if self.dtype != "auto":
            return self.dtype
        return "float32" if self.accelerator == "cpu" else "bfloat16"

    def for_model(self, model: str) -> EngineConfig:
        """These settings serving ``model``."""
        return EngineConfig(**{**self.model_dump(), "model": model})


class EngineConfig(EngineSettings):
    """An engine pool serving one model: what a stage, ``gram-ray rank`` and the server start."""

    model: str = Field(description="Hugging Face model id or local directory (save_pretrained layout)")


class AdaptiveVoting(Section):
    """Voting@k that samples ``first_votes`` votes per pair and order, and the other k - ``first_votes``
    only where those leave the order undecided (``judging.voting.decided_early``): the majority of k could
    still change, and the first votes are not unanimous with a mean probability of their side of at least
    ``min_confidence``. The later votes are the samples full voting would have drawn (same seeds), so a
    label differs from full k-voting's only where an early stop decided otherwise."""

    first_votes: int = Field(2, ge=1, description="votes per pair and order before deciding whether to sample more")
    min_confidence: float = Field(0.9, ge=0.5, le=1, description="unanimous first votes whose side has at least "
                                  "this mean answer-token probability stop the sampling")


class JudgeConfig(Section):
    """Label prediction by the reasoning RM: k sampled judgements per pair, majority vote.

    Confidence is read from the label tokens' exact log-probabilities at the generated answer token
    (vLLM ``logprob_token_ids``), so no top-k setting is needed.
    """

    template: TemplateName = "gram_r2"
    votes: int = Field(1, ge=1, description="k judgements per pair and order (voting@k)")
    temperature: float = Field(0.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(1024, ge=1)
    swap_pass: bool = Field(False, description="judge again with the responses swapped")
    adaptive: AdaptiveVoting | None = Field(None, description="stop sampling decided pairs early; None = k votes "
                                            "for every pair")

    @model_validator(mode="after")
    def _check(self) -> JudgeConfig:
        if self.votes > 1 and self.temperature == 0:
            raise ValueError("votes > 1 needs temperature > 0 (greedy samples are all identical)")
        if self.adaptive is not None and self.adaptive.first_votes >= self.votes:
            raise ValueError(f"adaptive.first_votes ({self.adaptive.first_votes}) must be below votes ({self.votes})")
        return self


class ProverConfig(Section):
    """Rationale synthesis: k proofs per labelled pair, one kept by context specificity."""

    template: TemplateName = "gram_r2"
    proofs: int = Field(4, ge=1, description="k proofs sampled per pair")
    temperature: float = Field(0.8, ge=0)
    top_p: float = Field(0.95, gt=0, le=1)
    max_tokens: int = Field(1024, ge=1)
    selection: Literal["specificity", "first"] = "specificity"

    @model_validator(mode="after")
    def _check(self) -> ProverConfig:
        if self.proofs > 1 and self.temperature == 0:
            raise ValueError("proofs > 1 needs temperature > 0")
        return self


@lru_cache(maxsize=16)
def import_callable(spec: str) -> Callable:
    """The function a ``"package.module:function"`` setting names; ValueError says what is wrong with it."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"must look like 'package.module:function', got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import module {module_name!r}: {exc}") from None
    fn = getattr(module, attribute, None)
    if fn is None:
        raise ValueError(f"module {module_name!r} has no attribute {attribute!r}")
    if not callable(fn):
        raise ValueError(f"{spec!r} is not a function (it is of type {type(fn).__name__})")
    return fn


def _importable(spec: str) -> str:
    import_callable(spec)
    return spec


# A plug-in setting: "package.module:function", imported when the config loads so that a misspelt name
# fails there, with import_callable's reason, and not hours into a run.
CallableSpec = Annotated[str, AfterValidator(_importable)]


class FilterConfig(Section):
    """Denoising of self-labelled data; every dropped row is quarantined with its reason."""

    min_vote_share: float = Field(
        0.5, ge=0, le=1, description="share of all sampled judgements (unreadable ones included) that gave the label"
    )
    min_confidence: float = Field(0.0, ge=0, le=1, description="probability of the voted answer")
    require_consistent: bool = Field(False, description="drop pairs whose swapped judgement disagrees")
    min_rationale_chars: int = Field(1, ge=0)
    max_rationale_chars: int = Field(8000, ge=1)
    support_check: Literal["none", "conclusion"] = Field(
        "conclusion", description="how to check that a rationale argues for its label"
    )
    verifier: CallableSpec | None = Field(
        None, description="a task's own check, 'package.module:function', called as function(row, rationale, "
        "label) on rationale rows; a returned reason rejects the row as unsupported, None keeps it"
    )

    @model_validator(mode="after")
    def _check(self) -> FilterConfig:
        if self.min_rationale_chars > self.max_rationale_chars:
            raise ValueError(f"min_rationale_chars ({self.min_rationale_chars}) > max_rationale_chars "
                             f"({self.max_rationale_chars})")
        return self

    @property
    def judge_rule_settings(self) -> dict:
        """The settings the judge rules read (``stages.filters.judge_reason``): all that label-stage screening
        depends on, so a changed rationale rule leaves screened labels, and the proofs paid for them, alone."""
        return self.model_dump(include={"min_vote_share", "min_confidence", "require_consistent"})


class StageJobConfig(Section):
    """What ``gram-ray label|prove|score|denoise`` read: the engine and the stages' own sections."""

    engine: EngineConfig | None = Field(None, description="needed by label, prove and score")
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    prover: ProverConfig = Field(default_factory=ProverConfig)
    filters: FilterConfig = Field(default_factory=FilterConfig)
