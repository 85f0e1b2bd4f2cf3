"""Arrow schemas of what the inference stages write, next to the shared ones in ``gram_ray.data.schemas``.

A labelled pair is a pair whose ``label`` came from the judge, with the evidence the denoising filters
read (``votes``, ``vote_share``, ``confidence``, ``consistent``) and the label the input row carried
(``input_label``, null for unlabeled data) so pseudo-label precision can be measured when it is known.
Rationale rows carry the same judge fields, null when the label came from humans.
"""

from __future__ import annotations

import pyarrow as pa

from gram_ray.data.schemas import PAIR_FIELDS, RATIONALE_SCHEMA, REJECT_FIELDS

JUDGE_FIELDS = [
    pa.field("votes", pa.int32()),  # sampled judgements that gave `label`, both orders together
    pa.field("votes_total", pa.int32()),  # all sampled judgements, unreadable ones included
    pa.field("vote_share", pa.float64()),  # votes / votes_total
    pa.field("confidence", pa.float64()),  # P(label) from the answer-token log-probabilities
    pa.field("consistent", pa.bool_()),  # both orders agreed; null without a swap pass
    pa.field("input_label", pa.string()),  # the label the input row carried (null when unlabeled)
    pa.field("judge", pa.string()),  # model that judged
]
JUDGE_COLUMNS = tuple(f.name for f in JUDGE_FIELDS)

LABELLED_SCHEMA = pa.schema([*PAIR_FIELDS, *JUDGE_FIELDS])

RATIONALE_OUT_SCHEMA = pa.schema([*RATIONALE_SCHEMA, *JUDGE_FIELDS])

PROOF_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("sample", pa.int32(), nullable=False),
        pa.field("proof", pa.string()),
        pa.field("num_tokens", pa.int32()),
        pa.field("logp_cond", pa.float64()),  # log p(proof | input, label)
        pa.field("logp_uncond", pa.float64()),  # log p(proof) without the input; null when not scored
        pa.field("score", pa.float64()),  # context specificity, higher = more specific
        pa.field("wellformed", pa.bool_()),  # can become a <think>/<answer> target
        pa.field("chosen", pa.bool_()),
    ]
)

SCORE_SCHEMA = pa.schema(
    [
        *PAIR_FIELDS,
        pa.field("p_first", pa.float64()),  # P(A) with response_a shown first (label tokens only)
        pa.field("p_second", pa.float64()),  # P(A) with response_b shown first
        pa.field("reward", pa.float64()),  # GRAM eq. 3: P(response_a beats response_b)
        pa.field("judge", pa.string()),
    ]
)


def reject_schema(schema: pa.Schema) -> pa.Schema:
    """The rows a stage could not use: the input's columns, every one nullable (a malformed row may lack
    any of them), plus ``reason`` and ``stage``."""
    return pa.schema([f.with_nullable(True) for f in schema] + REJECT_FIELDS)
