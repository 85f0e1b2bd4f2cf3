"""Inference stages on Ray Data + ray.data.llm (vLLM): label, prove, denoise, score.

Each takes config sections and a Parquet path (file or folder) or a Ray Dataset, and writes one folder,
replaced atomically, holding Parquet sub-folders (``part-00000.parquet``, ... in an order fixed by the
pair ids) and ``summary.json``; it returns the same ``StageSummary`` (rows per output, rejects per
reason, ``complete`` = every input row is in the primary output or in ``rejects``). Stages with an engine
keep its settled rows in ``<out>.partial/`` until they finish (for a Parquet path input), so a stage that
was killed resumes at row level (see ``checkpoint``).

============  =============================================================  ===============================
stage         writes                                                         schemas
============  =============================================================  ===============================
label_pairs   labelled/ (one row per judged pair), judgements/ (per order),  LABELLED_SCHEMA, JUDGEMENT_SCHEMA
              rejects/
prove_pairs   rationales/, proofs/ (every candidate and its scores),         RATIONALE_OUT_SCHEMA, PROOF_SCHEMA
              rejects/
denoise       kept/, rejects/                                                input's (labelled or rationale)
gram_score    scores/, rejects/                                              SCORE_SCHEMA
============  =============================================================  ===============================

Every ``rejects/`` row is the input row plus ``reason`` ("<category>: <detail>") and ``stage``.
"""

from gram_ray.stages.denoise import denoise
from gram_ray.stages.label import label_pairs
from gram_ray.stages.prove import prove_pairs
from gram_ray.stages.runner import StageSummary
from gram_ray.stages.score import gram_score

__all__ = ["StageSummary", "denoise", "gram_score", "label_pairs", "prove_pairs"]
