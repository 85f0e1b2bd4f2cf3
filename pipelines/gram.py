"""GRAM (generative foundation reward model, two stages), as one driver.

    python pipelines/gram.py --config pipelines/configs/gram/demo.yaml

Stage 1 trains -log p([y_a, y_b] | x) on unlabeled pairs (both orders); stage 2 trains the label token
after the judge prompt with label smoothing (a regularised Bradley-Terry loss); an optional adaptation
phase fine-tunes on a small task set. After each labeled phase the judge is scored on the held-out pairs
with GRAM eq. 3 (P(A) averaged over both presentation orders). Resume and ``--redo`` work as in
``pipelines/selftrain.py``.
"""

from __future__ import annotations

import json
import sys

from gram_ray.config import GramConfig
from gram_ray.data.files import atomic_write_text
from gram_ray.run.driver import MODEL, Driver, ModelPath, StageRef, Start, pipeline_inputs, start_run


def main(argv: list[str] | None = None) -> int:
    gram(start_run(GramConfig, __doc__, argv))
    return 0


def gram(d: Driver) -> dict:
    cfg, run = d.cfg, d.run
    data = pipeline_inputs(d, rounds=1)
    accuracy: dict[str, float] = {}

    def evaluate(model_stage: str) -> None:
        if not data.get("heldout"):
            return
        accuracy[model_stage] = d.evaluate(f"eval_{model_stage}", model_stage, data["heldout"], cfg.judge, "label")
        print(f"[gram-ray] {model_stage}: held-out accuracy {accuracy[model_stage]:.3f}")

    base: Start = ModelPath(data["base_model"])
    if "pretrain" in cfg.train:
        d.train("pretrain", "pretrain", base, [data["pretrain"]], ["data"])
        base = StageRef("pretrain")
    d.train("stage1", "stage1", base, list(data["unlabeled"]), ["data"])
    d.train("stage2", "stage2", StageRef("stage1"), [data["labeled"]], ["stage1"])
    evaluate("stage2")
    final = "stage2"
    if "adapt" in cfg.train:
        if not data.get("adaptation"):
            raise ValueError("train.adapt needs data.adaptation (the task set to adapt on)")
        d.train("adapt", "adapt", StageRef("stage2"), [data["adaptation"]], ["stage2"])
        evaluate("adapt")
        final = "adapt"
    report = {"heldout_accuracy": accuracy, "final_model": d.path(final, MODEL)}
    atomic_write_text(run.path("report.json"), json.dumps(report, indent=2))
    print(f"[gram-ray] final model: {report['final_model']}; report: {run.path('report.json')}")
    return report


if __name__ == "__main__":
    sys.exit(main())
