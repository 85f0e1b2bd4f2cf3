"""Training sections: how a phase trains (``TrainSettings``, a pipeline's ``train.<phase>``) and one
complete run (``TrainConfig``: the settings plus start model, data and output, what ``gram-ray train``
reads)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from gram_ray.config.inference import TemplateName
from gram_ray.config.loading import Section


class TrainSettings(Section):
    """How one Ray Train + DeepSpeed run trains, whatever it starts from and learns on.

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
    max_length: int = Field(2048, ge=8, description="tokens per example; a longer one loses the middle of its "
                            "prompt, and of its target if need be (the target's end is kept), and is counted")
    length_group_window: int = Field(
        64, ge=1, description="micro-batches sorted by length together (less padding); 1 = no grouping. "
        "Grouping makes a batch's examples alike in length, so often alike in kind: on data mixing kinds of "
        "different lengths (the tiny kit's) it slows learning, and 1 is better"
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
        50_000, ge=0, description="a worker's part of at most this many examples is read through Ray Data once, "
        "before the first step, and shuffled whole in memory every epoch (each Ray Data epoch costs a streaming "
        "start); larger parts stream every epoch in key order, shuffled within windows; 0 = always stream"
    )
    checkpoint_every: int = Field(0, ge=0, description="steps between Ray Train checkpoints; 0 = each epoch end")
    checkpoints_to_keep: int = Field(2, ge=1)
    max_failures: int = Field(2, ge=0, description="worker failures Ray Train recovers from checkpoints")
    storage_path: str | None = Field(None, description="Ray Train storage; default <output_dir>.ray_train")
    run_name: str | None = Field(None, description="Ray Train run name; default from the config hash")
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> TrainSettings:
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


class TrainConfig(TrainSettings):
    """One training run: Parquet in, Hugging Face checkpoint out (``gram_ray.train.train``)."""

    model: str = Field(description="initial weights: HF id or directory")
    data: list[str] = Field(min_length=1, description="Parquet files or folders")
    output_dir: str = Field(description="where the final Hugging Face model is exported")


class GrpoSettings(Section):
    """One GRPO run of a policy with TRL's ``GRPOTrainer`` (on CPU unless ``use_gpu``): each step samples
    ``num_generations`` completions for each of ``prompts_per_step`` prompts and moves the policy towards
    the completions its group rewarded above the group's mean."""

    steps: int = Field(ge=1, description="optimizer steps")
    prompts_per_step: int = Field(4, ge=1, description="prompts (groups) per step")
    num_generations: int = Field(8, ge=2, description="completions per prompt: the group GRPO normalises within")
    learning_rate: float = Field(5e-5, gt=0, description="Adam moves every weight by about this much a step, from "
                                 "the first: far below a pre-training peak (1e-3 broke the demo policy in one step)")
    temperature: float = Field(1.0, gt=0, description="sampling temperature of the completions")
    max_completion_length: int = Field(32, ge=1, description="tokens per completion")
    beta: float = Field(0.0, ge=0, description="KL penalty towards the start policy; 0 = no reference model. With "
                        "a judge's rewards, the demo needed 0.1: without it the policy drifted to answers the judge "
                        "could not tell from the right one")
    use_gpu: bool = False
    seed: int = 0
