"""GRPO of a tiny-kit policy on addition questions, rewarded by a self-trained GRAM-R2 RM, as one driver.

    python pipelines/grpo.py --config pipelines/configs/grpo/demo.yaml

Recipe: build the kit and pre-train its model briefly on worked solutions (the policy: right on some
questions, not all) -> measure it on held-out questions (greedy accuracy, and best-of-n accuracy of n
samples selected by each reward, n = 1 .. N) -> for each reward, GRPO from that policy with TRL's
``GRPOTrainer`` and measure the result. The rewards: ``gram_r2``, the reasoning RM that the self-training
run in ``rm_run`` ended with; ``label_only``, that run's label-only GRAM judge; ``oracle``, the exact
answer checker. The two judges give group rewards (``gram_ray.apply.trl_rewards.GroupReward``, method
``group_method``) and see each completion's final answer; the oracle is logged beside them at weight 0.

Writes ``runs/<name>/report.json`` (``policy_accuracy``: greedy, before and after each run; with ``eval.samples``
also ``policy_accuracy_sampled`` at the GRPO temperature; ``best_of_n``), report.md
and report.png. Resume and ``--redo`` work as in ``pipelines/selftrain.py``.
"""

from __future__ import annotations

import json
import sys
from functools import cache
from pathlib import Path
from typing import Any

from gram_ray.config import GrpoConfig, JudgeConfig, SelfTrainConfig, load_config
from gram_ray.data.files import atomic_write_text
from gram_ray.run.driver import MODEL, Driver, ModelPath, pipeline_inputs, start_run
from gram_ray.run.grpo_report import write_grpo_report
from gram_ray.run.manifest import RunDir
from gram_ray.tinykit.addition import question, split_questions

BEFORE = "before"


def main(argv: list[str] | None = None) -> int:
    grpo(start_run(GrpoConfig, __doc__, argv))
    return 0


def self_trained_judges(rm_run: str, kit_seed: int) -> dict[str, tuple[str, str, JudgeConfig]]:
    """(model folder, judge kind, judge settings) of the final reasoning RM and the label-only judge of a
    finished self-training run, prompted as that run prompted them."""
    root = Path(rm_run)
    if not (root / "report.json").is_file():
        raise FileNotFoundError(f"rm_run {root}: no report.json; point rm_run at a finished "
                                f"`pipelines/selftrain.py` run (e.g. `make demo`'s runs/demo)")
    run, report = RunDir(root), json.loads((root / "report.json").read_text())
    rm_cfg = load_config(root / "config.yaml", SelfTrainConfig)
    if rm_cfg.tinykit is None or rm_cfg.tinykit.seed != kit_seed:
        raise ValueError(f"rm_run {root} was not trained on the tiny kit of seed {kit_seed}: its held-out "
                         f"questions would not be held out from the RM; set tinykit.seed to the run's")
    if "label_only" not in rm_cfg.train:
        raise ValueError(f"rm_run {root} has no label_only phase: its config trains {sorted(rm_cfg.train)}")
    judges = {}
    for name, stage, kind, judge in (("gram_r2", report["rounds"][-1]["model"], "reasoning", rm_cfg.heldout_judge()),
                                     ("label_only", "label_only", "label", rm_cfg.label_only_judge())):
        run.verify(stage)
        judges[name] = (run.finished(stage)["outputs"][MODEL]["path"], kind, judge)
    return judges


def grpo(d: Driver) -> dict:
    from gram_ray.apply.answer_rewards import FinalAnswers, oracle_reward
    from gram_ray.apply.distinct_judge import DistinctComparisons
    from gram_ray.apply.judges import OfflineJudge
    from gram_ray.apply.trl_rewards import GroupReward
    from gram_ray.eval.policy import (
        best_of_n_accuracy,
        correct,
        generate,
        judge_tables,
        oracle_table,
        right_shares,
    )
    from gram_ray.train.grpo import train_grpo

    cfg, run = d.cfg, d.run
    ev = cfg.eval
    judges = self_trained_judges(cfg.rm_run, cfg.tinykit.seed) if set(cfg.rewards) - {"oracle"} else {}
    data = pipeline_inputs(d, rounds=1)
    d.train("pretrain", "pretrain", ModelPath(data["base_model"]), [data["pretrain"]], ["data"])
    heldout = split_questions(cfg.tinykit.seed, "heldout", ev.questions)
    questions, totals = [question(a, b) for a, b in heldout], [a + b for a, b in heldout]
    bon_questions, bon_totals = questions[: ev.best_of_n_questions], totals[: ev.best_of_n_questions]

    @cache
    def judge(name: str) -> DistinctComparisons:
        model, kind, settings = judges[name]
        return DistinctComparisons(OfflineJudge.from_config(cfg.engine.for_model(model), kind, settings))

    def measured(name: str, model_stage: str) -> dict[str, Any]:
        """Greedy accuracy, and with ``eval.samples`` the sampled accuracy at the GRPO temperature, with
        each question's score (a paired gain's standard error needs them)."""
        def measure() -> tuple[dict, dict]:
            model = d.path(model_stage, MODEL)
            greedy = [c for (c,) in generate(model, questions, 1, 0.0, ev.max_new_tokens)]
            sampled = (generate(model, questions, ev.samples, cfg.grpo.temperature, ev.max_new_tokens, ev.seed)
                       if ev.samples else [])
            out = run.path("eval", name, "greedy.json")
            out.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(out, json.dumps([{"question": q, "completion": c, "sum": t, "samples": s}
                                               for q, c, t, s in zip(questions, greedy, totals,
                                                                     sampled or [[]] * len(questions), strict=True)],
                                              indent=1))
            scores = {"greedy": right_shares([[c] for c in greedy], totals)}
            if sampled:
                scores["sampled"] = right_shares(sampled, totals)
            return {"completions": str(out)}, {"per_question": scores}

        settings = {"eval": ev, "temperature": cfg.grpo.temperature}
        return d.stage(f"eval_{name}", settings, [model_stage], measure, leaf=True).info

    scores = {BEFORE: measured(BEFORE, "pretrain")["per_question"]}
    print(f"[gram-ray] policy before GRPO: held-out accuracy {_summary(scores[BEFORE])}")

    def sample_candidates() -> tuple[dict, dict]:
        samples = generate(d.path("pretrain", MODEL), bon_questions, ev.best_of_n, ev.temperature,
                           ev.max_new_tokens, ev.seed)
        out = run.path("eval", "candidates.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, json.dumps(samples, indent=1))
        return {"candidates": str(out)}, {}

    candidates_stage = d.stage("candidates", {"eval": ev}, ["pretrain"], sample_candidates)
    candidates = json.loads(Path(candidates_stage.outputs["candidates"]).read_text())
    right = [[correct(c, t) for c in cs] for cs, t in zip(candidates, bon_totals, strict=True)]

    def best_of_n(name: str) -> list[float]:
        def select() -> tuple[dict, dict]:
            tables = ([oracle_table(r) for r in right] if name == "oracle"
                      else judge_tables(judge(name), bon_questions, candidates, cfg.both_orders))
            out = run.path("eval", f"tables_{name}.json")
            atomic_write_text(out, json.dumps(tables))
            return {"tables": str(out)}, {"accuracy": best_of_n_accuracy(tables, right, ev.best_of_n)}

        settings = {"judge": judges.get(name), "both_orders": cfg.both_orders}
        return d.stage(f"best_of_n_{name}", settings, ["candidates"], select, leaf=True).info["accuracy"]

    curves = {name: best_of_n(name) for name in cfg.rewards}
    train_rows = [{"question": question(a, b), "answer": a + b}
                  for a, b in split_questions(cfg.tinykit.seed, "train", cfg.train_questions)]
    grpo_info: dict[str, Any] = {}
    for name in cfg.rewards:
        def trained(name: str = name) -> tuple[dict, dict]:
            funcs, weights = [oracle_reward], [1.0]
            if name != "oracle":
                steering = GroupReward(judge(name), cfg.group_method, both_orders=cfg.both_orders, name=name)
                funcs, weights = [FinalAnswers(steering), oracle_reward], [1.0, 0.0]
            asked_before = judge(name).asked if name != "oracle" else 0
            out = run.path("models", f"grpo_{name}")
            history = train_grpo(d.path("pretrain", MODEL), train_rows, funcs, cfg.grpo, out, weights)
            info = {"oracle_reward_first_steps": _mean_logged(history[:5], "rewards/oracle_reward/mean"),
                    "oracle_reward_last_steps": _mean_logged(history[-6:], "rewards/oracle_reward/mean"),
                    "judge_prompts": judge(name).asked - asked_before if name != "oracle" else 0,
                    "seconds": next((h["train_runtime"] for h in history if "train_runtime" in h), None)}
            return {MODEL: str(out)}, info

        settings = {"grpo": cfg.grpo, "judge": judges.get(name), "method": cfg.group_method,
                    "both_orders": cfg.both_orders, "train_questions": cfg.train_questions}
        grpo_info[name] = d.stage(f"grpo_{name}", settings, ["pretrain"], trained).info
        scores[name] = measured(name, f"grpo_{name}")["per_question"]
        print(f"[gram-ray] policy after GRPO with {name} rewards: held-out accuracy {_summary(scores[name])}")

    sizes = {"heldout_questions": ev.questions, "best_of_n_questions": len(bon_questions),
             "best_of_n": ev.best_of_n, "train_questions": cfg.train_questions,
             "grpo_steps": cfg.grpo.steps, "prompts_per_step": cfg.grpo.prompts_per_step,
             "num_generations": cfg.grpo.num_generations, "pretrain_steps": cfg.train["pretrain"].max_steps,
             "sampled_per_question": ev.samples, "sampled_temperature": cfg.grpo.temperature}
    paths = write_grpo_report(run, scores, curves, grpo_info, sizes)
    print(f"[gram-ray] report: {paths['markdown']}  (also {paths['json']}, {paths['plot']})")
    return json.loads(Path(paths["json"]).read_text())


def _summary(scores: dict[str, list[float]]) -> str:
    return ", ".join(f"{kind} {sum(v) / len(v):.3f}" for kind, v in scores.items())


def _mean_logged(history: list[dict], key: str) -> float | None:
    values = [h[key] for h in history if key in h]
    return sum(values) / len(values) if values else None


if __name__ == "__main__":
    sys.exit(main())
