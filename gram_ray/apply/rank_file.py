"""`gram-ray rank`: rank (or pick the best of) each row's responses in a JSONL or Parquet file.

Input rows: ``prompt`` (str), ``responses`` (list of str), optional ``reference`` (str; needed by the
``reference`` method) and ``id``. Output Parquet, one row per input row: the ranking (indices, best first),
the best index, and for the ``reference`` method each response's reward. Rows that cannot be ranked go to
``<output>.rejects.parquet`` with a ``reason``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from gram_ray.apply.ranking import METHODS, RankTask, best_of_n, rank, reference_rewards

RANKED_SCHEMA = pa.schema([
    pa.field("id", pa.string()),
    pa.field("prompt", pa.string()),
    pa.field("responses", pa.list_(pa.string())),
    pa.field("method", pa.string()),
    pa.field("order", pa.list_(pa.int32())),  # indices into responses, best first (null for --best-only)
    pa.field("best", pa.int32()),
    pa.field("rewards", pa.list_(pa.float64())),  # reference method: P(response beats the reference)
])
REJECT_SCHEMA = pa.schema([pa.field("record", pa.string()), pa.field("reason", pa.string())])


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pylist()
    rows = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{lineno}: not JSON ({exc})") from None
    return rows


def _problem(row: Any, method: str) -> str | None:
    if not isinstance(row, dict):
        return "not_an_object"
    if not isinstance(row.get("prompt"), str):
        return "prompt_missing"
    responses = row.get("responses")
    if not isinstance(responses, list) or not responses or not all(isinstance(r, str) for r in responses):
        return "responses_not_a_nonempty_list_of_strings"
    if method == "reference" and not isinstance(row.get("reference"), str):
        return "reference_missing"
    return None


def rank_rows(judge: Any, rows: list[dict], method: str, both_orders: bool = True,
              best_only: bool = False) -> tuple[pa.Table, pa.Table]:
    """(ranked table, rejects table); all rankable rows are judged together, round by round."""
    if method not in METHODS:
        raise ValueError(f"unknown ranking method {method!r}; choose one of {METHODS}")
    good, rejects = [], []
    for i, row in enumerate(rows):
        reason = _problem(row, method)
        if reason:
            rejects.append({"record": json.dumps(row, ensure_ascii=False, default=str), "reason": reason})
        else:
            good.append((str(row.get("id", i)), row))
    tasks = [RankTask(r["prompt"], r["responses"], r.get("reference")) for _, r in good]
    rewards = orders = None
    if method == "reference":  # one pass gives rewards, ranking and best together
        rewards = reference_rewards(judge, tasks, both_orders)
        orders = [sorted(range(len(r)), key=lambda i, r=r: -r[i]) for r in rewards]
        best = [o[0] for o in orders]
    elif best_only:
        best = best_of_n(judge, tasks, method, both_orders)
    else:
        orders = rank(judge, tasks, method, both_orders)
        best = [o[0] for o in orders]
    out = [{"id": rid, "prompt": r["prompt"], "responses": r["responses"], "method": method,
            "order": None if orders is None else orders[k], "best": best[k],
            "rewards": None if rewards is None else rewards[k]}
           for k, (rid, r) in enumerate(good)]
    return pa.Table.from_pylist(out, schema=RANKED_SCHEMA), pa.Table.from_pylist(rejects, schema=REJECT_SCHEMA)


def rank_file(judge: Any, input_path: str | Path, output: str | Path, method: str, both_orders: bool = True,
              best_only: bool = False) -> str:
    """Rank a file into ``output`` (+ rejects next to it); returns a one-line summary."""
    ranked, rejects = rank_rows(judge, read_rows(input_path), method, both_orders, best_only)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(ranked, output)
    rejects_path = output.with_name(f"{output.stem}.rejects.parquet")
    pq.write_table(rejects, rejects_path)
    return f"{ranked.num_rows} rows ranked ({method}) -> {output}; {rejects.num_rows} rejected -> {rejects_path}"
