"""GRAM-R2 self-training, as one driver.

    python pipelines/selftrain.py --config pipelines/configs/demo.yaml
    ray job submit --working-dir . -- python pipelines/selftrain.py --config pipelines/configs/paper-8b.yaml

Recipe: train the prover on the rationale seed set -> the prover writes rationales for the rationale-free
labeled set -> train the initial RM on them -> for each round over a fresh unlabeled source: the RM labels,
the prover proves those labels, denoising drops what the filters reject, the RM is retrained on all
synthesized data so far, and is evaluated on the held-out set. Optionally a control (the same retraining
without unlabeled data), a label-only GRAM judge on the same labels, and a final fine-tune on the seed set.

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
from gram_ray.config import EngineConfig, JudgeConfig, SelfTrainConfig
from gram_ray.run.driver import Driver, model_ref, pipeline_inputs, start_run
from gram_ray.run.report import label_accuracy, write_report


def _room_for_an_evaluation_aside(engine: EngineConfig) -> bool:
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
    selftrain(start_run(SelfTrainConfig, __doc__, argv))
    return 0


def selftrain(d: Driver) -> None:
    from gram_ray.stages import denoise, label_pairs, prove_pairs

    cfg, run = d.cfg, d.run
    data = pipeline_inputs(d, cfg.rounds)
    seed = data["seed_rationales"]
    eval_judge = cfg.eval_judge or cfg.judge.model_copy(update={"votes": 1, "temperature": 0.0, "swap_pass": False})

    def evaluate(name: str, model_stage: str, judge: JudgeConfig = eval_judge, kind: JudgeKind = "reasoning") -> float:
        return d.evaluate(name, model_stage, data["heldout"], judge, kind)

    base = data["base_model"]
    if "pretrain" in cfg.train:
        d.train("pretrain", "pretrain", base, [data["pretrain"]], ["data"])
        base = "pretrain"
    d.train("prover", "prover", model_ref(cfg.prover_model) if cfg.prover_model else base, [seed], ["data"])

    def prove(tag: str, labelled: str, upstream: str, round_: int) -> str:
        d.infer(f"prove_{tag}", cfg.prover, ["prover", upstream], lambda: prove_pairs(
            labelled, run.path(tag, "prove"), d.engine("prover"), cfg.prover, round=round_))
        d.infer(f"denoise_{tag}", cfg.filters, [f"prove_{tag}"], lambda: denoise(
            d.path(f"prove_{tag}", "rationales"), run.path(tag, "denoise"), cfg.filters))
        return d.path(f"denoise_{tag}", "kept")

    # the RM learns from synthesized rationales (the paper); the seed set joins them only with rm_with_seed
    initial = ([seed] if cfg.rm_with_seed else []) + [prove("r00", data["labeled"], "data", 0)]
    synthesized = list(initial)  # grows by each round's kept proofs
    rm_start = "prover" if cfg.rm_start == "prover" else base
    d.train("rm_r00", "rm", rm_start, initial, ["data", "denoise_r00"])

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
        accuracy = {"rm_r00": aside(evaluate, "eval_r00", "rm_r00")}
        rounds = [{"round": 0, "model": "rm_r00"}]
        previous = "rm_r00"
        for r in range(1, cfg.rounds + 1):
            tag, judge_stage = f"r{r:02d}", previous
            d.infer(f"label_{tag}", cfg.judge, [judge_stage, "data"], lambda: label_pairs(
                data["unlabeled"][r - 1], run.path(tag, "label"), d.engine(judge_stage), cfg.judge, round=r))  # noqa: B023
            synthesized.append(prove(tag, d.path(f"label_{tag}", "labelled"), f"label_{tag}", r))
            d.train(f"rm_{tag}", "rm_round", previous if cfg.retrain_from == "previous" else rm_start,
                    list(synthesized), [f"denoise_{tag}", previous])
            previous = f"rm_{tag}"
            accuracy[previous] = aside(evaluate, f"eval_{tag}", previous)
            rounds.append({
                "round": r, "model": previous,
                "pseudo_label_accuracy": label_accuracy(d.path(f"label_{tag}", "labelled")),
                "kept_label_accuracy": label_accuracy(d.path(f"denoise_{tag}", "kept")),
                **{stage: d.results[f"{stage}_{tag}"].info for stage in ("label", "prove", "denoise")},
            })

        baselines: dict[str, Future[float]] = {}
        if "label_only" in cfg.train:
            d.train("label_only", "label_only", base, [data["labeled"], seed], ["data"])
            judge = cfg.judge.model_copy(update={"template": cfg.train["label_only"].get("template", "gram")})
            baselines["label_only_heldout_accuracy"] = aside(evaluate, "eval_label_only", "label_only", judge, "label")
        if cfg.control and cfg.rounds:
            # The rounds' retraining without unlabeled data, in one launch: every round's steps on from the
            # initial RM, or (retrain_from: base) one round's from rm_start, which is what each round repeats.
            chained = cfg.retrain_from == "previous"
            d.train("control", "rm_round", "rm_r00" if chained else rm_start, initial,
                    ["rm_r00", "denoise_r00"], length=cfg.rounds if chained else 1)
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
        d.train("final", "final", previous, [seed], [previous])
        final = "final"
        rounds.append({"round": "final", "model": "final", "heldout_accuracy": evaluate("eval_final", "final")})

    paths = write_report(run, rounds, baseline_accuracy, final_model=d.path(final, "model"))
    print(f"[gram-ray] report: {paths['markdown']}  (also {paths['json']}, {paths['plot']})")


if __name__ == "__main__":
    sys.exit(main())
