"""Everything needed to try gram-ray offline: a tokenizer and a tiny Llama built here, and a synthetic
verifiable preference task (two-digit addition) written as the Parquet files the pipelines read."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gram_ray.tinykit.addition import (
    DECISION_WORDS,
    SMALL_SIZES,
    TaskSizes,
    corpus,
    digit_verify,
    verify_rationale,
    worked_solution,
    write_task,
)
from gram_ray.tinykit.model import LlamaShape, build_llama, count_parameters
from gram_ray.tinykit.tokenizer import train_tokenizer

__all__ = [
    "DECISION_WORDS",
    "LlamaShape",
    "TaskSizes",
    "TinyKit",
    "build_bench_model",
    "build_kit",
    "count_parameters",
    "digit_verify",
    "verify_rationale",
    "worked_solution",
]


@dataclass(frozen=True)
class TinyKit:
    """Paths of a built kit. The tokenizer is saved inside ``model_dir``."""

    root: Path
    model_dir: Path
    seed_rationales: Path
    labeled: Path
    unlabeled: list[Path]
    heldout: Path
    pretrain: Path

    @property
    def tokenizer_dir(self) -> Path:
        return self.model_dir


def build_kit(
    out_dir: str | Path,
    seed: int = 0,
    small: bool = False,
    layers: int = 2,
    shape: LlamaShape | None = None,
    sizes: TaskSizes | None = None,
) -> TinyKit:
    """Build the tokenizer, a random-init tiny Llama (``layers`` deep unless ``shape`` is given) and the
    addition task's splits (probe sizes, ``SMALL_SIZES`` when ``small``, or ``sizes``) under ``out_dir``.
    Deterministic for a given seed; takes a few seconds."""
    root = Path(out_dir)
    model_dir = build_llama(root / "model", train_tokenizer(corpus()), shape or LlamaShape(layers=layers), seed)
    files = write_task(root / "data", seed, sizes or (SMALL_SIZES if small else TaskSizes()))
    return TinyKit(root=root, model_dir=model_dir, seed_rationales=files.seed_rationales, labeled=files.labeled,
                   unlabeled=files.unlabeled, heldout=files.heldout, pretrain=files.pretrain)


def build_bench_model(out_dir: str | Path, shape: LlamaShape, seed: int = 0) -> Path:
    """A random-weight Llama of any ``shape`` with the kit's tokenizer, for throughput benchmarks
    (e.g. ``LlamaShape(layers=8, hidden=512, heads=8, intermediate=2048, max_positions=4096)``: 33.8M
    params with the kit vocab)."""
    return build_llama(out_dir, train_tokenizer(corpus()), shape, seed)
