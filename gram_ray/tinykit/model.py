"""Random-weight Llama checkpoints in the Hugging Face layout, loadable by transformers and vLLM (CPU).

The tiny default (0.59M params) is the demo's judge; ``build_llama`` with more layers and a wider
hidden size gives the tens-of-millions-parameter models that throughput benchmarks need, since at the
tiny size every measurement is overhead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase


@dataclass(frozen=True)
class LlamaShape:
    """Architecture knobs; vLLM's CPU attention needs ``head_dim`` of 32 or more."""

    layers: int = 2
    hidden: int = 128
    heads: int = 4
    intermediate: int = 512
    max_positions: int = 512

    def __post_init__(self) -> None:
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be a multiple of heads ({self.heads})")
        if self.hidden // self.heads < 32:
            raise ValueError(f"head_dim {self.hidden // self.heads} < 32: vLLM's CPU attention needs >= 32")


def build_llama(
    out_dir: str | Path, tokenizer: PreTrainedTokenizerBase, shape: LlamaShape = LlamaShape(), seed: int = 0
) -> Path:
    """Initialise a float32 Llama with ``seed`` and save it, the tokenizer (its ``model_max_length`` set
    to the model's positions) and a generation config."""
    out_dir = Path(out_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=shape.hidden,
        intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.heads,
        head_dim=shape.hidden // shape.heads,
        max_position_embeddings=shape.max_positions,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        dtype="float32",
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(out_dir)
    tokenizer.model_max_length = shape.max_positions
    tokenizer.save_pretrained(out_dir)
    return out_dir


def count_parameters(model_dir: str | Path) -> int:
    """Parameters of a saved checkpoint, tied embeddings counted once."""
    model = LlamaForCausalLM.from_pretrained(model_dir)
    return sum(p.numel() for p in model.parameters())
