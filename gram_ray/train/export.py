"""The finished model as one Hugging Face directory that transformers and vLLM load directly.

ZeRO-3 keeps each parameter in shards across workers; the export gathers them layer by layer (a
collective: every rank calls ``save_hf_model``) and rank 0 writes safetensors, config, generation
config and tokenizer. A manifest written last marks the export complete and records how it was made.
"""

from __future__ import annotations

import json
from pathlib import Path

MANIFEST = "gram_ray_train.json"


def save_hf_model(engine, zero_stage: int, tokenizer, out_dir: Path, rank: int) -> None:
    """Consolidate ``engine``'s weights and save them, with ``tokenizer``, under ``out_dir`` on rank 0."""
    state_dict = engine._zero3_consolidated_16bit_state_dict() if zero_stage == 3 else None
    if rank != 0:
        return
    module = engine.module
    if state_dict is None:
        state_dict = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    module.config.use_cache = True  # gradient checkpointing turns it off; inference wants it on
    module.save_pretrained(out_dir, state_dict=state_dict, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


def write_manifest(out_dir: Path, manifest: dict) -> None:
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))


def read_manifest(out_dir: Path) -> dict | None:
    """The manifest of a complete export, or None when ``out_dir`` holds none."""
    path = Path(out_dir) / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else None

