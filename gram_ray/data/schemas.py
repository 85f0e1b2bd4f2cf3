"""Arrow schemas of the record kinds gram-ray writes to Parquet, and the pair id.

`meta` is a JSON-encoded string rather than an Arrow map so that any source's extra fields survive
a round trip through Parquet, Ray Data and pandas unchanged.
"""

from __future__ import annotations

import hashlib
import json

import pyarrow as pa

LABELS = ("A", "B")

PAIR_FIELDS = [
    pa.field("id", pa.string(), nullable=False),
    pa.field("prompt", pa.string(), nullable=False),
    pa.field("response_a", pa.string(), nullable=False),
    pa.field("response_b", pa.string(), nullable=False),
    pa.field("label", pa.string()),  # "A", "B" or null (unlabeled)
    pa.field("source", pa.string()),
    pa.field("meta", pa.string()),  # JSON object
]
PAIR_SCHEMA = pa.schema(PAIR_FIELDS)

# Pairs with a human (or reference judge's) rationale for their label, e.g. a seed set: the training
# target "<think>rationale</think><answer>label</answer>" is derived where it is trained on.
SEED_SCHEMA = pa.schema([*PAIR_FIELDS, pa.field("rationale", pa.string(), nullable=False)])

RATIONALE_SCHEMA = pa.schema(
    [
        *PAIR_FIELDS,
        pa.field("rationale", pa.string(), nullable=False),
        pa.field("target", pa.string(), nullable=False),  # <think>rationale</think><answer>label</answer>
        pa.field("producer", pa.string()),  # model path or checkpoint that wrote the rationale
        pa.field("round", pa.int32()),  # 0 = seed / rationale-free labeled set, r >= 1 = self-training round
        pa.field("score", pa.float64()),  # proof-selection score, null when not selected by score
    ]
)

JUDGEMENT_SCHEMA = pa.schema(
    [
        pa.field("pair_id", pa.string(), nullable=False),
        pa.field("order", pa.string(), nullable=False),  # "ab": as stored, "ba": responses swapped
        pa.field("generated_text", pa.list_(pa.string())),  # the k sampled judgements
        pa.field("parsed", pa.list_(pa.string())),  # each sample's answer in the prompt's order
        pa.field("answer", pa.string()),  # majority answer mapped back to the stored order
        pa.field("p_a", pa.float64()),  # P(stored response_a is better), from answer-token logprobs
        pa.field("p_b", pa.float64()),
        pa.field("votes_a", pa.int32()),  # votes in the stored order
        pa.field("votes_b", pa.int32()),
        pa.field("votes_none", pa.int32()),
        pa.field("producer", pa.string()),
        pa.field("round", pa.int32()),
    ]
)

REJECT_FIELDS = [pa.field("reason", pa.string(), nullable=False), pa.field("stage", pa.string())]


def pair_id(prompt: str, response_a: str, response_b: str) -> str:
    """Order-insensitive content hash: a pair and its side-swapped twin share an id, so the same
    comparison cannot enter a dataset twice (or leak between train and held-out) by a swap."""
    lo, hi = sorted((response_a, response_b))
    payload = json.dumps([prompt, lo, hi], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:24]


def other_label(label: str) -> str:
    return "B" if label == "A" else "A"
