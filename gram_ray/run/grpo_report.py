"""The GRPO run's report: held-out policy accuracy before and after GRPO with each reward, the share of
the oracle's gain each reward recovers, and best-of-n accuracy per reward, as ``report.md``,
``report.json`` and ``report.png``."""

from __future__ import annotations

import json
from pathlib import Path

from gram_ray.data.files import atomic_write_text
from gram_ray.run.manifest import RunDir
from gram_ray.run.report import percent_axes, save_figure

BEFORE = "before"
NAMES = {"gram_r2": "GRAM-R2 RM (self-trained)", "label_only": "label-only GRAM judge",
         "oracle": "exact checker (oracle)"}


def recovered_gain(policy_accuracy: dict[str, float]) -> dict[str, float | None]:
    """Each reward's accuracy gain as a share of the oracle's (None without an oracle run or its gain)."""
    before, oracle = policy_accuracy[BEFORE], policy_accuracy.get("oracle")
    if oracle is None or oracle <= before:
        return {name: None for name in policy_accuracy if name != BEFORE}
    return {name: (acc - before) / (oracle - before) for name, acc in policy_accuracy.items() if name != BEFORE}


def standard_error(accuracy: float, questions: int) -> float:
    """The binomial standard error of an accuracy measured on ``questions`` questions."""
    return (accuracy * (1 - accuracy) / questions) ** 0.5


def write_grpo_report(run: RunDir, policy_accuracy: dict[str, float], best_of_n: dict[str, list[float]],
                      grpo: dict[str, dict], sizes: dict) -> dict[str, str]:
    times = {name: entry["seconds"] for name, entry in run.manifest()["stages"].items()}
    recovered = recovered_gain(policy_accuracy)
    report = {"policy_accuracy": policy_accuracy, "recovered_oracle_gain": recovered, "best_of_n": best_of_n,
              "grpo": grpo, "sizes": sizes, "stage_seconds": times, "total_seconds": round(sum(times.values()), 1)}
    lines = [f"# GRPO report: {run.root.name}", "",
             f"Held-out policy accuracy ({sizes['heldout_questions']} questions, greedy; standard error "
             f"{100 * standard_error(policy_accuracy[BEFORE], sizes['heldout_questions']):.1f} points before "
             "GRPO).", "",
             "| policy | accuracy | share of the oracle's gain | judge prompts | GRPO seconds |",
             "|---|---|---|---|---|",
             f"| before GRPO | {100 * policy_accuracy[BEFORE]:.1f}% | | | |"]
    for name, acc in policy_accuracy.items():
        if name != BEFORE:
            share = "n/a" if recovered[name] is None else f"{100 * recovered[name]:.0f}%"
            info = grpo.get(name, {})
            seconds = "" if info.get("seconds") is None else f"{info['seconds']:.0f}"
            lines.append(f"| GRPO with {NAMES[name]} | {100 * acc:.1f}% | {share} | {info.get('judge_prompts', '')} "
                         f"| {seconds} |")
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
    _plot(policy_accuracy, best_of_n, Path(paths["plot"]))
    return paths


def _plot(policy_accuracy: dict[str, float], best_of_n: dict[str, list[float]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (bars, curves) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    labels = ["before", *[name for name in policy_accuracy if name != BEFORE]]
    colours = ["grey"] + ["tab:blue"] * (len(labels) - 1)
    bars.bar(labels, [100 * policy_accuracy[name] for name in labels], color=colours)
    percent_axes(bars, "policy", "held-out accuracy (%)", "policy accuracy after GRPO with each reward")
    for name, accuracy in best_of_n.items():
        ns = range(1, len(accuracy) + 1)
        curves.plot(ns, [100 * a for a in accuracy], marker="o", markersize=3, label=NAMES[name])
    percent_axes(curves, "n (samples of the policy before GRPO)", "best-of-n accuracy (%)",
                 "best-of-n selected by each reward")
    save_figure(fig, out)
