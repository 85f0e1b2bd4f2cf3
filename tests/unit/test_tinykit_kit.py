"""build_kit / build_bench_model: what lands on disk, its shape, and determinism."""

from __future__ import annotations

import hashlib
import json

import pytest
from transformers import AutoConfig, AutoTokenizer, GenerationConfig

from gram_ray.cli import main
from gram_ray.tinykit import LlamaShape, build_bench_model, build_kit, count_parameters


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_kit_model_is_the_probes_tiny_llama(tiny_kit):
    cfg = AutoConfig.from_pretrained(tiny_kit.model_dir)
    assert (cfg.model_type, cfg.hidden_size, cfg.num_attention_heads, cfg.head_dim) == ("llama", 128, 4, 32)
    assert (cfg.intermediate_size, cfg.num_hidden_layers, cfg.max_position_embeddings) == (512, 2, 512)
    assert cfg.tie_word_embeddings and str(cfg.dtype).endswith("float32")
    assert 0.5e6 < count_parameters(tiny_kit.model_dir) < 0.65e6


def test_kit_tokenizer_and_generation_config_sit_with_the_model(tiny_kit):
    tok = AutoTokenizer.from_pretrained(tiny_kit.tokenizer_dir)
    cfg = AutoConfig.from_pretrained(tiny_kit.model_dir)
    gen = GenerationConfig.from_pretrained(tiny_kit.model_dir)
    assert cfg.vocab_size == len(tok)
    assert (gen.eos_token_id, gen.pad_token_id) == (tok.eos_token_id, tok.pad_token_id) == (
        cfg.eos_token_id, cfg.pad_token_id)
    assert tok.chat_template and tok.model_max_length == 512


def test_kit_lists_every_file(tiny_kit):
    paths = [tiny_kit.seed_rationales, tiny_kit.labeled, *tiny_kit.unlabeled, tiny_kit.heldout, tiny_kit.pretrain]
    assert all(p.is_file() and p.is_relative_to(tiny_kit.root) for p in paths)
    assert len(tiny_kit.unlabeled) == 2


def test_same_seed_same_weights(tmp_path):
    one = build_kit(tmp_path / "one", seed=4, small=True)
    two = build_kit(tmp_path / "two", seed=4, small=True)
    other = build_kit(tmp_path / "other", seed=5, small=True)
    weights = [digest(k.model_dir / "model.safetensors") for k in (one, two, other)]
    assert weights[0] == weights[1] != weights[2]
    assert digest(one.labeled) == digest(two.labeled)
    assert digest(one.model_dir / "tokenizer.json") == digest(other.model_dir / "tokenizer.json")


def test_cli_builds_a_small_kit(tmp_path, capsys):
    assert main(["tinykit", "--out", str(tmp_path), "--small", "--layers", "3", "--seed", "1"]) == 0
    assert AutoConfig.from_pretrained(tmp_path / "model").num_hidden_layers == 3
    assert (tmp_path / "data" / "unlabeled" / "round_02.parquet").is_file()
    assert str(tmp_path) in capsys.readouterr().out


def test_bench_model_takes_the_requested_shape(tmp_path):
    shape = LlamaShape(layers=3, hidden=256, heads=4, intermediate=768, max_positions=2048)
    cfg = json.loads((build_bench_model(tmp_path, shape) / "config.json").read_text())
    assert (cfg["num_hidden_layers"], cfg["hidden_size"], cfg["head_dim"]) == (3, 256, 64)
    assert (cfg["intermediate_size"], cfg["max_position_embeddings"]) == (768, 2048)
    assert AutoTokenizer.from_pretrained(tmp_path).model_max_length == 2048


@pytest.mark.parametrize(("hidden", "heads", "match"), [(128, 3, "multiple"), (128, 8, "head_dim")])
def test_bad_shapes_are_refused(hidden, heads, match):
    with pytest.raises(ValueError, match=match):
        LlamaShape(hidden=hidden, heads=heads)
