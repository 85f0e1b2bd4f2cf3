"""Benchmark results as a Markdown table and a JSON file."""

from __future__ import annotations

import json
from pathlib import Path

from gram_ray.eval.scoring import Score


def markdown_table(scores: list[Score], title: str | None = None) -> str:
    """One table per benchmark: its headline groups, then Overall, with example counts."""
    lines = [f"## {title}", ""] if title else []
    for score in scores:
        lines += [f"### {score.benchmark}", "", "| group | score | n |", "|---|---:|---:|"]
        for group, value in score.groups.items():
            lines.append(f"| {group} | {value:.2f} | {score.counts.get(group, '')} |")
        lines.append(f"| **Overall** | **{score.overall:.2f}** | {sum(score.counts.values())} |")
        for name, values in score.details.items():
            cells = ", ".join(f"{k} {v:.2f}" for k, v in values.items())
            lines.append(f"\n{name}: {cells}")
        lines += [f"\nNote: {note}" for note in score.notes]
        lines.append("")
    return "\n".join(lines)


def write_report(scores: list[Score], out_dir: str | Path, title: str | None = None) -> dict[str, Path]:
    """``scores.md`` and ``scores.json`` in ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "scores.md", "json": out / "scores.json"}
    paths["markdown"].write_text(markdown_table(scores, title))
    paths["json"].write_text(json.dumps([s.as_dict() for s in scores], indent=2))
    return paths
