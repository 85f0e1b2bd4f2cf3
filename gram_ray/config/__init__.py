"""The one configuration system: pydantic models, validated on load, YAML on disk.

Every stage takes its own section (``EngineConfig``, ``JudgeConfig``, ``TrainConfig``, ...) so that code
never reads YAML itself; pipelines compose the sections into one run config. Unknown keys are errors
(``Section``). The modules hold the sections by concern: ``loading`` (load, override, dump, hash),
``inference``, ``data``, ``training``, ``serving`` and ``pipelines``.
"""

from gram_ray.config.data import ValidationConfig
from gram_ray.config.inference import (
    AdaptiveVoting,
    CallableSpec,
    EngineConfig,
    EngineSettings,
    FilterConfig,
    JudgeConfig,
    ProverConfig,
    StageJobConfig,
    TemplateName,
    import_callable,
)
from gram_ray.config.loading import (
    ConfigError,
    Section,
    SectionT,
    config_hash,
    dump_config,
    load_config,
    parse_config,
    parse_overrides,
)
from gram_ray.config.pipelines import (
    GramConfig,
    GramData,
    GrpoConfig,
    PipelineConfig,
    PolicyEvalSettings,
    ReportSection,
    RunSection,
    SelfTrainConfig,
    SelfTrainData,
    TinyKitSection,
    VerifierArm,
)
from gram_ray.config.serving import ApplyConfig, RewardModelConfig, ServeConfig
from gram_ray.config.training import GrpoSettings, TrainConfig, TrainSettings

__all__ = [
    "AdaptiveVoting",
    "ApplyConfig",
    "CallableSpec",
    "ConfigError",
    "EngineConfig",
    "EngineSettings",
    "FilterConfig",
    "GramConfig",
    "GramData",
    "GrpoConfig",
    "GrpoSettings",
    "JudgeConfig",
    "PipelineConfig",
    "PolicyEvalSettings",
    "ProverConfig",
    "ReportSection",
    "RewardModelConfig",
    "RunSection",
    "Section",
    "SectionT",
    "SelfTrainConfig",
    "SelfTrainData",
    "ServeConfig",
    "StageJobConfig",
    "TemplateName",
    "TinyKitSection",
    "TrainConfig",
    "TrainSettings",
    "ValidationConfig",
    "VerifierArm",
    "config_hash",
    "dump_config",
    "import_callable",
    "load_config",
    "parse_config",
    "parse_overrides",
]
