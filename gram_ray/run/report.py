"""The run report: held-out accuracy after every round against the baselines, what each filter buys
(pseudo-label precision, rows each filter dropped and how many of those were right, kept-label precision
after screening and after denoising; round 0's rows are the labeled set's proofs), each reasoning step's
accuracy on the held-out set, time per stage, and a verifier arm beside the headline one, as ``report.md``,
``report.json`` and ``report.png``.

Precision needs the ground truth in ``meta.gold_label`` (the synthetic task keeps it on every row, the
unlabeled ones included); without it the figures are None ("n/a").
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds

from gram_ray.config import FilterConfig, JudgeConfig
from gram_ray.data.files import atomic_write_text
from gram_ray.run.driver import TAKEN_FROM
from gram_ray.run.manifest import RunDir
from gram_ray.stages.outputs import category

StepChecker = Callable[[Mapping, str], Mapping[str, bool]]
# the arm-level keys of report.json, the headline's and the verifier arm's alike
ARM_KEYS = ("rounds", "final_heldout_accuracy", "control_heldout_accuracy", "label_only_heldout_accuracy",
            "denoising")


def _rows(path: str, columns: list[str]) -> list[dict]:
    return ds.dataset(path, format="parquet").to_table(columns=columns).to_pylist()


def gold_label(meta: str | None) -> str | None:
    """The ground-truth label a row's ``meta`` JSON carries, or None (none kept, or meta not a JSON object:
    a quarantined row may hold anything)."""
    try:
        parsed = json.loads(meta or "{}")
    except ValueError:
        return None
    return parsed.get("gold_label") if isinstance(parsed, dict) else None


def label_counts(path: str) -> dict[str, Any]:
    """Rows of a Parquet file or folder, those with a known gold label (``scored``), those whose ``label``
    equals it (a null label is wrong), and ``precision`` = correct / scored (None when nothing is scored)."""
    golds = [(row["label"], gold_label(row["meta"])) for row in _rows(path, ["label", "meta"])]
    scored = [(label, gold) for label, gold in golds if gold is not None]
    correct = sum(label == gold for label, gold in scored)
    return {"rows": len(golds), "scored": len(scored), "correct": correct,
            "precision": correct / len(scored) if scored else None}


def dropped_by_reason(rejects: str, stage: str) -> list[dict[str, Any]]:
    """A stage's quarantined rows per reason category: how many, how many of them have a known gold label
    (``scored``), and how many of those carried the right one (what dropping them cost)."""
    rows, scored, correct = Counter(), Counter(), Counter()
    for row in _rows(rejects, ["label", "meta", "reason"]):
        reason, gold = category(row["reason"]), gold_label(row["meta"])
        rows[reason] += 1
        scored[reason] += gold is not None
        correct[reason] += gold is not None and row["label"] == gold
    return [{"stage": stage, "reason": reason, "rows": rows[reason], "scored": scored[reason],
             "correct": correct[reason]} for reason in sorted(rows)]


def filter_precision(labelled: str, rejects: Mapping[str, str], screened: str | None, denoised: str
                     ) -> dict[str, Any]:
    """A round's label precision filter by filter: the pairs that came labelled (``labelled``: the label
    stage's, or round 0's labeled set), each stage's rejects per reason (``rejects``: stage name -> its
    rejects folder, in pipeline order), and the pairs kept after screening (None: not screened) and after
    denoising."""
    return {"labelled": label_counts(labelled),
            "dropped": [entry for stage, path in rejects.items() for entry in dropped_by_reason(path, stage)],
            "after_screen": label_counts(screened) if screened else None, "after_denoise": label_counts(denoised)}


def step_accuracy(judgements: str, pairs: str, checker: StepChecker) -> dict[str, Any]:
    """Each reasoning step's share right over a held-out evaluation's judgements (``judgements.parquet``,
    its first game's text), as ``checker(pair_row, rationale)`` reads them; a missing text has no step right."""
    by_id = {row["id"]: row for row in _rows(pairs, ["id", "prompt", "response_a", "response_b", "label", "meta"])}
    right: Counter[str] = Counter()
    judged = _rows(judgements, ["id", "rationale_1"])
    for row in judged:
        if row["id"] not in by_id:
            raise ValueError(f"{judgements}: judgement of pair {row['id']!r}, which {pairs} does not hold")
        steps = checker(by_id[row["id"]], row["rationale_1"] or "")
        right.update({step: int(bool(ok)) for step, ok in steps.items()})
    return {"pairs": len(judged), "share_right": {step: n / len(judged) for step, n in right.items()}}


def denoising_settings(filters: FilterConfig, judge: JudgeConfig) -> dict[str, Any]:
    """What an arm denoised with: the filter rules and the judge's sampling that the judge rules read."""
    return {**filters.model_dump(mode="json"), "votes": judge.votes, "temperature": judge.temperature,
            "swap_pass": judge.swap_pass}


def build_report(run: RunDir, rounds: list[dict], baselines: dict, final_model: str, denoising: dict
                 ) -> dict[str, Any]:
    """report.json's content for one arm (``verifier_arm`` is set by ``write_report``)."""
    stages = run.manifest()["stages"]
    times = {name: entry["seconds"] for name, entry in stages.items() if TAKEN_FROM not in entry}
    return {
        "run": run.root.name,
        "rounds": rounds,
        "final_heldout_accuracy": rounds[-1]["heldout_accuracy"],
        "initial_heldout_accuracy": rounds[0]["heldout_accuracy"],
        "control_heldout_accuracy": baselines.get("control_heldout_accuracy"),
        "label_only_heldout_accuracy": baselines.get("label_only_heldout_accuracy"),
        "denoising": denoising,
        "verifier_arm": None,
        "final_model": final_model,
        "stage_seconds": times,  # this run's own stages: those taken over from another run cost it nothing
        "taken_over": {name: entry[TAKEN_FROM] for name, entry in stages.items() if TAKEN_FROM in entry},
        "total_seconds": round(sum(times.values()), 1),
    }


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _model_name(entry: dict) -> str:
    return {0: "initial RM", "final": "final fine-tune"}.get(entry["round"], f"round {entry['round']}")


def _counted(counts: dict | None) -> str:
    return "-" if counts is None else f"{counts['rows']} ({_fmt(counts['precision'])})"


def _rows_or_dash(counts: dict | None) -> str:
    return "-" if counts is None else str(counts["rows"])


def _right_share(dropped: dict) -> str:
    """How many of a filter's dropped rows were rightly labelled, of those whose truth is known."""
    if not dropped["scored"]:
        return "n/a"
    return f"{dropped['correct']} ({_fmt(dropped['correct'] / dropped['scored'])})"


def precision_lines(report: dict) -> list[str]:
    """report.md's tables of what each filter buys, for one arm."""
    rounds = [r for r in report["rounds"] if "precision" in r]
    if not rounds:
        return []
    lines = ["| round | labelled (precision) | kept after screening | kept after denoising |", "|---|---|---|---|"]
    lines += [f"| {r['round']} | {_counted(r['precision']['labelled'])} | {_counted(r['precision']['after_screen'])} "
              f"| {_counted(r['precision']['after_denoise'])} |" for r in rounds]
    if rounds[0]["round"] == 0:
        lines += ["", "Round 0 is the labeled set's proofs (its labels are given: nothing is screened)."]
    lines += ["", "| round | stage | filter | rows dropped | of them correctly labelled (share of those with a known "
              "label) |", "|---|---|---|---|---|"]
    lines += [f"| {r['round']} | {d['stage']} | {d['reason']} | {d['rows']} | {_right_share(d)} |"
              for r in rounds for d in r["precision"]["dropped"]]
    return lines


def step_lines(report: dict) -> list[str]:
    """report.md's table of reasoning-step accuracy on the held-out set, when a step checker was given."""
    judged = [r for r in report["rounds"] if r.get("reasoning_steps")]
    if not judged:
        return []
    steps = list(judged[0]["reasoning_steps"]["share_right"])
    lines = ["| model | " + " | ".join(steps) + " |", "|---|" + "---|" * len(steps)]
    lines += [f"| {_model_name(r)} | " + " | ".join(_fmt(r["reasoning_steps"]["share_right"].get(s)) for s in steps)
              + " |" for r in judged]
    return lines


def _denoising_line(report: dict) -> str:
    return "Denoising: " + ", ".join(f"{key} {value}" for key, value in report["denoising"].items()) + "."


def markdown(report: dict) -> list[str]:
    """report.md's lines: the headline arm, and the verifier arm beside it when there is one."""
    arm = report["verifier_arm"]
    lines = [f"# Self-training report: {report['run']}", "", _denoising_line(report), "",
             "| model | held-out accuracy | pseudo-label precision | kept-label precision "
             "| labelled -> screened -> kept |", "|---|---|---|---|---|"]
    for r in report["rounds"]:
        flow = ""
        if "precision" in r:
            p = r["precision"]
            flow = f"{p['labelled']['rows']} -> {_rows_or_dash(p['after_screen'])} -> {p['after_denoise']['rows']}"
        lines.append(f"| {_model_name(r)} | {_fmt(r['heldout_accuracy'])} | {_fmt(r.get('pseudo_label_accuracy'))} | "
                     f"{_fmt(r.get('kept_label_accuracy'))} | {flow} |")
    for key, name in (("control_heldout_accuracy", "control (no unlabeled data)"),
                      ("label_only_heldout_accuracy", "label-only GRAM judge")):
        if report[key] is not None:
            lines.append(f"| {name} | {_fmt(report[key])} | | | |")
    lines += ["", "## Label precision per filter", "", *precision_lines(report)]
    if step_lines(report):
        lines += ["", "## Reasoning steps on the held-out set (share of judgements with the step right)", "",
                  *step_lines(report)]
    if arm is not None:
        lines += ["", f"## Verifier arm: `{arm['run']}` (the same draw, filters.verifier "
                  f"`{arm['denoising']['verifier']}`)", "", _denoising_line(arm), "",
                  "| model | headline arm | verifier arm |", "|---|---|---|"]
        lines += [f"| {_model_name(ours)} | {_fmt(ours['heldout_accuracy'])} | {_fmt(theirs['heldout_accuracy'])} |"
                  for ours, theirs in zip(report["rounds"], arm["rounds"], strict=True)]
        lines += [f"| {name} | {_fmt(report[key])} | {_fmt(arm[key])} |"
                  for key, name in (("control_heldout_accuracy", "control"),
                                    ("label_only_heldout_accuracy", "label-only GRAM judge"))
                  if report[key] is not None or arm[key] is not None]
        lines += ["", "### Verifier arm: label precision per filter", "", *precision_lines(arm)]
        if step_lines(arm):
            lines += ["", "### Verifier arm: reasoning steps on the held-out set", "", *step_lines(arm)]
    lines += ["", "## Time per stage", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {name} | {sec:.1f} |" for name, sec in report["stage_seconds"].items()]
    if report["taken_over"]:
        lines += ["", "Taken over from another run (the same settings): " + ", ".join(
            f"{name} (`{run}`)" for name, run in report["taken_over"].items()) + "."]
    lines += ["", f"Total: {report['total_seconds']:.0f} s. Final model: `{report['final_model']}`.", "",
              "![held-out accuracy](report.png)"]
    return lines


def write_report(run: RunDir, report: dict, verifier_arm: dict | None = None) -> dict[str, str]:
    """Write report.json, report.md and report.png into the run folder; ``verifier_arm`` (the second arm's
    report) goes beside the headline in all three."""
    report = {**report, "verifier_arm": verifier_arm and {key: verifier_arm[key] for key in ("run", *ARM_KEYS)}}
    paths = {"markdown": str(run.path("report.md")), "json": str(run.path("report.json")),
             "plot": str(run.path("report.png"))}
    atomic_write_text(Path(paths["json"]), json.dumps(report, indent=2, default=str))
    atomic_write_text(Path(paths["markdown"]), "\n".join(markdown(report)) + "\n")
    _plot(report, Path(paths["plot"]))
    return paths


def _plot(report: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    arms = [("self-trained RM", report)]
    if report["verifier_arm"] is not None:
        arms.append(("verifier arm", report["verifier_arm"]))
    for name, arm in arms:
        trained = [r for r in arm["rounds"] if r["round"] != "final"]
        ax.plot([r["round"] for r in trained], [100 * r["heldout_accuracy"] for r in trained], marker="o", label=name)
    trained = [r for r in report["rounds"] if r["round"] != "final"]
    pseudo = [(r["round"], 100 * r["pseudo_label_accuracy"]) for r in trained if r.get("pseudo_label_accuracy")]
    if pseudo:
        ax.plot(*zip(*pseudo, strict=True), marker="x", linestyle=":", label="pseudo-label precision")
    styles = {"control_heldout_accuracy": ("control (no unlabeled data)", "--"),
              "label_only_heldout_accuracy": ("label-only GRAM judge", "-.")}
    for key, (name, style) in styles.items():
        if report.get(key) is not None:
            ax.axhline(100 * report[key], linestyle=style, color="grey" if style == "--" else "tab:red", label=name)
    ax.axhline(50, color="black", linewidth=0.5)
    ax.set_xticks([r["round"] for r in trained])
    percent_axes(ax, "self-training round (0 = initial RM)", "accuracy (%)", "GRAM-R2 self-training: held-out accuracy")
    save_figure(fig, out)


def percent_axes(ax, xlabel: str, ylabel: str, title: str) -> None:
    """Label a plot of percentages (0-100) and put its legend, if any, at the lower right."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 100)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title)


def save_figure(fig, out: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
