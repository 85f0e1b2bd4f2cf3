"""Training on Ray Train + DeepSpeed: Parquet in, Hugging Face checkpoint out.

``train(cfg)`` is the one entry point every recipe uses; ``step.train_step`` is the same per-step
computation without Ray, for machines that have only torch and transformers (hence the lazy import:
``gram_ray.train.step`` must not pull in Ray, DeepSpeed or pydantic).
"""

from __future__ import annotations

__all__ = ["train"]


def __getattr__(name: str):
    if name == "train":
        from gram_ray.train.loop import train

        return train
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
