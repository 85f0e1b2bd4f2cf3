"""The GRPO run's report: held-out policy accuracy before and after GRPO with each reward (greedy, and
sampled at the GRPO temperature where measured), each gain's paired standard error, the share of the
oracle's gain each reward recovers, and best-of-n accuracy per reward, as ``report.md``, ``report.json``
and ``report.png``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from gram_ray.data.files import atomic_write_text
from gram_ray.run.manifest import RunDir
from gram_ray.run.report import percent_axes, save_figure

BEFORE = "before"
GREEDY, SAMPLED = "greedy", "sampled"
NAMES = {"gram_r2": "GRAM-R2 RM (self-trained)", "label_only": "label-only GRAM judge",
         "oracle": "exact checker (oracle)"}


def recovered_gain(policy_accuracy: dict[str, float]) -> dict[str, float | None]:
    """Each reward's accuracy gain as a share of the oracle's (None without an oracle run or its gain)."""
    before, oracle = policy_accuracy[BEFORE], policy_accuracy.get("oracle")
    if oracle is None or oracle <= before:
        return {name: None for name in policy_accuracy if name != BEFORE}
    return {name: (acc - before) / (oracle - before) for name, acc in policy_accuracy.items() if name != BEFORE}


def paired_standard_error(before: Sequence[float], after: Sequence[float]) -> float:
    """Standard error of the mean gain ``after - before`` over the same questions (per-question scores):
    a question's difficulty is shared by both runs, so the paired error is below the two separate ones."""
    if len(before) != len(after) or len(before) < 2:
        raise ValueError(f"a paired standard error needs the same >= 2 questions: {len(before)} and {len(after)}")
    gains = [a - b for a, b in zip(after, before, strict=True)]
    mean = sum(gains) / len(gains)
    return (sum((g - mean) ** 2 for g in gains) / (len(gains) - 1) / len(gains)) ** 0.5


def greedy_flips(before: Sequence[float], after: Sequence[float]) -> dict[str, int]:
    """Questions whose greedy answer GRPO turned from wrong to right and from right to wrong: a small net
    gain can be many fixes undone by as many breaks, which says where the reward misleads."""
    if len(before) != len(after):
        raise ValueError(f"flips need the same questions: {len(before)} and {len(after)}")
    return {"wrong_to_right": sum(1 for b, a in zip(before, after, strict=True) if a > b),
            "right_to_wrong": sum(1 for b, a in zip(before, after, strict=True) if a < b)}


def write_grpo_report(run: RunDir, scores: dict[str, dict[str, list[float]]], best_of_n: dict[str, list[float]],
                      grpo: dict[str, dict], sizes: dict) -> dict[str, str]:
    """``scores[policy][kind]``: each held-out question's score, ``greedy`` (0 or 1) and optionally
    ``sampled`` (share of its samples right), for ``before`` and each reward's GRPO run."""
    times = {name: entry["seconds"] for name, entry in run.manifest()["stages"].items()}
    kinds = [kind for kind in (GREEDY, SAMPLED) if kind in scores[BEFORE]]
    accuracy = {kind: {name: sum(s[kind]) / len(s[kind]) for name, s in scores.items()} for kind in kinds}
    gain_error = {kind: {name: paired_standard_error(scores[BEFORE][kind], s[kind])
                         for name, s in scores.items() if name != BEFORE} for kind in kinds}
    recovered = {kind: recovered_gain(accuracy[kind]) for kind in kinds}
    flips = {name: greedy_flips(scores[BEFORE][GREEDY], s[GREEDY]) for name, s in scores.items() if name != BEFORE}
    policy_accuracy = accuracy[GREEDY]
    report = {"policy_accuracy": policy_accuracy, "recovered_oracle_gain": recovered[GREEDY],
              **({"policy_accuracy_sampled": accuracy[SAMPLED], "recovered_oracle_gain_sampled": recovered[SAMPLED]}
                 if SAMPLED in kinds else {}),
              "gain_standard_error": gain_error, "greedy_flips": flips, "best_of_n": best_of_n,
              "grpo": grpo, "sizes": sizes, "stage_seconds": times, "total_seconds": round(sum(times.values()), 1)}
    columns = " | ".join(f"{kind} accuracy (gain +- paired s.e.) | share of the oracle's {kind} gain" for kind in kinds)
    lines = [f"# GRPO report: {run.root.name}", "",
             f"Held-out policy accuracy ({sizes['heldout_questions']} questions): greedy, and sampled "
             f"({sizes.get('sampled_per_question', 0)} samples a question at temperature "
             f"{sizes.get('sampled_temperature')}: the expected reward GRPO raises) where measured.", "",
             f"| policy | {columns} | greedy answers fixed / broken | judge prompts | GRPO seconds |",
             "|---" * (4 + 2 * len(kinds)) + "|",
             "| " + " | ".join(["before GRPO", *[c for k in kinds for c in (f"{100 * accuracy[k][BEFORE]:.1f}%", "")],
                                "", "", ""]) + " |"]
    for name in scores:
        if name != BEFORE:
            cells = []
            for kind in kinds:
                gain, share = accuracy[kind][name] - accuracy[kind][BEFORE], recovered[kind][name]
                error = gain_error[kind][name]
                cells += [f"{100 * accuracy[kind][name]:.1f}% ({100 * gain:+.1f} +- {100 * error:.1f})",
                          "n/a" if share is None else f"{100 * share:.0f}%"]
            info = grpo.get(name, {})
            seconds = "" if info.get("seconds") is None else f"{info['seconds']:.0f}"
            fixed_broken = f"{flips[name]['wrong_to_right']} / {flips[name]['right_to_wrong']}"
            lines.append(f"| GRPO with {NAMES[name]} | {' | '.join(cells)} | {fixed_broken} "
                         f"| {info.get('judge_prompts', '')} | {seconds} |")
    names = list(best_of_n)
    lines += ["", f"Best-of-n accuracy on the first {sizes['best_of_n_questions']} of those questions: n of the "
              f"{sizes['best_of_n']} samples per question of the policy before GRPO, the best selected by each "
              "reward.", "",
              "| n | " + " | ".join(NAMES[name] for name in names) + " |", "|---" * (len(names) + 1) + "|"]
    for i in range(len(next(iter(best_of_n.values())))):
        lines.append(f"| {i + 1} | " + " | ".join(f"{100 * best_of_n[name][i]:.1f}%" for name in names) + " |")
    lines += ["", "Sizes: " + ", ".join(f"{k} {v}" for k, v in sizes.items()) + ".", "",
              "| stage | seconds |", "|---|---|", *[f"| {name} | {sec:.1f} |" for name, sec in times.items()],
              "", f"Total: {report['total_seconds']:.0f} s.", "", "![policy accuracy and best-of-n](report.png)"]
    paths = {"markdown": str(run.path("report.md")), "json": str(run.path("report.json")),
             "plot": str(run.path("report.png"))}
    atomic_write_text(Path(paths["json"]), json.dumps(report, indent=2))
    atomic_write_text(Path(paths["markdown"]), "\n".join(lines) + "\n")
    _plot(accuracy, best_of_n, Path(paths["plot"]))
    return paths


def _plot(by_kind: dict[str, dict[str, float]], best_of_n: dict[str, list[float]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (bars, curves) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    labels = list(by_kind[GREEDY])
    width = 0.8 / len(by_kind)
    for i, (kind, by_policy) in enumerate(by_kind.items()):
        bars.bar([j + i * width for j in range(len(labels))], [100 * by_policy[name] for name in labels],
                 width=width, label=kind)
    bars.set_xticks([j + width * (len(by_kind) - 1) / 2 for j in range(len(labels))], labels)
    percent_axes(bars, "policy", "held-out accuracy (%)", "policy accuracy after GRPO with each reward")
    for name, accuracy in best_of_n.items():
        ns = range(1, len(accuracy) + 1)
        curves.plot(ns, [100 * a for a in accuracy], marker="o", markersize=3, label=NAMES[name])
    percent_axes(curves, "n (samples of the policy before GRPO)", "best-of-n accuracy (%)",
                 "best-of-n selected by each reward")
    save_figure(fig, out)
