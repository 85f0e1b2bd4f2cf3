"""Score JudgeBench's own judge-output files (``outputs/*.jsonl`` of ScalerLab/JudgeBench).

Each line is a pair with ``label`` and ``judgments``: one entry per game, the second game judged with
the responses swapped and its ``decision`` written in that swapped frame. A failed game is ``null``.
Scoring one of the authors' reference files must give their published Overall number.
"""

from __future__ import annotations

import json
from pathlib import Path

from gram_ray.eval.scoring import Score, judgebench_score

JudgeBenchRow = tuple[str, str, str | None, str | None]


def _decision(judgment: dict | None) -> str | None:
    return None if judgment is None else judgment.get("decision")


def read_judge_outputs(path: str | Path) -> tuple[list[JudgeBenchRow], int]:
    """(source, label, first decision, second decision) per pair, and the games per pair in the file."""
    rows: list[JudgeBenchRow] = []
    games: set[int] = set()
    with Path(path).open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                pair = json.loads(line)
                judgments = pair["judgments"]
                label, source = pair["label"], pair["source"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{lineno}: not a JudgeBench judge-output line ({exc})") from None
            if not isinstance(judgments, list) or not 1 <= len(judgments) <= 2:
                raise ValueError(f"{path}:{lineno}: 'judgments' must be a list of 1 or 2 games")
            games.add(len(judgments))
            second = _decision(judgments[1]) if len(judgments) == 2 else None
            rows.append((source, label, _decision(judgments[0]), second))
    if not rows:
        raise ValueError(f"{path}: no pairs")
    if len(games) != 1:
        raise ValueError(f"{path}: pairs have different numbers of games {sorted(games)}")
    return rows, games.pop()


def score_judge_outputs(path: str | Path, single_game: bool | None = None) -> Score:
    """Official metric of one judge-output file. ``single_game`` defaults to what the file holds
    (one game per pair = ``--single_game``); forcing it on a two-game file uses the first game only."""
    rows, games = read_judge_outputs(path)
    if single_game is None:
        single_game = games == 1
    elif not single_game and games == 1:
        raise ValueError(f"{path}: one game per pair; the two-game rule needs both (use single_game)")
    return judgebench_score(rows, single_game=single_game)
