"""The one configuration system: pydantic models, validated on load, YAML on disk.

Every stage takes its own section (``EngineConfig``, ``JudgeConfig``, ``TrainConfig``, ...) so that code
never reads YAML itself; pipelines compose the sections into one run config. Unknown keys are errors,
because a misspelt setting that silently falls back to a default costs a GPU-day.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

TemplateName = Literal["gram_r2", "gram", "compact"]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class EngineConfig(Section):
    """A pool of vLLM engines behind ``ray.data.llm`` (one per replica; tensor parallel inside)."""

    model: str = Field(description="Hugging Face model id or local directory (save_pretrained layout)")
    accelerator: Literal["cpu", "gpu"] = "cpu"
    tensor_parallel_size: int = Field(1, ge=1)
    max_model_len: int = Field(4096, ge=16)
    batch_size: int = Field(64, ge=1, description="rows per Ray Data batch sent to an engine")
    concurrency: tuple[int, int] = Field((1, 1), description="(min, max) engine replicas; autoscaling")
    max_num_seqs: int = Field(64, ge=1)
    enable_prefix_caching: bool = True
    dtype: str = Field("auto", description="'auto' = float32 on CPU, bfloat16 on GPU")
    enforce_eager: bool = Field(True, description="skip CUDA-graph/compile warm-up; faster start")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    cpu_kvcache_gib: int = Field(1, ge=1, description="VLLM_CPU_KVCACHE_SPACE on CPU engines")
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> EngineConfig:
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


class JudgeConfig(Section):
    """Label prediction by the reasoning RM: k sampled judgements per pair, majority vote."""

    template: TemplateName = "gram_r2"
    votes: int = Field(1, ge=1, description="k judgements per pair, sampled in one request (n=k)")
    temperature: float = Field(0.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(1024, ge=1)
    swap_pass: bool = Field(False, description="judge again with the responses swapped")
    logprobs: int = Field(5, ge=1, le=20, description="top logprobs kept per token for confidence")

    @model_validator(mode="after")
    def _check(self) -> JudgeConfig:
        if self.votes > 1 and self.temperature == 0:
            raise ValueError("votes > 1 needs temperature > 0 (greedy samples are all identical)")
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


class FilterConfig(Section):
    """Denoising of self-labelled data; every dropped row is quarantined with its reason."""

    min_vote_share: float = Field(0.5, ge=0, le=1, description="share of valid votes for the winner")
    min_confidence: float = Field(0.0, ge=0, le=1, description="probability of the voted answer")
    require_consistent: bool = Field(False, description="drop pairs whose swapped judgement disagrees")
    min_rationale_chars: int = Field(1, ge=0)
    max_rationale_chars: int = Field(8000, ge=1)
    support_check: Literal["none", "conclusion", "arith_verify"] = Field(
        "conclusion", description="how to check that a rationale argues for its label"
    )


class ValidationConfig(Section):
    """Input checks applied when pairs are read."""

    max_tokens: int | None = Field(None, ge=1, description="token budget for prompt + both responses")
    tokenizer: str | None = Field(None, description="tokenizer for the budget; characters/4 when unset")
    require_label: bool = False


class TrainConfig(Section):
    """One Ray Train + DeepSpeed run: Parquet in, Hugging Face checkpoint out."""

    objective: Literal["sft", "gram_stage1", "gram_stage2"] = "sft"
    role: Literal["judge", "prover", "plain"] = Field(
        "judge", description="how rows become prompt/completion: RM target, prover proof, or prompt/completion columns"
    )
    template: TemplateName = "gram_r2"
    model: str = Field(description="initial weights: HF id or directory")
    data: list[str] = Field(description="Parquet files or folders")
    output_dir: str
    num_workers: int = Field(1, ge=1)
    use_gpu: bool = False
    cpus_per_worker: int = Field(1, ge=1)
    zero_stage: Literal[2, 3] = 2
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    learning_rate: float = Field(1e-5, gt=0)
    min_lr_ratio: float = Field(0.0, ge=0, le=1)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1, description="overrides epochs when set")
    micro_batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1)
    max_length: int = Field(2048, ge=8)
    gradient_checkpointing: bool = False
    label_smoothing: float = Field(0.1, ge=0, lt=0.5)
    swap_augment: bool = Field(True, description="stage 1: also train on the response-swapped order")
    decision_weight: float = Field(1.0, ge=0, description="loss weight of decision tokens")
    decision_tokens: list[str] = Field(default_factory=list, description="token strings weighted as decisions")
    checkpoint_every: int = Field(0, ge=0, description="steps between Ray Train checkpoints; 0 = each epoch end")
    max_failures: int = Field(2, ge=0)
    storage_path: str | None = Field(None, description="Ray Train storage; defaults next to output_dir")
    run_name: str | None = None
    seed: int = 0


SectionT = TypeVar("SectionT", bound=BaseModel)


class ConfigError(ValueError):
    """A config file that is missing, unreadable or invalid; the message names the file and the key."""


def load_config(path: str | Path, cls: type[SectionT], overrides: dict | None = None) -> SectionT:
    """Read YAML into ``cls``; ``overrides`` (dotted keys) are applied on top, as from a CLI."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(raw).__name__}")
    for dotted, value in (overrides or {}).items():
        _set_dotted(raw, dotted, value)
    return parse_config(raw, cls, origin=str(path))


def parse_config(raw: dict, cls: type[SectionT], origin: str = "config") -> SectionT:
    try:
        return cls.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{origin}: invalid configuration ({exc.error_count()} problem(s)):"]
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            lines.append(f"  - {where}: {err['msg']}")
        raise ConfigError("\n".join(lines)) from None


def dump_config(cfg: BaseModel, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))


def config_hash(cfg: BaseModel) -> str:
    """Stable digest of a section, recorded in run manifests to detect changed settings."""
    blob = json.dumps(cfg.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def parse_overrides(pairs: list[str]) -> dict:
    """``key.sub=value`` strings (value parsed as YAML) into a dict for ``load_config``."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"override must look like key=value, got {pair!r}")
        out[key] = yaml.safe_load(value)
    return out


def _set_dotted(raw: dict, dotted: str, value: object) -> None:
    *parents, leaf = dotted.split(".")
    node = raw
    for key in parents:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted!r}: {key!r} is not a section")
    node[leaf] = value
