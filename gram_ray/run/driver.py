"""What every pipeline driver shares: its command line, the run folder, and running stages through the
manifest in order (a stage's hash covers its settings and its upstream stages, so changed inputs count
as changed settings)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gram_ray.config import Section, config_hash, dump_config, load_config, parse_overrides
from gram_ray.run.manifest import CorruptOutputError, RunDir, StageResult
from gram_ray.run.session import connect_ray

MODEL = "model"  # the output of a training stage (and of the tiny kit's data stage): a model folder
TAKEN_FROM = "taken_from"  # in a manifest entry another run made: that run's name (see Driver.reuse)


@dataclass(frozen=True)
class StageRef:
    """A model to start from: the one a finished stage of this run exported."""

    stage: str


@dataclass(frozen=True)
class ModelPath:
    """A model to start from: a folder or a hub id, from outside this run."""

    path: str


Start = StageRef | ModelPath


def round_tag(round_: int) -> str:
    """A self-training round's tag, as its stage names and folders carry it: 1 -> "r01"."""
    return f"r{round_:02d}"


def round_stage(name: str, round_: int) -> str:
    """The stage ``name`` of round ``round_`` in the manifest: ("label", 1) -> "label_r01"."""
    return f"{name}_{round_tag(round_)}"


@dataclass
class Driver:
    """Runs stages in order through the run folder's manifest; knows nothing about what a stage does.

    With ``reuse``, another run's folder (a second arm of an experiment on the same draw), a stage that run
    finished with the same hash, its files intact, is taken over as it is: recorded in this manifest with
    that run's outputs, not run again."""

    cfg: Any  # the pipeline's config (a Section with a `run` section)
    run: RunDir
    redo: set[str]
    reuse: RunDir | None = None
    redoing: bool = False
    results: dict[str, StageResult] = field(default_factory=dict)

    def stage(self, name: str, settings: object, upstream: list[str], fn: Callable[[], tuple[dict, dict]],
              leaf: bool = False) -> StageResult:
        """Run one stage; its hash covers its own settings and its upstream stages' hashes, so a
        changed input is a changed config too. Redoing a stage redoes everything after it, and so does
        a stage re-run because its files were damaged when the new files differ from the recorded ones
        (a retrained model): later stages must not keep outputs made from the old ones. A ``leaf`` stage
        (nothing uses its outputs: an evaluation, which may run in another thread) is redone with the
        stages before it but never makes later ones redo."""
        redo = self.redoes(name)
        if not leaf:
            self.redoing = redo
        digest = config_hash({"settings": settings, "upstream": [self.hash(u) for u in upstream]})
        if self._take_over(name, digest, upstream, leaf):
            redo = False  # the other run did this stage, redo included: it ran first in this command
        before = None if redo else self.run.finished(name)
        result = self.run.run_stage(name, digest, fn, redo=redo)
        if (not (result.skipped or leaf) and before is not None
                and output_files(before) != output_files(self.run.finished(name))):
            print(f"[gram-ray] stage {name}: new outputs differ from the damaged ones; redoing every later stage")
            self.redoing = True
        self.results[name] = result
        return result

    def _take_over(self, name: str, digest: str, upstream: list[str], leaf: bool) -> bool:
        """Record the ``reuse`` run's finished stage ``name`` here when its hash is ``digest``, its files are
        intact and it was made from the same upstream files as this run holds (not so after this run made an
        upstream stage itself); a different entry of this run's own is replaced, and later stages redo
        (they were made from other outputs)."""
        theirs = None if self.reuse is None else self.reuse.finished(name)
        if theirs is None or theirs["config_hash"] != digest or not all(map(self._same_in_both, upstream)):
            return False
        try:
            self.reuse.verify(name)
        except CorruptOutputError:
            return False
        ours, taken = self.run.finished(name), {**theirs, TAKEN_FROM: self.reuse.root.name}
        if ours != taken:
            if ours is not None and not leaf and output_files(ours) != output_files(theirs):
                self.redoing = True
            self.run.adopt(name, taken)
            print(f"[gram-ray] stage {name}: the same as in run {self.reuse.root.name}, taken over from there")
        return True

    def _same_in_both(self, name: str) -> bool:
        """Whether this run and the ``reuse`` run hold the same files for finished stage ``name``."""
        theirs = self.reuse.finished(name) if self.reuse is not None else None
        return theirs is not None and output_files(theirs) == output_files(self.run.finished(name))

    def train(self, name: str, phase: str, start: Start, data: list[str], upstream: list[str], length: int = 1
              ) -> str:
        """Train phase ``phase`` into ``runs/<name>/models/<name>`` from ``start`` (a stage's exported model
        or a model from outside the run) for ``length`` times the phase's steps (or epochs); returns the
        exported model directory."""
        from gram_ray.train import discard_training, train

        # Run again on purpose (a redo, or its recorded files changed), not resumed after a crash: what an
        # earlier attempt left must not be resumed or returned.
        from_scratch = self.redoes(name) or self.run.finished(name) is not None

        def fn() -> tuple[dict, dict]:
            model = self.path(start.stage, MODEL) if isinstance(start, StageRef) else start.path
            cfg = self.cfg.train_config(phase, model=model, data=data, output_dir=str(self.run.path("models", name)))
            if length != 1:
                cfg = cfg.model_copy(update={"max_steps": cfg.max_steps and cfg.max_steps * length,
                                             "epochs": cfg.epochs * length})
            if from_scratch:
                discard_training(cfg)
            return {MODEL: str(train(cfg))}, {"phase": phase}

        origin = start.stage if isinstance(start, StageRef) else start.path
        # the settings the config writes for the phase, not the defaults: a new default leaves finished stages alone
        given = self.cfg.train[phase].model_dump(mode="json", exclude_unset=True)
        settings = {"phase": given, "data": data, "start": origin, "length": length}
        return self.stage(name, settings, upstream, fn).outputs[MODEL]

    def infer(self, name: str, settings: object, upstream: list[str], run_stage: Callable[[], Any],
              leaf: bool = False) -> StageResult:
        """An inference stage: ``run_stage`` returns a stage summary, which must be complete."""
        return self.stage(name, settings, upstream, lambda: inference_outputs(run_stage()), leaf=leaf)

    def evaluate(self, name: str, model_stage: str, heldout: str, judge: Any, kind: str = "reasoning") -> float:
        """Held-out accuracy of a stage's model, as leaf stage ``name`` writing under ``eval/<name>``."""
        from gram_ray.eval.heldout import evaluate_heldout

        result = self.stage(name, {"judge": judge, "kind": kind}, [model_stage, "data"], lambda: evaluate_heldout(
            heldout, self.run.path("eval", name), self.engine(model_stage), judge, kind), leaf=True)
        return result.info["accuracy"]

    def engine(self, model_stage: str) -> Any:
        """The pipeline's engine settings pointed at a stage's model."""
        return self.cfg.engine.for_model(self.path(model_stage, MODEL))

    def redoes(self, name: str) -> bool:
        """Whether stage ``name`` runs again even if finished: asked for, or after a redone stage."""
        return self.redoing or name in self.redo or "all" in self.redo

    def hash(self, name: str) -> str:
        return self.run.finished(name)["config_hash"]

    def path(self, name: str, output: str) -> str:
        return self.results[name].outputs[output]


def output_files(entry: dict) -> dict:
    """A manifest entry's output files (size and digest per file), what makes two runs' outputs equal."""
    return {name: out["files"] for name, out in entry["outputs"].items()}


def inference_outputs(summary: Any) -> tuple[dict, dict]:
    """A stage summary (the stage printed it) as (outputs, info); an incomplete stage stops the run
    rather than feed on a gap."""
    if not summary.complete:
        raise RuntimeError(f"stage {summary.stage} is incomplete (kept + rejected != input): {summary}")
    info = {"inputs": summary.inputs, "outputs": summary.outputs, "rejected": summary.rejected}
    return summary.paths, info


def pipeline_inputs(d: Driver, rounds: int) -> dict:
    """The pipeline's input paths: its ``data`` section as given, or the tiny kit built (once) into the
    run folder; recorded as stage ``data`` so later stages depend on it."""
    cfg = d.cfg
    if cfg.tinykit is None:
        paths = {key: _absolute(value) for key, value in cfg.data.model_dump().items()}
        paths["base_model"] = model_ref(cfg.base_model)
        return d.stage("data", paths, [], lambda: ({}, paths)).info

    def build() -> tuple[dict, dict]:
        from gram_ray.tinykit import TaskSizes, build_kit

        k = cfg.tinykit
        sizes = TaskSizes(seed=k.seed_pairs, labeled=k.labeled, unlabeled_rounds=max(rounds, 1),
                          unlabeled_per_round=k.unlabeled_per_round, heldout=k.heldout, pretrain=k.pretrain)
        kit = build_kit(d.run.path("kit"), seed=k.seed, layers=k.layers, sizes=sizes)
        paths = {"base_model": str(kit.model_dir), "seed_rationales": str(kit.seed_rationales),
                 "labeled": str(kit.labeled), "unlabeled": [str(p) for p in kit.unlabeled],
                 "heldout": str(kit.heldout), "pretrain": str(kit.pretrain)}
        return {MODEL: str(kit.model_dir), "data": str(kit.labeled.parent)}, paths

    return d.stage("data", {"tinykit": cfg.tinykit, "rounds": rounds}, [], build).info


def model_ref(model: str) -> str:
    """A model directory as an absolute path (Ray workers run elsewhere); a hub id as given."""
    return str(Path(model).resolve()) if Path(model).exists() else model


def _absolute(value: str | list[str] | None) -> str | list[str] | None:
    """Paths as Ray workers (other working directories, other nodes) can use them."""
    if isinstance(value, list):
        return [str(Path(v).resolve()) for v in value]
    return None if value is None else str(Path(value).resolve())


def start_run(cls: type[Section], doc: str | None, argv: list[str] | None) -> Driver:
    """Parse ``--config/--set/--redo``, load and save the config in the run folder, connect to Ray."""
    parser = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0])
    parser.add_argument("--config", required=True, help="pipeline YAML (see pipelines/configs/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value (dotted key, YAML value); repeatable")
    parser.add_argument("--redo", action="append", default=[], metavar="STAGE",
                        help="run STAGE (and every later stage) again; 'all' redoes the whole run")
    args = parser.parse_args(argv)
    _show_progress_logs()
    cfg = load_config(args.config, cls, parse_overrides(args.overrides))
    run = open_run(cfg)
    connect_ray(cfg.run.ray_address, cfg.run.local_cpus)
    return Driver(cfg, run, set(args.redo))


def open_run(cfg: Any) -> RunDir:
    """The run folder of ``cfg`` (``<run.runs_dir>/<run.name>``), with the config it runs written into it."""
    run = RunDir(Path(cfg.run.runs_dir) / cfg.run.name)
    dump_config(cfg, run.path("config.yaml"))
    return run


def second_arm(d: Driver, cfg: Any) -> Driver:
    """A driver for another run of the same experiment (``cfg``: its config, on ``d``'s draw), which takes
    over every stage ``d``'s run finished with the same settings; ``--redo`` applies to it too."""
    return Driver(cfg, open_run(cfg), d.redo, reuse=d.run)


def _show_progress_logs() -> None:
    """gram_ray's own INFO lines (tokenizing, training, export times) on stderr, with the time of day;
    other libraries keep their levels."""
    log = logging.getLogger("gram_ray")
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s [gram-ray] %(message)s", "%H:%M:%S"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
