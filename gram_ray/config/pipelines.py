"""The recipes' run configs (``pipelines/selftrain.py``, ``pipelines/gram.py``, ``pipelines/grpo.py``): a run
folder, inputs, engine settings, the stages' sections and one ``TrainSettings`` per training phase."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, ValidationError, model_validator

from gram_ray.config.inference import CallableSpec, EngineSettings, FilterConfig, JudgeConfig, ProverConfig
from gram_ray.config.loading import Section
from gram_ray.config.training import GrpoSettings, TrainConfig, TrainSettings


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


class PipelineConfig(Section):
    """What every pipeline has: a run folder, inputs (your ``data`` or the embedded ``tinykit``), engine
    settings (each stage's model is the driver's choice) and the settings of each training phase (start
    model, data and output are the driver's too)."""

    REQUIRED_PHASES: ClassVar[frozenset[str]] = frozenset()
    OPTIONAL_PHASES: ClassVar[frozenset[str]] = frozenset()

    run: RunSection
    base_model: str | None = Field(None, description="initial weights; unset with tinykit = the kit's model")
    tinykit: TinyKitSection | None = None
    engine: EngineSettings = Field(description="engine settings of every inference stage")
    train: dict[str, TrainSettings] = Field(description="training settings per phase (see the pipeline's docstring)")

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
        return self

    def train_config(self, phase: str, model: str, data: list[str], output_dir: str) -> TrainConfig:
        """Phase ``phase``'s run from ``model`` on ``data`` into ``output_dir``."""
        try:
            return TrainConfig(**{**self.train[phase].model_dump(), "model": model, "data": data,
                                  "output_dir": output_dir})
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ValueError(f"train.{phase}: {problems}") from None


class ReportSection(Section):
    """What the self-training report shows besides accuracy and label precision."""

    step_checker: CallableSpec | None = Field(
        None, description="'package.module:function' called as function(pair_row, rationale) -> {step: right} on "
        "every held-out judgement, for a table of each reasoning step's share right per round (e.g. "
        "gram_ray.tinykit.addition:rationale_steps); None = no step table"
    )


class VerifierArm(Section):
    """A second self-training run on the same draw with ``filters.verifier`` set, reported beside the first:
    what a task's own checker buys over task-agnostic denoising. It runs after the first arm and takes over
    every finished stage of it whose settings are the same (data, pre-training, prover, ...)."""

    run_name: str | None = Field(
        None, pattern=r"^[A-Za-z0-9._-]+$", description="its run folder under run.runs_dir; None = <run.name>-verifier"
    )
    verifier: CallableSpec = Field(description="the arm's filters.verifier, 'package.module:function'")


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
    report: ReportSection = Field(default_factory=ReportSection)
    verifier_arm: VerifierArm | None = Field(None, description="also run and report a verifier arm")

    def heldout_judge(self) -> JudgeConfig:
        """How the held-out evaluation (and a user of the final RM) prompts the reasoning RM."""
        return self.eval_judge or self.judge.model_copy(update={"votes": 1, "temperature": 0.0, "swap_pass": False})

    def label_only_judge(self) -> JudgeConfig:
        """How the label-only baseline is prompted: the judge's settings with the phase's template."""
        return self.judge.model_copy(update={"template": self.train["label_only"].template})

    @model_validator(mode="after")
    def _check_rounds(self) -> SelfTrainConfig:
        if self.data is not None and len(self.data.unlabeled) < self.rounds:
            raise ValueError(f"{self.rounds} rounds need {self.rounds} unlabeled sources, "
                             f"got {len(self.data.unlabeled)} (rows are never reused across rounds)")
        if self.verifier_arm is not None and self.verifier_arm.run_name == self.run.name:
            raise ValueError(f"verifier_arm.run_name must differ from run.name ({self.run.name!r})")
        return self

    def verifier_arm_config(self) -> SelfTrainConfig:
        """The verifier arm's run: this config with the arm's run name and verifier, and no arm of its own."""
        if self.verifier_arm is None:
            raise ValueError("the config names no verifier_arm")
        arm = self.verifier_arm
        return self.model_copy(update={
            "run": self.run.model_copy(update={"name": arm.run_name or f"{self.run.name}-verifier"}),
            "filters": self.filters.model_copy(update={"verifier": arm.verifier}),
            "verifier_arm": None,
        })


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


RewardName = Literal["gram_r2", "label_only", "oracle"]


class PolicyEvalSettings(Section):
    """How a policy is measured on held-out questions: greedy accuracy, sampled accuracy at the GRPO
    temperature (with ``samples``), and best-of-n accuracy of ``best_of_n`` samples selected by each reward."""

    questions: int = Field(64, ge=1, description="held-out questions (operand pairs no training question uses) "
                           "of the greedy accuracy: its standard error is sqrt(p(1-p)/questions)")
    best_of_n_questions: int = Field(32, ge=1, description="the first this many of them get best-of-n candidates "
                                     "(each reward judges every candidate pair: the costly part)")
    best_of_n: int = Field(16, ge=1, description="samples per question; best-of-n is measured for n = 1 .. this")
    temperature: float = Field(1.0, gt=0, description="sampling temperature of the best-of-n candidates")
    samples: int = Field(0, ge=0, description="samples per held-out question at the GRPO temperature: the sampled "
                         "accuracy, the policy's expected reward, which GRPO raises (0: greedy accuracy only)")
    max_new_tokens: int = Field(32, ge=1)
    seed: int = 0


class GrpoConfig(PipelineConfig):
    """GRPO of a tiny-kit policy on addition questions, rewarded by a self-trained RM (``pipelines/grpo.py``).

    The policy is the kit's model after the ``pretrain`` phase (worked solutions; a short one leaves it
    wrong often enough to learn from). Each of ``rewards`` trains it afresh from there: ``gram_r2`` (the
    reasoning RM that ``rm_run``'s self-training ended with), ``label_only`` (that run's label-only GRAM
    judge) or ``oracle`` (the exact answer checker). The judges are prompted as ``rm_run``'s config says and
    run on ``engine``.
    """

    REQUIRED_PHASES: ClassVar[frozenset[str]] = frozenset({"pretrain"})

    rm_run: str = Field(description="run folder of a finished `pipelines/selftrain.py` run with a label_only phase")
    rewards: list[RewardName] = Field(default_factory=lambda: ["gram_r2", "label_only", "oracle"], min_length=1)
    group_method: Literal["win_rate", "bradley_terry", "knockout"] = Field(
        "win_rate", description="how a judge's verdicts within a group become rewards (gram_ray.apply.group_rewards)"
    )
    both_orders: bool = Field(True, description="ask each comparison in both presentation orders (eq. 3)")
    train_questions: int = Field(256, ge=1, description="questions GRPO draws its prompts from")
    grpo: GrpoSettings
    eval: PolicyEvalSettings = Field(default_factory=PolicyEvalSettings)

    @model_validator(mode="after")
    def _check_rewards(self) -> GrpoConfig:
        if len(set(self.rewards)) != len(self.rewards):
            raise ValueError(f"rewards names one twice: {self.rewards}")
        if self.eval.best_of_n_questions > self.eval.questions:
            raise ValueError(f"eval.best_of_n_questions ({self.eval.best_of_n_questions}) are the first of the "
                             f"held-out questions: at most eval.questions ({self.eval.questions})")
        return self
