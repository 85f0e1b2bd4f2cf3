"""The DeepSpeed config for a run, derived from ``TrainConfig`` so the two cannot disagree.

The optimizer and scheduler are passed to ``deepspeed.initialize`` as client objects (torch AdamW and a
transformers cosine schedule), which run on CPU and GPU alike; hence ``zero_allow_untested_optimizer``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from gram_ray.config import TrainConfig


def use_environment_op_cache() -> None:
    """Keep DeepSpeed's JIT-compiled ops in the Python environment, unless TORCH_EXTENSIONS_DIR says where.

    On CPU, DeepSpeed compiles a shared-memory allreduce op (about a minute on 2 cores) into torch's
    extension cache, one per user by default; environments at other paths (a fresh clone's .venv, another
    checkout) then rebuild it over each other at every launch. Per environment it is built once, and
    ``make install`` builds it ahead (``build_cpu_ops``)."""
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path(sys.prefix) / "torch_extensions"))


def build_cpu_ops() -> None:
    """Compile the op DeepSpeed's CPU accelerator loads at ``deepspeed.initialize``."""
    use_environment_op_cache()
    from deepspeed.comm.torch import build_shm_op

    build_shm_op()


def deepspeed_config(cfg: TrainConfig, world_size: int) -> dict:
    zero: dict = {"stage": cfg.zero_stage, "overlap_comm": cfg.use_gpu, "contiguous_gradients": True}
    if cfg.zero_stage == 3:
        # consolidated weights are gathered layer by layer at export time
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    return {
        "train_micro_batch_size_per_gpu": cfg.micro_batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "train_batch_size": cfg.micro_batch_size * cfg.grad_accum * world_size,
        "gradient_clipping": cfg.max_grad_norm,
        "zero_optimization": zero,
        "bf16": {"enabled": cfg.resolved_precision == "bf16"},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,  # progress is reported through Ray Train instead
        "wall_clock_breakdown": False,
    }
