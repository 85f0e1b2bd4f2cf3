"""The real-text self-training config validates and reads exactly the files pipelines/prepare_real.py
writes; the prover's starting model is a config key of its own."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from gram_ray.config import ConfigError, SelfTrainConfig, load_config
from gram_ray.run.driver import model_ref

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "pipelines" / "configs" / "selftrain" / "real-smollm2.yaml"


def _prepare_module():
    spec = importlib.util.spec_from_file_location("prepare_real", REPO / "pipelines" / "prepare_real.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_real_config_validates_and_reads_what_prepare_real_writes():
    cfg = load_config(CONFIG, SelfTrainConfig)
    prepare = _prepare_module()
    out = Path("runs/real-data")
    assert cfg.base_model == str(out / prepare.FOLDER_NAME)
    assert cfg.data.seed_rationales == str(out / "seed_rationales.parquet")
    assert cfg.data.labeled == str(out / "labeled.parquet")
    assert cfg.data.heldout == str(out / "heldout.parquet")
    assert cfg.data.unlabeled == [str(out / "unlabeled" / f"round_{r:02d}.parquet") for r in range(1, cfg.rounds + 1)]
    assert cfg.tinykit is None and cfg.engine.accelerator == "cpu"
    for phase in cfg.train:
        train = cfg.train_config(phase, model="m", data=["d"], output_dir="o")
        assert not train.use_gpu and train.template == cfg.judge.template == cfg.prover.template == "gram_r2"


def test_hide_labels_keeps_the_human_label_for_the_report():
    import json

    import pyarrow as pa

    from gram_ray.data.schemas import PAIR_SCHEMA

    rows = [{"id": "x", "prompt": "p", "response_a": "a", "response_b": "b", "label": "B", "source": "s",
             "meta": json.dumps({"k": 1})}]
    hidden = _prepare_module().hide_labels(pa.Table.from_pylist(rows, schema=PAIR_SCHEMA)).to_pylist()[0]
    assert hidden["label"] is None and json.loads(hidden["meta"]) == {"k": 1, "gold_label": "B"}


def test_prover_model_is_optional_and_checked(tmp_path):
    raw = CONFIG.read_text()
    assert load_config(CONFIG, SelfTrainConfig).prover_model is None
    path = tmp_path / "c.yaml"
    path.write_text(raw + "prover_model: HuggingFaceTB/SmolLM2-360M-Instruct\n")
    assert load_config(path, SelfTrainConfig).prover_model == "HuggingFaceTB/SmolLM2-360M-Instruct"
    path.write_text(raw + "prover_model: [1]\n")
    with pytest.raises(ConfigError, match="prover_model"):
        load_config(path, SelfTrainConfig)


def test_model_ref_makes_directories_absolute_and_keeps_hub_ids(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model").mkdir()
    assert model_ref("model") == str(tmp_path / "model")
    assert model_ref("org/name") == "org/name"
