"""GRAM-R2 self-training, as one driver.

    python pipelines/selftrain.py --config pipelines/configs/selftrain/demo.yaml
    ray job submit --working-dir . -- python pipelines/selftrain.py --config pipelines/configs/selftrain/paper-8b.yaml

Recipe: train the prover on the rationale seed set -> the prover writes rationales for the rationale-free
labeled set -> train the initial RM on them -> for each round over a fresh unlabeled source: the RM labels,
screening drops the labels the judge rules reject (before proofs are paid for), the prover proves the
rest, denoising drops the proofs the rationale rules reject, the RM is retrained on all synthesized data
so far, and is evaluated on the held-out set. Optionally a control (the same retraining without unlabeled
data), a label-only GRAM judge on the same labels, and a final fine-tune on the seed set.

With ``verifier_arm`` in the config, a second run on the same draw follows (``runs/<name>-verifier/``):
the same recipe with ``filters.verifier`` set. It takes over the first run's stages that are the same in
it (data, pre-training, prover, the labeled set's proofs) and the first run's report shows both arms.

Every stage writes under ``runs/<name>/`` and is recorded in its manifest once complete, so re-running
the same command resumes: finished stages are skipped, training resumes from its Ray Train checkpoint.
``--redo STAGE`` runs that stage and every later one again.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from gram_ray.apply.judges import JudgeKind
from gram_ray.config import EngineSettings, JudgeConfig, SelfTrainConfig, import_callable
from gram_ray.eval.heldout import JUDGEMENTS
from gram_ray.run.driver import (
    MODEL,
    Driver,
    ModelPath,
    StageRef,
    Start,
    model_ref,
    pipeline_inputs,
    round_stage,
    round_tag,
    second_arm,
    start_run,
)
from gram_ray.run.report import build_report, denoising_settings, filter_precision, step_accuracy, write_report

RM, EVAL = "rm", "eval"  # the pipeline's own per-round stages beside the inference stages': rm_r01, eval_r01


def _room_for_an_evaluation_aside(engine: EngineSettings) -> bool:
    """Whether the cluster holds an inference stage's engine pool with a CPU for its Ray Data map tasks and,
    beside them, an evaluation's engine: with less, the two would wait on each other's resources."""
    import ray

    per_engine = engine.cpus_per_engine if engine.accelerator == "cpu" else engine.tensor_parallel_size
    needed = per_engine * engine.concurrency[1] + 1 + per_engine
    cpus = ray.cluster_resources().get("CPU", 0)
    if cpus < needed:
        print(f"[gram-ray] run.concurrent_stages: the cluster has {cpus:g} CPUs, an engine pool with its map "
              f"tasks and an evaluation's engine need {needed}; running evaluations in turn", flush=True)
    return cpus >= needed


def _print_failure(future: Future[float]) -> None:
    if not future.cancelled() and future.exception() is not None:
        print(f"[gram-ray] a held-out evaluation failed: {future.exception()!r}", flush=True)


def main(argv: list[str] | None = None) -> int:
    d = start_run(SelfTrainConfig, __doc__, argv)
    headline = selftrain(d)
    paths = write_report(d.run, headline)
    if d.cfg.verifier_arm is not None:
        arm = second_arm(d, d.cfg.verifier_arm_config())
        print(f"[gram-ray] verifier arm: run {arm.run.root.name}, filters.verifier {arm.cfg.filters.verifier}",
              flush=True)
        arm_report = selftrain(arm)
        write_report(arm.run, arm_report)
        paths = write_report(d.run, headline, verifier_arm=arm_report)
    print(f"[gram-ray] report: {paths['markdown']}  (also {paths['json']}, {paths['plot']})")
    return 0


def selftrain(d: Driver) -> dict:
    """Run the recipe through ``d``; returns its report (``run.report.build_report``)."""
    from gram_ray.stages import DENOISE, LABEL, PROVE, SCREEN, denoise, label_pairs, prove_pairs, screen
    from gram_ray.stages.outputs import REJECTS, StageOutputs

    cfg, run = d.cfg, d.run
    data = pipeline_inputs(d, cfg.rounds)
    seed = data["seed_rationales"]
    eval_judge = cfg.heldout_judge()

    def evaluate(name: str, model_stage: str, judge: JudgeConfig = eval_judge, kind: JudgeKind = "reasoning") -> float:
        return d.evaluate(name, model_stage, data["heldout"], judge, kind)

    base: Start = ModelPath(data["base_model"])
    if "pretrain" in cfg.train:
        d.train("pretrain", "pretrain", base, [data["pretrain"]], ["data"])
        base = StageRef("pretrain")
    d.train("prover", "prover", ModelPath(model_ref(cfg.prover_model)) if cfg.prover_model else base, [seed], ["data"])

    def prove(round_: int, labelled: str, upstream: str) -> str:
        proving, denoising = round_stage(PROVE.name, round_), round_stage(DENOISE.name, round_)
        d.infer(proving, cfg.prover, ["prover", upstream], lambda: prove_pairs(
            labelled, run.path(round_tag(round_), PROVE.name), d.engine("prover"), cfg.prover, round=round_))
        d.infer(denoising, cfg.filters, [proving], lambda: denoise(
            d.path(proving, PROVE.primary), run.path(round_tag(round_), DENOISE.name), cfg.filters))
        return d.path(denoising, DENOISE.primary)

    def filtering(round_: int, stages: tuple[StageOutputs, ...], labelled: str, screened: str | None) -> dict:
        """A round's label precision filter by filter (``run.report.filter_precision``) and each of its
        filtering ``stages``' counts."""
        precision = filter_precision(
            labelled, {stage.name: d.path(round_stage(stage.name, round_), REJECTS) for stage in stages},
            screened, d.path(round_stage(DENOISE.name, round_), DENOISE.primary))
        return {"precision": precision, **{stage.name: d.results[round_stage(stage.name, round_)].info
                                           for stage in stages}}

    # the RM learns from synthesized rationales (the paper); the seed set joins them only with rm_with_seed
    initial = ([seed] if cfg.rm_with_seed else []) + [prove(0, data["labeled"], "data")]
    synthesized = list(initial)  # grows by each round's kept proofs
    rm_start = StageRef("prover") if cfg.rm_start == "prover" else base
    first_rm = round_stage(RM, 0)
    d.train(first_rm, "rm", rm_start, initial, ["data", round_stage(DENOISE.name, 0)])

    pool = ThreadPoolExecutor(max_workers=2)
    concurrent = cfg.run.concurrent_stages and _room_for_an_evaluation_aside(cfg.engine)

    def aside(evaluation: Callable[..., float], *args: Any) -> Future[float]:
        """With run.concurrent_stages, a held-out evaluation runs while the pipeline goes on: its time on a
        small machine is mostly engine start-up, not compute. A failure is printed at once and raised when
        the results are collected."""
        if concurrent:
            future = pool.submit(evaluation, *args)
            future.add_done_callback(_print_failure)
            return future
        done: Future[float] = Future()
        done.set_result(evaluation(*args))
        return done

    try:
        accuracy = {first_rm: aside(evaluate, round_stage(EVAL, 0), first_rm)}
        rounds = [{"round": 0, "model": first_rm, "eval": round_stage(EVAL, 0),
                   **filtering(0, (PROVE, DENOISE), data["labeled"], None)}]
        previous = first_rm
        for r in range(1, cfg.rounds + 1):
            labelling, judge_stage, unlabeled = round_stage(LABEL.name, r), previous, data["unlabeled"][r - 1]
            d.infer(labelling, cfg.judge, [judge_stage, "data"], lambda: label_pairs(
                unlabeled, run.path(round_tag(r), LABEL.name), d.engine(judge_stage), cfg.judge, round=r))  # noqa: B023
            screening = round_stage(SCREEN.name, r)
            d.infer(screening, cfg.filters.judge_rule_settings, [labelling], lambda: screen(
                d.path(labelling, LABEL.primary), run.path(round_tag(r), SCREEN.name), cfg.filters))  # noqa: B023
            synthesized.append(prove(r, d.path(screening, SCREEN.primary), screening))
            rm_start_round = StageRef(previous) if cfg.retrain_from == "previous" else rm_start
            d.train(round_stage(RM, r), "rm_round", rm_start_round, list(synthesized),
                    [round_stage(DENOISE.name, r), previous])
            previous = round_stage(RM, r)
            accuracy[previous] = aside(evaluate, round_stage(EVAL, r), previous)
            filtered = filtering(r, (LABEL, SCREEN, PROVE, DENOISE), d.path(labelling, LABEL.primary),
                                 d.path(screening, SCREEN.primary))
            rounds.append({
                "round": r, "model": previous, "eval": round_stage(EVAL, r),
                "pseudo_label_accuracy": filtered["precision"]["labelled"]["precision"],
                "kept_label_accuracy": filtered["precision"]["after_denoise"]["precision"],
                **filtered,
            })

        baselines: dict[str, Future[float]] = {}
        if "label_only" in cfg.train:
            d.train("label_only", "label_only", base, [data["labeled"], seed], ["data"])
            baselines["label_only_heldout_accuracy"] = aside(evaluate, "eval_label_only", "label_only",
                                                             cfg.label_only_judge(), "label")
        if cfg.control and cfg.rounds:
            # The rounds' retraining without unlabeled data, in one launch: every round's steps on from the
            # initial RM, or (retrain_from: base) one round's from rm_start, which is what each round repeats.
            chained = cfg.retrain_from == "previous"
            d.train("control", "rm_round", StageRef(first_rm) if chained else rm_start, initial,
                    [first_rm, round_stage(DENOISE.name, 0)], length=cfg.rounds if chained else 1)
            baselines["control_heldout_accuracy"] = aside(evaluate, "eval_control", "control")
        for entry in rounds:
            entry["heldout_accuracy"] = accuracy[entry["model"]].result()
        baseline_accuracy = {key: value.result() for key, value in baselines.items()}
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)  # queued evaluations are not started for a dead run
        raise
    pool.shutdown()

    final = previous
    if "final" in cfg.train:
        d.train("final", "final", StageRef(previous), [seed], [previous])
        final = "final"
        rounds.append({"round": "final", "model": "final", "eval": "eval_final",
                       "heldout_accuracy": evaluate("eval_final", "final")})
    if cfg.report.step_checker is not None:
        checker = import_callable(cfg.report.step_checker)
        for entry in rounds:
            entry["reasoning_steps"] = step_accuracy(d.path(entry["eval"], JUDGEMENTS), data["heldout"], checker)

    return build_report(run, rounds, baseline_accuracy, d.path(final, MODEL),
                        denoising_settings(cfg.filters, cfg.judge))


if __name__ == "__main__":
    sys.exit(main())
