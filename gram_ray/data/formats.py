"""Record formats gram-ray reads, each a converter from one input record to PAIR_SCHEMA rows.

Generic formats: ``ab`` (prompt / response_a / response_b / label, i.e. our own pair Parquet),
``rationale`` (``ab`` plus rationale columns), ``seed`` (``ab`` plus a human ``rationale`` for the label,
no training target yet), ``chosen_rejected`` (prompt / chosen / rejected, e.g. the RewardBench files),
``hh_rlhf`` (Anthropic HH transcripts), ``helpsteer3`` (NVIDIA HelpSteer3-Preference, the GRAM-R2 paper's
seed set). Benchmark formats (files described in shared/data/benchmarks/SOURCES.md): ``judgebench``,
``judgebench_judgment`` (its reference judge outputs as seed rationales), ``rm_bench``, ``hhh``.
Extra fields of a record travel in `meta`; every chosen response goes on the side given by
`chosen_side(seed, pair id)`, and the benchmark converters add the grouping keys their official scoring
needs (JudgeBench source/category, RM-Bench domain and styles, HHH category).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from gram_ray.data.io import InputError
from gram_ray.data.records import RowError, SourceContext, check_text, pair_row, placed_pair, text_field, to_json
from gram_ray.data.schemas import PAIR_SCHEMA, RATIONALE_SCHEMA, SEED_SCHEMA, pair_id

Converter = Callable[[Mapping[str, Any], SourceContext], list[dict[str, Any]]]

AB_FIELDS = ("prompt", "response_a", "response_b")
RATIONALE_FIELDS = ("rationale", "target", "producer", "round", "score")
RM_BENCH_STYLES = ("concise", "detailed_plain", "detailed_markdown")  # list order in chosen / rejected
JUDGEBENCH_LABELS = {"A>B": "A", "B>A": "B"}
JUDGEBENCH_CATEGORIES = ("mmlu-pro", "livebench-reasoning", "livebench-math", "livecodebench")
HH_ASSISTANT = "\n\nAssistant:"
HELPSTEER3_ROLES = {"user": "User", "assistant": "Assistant", "system": "System"}
# HelpSteer3 annotators name the responses "@Response 1" / "@Response 2"; they stay on sides A / B.
HELPSTEER3_SIDES = {"@Response 1": "Response A", "@Response 2": "Response B"}
HHH_PROMPT_START = "###The instruction to evaluate:\n"
HHH_RESPONSE_START = "\n\n###Response to evaluate:\n"
HHH_RESPONSE_END = "\n\n###Score Rubrics:\n"


def convert_ab(record: Mapping[str, Any], ctx: SourceContext) -> list[dict[str, Any]]:
    """Already-A/B data; `label` is passed through as is (validation normalises and checks it). A
    differing input `id` is kept in meta as `input_id`: the row id is always the content hash."""
    return [_ab_row(record, ctx, consumed=set())]


def convert_rationale(record: Mapping[str, Any], ctx: SourceContext) -> list[dict[str, Any]]:
    """A/B data with a rationale and its training target (RATIONALE_SCHEMA), e.g. an earlier round's output."""
    row = _ab_row(record, ctx, consumed=set(RATIONALE_FIELDS))
    row["rationale"] = text_field(record, "rationale")
    row["target"] = text_field(record, "target")
    row["producer"] = _optional(record, "producer", str)
    row["round"] = _optional(record, "round", int)
    row["score"] = _optional(record, "score", (int, float))
    return [row]


def convert_seed(record: Mapping[str, Any], ctx: SourceContext) -> list[dict[str, Any]]:
    """A/B data with a rationale for its label and no training target (SEED_SCHEMA): a seed set as people
    write one. The label is required, since the rationale argues for it."""
    row = _ab_row(record, ctx, consumed={"rationale"})
    if row["label"] is None:
        raise RowError("missing_label")
    row["rationale"] = text_field(record, "rationale")
    return [row]


def _ab_row(record: Mapping[str, Any], ctx: SourceContext, consumed: set[str]) -> dict[str, Any]:
    prompt, a, b = (text_field(record, key) for key in AB_FIELDS)
    label = record.get("label")
    if label is not None and not isinstance(label, str):
        raise RowError("not_string:label")
    meta = carried_meta(record, {*AB_FIELDS, "id", "label", "source", *consumed})
    pid = pair_id(prompt, a, b)
    input_id = record.get("id")
    if input_id is not None and input_id != pid:
        meta["input_id"] = input_id
    return pair_row(prompt, a, b, label, source_name(record, ctx), meta, pid)


def convert_chosen_rejected(record: Mapping[str, Any], ctx: SourceContext) -> list[dict[str, Any]]:
    prompt, chosen, rejected = (text_field(record, key) for key in ("prompt", "chosen", "rejected"))
    meta = carried_meta(record, {"prompt", "chosen", "rejected", "source"})
    return [placed_pair(prompt, chosen, rejected, ctx.seed, source_name(record, ctx), meta)]


def convert_hh_rlhf(record: Mapping[str, Any], ctx: SourceContext) -> list[dict[str, Any]]:
    """Prompt = the dialogue both transcripts share, up to its last "\\n\\nAssistant:"; responses = what
    follows that marker in each. Surrounding whitespace is stripped from all three."""
    chosen, rejected = text_field(record, "chosen"), text_field(record, "rejected")
    shared = os.path.commonprefix([chosen, rejected])  # noqa: RUF071 -- a character prefix is meant
    cut = shared.rfind(HH_ASSISTANT)
    if cut < 0:
        raise RowError("hh_no_shared_assistant_turn")
    start = cut + len(HH_ASSISTANT)
    meta = carried_meta(record, {"chosen", "rejected", "source"})
    return [placed_pair(chosen[:cut].strip(), chosen[start:].strip(), rejected[start:].strip(), ctx.seed,
                        source_name(record, ctx, default="hh-rlhf"), meta)]


def convert_judgebench(record: Mapping[str, Any], ctx: SourceContext) -> list[dict[str, Any]]:
    """Pairs are kept on the benchmark's own sides; meta keeps JudgeBench's `source` (and its reporting
    `category`, the source prefix), `pair_id`, `original_id` and `response_model`."""
    prompt, a, b = (text_field(record, key) for key in ("question", "response_A", "response_B"))
    raw_label = record.get("label")
    label = JUDGEBENCH_LABELS.get(raw_label) if isinstance(raw_label, str) else None
    if label is None:
        raise RowError("bad_label")
    bench_source = text_field(record, "source")
    category = next((c for c in JUDGEBENCH_CATEGORIES if bench_source.startswith(c)), bench_source)
    meta = {"category": category, **carried_meta(record, {"question", "response_A", "response_B", "label"})}
    return [pair_row(prompt, a, b, label, "judgebench", meta)]


def convert_judgebench_judgment(record: Mapping[str, Any], ctx: SourceContext) -> list[dict[str, Any]]:
    """A JudgeBench reference-output row (judge_name arena_hard) as a seed rationale (SEED_SCHEMA): the
    judge's response in game 1 (the pair as stored, so its "Assistant A" is response_a), kept only when
    that game's decision is the benchmark's label (a rationale must argue for its label);
    ``judge_disagrees`` otherwise. Meta adds the judge model."""
    [row] = convert_judgebench(record, ctx)
    games = record.get("judgments")
    if not (isinstance(games, list) and games and isinstance(games[0], Mapping)):
        raise RowError("missing_field:judgments")
    first = games[0]
    judgment = first.get("judgment")
    if not isinstance(judgment, Mapping):
        raise RowError("missing_field:judgment")
    if JUDGEBENCH_LABELS.get(first.get("decision")) != row["label"]:
        raise RowError("judge_disagrees")
    meta = json.loads(row["meta"])
    meta.pop("judgments", None)
    meta["judge_model"] = judgment.get("judge_model")
    return [{**row, "meta": to_json(meta), "rationale": check_text(judgment.get("response"), "response").strip()}]


def convert_helpsteer3(record: Mapping[str, Any], ctx: SourceContext) -> list[dict[str, Any]]:
    """A HelpSteer3-Preference record (``context``: list of {role, content} turns; ``response1``,
    ``response2``; ``overall_preference`` in -3..3, negative when response 1 is better;
    ``individual_preference``: annotators' {score, reasoning}) as a seed rationale (SEED_SCHEMA).

    Response 1 is A and response 2 is B, so the annotators' "@Response 1/2" become "Response A/B". The
    prompt is a single user turn's text, or the dialogue as "User: ... / Assistant: ..." paragraphs.
    The rationale is the first annotator's reasoning whose score has the overall preference's sign.
    Ties (0) are ``helpsteer3_tie``; records without such reasoning are ``helpsteer3_no_reasoning``."""
    prompt = _dialogue(record.get("context"))
    a, b = text_field(record, "response1"), text_field(record, "response2")
    overall = record.get("overall_preference")
    if isinstance(overall, bool) or not isinstance(overall, int | float) or not -3 <= overall <= 3:
        raise RowError("bad_type:overall_preference")
    if overall == 0:
        raise RowError("helpsteer3_tie")
    label = "A" if overall < 0 else "B"
    annotations = record.get("individual_preference") or []
    if not isinstance(annotations, list):
        raise RowError("bad_type:individual_preference")
    reasons = [ann.get("reasoning") for ann in annotations
               if isinstance(ann, Mapping) and isinstance(ann.get("score"), int | float)
               and (ann["score"] < 0) == (overall < 0) and ann["score"] != 0]
    reasoning = next((r for r in reasons if isinstance(r, str) and r.strip()), None)
    if reasoning is None:
        raise RowError("helpsteer3_no_reasoning")
    for mention, side in HELPSTEER3_SIDES.items():
        reasoning = reasoning.replace(mention, side)
    meta = carried_meta(record, {"context", "response1", "response2", "overall_preference",
                                 "individual_preference", "source"})
    row = pair_row(prompt, a, b, label, source_name(record, ctx, default="helpsteer3"), meta)
    return [{**row, "rationale": reasoning.strip()}]


def _dialogue(context: Any) -> str:
    if not (isinstance(context, list) and context):
        raise RowError("missing_field:context")
    turns = []
    for turn in context:
        if not isinstance(turn, Mapping) or turn.get("role") not in HELPSTEER3_ROLES:
            raise RowError("bad_turn:context")
        turns.append((turn["role"], check_text(turn.get("content"), "context")))
    if len(turns) == 1 and turns[0][0] == "user":
        return turns[0][1]
    return "\n\n".join(f"{HELPSTEER3_ROLES[role]}: {content}" for role, content in turns)


def convert_rm_bench(record: Mapping[str, Any], ctx: SourceContext) -> list[dict[str, Any]]:
    """Each prompt's 3 chosen x 3 rejected responses become 9 pairs, row-major (chosen style, rejected
    style). The domain comes from the record if it has one (total_dataset.json), else from the file name
    (``chat_filtered.json`` -> ``chat``). Meta: bench_id, domain, subset, styles and their indices."""
    prompt = text_field(record, "prompt")
    chosen, rejected = _style_list(record, "chosen"), _style_list(record, "rejected")
    domain = record.get("domain") or ctx.name.removesuffix("_filtered")
    base = {"bench_id": record.get("id"), "domain": domain,
            **carried_meta(record, {"id", "prompt", "chosen", "rejected", "domain"})}
    return [
        placed_pair(prompt, chosen[i], rejected[j], ctx.seed, "rm-bench",
                    {**base, "chosen_style": RM_BENCH_STYLES[i], "rejected_style": RM_BENCH_STYLES[j],
                     "chosen_index": i, "rejected_index": j})
        for i in range(len(RM_BENCH_STYLES))
        for j in range(len(RM_BENCH_STYLES))
    ]


def _style_list(record: Mapping[str, Any], key: str) -> list[str]:
    responses = record.get(key)
    if not (isinstance(responses, list) and len(responses) == len(RM_BENCH_STYLES)):
        raise RowError(f"bad_style_list:{key}")
    return [check_text(text, key) for text in responses]


def convert_hhh(record: Mapping[str, Any], ctx: SourceContext) -> list[dict[str, Any]]:
    """Unwraps the Prometheus grading prompts of prometheus-eval's hhh_alignment_eval.json: the prompt sits
    between the instruction and response markers, the response between the response and rubric markers."""
    chosen_prompt, chosen = _unwrap_prometheus(text_field(record, "chosen_instruction"))
    rejected_prompt, rejected = _unwrap_prometheus(text_field(record, "rejected_instruction"))
    if chosen_prompt != rejected_prompt:
        raise RowError("hhh_prompt_mismatch")
    category = text_field(record, "source")
    meta = {"category": category,
            **carried_meta(record, {"chosen_instruction", "rejected_instruction", "source"})}
    return [placed_pair(chosen_prompt, chosen, rejected, ctx.seed, "hhh-alignment", meta)]


def _unwrap_prometheus(text: str) -> tuple[str, str]:
    start = text.find(HHH_PROMPT_START)
    middle = text.find(HHH_RESPONSE_START, start)
    end = text.find(HHH_RESPONSE_END, middle)
    if start < 0 or middle < 0 or end < 0:
        raise RowError("hhh_unparsable")
    return text[start + len(HHH_PROMPT_START):middle], text[middle + len(HHH_RESPONSE_START):end]


def carried_meta(record: Mapping[str, Any], consumed: set[str]) -> dict[str, Any]:
    """The record's own `meta` (a JSON object or dict) merged with every field no converter consumed."""
    raw = record.get("meta")
    if raw is None or raw == "":
        meta: dict[str, Any] = {}
    elif isinstance(raw, dict):
        meta = dict(raw)
    elif isinstance(raw, str):
        try:
            meta = json.loads(raw)
        except json.JSONDecodeError:
            raise RowError("bad_meta") from None
        if not isinstance(meta, dict):
            raise RowError("bad_meta")
    else:
        raise RowError("bad_meta")
    meta.update((k, v) for k, v in record.items() if k not in consumed and k != "meta")
    return meta


def source_name(record: Mapping[str, Any], ctx: SourceContext, default: str | None = None) -> str:
    """The record's own `source` when it has one, else `default`, else the input file's name."""
    source = record.get("source")
    return source if isinstance(source, str) and source.strip() else (default or ctx.name)


def _optional(record: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = record.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, kind):
        raise RowError(f"bad_type:{key}")
    return value


@dataclass(frozen=True)
class Format:
    convert: Converter
    schema: pa.Schema


FORMATS: dict[str, Format] = {
    "ab": Format(convert_ab, PAIR_SCHEMA),
    "rationale": Format(convert_rationale, RATIONALE_SCHEMA),
    "seed": Format(convert_seed, SEED_SCHEMA),
    "chosen_rejected": Format(convert_chosen_rejected, PAIR_SCHEMA),
    "hh_rlhf": Format(convert_hh_rlhf, PAIR_SCHEMA),
    "helpsteer3": Format(convert_helpsteer3, SEED_SCHEMA),
    "judgebench": Format(convert_judgebench, PAIR_SCHEMA),
    "judgebench_judgment": Format(convert_judgebench_judgment, SEED_SCHEMA),
    "rm_bench": Format(convert_rm_bench, PAIR_SCHEMA),
    "hhh": Format(convert_hhh, PAIR_SCHEMA),
}


def sniff_format(record: Mapping[str, Any], origin: str) -> str:
    """The record format of a file, told from the fields of its first record."""
    keys = set(record)
    if {"chosen_instruction", "rejected_instruction"} <= keys:
        return "hhh"
    if {"question", "response_A", "response_B", "label", "judgments"} <= keys:
        return "judgebench_judgment"
    if {"question", "response_A", "response_B", "label"} <= keys:
        return "judgebench"
    if {"context", "response1", "response2", "overall_preference"} <= keys:
        return "helpsteer3"
    if {*AB_FIELDS, "rationale", "target"} <= keys:
        return "rationale"
    if {*AB_FIELDS, "rationale"} <= keys:
        return "seed"
    if set(AB_FIELDS) <= keys:
        return "ab"
    if {"prompt", "chosen", "rejected"} <= keys:
        return "rm_bench" if isinstance(record["chosen"], list) else "chosen_rejected"
    if {"chosen", "rejected"} <= keys:
        return "hh_rlhf"
    raise InputError(f"{origin}: cannot tell the record format from the fields {sorted(keys)}; "
                     f"pass one of {sorted(FORMATS)} explicitly")


def check_format_name(fmt: str) -> None:
    if fmt != "auto" and fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: expected 'auto' or one of {sorted(FORMATS)}")
