"""The Ray-free step: a plain function over a model and batches (what a torch-only GPU box can run)."""

import random

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from gram_ray.tinykit.addition import corpus
from gram_ray.tinykit.tokenizer import train_tokenizer
from gram_ray.train.batching import collate, group_by_length
from gram_ray.train.examples import Example
from gram_ray.train.objectives import make_objective
from gram_ray.train.step import build_optimizer, build_scheduler, train_step
from gram_ray.train.tokenize import ExampleEncoder, label_token_ids, render_prompt


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(corpus())


def _model(tok) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                         pad_token_id=tok.pad_token_id)
    return LlamaForCausalLM(config)


def _batches(tok, encoder, examples, micro):
    encoded = [encoder.encode(e) for e in examples]
    groups = group_by_length([len(e.input_ids) for e in encoded], micro, random.Random(0))
    return [collate([encoded[i].input_ids for i in g], [encoded[i].weights for i in g], tok.pad_token_id)
            for g in groups]


@pytest.mark.parametrize("objective", ["sft", "gram_stage2"])
def test_plain_steps_lower_the_loss(tok, objective):
    rng = random.Random(0)
    pairs = [(a, b) for a in range(10, 50, 3) for b in range(10, 50, 7)][:16]
    if objective == "sft":
        encoder = ExampleEncoder(tok, 128)
        examples = [Example(f"What is {a}+{b}?", f"sum {a + b}.") for a, b in pairs]
        loss_fn = make_objective("sft")
    else:
        label_ids = label_token_ids(tok, render_prompt(tok, "x"))
        encoder = ExampleEncoder(tok, 128, label_ids=label_ids)
        examples = [Example(f"What is {a}+{b}? {a + b}", rng.choice("AB")) for a, b in pairs]
        loss_fn = make_objective("gram_stage2", label_ids, smoothing=0.1)
    model = _model(tok)
    optimizer = build_optimizer(model, learning_rate=3e-3, weight_decay=0.0)
    scheduler = build_scheduler(optimizer, total_steps=24, warmup_ratio=0.1, min_lr_ratio=0.1)
    batches = _batches(tok, encoder, examples, micro=4)
    history = [train_step(model, optimizer, batches[:2], loss_fn, scheduler) for _ in range(24)]
    assert history[-1]["loss"] < history[0]["loss"] * 0.8, [round(h["loss"], 3) for h in history]
    assert history[0]["lr"] == 0.0 and history[2]["lr"] == pytest.approx(3e-3)  # two warmup steps, then peak
    assert history[0]["tokens"] == sum(int(b["attention_mask"].sum()) for b in batches[:2])
