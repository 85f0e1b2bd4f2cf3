"""The one configuration system: pydantic models, validated on load, YAML on disk.

Every stage takes its own section (``EngineConfig``, ``JudgeConfig``, ``TrainConfig``, ...) so that code
never reads YAML itself; pipelines compose the sections into one run config. Unknown keys are errors,
because a misspelt setting that silently falls back to a default costs a GPU-day.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import ClassVar, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

TemplateName = Literal["gram_r2", "gram", "compact"]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class EngineConfig(Section):
    """A pool of vLLM engines behind ``ray.data.llm`` (one per replica; tensor parallel inside).

    On CPU each replica is placed on a bundle of ``cpus_per_engine`` CPUs; on GPU on
    ``tensor_parallel_size`` bundles of one GPU each. Rows that fail inside the engine are kept with
    their error (``should_continue_on_error``) and end in the stage's rejects; a dead engine actor is
    restarted by Ray Data and its batch retried.
    """

    model: str = Field(description="Hugging Face model id or local directory (save_pretrained layout)")
    accelerator: Literal["cpu", "gpu"] = "cpu"
    tensor_parallel_size: int = Field(1, ge=1)
    max_model_len: int = Field(4096, ge=16, description="longer prompts are rejected before the engine")
    batch_size: int = Field(64, ge=1, description="rows per Ray Data batch sent to an engine")
    max_concurrent_batches: int = Field(4, ge=1, description="batches in flight per engine replica")
    concurrency: tuple[int, int] = Field((1, 1), description="(min, max) engine replicas; autoscaling")
    cpus_per_engine: int = Field(1, ge=1, description="CPU bundle of one CPU engine replica")
    max_num_seqs: int = Field(64, ge=1)
    enable_prefix_caching: bool = True
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

    min_vote_share: float = Field(
        0.5, ge=0, le=1, description="share of all sampled judgements (unreadable ones included) that gave the label"
    )
    min_confidence: float = Field(0.0, ge=0, le=1, description="probability of the voted answer")
    require_consistent: bool = Field(False, description="drop pairs whose swapped judgement disagrees")
    min_rationale_chars: int = Field(1, ge=0)
    max_rationale_chars: int = Field(8000, ge=1)
    support_check: Literal["none", "conclusion", "arith_verify"] = Field(
        "conclusion", description="how to check that a rationale argues for its label"
    )

    @model_validator(mode="after")
    def _check(self) -> FilterConfig:
        if self.min_rationale_chars > self.max_rationale_chars:
            raise ValueError(f"min_rationale_chars ({self.min_rationale_chars}) > max_rationale_chars "
                             f"({self.max_rationale_chars})")
        return self


class StageJobConfig(Section):
    """What ``gram-ray label|prove|score|denoise`` read: the engine and the stages' own sections."""

    engine: EngineConfig | None = Field(None, description="needed by label, prove and score")
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    prover: ProverConfig = Field(default_factory=ProverConfig)
    filters: FilterConfig = Field(default_factory=FilterConfig)


class ValidationConfig(Section):
    """Input checks applied when pairs are read; the rules are listed in gram_ray/data/validate.py."""

    max_tokens: int | None = Field(None, ge=1, description="token budget for prompt + both responses")
    tokenizer: str | None = Field(None, description="tokenizer for the budget; characters/4 when unset")
    require_label: bool = False


class TrainConfig(Section):
    """One Ray Train + DeepSpeed run: Parquet in, Hugging Face checkpoint out.

    ``objective`` picks the loss and how rows become examples: ``sft`` trains the completion (``role``
    says which: the RM's ``target``, the prover's ``rationale`` or a plain ``completion`` column);
    ``gram_stage1`` trains -log p([y_a, y_b] | x) on pairs; ``gram_stage2`` trains the label-smoothed
    two-way cross-entropy on the label token after the judge prompt.
    """

    objective: Literal["sft", "gram_stage1", "gram_stage2"] = "sft"
    role: Literal["judge", "prover", "plain"] = Field(
        "judge", description="sft only: RM target, prover proof, or prompt/completion columns"
    )
    template: TemplateName = "gram_r2"
    model: str = Field(description="initial weights: HF id or directory")
    data: list[str] = Field(min_length=1, description="Parquet files or folders")
    output_dir: str = Field(description="where the final Hugging Face model is exported")
    num_workers: int = Field(1, ge=1)
    use_gpu: bool = False
    cpus_per_worker: int = Field(1, ge=1)
    zero_stage: Literal[2, 3] = 2
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="'auto' = fp32 on CPU, bf16 on GPU")
    learning_rate: float = Field(1e-5, gt=0)
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="cosine floor as a share of learning_rate")
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1, description="optimizer steps; overrides epochs when set")
    micro_batch_size: int = Field(8, ge=1, description="examples per worker per forward pass")
    grad_accum: int = Field(1, ge=1)
    max_length: int = Field(2048, ge=8, description="tokens per example; longer ones are truncated and counted")
    length_group_window: int = Field(
        64, ge=1, description="micro-batches sorted by length together (less padding); 1 = no grouping"
    )
    gradient_checkpointing: bool = False
    label_smoothing: float = Field(0.1, ge=0, lt=0.5, description="gram_stage2: probability moved to the other label")
    swap_augment: bool = Field(True, description="gram_stage1: also train on the response-swapped order")
    decision_weight: float = Field(1.0, ge=0, description="loss weight of decision tokens")
    decision_tokens: list[str] = Field(default_factory=list, description="token strings weighted as decisions")
    log_every: int = Field(1, ge=1, description="optimizer steps between logged metrics (kept in the history)")
    report_every_s: float = Field(
        30.0, ge=0, description="least seconds between Ray Train metric reports (progress lines are logged "
        "every log_every steps regardless); a report waits for the controller, which drains one report per "
        "worker every 2 s, so frequent reports stall training"
    )
    local_prepare_rows: int = Field(
        20_000, ge=0, description="inputs of at most this many rows are tokenized in the driver, larger ones by "
        "Ray Data tasks"
    )
    cache_shard_rows: int = Field(
        50_000, ge=0, description="a worker's shard of at most this many examples is read through Ray Data once, "
        "before the first step, and reshuffled in memory for later epochs (each Ray Data epoch costs a "
        "streaming start); 0 = never"
    )
    checkpoint_every: int = Field(0, ge=0, description="steps between Ray Train checkpoints; 0 = each epoch end")
    checkpoints_to_keep: int = Field(2, ge=1)
    max_failures: int = Field(2, ge=0, description="worker failures Ray Train recovers from checkpoints")
    storage_path: str | None = Field(None, description="Ray Train storage; default <output_dir>.ray_train")
    run_name: str | None = Field(None, description="Ray Train run name; default from the config hash")
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.objective == "gram_stage2" and self.template == "gram_r2":
            raise ValueError("gram_stage2 trains a label-only judge; template gram_r2 asks for a reasoned "
                             "answer: use template gram (or compact for tiny models)")
        if self.decision_weight != 1.0 and not self.decision_tokens:
            raise ValueError("decision_weight needs decision_tokens (the token strings to weight)")
        if self.precision == "bf16" and not self.use_gpu:
            raise ValueError("precision bf16 needs use_gpu: true (CPU workers train in fp32)")
        return self

    @property
    def resolved_precision(self) -> Literal["fp32", "bf16"]:
        if self.precision != "auto":
            return self.precision
        return "bf16" if self.use_gpu else "fp32"


class RewardModelConfig(Section):
    """A generative reward model in use: its engine, what kind of judge it is, and how it is asked.

    ``kind: reasoning`` is GRAM-R2 (rationale then ``<answer>``; template ``gram_r2`` for the released
    checkpoints), ``kind: label`` is GRAM (one label token; template ``gram``). With ``both_orders`` every
    comparison is judged in both presentation orders and averaged (GRAM eq. 3).
    """

    engine: EngineConfig
    kind: Literal["reasoning", "label"] = Field("reasoning", description="reasoning = GRAM-R2, label = GRAM")
    judge: JudgeConfig = Field(default_factory=JudgeConfig, description="template and sampling of the judge")
    both_orders: bool = Field(True, description="eq. 3: judge each pair in both orders and average")


class ApplyConfig(RewardModelConfig):
    """``gram-ray rank`` and ``gram-ray eval run``."""

    backend: Literal["offline", "ray"] = Field(
        "offline", description="offline = one in-process vLLM engine; ray = Ray Data engine pool (large sets)"
    )


class ServeConfig(RewardModelConfig):
    """The reward server: a vLLM engine behind FastAPI speaking OpenRLHF's remote reward protocol.

    The reward of a response is P(response beats reference) (GRAM eq. 3 with ``both_orders``), from the
    label token (``kind: label``) or the reasoning judge's answer token (``kind: reasoning``). The reference
    is the request's ``labels`` or, with ``reference: policy``, the greedy output of the ``policy`` engine.
    Limits keep one client from starving the others.
    """

    reference: Literal["labels", "policy"] = Field("labels", description="where the reference response comes from")
    policy: EngineConfig | None = Field(None, description="reference policy engine for reference: policy")
    policy_max_tokens: int = Field(512, ge=1, description="length cap of the policy's greedy reference")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="larger bodies get 413")
    max_items: int = Field(256, ge=1, description="items per request; more get 413")
    max_chars: int = Field(65536, ge=1, description="characters per text field; longer get 413")
    max_concurrent_requests: int = Field(4, ge=1, description="requests judged at once (the engine batches them)")
    max_queued_requests: int = Field(16, ge=0, description="requests waiting for a slot; beyond that 429")
    request_timeout_s: float = Field(600.0, gt=0, description="a request running longer gets 504")
    api_key_env: str | None = Field(
        "GRAM_RAY_API_KEY", description="env var holding the bearer token; unset or empty = no auth"
    )
    strip_strings: list[str] = Field(
        default_factory=lambda: ["<|endoftext|>", "<|eot_id|>", "<|im_end|>", "</s>", "<pad>"],
        description="special-token text removed from the ends of OpenRLHF queries before judging",
    )

    @model_validator(mode="after")
    def _check(self) -> ServeConfig:
        if self.reference == "policy" and self.policy is None:
            raise ValueError("reference: policy needs a policy engine section")
        return self


class RunSection(Section):
    """Where a pipeline run lives and which Ray cluster it uses."""

    name: str = Field(pattern=r"^[A-Za-z0-9._-]+$", description="run folder name under runs_dir")
    runs_dir: str = "runs"
    ray_address: str | None = Field(
        None, description="cluster to join ('auto' = the local `ray start` one); None = RAY_ADDRESS, else a new one"
    )
    local_cpus: int | None = Field(
        None, ge=1, description="logical CPUs of a new local cluster (default: the machine's cores); more than "
        "the cores lets independent stages overlap their start-up waits"
    )
    concurrent_stages: bool = Field(
        False, description="selftrain: run each held-out evaluation while the pipeline goes on (on a small machine "
        "an evaluation is mostly engine start-up, which overlaps the next stage's work); only when the cluster "
        "has CPUs for an engine pool, one more for Ray Data's map tasks and the evaluation's engine, else in turn"
    )


class SelfTrainData(Section):
    """The recipe's inputs (Parquet files or folders); unlabeled data comes as one source per round."""

    seed_rationales: str = Field(description="pairs with human rationales (RATIONALE_SCHEMA): trains the prover")
    labeled: str = Field(description="rationale-free labeled pairs: the prover writes their rationales")
    unlabeled: list[str] = Field(min_length=1, description="one unlabeled source per round, never reused")
    heldout: str | None = Field(None, description="labeled pairs to measure accuracy after every round")


class TinyKitSection(Section):
    """Build the embedded tiny model and synthetic task into the run folder (demo and tests)."""

    seed: int = 0
    layers: int = Field(2, ge=1)
    seed_pairs: int = Field(100, ge=4)
    labeled: int = Field(100, ge=4)
    unlabeled_per_round: int = Field(2000, ge=4)
    heldout: int = Field(400, ge=4)
    pretrain: int = Field(20000, ge=4)


_TRAIN_PLACEHOLDERS = {"model": "<from pipeline>", "data": ["<from pipeline>"], "output_dir": "<from pipeline>"}


class PipelineConfig(Section):
    """What every pipeline has: a run folder, inputs (your ``data`` or the embedded ``tinykit``), engine
    settings, and one TrainConfig per training phase without ``model``/``data``/``output_dir``, which the
    driver fills in."""

    REQUIRED_PHASES: ClassVar[frozenset[str]] = frozenset()
    OPTIONAL_PHASES: ClassVar[frozenset[str]] = frozenset()

    run: RunSection
    base_model: str | None = Field(None, description="initial weights; unset with tinykit = the kit's model")
    tinykit: TinyKitSection | None = None
    engine: EngineConfig = Field(description="engine settings; `model` is replaced by each stage's model")
    train: dict[str, dict] = Field(description="per-phase TrainConfig settings (see the pipeline's docstring)")

    @model_validator(mode="after")
    def _check_phases(self) -> PipelineConfig:
        if (getattr(self, "data", None) is None) == (self.tinykit is None):
            raise ValueError("give exactly one of `data` (your Parquet) or `tinykit` (the embedded demo task)")
        if self.tinykit is not None and self.base_model is not None:
            raise ValueError("tinykit builds its own base model: leave base_model unset")
        if self.tinykit is None and self.base_model is None:
            raise ValueError("base_model is required with `data`")
        missing = self.REQUIRED_PHASES - set(self.train)
        unknown = set(self.train) - self.REQUIRED_PHASES - self.OPTIONAL_PHASES
        if missing or unknown:
            raise ValueError(f"train needs phases {sorted(self.REQUIRED_PHASES)} (optional: "
                             f"{sorted(self.OPTIONAL_PHASES)}); missing {sorted(missing)}, unknown {sorted(unknown)}")
        for phase in self.train:
            self.train_config(phase, **_TRAIN_PLACEHOLDERS)
        return self

    def train_config(self, phase: str, model: str, data: list[str], output_dir: str) -> TrainConfig:
        try:
            return TrainConfig(**{**self.train[phase], "model": model, "data": data, "output_dir": output_dir})
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ValueError(f"train.{phase}: {problems}") from None


class SelfTrainConfig(PipelineConfig):
    """The GRAM-R2 self-training recipe (``pipelines/selftrain.py``).

    The reward model trains on synthesized rationales (the prover's, for the labeled set and then each
    round's pseudo-labels), as in the paper; the human-rationale seed set trains the prover and, when a
    ``final`` phase is given, the last fine-tune (and the RM too with ``rm_with_seed``).

    Training phases: ``pretrain`` (optional: the tiny base model's worked-solution pre-training),
    ``prover``, ``rm`` (initial reward model), ``rm_round`` (retraining in each round; also the
    control's), ``label_only`` (optional baseline: a GRAM stage-2 judge on the same labels), ``final``
    (optional fine-tune on the human-rationale seed set).
    """

    REQUIRED_PHASES: ClassVar[frozenset[str]] = frozenset({"prover", "rm", "rm_round"})
    OPTIONAL_PHASES: ClassVar[frozenset[str]] = frozenset({"pretrain", "label_only", "final"})

    data: SelfTrainData | None = None
    prover_model: str | None = Field(
        None, description="initial weights of the prover (HF id or directory), e.g. a larger or instruct model "
        "than the RM's; unset = the base model (after pretrain, when that phase is given)"
    )
    rounds: int = Field(3, ge=0)
    retrain_from: Literal["previous", "base"] = Field(
        "previous", description="each round's RM starts from the previous RM or afresh (from rm_start)"
    )
    rm_start: Literal["base", "prover"] = Field(
        "base", description="the initial RM starts from the base model (the papers) or from the trained prover, "
        "which already writes rationales in the RM's format (what a tiny model needs)"
    )
    rm_with_seed: bool = Field(
        False, description="also train the RM (and the control) on the human-rationale seed set; the paper does "
        "not, but a labeled set that yields too few kept proofs needs it"
    )
    control: bool = Field(True, description="also retrain without unlabeled data, as a baseline")
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    eval_judge: JudgeConfig | None = Field(None, description="held-out evaluation; default: judge, greedy, 1 vote")
    prover: ProverConfig = Field(default_factory=ProverConfig)
    filters: FilterConfig = Field(default_factory=FilterConfig)

    @model_validator(mode="after")
    def _check_rounds(self) -> SelfTrainConfig:
        if self.data is not None and len(self.data.unlabeled) < self.rounds:
            raise ValueError(f"{self.rounds} rounds need {self.rounds} unlabeled sources, "
                             f"got {len(self.data.unlabeled)} (rows are never reused across rounds)")
        return self


class GramData(Section):
    """Inputs of the GRAM two-stage recipe (Parquet files or folders)."""

    unlabeled: list[str] = Field(min_length=1, description="pairs for stage 1 (labels, if any, are ignored)")
    labeled: str = Field(description="labeled pairs for stage 2")
    heldout: str | None = None
    adaptation: str | None = Field(None, description="small labeled task set for the optional adaptation phase")


class GramConfig(PipelineConfig):
    """The GRAM recipe (``pipelines/gram.py``): ``stage1`` (-log p([y_a, y_b] | x) on unlabeled pairs),
    ``stage2`` (label-smoothed A/B on labeled pairs), optional ``adapt`` (fine-tuning on a task set)."""

    REQUIRED_PHASES: ClassVar[frozenset[str]] = frozenset({"stage1", "stage2"})
    OPTIONAL_PHASES: ClassVar[frozenset[str]] = frozenset({"pretrain", "adapt"})

    data: GramData | None = None
    judge: JudgeConfig = Field(default_factory=lambda: JudgeConfig(template="gram"))


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


def config_hash(cfg: object) -> str:
    """Stable digest of a section (or of plain data holding sections), recorded in run manifests to
    detect changed settings."""

    def plain(obj: object) -> object:
        if isinstance(obj, BaseModel):
            return obj.model_dump(mode="json")
        raise TypeError(f"cannot hash a {type(obj).__name__}")

    blob = json.dumps(cfg, default=plain, sort_keys=True)
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
    """Set one dotted key. Each section on the way is copied before it is changed: a YAML alias
    (``rm_round: *rm``) shares its mapping with the anchor, and an override must change only the place
    it names (else ``train.rm_round.max_steps`` would also change ``train.rm``)."""
    *parents, leaf = dotted.split(".")
    node = raw
    for key in parents:
        child = node.get(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted!r}: {key!r} is not a section")
        node[key] = dict(child)
        node = node[key]
    node[leaf] = value
