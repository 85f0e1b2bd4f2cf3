"""Joining or starting the Ray cluster a pipeline runs on."""

from __future__ import annotations

import os


def connect_ray(address: str | None = None, local_cpus: int | None = None) -> None:
    """Join ``address`` ("auto" = the cluster ``ray start --head`` made here) or RAY_ADDRESS, as ``ray job
    submit`` sets it (the job's runtime env is kept); without either, start a private local cluster, so a
    laptop run never lands on someone else's cluster by accident."""
    import ray

    if ray.is_initialized():
        return
    if address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=address)
    else:
        ray.init(num_cpus=local_cpus, include_dashboard=False,
                 runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false"}})
