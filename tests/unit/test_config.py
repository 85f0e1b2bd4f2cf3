from pathlib import Path

import pytest

from gram_ray.config import (
    ConfigError,
    EngineConfig,
    JudgeConfig,
    SelfTrainConfig,
    config_hash,
    dump_config,
    load_config,
    parse_overrides,
)


def test_yaml_round_trip_and_overrides(tmp_path):
    path = tmp_path / "engine.yaml"
    path.write_text("model: /models/rm\nconcurrency: [1, 4]\n")
    cfg = load_config(path, EngineConfig, overrides=parse_overrides(["batch_size=16", "accelerator=gpu"]))
    assert cfg.concurrency == (1, 4) and cfg.batch_size == 16 and cfg.resolved_dtype == "bfloat16"
    dump_config(cfg, tmp_path / "out.yaml")
    again = load_config(tmp_path / "out.yaml", EngineConfig)
    assert again == cfg and config_hash(again) == config_hash(cfg)
    assert config_hash(cfg.model_copy(update={"batch_size": 8})) != config_hash(cfg)


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("model: m\nbatch_sise: 4\n", "batch_sise: Extra inputs are not permitted"),
        ("model: m\nbatch_size: 0\n", "batch_size: Input should be greater than or equal to 1"),
        ("model: m\nconcurrency: [3, 1]\n", "1 <= min <= max"),
        ("model: m\ntensor_parallel_size: 2\n", "needs accelerator: gpu"),
        ("batch_size: 4\n", "model: Field required"),
        ("- just\n- a list\n", "top level must be a mapping"),
        ("model: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_values_name_the_file_and_the_key(tmp_path, yaml_text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as err:
        load_config(path, EngineConfig)
    assert message in str(err.value) and str(path) in str(err.value)


def test_missing_file_and_bad_override(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml", EngineConfig)
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["novalue"])


def test_an_override_changes_only_the_aliased_section_it_names():
    # selftrain_tiny.yaml has `rm_round: *rm`: one YAML mapping under two names
    tiny = Path(__file__).resolve().parents[1] / "integration" / "configs" / "selftrain_tiny.yaml"
    plain = load_config(tiny, SelfTrainConfig)
    assert plain.train["rm_round"] == plain.train["rm"]
    cfg = load_config(tiny, SelfTrainConfig, overrides=parse_overrides(["train.rm_round.max_steps=60"]))
    assert cfg.train["rm_round"].max_steps == 60
    assert cfg.train["rm"] == plain.train["rm"] and cfg.train["prover"] == plain.train["prover"]


def test_an_override_inside_a_null_section_turns_it_on(tmp_path):
    tiny = Path(__file__).resolve().parents[1] / "integration" / "configs" / "selftrain_tiny.yaml"
    path = tmp_path / "arm_off.yaml"
    path.write_text(tiny.read_text() + "verifier_arm: null\n")
    assert load_config(path, SelfTrainConfig).verifier_arm is None
    verifier = "gram_ray.tinykit.addition:verify_rationale"
    cfg = load_config(path, SelfTrainConfig, overrides=parse_overrides([f"verifier_arm.verifier={verifier}"]))
    assert cfg.verifier_arm is not None and cfg.verifier_arm.verifier == verifier
    with pytest.raises(ConfigError, match="'rounds' is not a section"):
        load_config(path, SelfTrainConfig, overrides=parse_overrides(["rounds.x=1"]))


def test_voting_needs_sampling():
    with pytest.raises(ValueError, match="temperature > 0"):
        JudgeConfig(votes=8, temperature=0.0)
    assert JudgeConfig(votes=8, temperature=0.7).votes == 8


def test_adaptive_voting_is_off_by_default_and_needs_votes_left_to_skip():
    assert JudgeConfig(votes=8, temperature=0.7).adaptive is None
    cfg = JudgeConfig(votes=8, temperature=0.7, adaptive={"first_votes": 3})
    assert (cfg.adaptive.first_votes, cfg.adaptive.min_confidence) == (3, 0.9)
    with pytest.raises(ValueError, match=r"adaptive.first_votes \(8\) must be below votes \(8\)"):
        JudgeConfig(votes=8, temperature=0.7, adaptive={"first_votes": 8})
    with pytest.raises(ValueError, match="min_confidence"):
        JudgeConfig(votes=8, temperature=0.7, adaptive={"min_confidence": 0.4})
    with pytest.raises(ValueError, match="Extra inputs"):
        JudgeConfig(votes=8, temperature=0.7, adaptive={"first_vote": 2})
