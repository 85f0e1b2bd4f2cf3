"""Every YAML under pipelines/configs/ validates against the config class its folder names, and opens with
the command line that runs it; the typed pipeline sections (training phases, engine settings) name the
key of a bad value."""

from pathlib import Path

import pytest

from gram_ray.config import (
    ConfigError,
    EngineConfig,
    EngineSettings,
    GramConfig,
    GrpoConfig,
    SelfTrainConfig,
    TrainConfig,
    TrainSettings,
    load_config,
    parse_config,
)

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "pipelines" / "configs"
RECIPES = {"selftrain": SelfTrainConfig, "gram": GramConfig, "grpo": GrpoConfig, "train": TrainConfig}
SHIPPED = sorted(CONFIGS.rglob("*.yaml"))


def _header(path: Path) -> str:
    lines = path.read_text().splitlines()
    return "\n".join(line for line in lines[:next(i for i, line in enumerate(lines) if not line.startswith("#"))])


def test_every_recipe_folder_ships_configs():
    assert {p.relative_to(CONFIGS).parts[0] for p in SHIPPED} == set(RECIPES)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_shipped_config_validates_against_its_folders_class(path):
    folder = path.relative_to(CONFIGS).parts[0]
    assert folder in RECIPES and path.parent.name == folder, f"{path}: configs live in {sorted(RECIPES)}/"
    load_config(path, RECIPES[folder])


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_shipped_config_opens_with_the_command_that_runs_it(path):
    header = _header(path)
    assert header, f"{path} has no comment header"
    assert f"--config {path.relative_to(REPO)}" in header


def _pipeline(**sections) -> dict:
    phases = {"prover": {}, "rm": {"max_steps": 5}, "rm_round": {}}
    return {"run": {"name": "t"}, "tinykit": {}, "engine": {}, "train": phases, **sections}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"train": {"prover": {}, "rm": {"max_steps": 0}, "rm_round": {}}},
         "train.rm.max_steps: Input should be greater than or equal to 1"),
        ({"train": {"prover": {}, "rm": {"model": "m"}, "rm_round": {}}},
         "train.rm.model: Extra inputs are not permitted"),
        ({"train": {"prover": {}, "rm": {"objective": "gram_stage2"}, "rm_round": {}}},
         "train.rm: Value error, gram_stage2 trains a label-only judge"),
        ({"train": {"prover": {}, "rm": {}}}, "missing ['rm_round']"),
        ({"engine": {"model": "set-per-stage"}}, "engine.model: Extra inputs are not permitted"),
        ({"report": {"step_checker": "gram_ray.tinykit.addition:no_such_steps"}},
         "report.step_checker: Value error, module 'gram_ray.tinykit.addition' has no attribute 'no_such_steps'"),
        ({"verifier_arm": {"verifier": "gram_ray.no_such_module:check"}},
         "verifier_arm.verifier: Value error, cannot import module 'gram_ray.no_such_module'"),
        ({"verifier_arm": {}}, "verifier_arm.verifier: Field required"),
        ({"verifier_arm": {"run_name": "t", "verifier": "gram_ray.tinykit.addition:verify_rationale"}},
         "verifier_arm.run_name must differ from run.name ('t')"),
    ],
)
def test_a_bad_pipeline_section_is_named_by_its_key(change, message):
    with pytest.raises(ConfigError, match="invalid configuration") as err:
        parse_config(_pipeline(**change), SelfTrainConfig)
    assert message in str(err.value)


def test_the_verifier_arm_is_the_same_run_with_the_arms_name_and_verifier():
    check = "gram_ray.tinykit.addition:verify_rationale"
    cfg = parse_config(_pipeline(filters={"min_confidence": 0.6}, verifier_arm={"verifier": check}), SelfTrainConfig)
    arm = cfg.verifier_arm_config()
    assert arm.run.name == "t-verifier" and arm.verifier_arm is None
    assert arm.filters == cfg.filters.model_copy(update={"verifier": check}) and arm.filters.min_confidence == 0.6
    assert arm.model_dump(exclude={"run", "filters", "verifier_arm"}) == cfg.model_dump(
        exclude={"run", "filters", "verifier_arm"})
    named = parse_config(_pipeline(verifier_arm={"run_name": "other", "verifier": check}), SelfTrainConfig)
    assert named.verifier_arm_config().run.name == "other"
    with pytest.raises(ValueError, match="no verifier_arm"):
        parse_config(_pipeline(), SelfTrainConfig).verifier_arm_config()


def test_a_phase_keeps_what_it_was_given_and_becomes_a_run_with_the_drivers_paths():
    cfg = parse_config(_pipeline(), SelfTrainConfig)
    assert isinstance(cfg.train["rm"], TrainSettings) and not isinstance(cfg.train["rm"], TrainConfig)
    assert cfg.train["rm"].model_dump(exclude_unset=True) == {"max_steps": 5}
    run = cfg.train_config("rm", model="base", data=["d.parquet"], output_dir="out")
    assert run == TrainConfig(model="base", data=["d.parquet"], output_dir="out", max_steps=5)
    with pytest.raises(ValueError, match=r"^train.rm: data: List should have at least 1 item"):
        cfg.train_config("rm", model="base", data=[], output_dir="out")


def test_engine_settings_serve_the_model_a_stage_names():
    settings = EngineSettings(batch_size=16, concurrency=(1, 2))
    engine = settings.for_model("/models/rm")
    assert engine == EngineConfig(model="/models/rm", batch_size=16, concurrency=(1, 2))
    assert engine.for_model("/models/prover").model == "/models/prover"

