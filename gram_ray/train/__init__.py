"""Training on Ray Train + DeepSpeed: Parquet in, Hugging Face checkpoint out.

``train(cfg)`` (``trainer``) is the one entry point every recipe uses; it runs the step loop
(``loop.train_loop_per_worker``) on every Ray Train worker. ``step.train_step`` is the same per-step
computation without Ray, for machines that have only torch and transformers (hence the lazy import:
``gram_ray.train.step`` must not pull in Ray, DeepSpeed or pydantic).
"""

from __future__ import annotations

__all__ = ["discard_training", "train"]


def __getattr__(name: str):
    if name in __all__:
        from gram_ray.train import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
