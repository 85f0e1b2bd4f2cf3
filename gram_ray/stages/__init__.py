"""Inference stages on Ray Data + ray.data.llm (vLLM): label, prove, denoise, score.

Each takes config sections and a Parquet path (file or folder) or a Ray Dataset, and writes one folder,
replaced atomically, holding Parquet sub-folders (``part-00000.parquet``, ... in an order fixed by the
pair ids) and ``summary.json``; it returns the same ``StageSummary`` (rows per output, rejects per
reason, ``complete`` = every input row is in the primary output or in ``rejects``). Stages with an engine
keep its settled rows in ``<out>.partial/`` until they finish (for a Parquet path input), so a stage that
was killed resumes at row level (see ``resume``). Each stage declares its name and output folders once
(``LABEL``, ``SCREEN``, ``PROVE``, ``DENOISE``, ``SCORE``: ``StageOutputs``); pipelines and reports read
them from there.

============  =============================================================  ===============================
stage         writes                                                         schemas
============  =============================================================  ===============================
label_pairs   labelled/ (one row per judged pair), judgements/ (per order),  LABELLED_SCHEMA, JUDGEMENT_SCHEMA
              rejects/
screen        kept/, rejects/ (judge rules only)                             LABELLED_SCHEMA
prove_pairs   rationales/, proofs/ (every candidate and its scores),         RATIONALE_OUT_SCHEMA, PROOF_SCHEMA
              rejects/
denoise       kept/, rejects/                                                input's (labelled or rationale)
gram_score    scores/, rejects/                                              SCORE_SCHEMA
============  =============================================================  ===============================

Every ``rejects/`` row is the input row plus ``reason`` ("<category>: <detail>") and ``stage``.
"""

from gram_ray.stages.denoise import DENOISE, SCREEN, denoise, screen
from gram_ray.stages.label import LABEL, label_pairs
from gram_ray.stages.outputs import StageOutputs, StageSummary
from gram_ray.stages.prove import PROVE, prove_pairs
from gram_ray.stages.score import SCORE, gram_score

__all__ = ["DENOISE", "LABEL", "PROVE", "SCORE", "SCREEN", "StageOutputs", "StageSummary", "denoise", "gram_score",
           "label_pairs", "prove_pairs", "screen"]
