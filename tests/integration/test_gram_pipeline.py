"""The GRAM driver (`pipelines/gram.py`) end to end on real Ray Train + DeepSpeed + vLLM with the tiny kit's
files given as a `data:` section, as a user's own Parquet would be: stage 1 on unlabeled pairs, stage 2 on
labeled ones, adaptation on a small task set, each labeled phase scored on every held-out pair (eq. 3); the
report names the final model, which loads; running the same command again redoes nothing.

A few steps of a random-weight model teach it nothing, so accuracy is only checked to be a share."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from transformers import AutoModelForCausalLM

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
PHASES = ("stage1", "stage2", "adapt")


def _gram_main():
    spec = importlib.util.spec_from_file_location("gram_pipeline", REPO / "pipelines" / "gram.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def _config(kit, runs: Path) -> dict:
    phase = {"template": "compact", "cpus_per_worker": 1, "learning_rate": 1.0e-3, "max_steps": 4,
             "micro_batch_size": 8, "max_length": 128, "checkpoint_every": 2}
    return {
        "run": {"name": "gram-tiny", "runs_dir": str(runs)},
        "base_model": str(kit.model_dir),
        "data": {"unlabeled": [str(p) for p in kit.unlabeled], "labeled": str(kit.labeled),
                 "heldout": str(kit.heldout), "adaptation": str(kit.seed_rationales)},
        "engine": {"accelerator": "cpu", "max_model_len": 256, "batch_size": 8},
        "judge": {"template": "compact"},
        "train": {"stage1": {**phase, "objective": "gram_stage1"},
                  "stage2": {**phase, "objective": "gram_stage2", "label_smoothing": 0.1},
                  "adapt": {**phase, "objective": "gram_stage2", "label_smoothing": 0.1}},
    }


def test_gram_driver_trains_every_phase_scores_heldout_and_resumes(ray_local, tiny_kit, tmp_path):
    config = tmp_path / "gram.yaml"
    config.write_text(yaml.safe_dump(_config(tiny_kit, tmp_path / "runs")))
    main = _gram_main()
    assert main(["--config", str(config)]) == 0

    run = tmp_path / "runs" / "gram-tiny"
    report = json.loads((run / "report.json").read_text())
    assert set(report["heldout_accuracy"]) == {"stage2", "adapt"}
    assert all(0.0 <= acc <= 1.0 for acc in report["heldout_accuracy"].values())
    stages = json.loads((run / "manifest.json").read_text())["stages"]
    assert set(stages) == {"data", *PHASES, "eval_stage2", "eval_adapt"}
    assert report["final_model"] == stages["adapt"]["outputs"]["model"]["path"]
    AutoModelForCausalLM.from_pretrained(report["final_model"])

    heldout_ids = set(pq.read_table(tiny_kit.heldout, columns=["id"]).column("id").to_pylist())
    for phase in ("stage2", "adapt"):
        judged = pq.read_table(stages[f"eval_{phase}"]["outputs"]["judgements"]["path"]).to_pylist()
        assert sorted(r["id"] for r in judged) == sorted(heldout_ids)
        assert sum(r["correct"] for r in judged) / len(judged) == pytest.approx(report["heldout_accuracy"][phase])

    finished = {name: entry["finished_at"] for name, entry in stages.items()}
    assert main(["--config", str(config)]) == 0
    again = json.loads((run / "manifest.json").read_text())["stages"]
    assert {name: entry["finished_at"] for name, entry in again.items()} == finished
    assert json.loads((run / "report.json").read_text()) == report
