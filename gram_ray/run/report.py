"""The run report: held-out accuracy after every round against the baselines, pseudo-label quality,
filter counts and time per stage, as ``report.md``, ``report.json`` and ``report.png``."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.dataset as ds

from gram_ray.data.files import atomic_write_text
from gram_ray.run.manifest import RunDir
from gram_ray.stages import DENOISE, LABEL, PROVE


def _table(path: str, columns: list[str]):
    return ds.dataset(path, format="parquet").to_table(columns=columns)


def label_accuracy(path: str) -> float | None:
    """Share of rows whose (predicted) label equals the ground truth kept in ``meta.gold_label``, when
    the data carries one (the synthetic task does); None otherwise."""
    t = _table(path, ["label", "meta"])
    golds = [json.loads(m or "{}").get("gold_label") for m in t["meta"].to_pylist()]
    scored = [(lab, g) for lab, g in zip(t["label"].to_pylist(), golds, strict=True) if g is not None]
    if not scored:
        return None
    return sum(lab == g for lab, g in scored) / len(scored)


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def write_report(run: RunDir, rounds: list[dict], baselines: dict, final_model: str) -> dict[str, str]:
    stages = run.manifest()["stages"]
    times = {name: entry["seconds"] for name, entry in stages.items()}
    trained = [r for r in rounds if r["round"] != "final"]
    report = {
        "rounds": rounds,
        "final_heldout_accuracy": rounds[-1]["heldout_accuracy"],
        "initial_heldout_accuracy": rounds[0]["heldout_accuracy"],
        "control_heldout_accuracy": baselines.get("control_heldout_accuracy"),
        "label_only_heldout_accuracy": baselines.get("label_only_heldout_accuracy"),
        "final_model": final_model,
        "stage_seconds": times,
        "total_seconds": round(sum(times.values()), 1),
    }
    lines = [
        f"# Self-training report: {run.root.name}",
        "",
        "| model | held-out accuracy | pseudo-label accuracy | kept-label accuracy | labelled -> kept |",
        "|---|---|---|---|---|",
    ]
    for r in rounds:
        flow = ""
        if DENOISE.name in r:
            flow = f"{r[LABEL.name]['inputs']} -> {r[DENOISE.name]['outputs'].get(DENOISE.primary, 0)}"
        name = "initial RM" if r["round"] == 0 else f"round {r['round']}"
        lines.append(f"| {name} | {_fmt(r['heldout_accuracy'])} | {_fmt(r.get('pseudo_label_accuracy'))} | "
                     f"{_fmt(r.get('kept_label_accuracy'))} | {flow} |")
    for key, name in (("control_heldout_accuracy", "control (no unlabeled data)"),
                      ("label_only_heldout_accuracy", "label-only GRAM judge")):
        if report[key] is not None:
            lines.append(f"| {name} | {_fmt(report[key])} | | | |")
    lines += ["", "## Rejected rows per reason", "", "| round | stage | reason | rows |", "|---|---|---|---|"]
    for r in trained[1:]:
        for stage in (LABEL.name, PROVE.name, DENOISE.name):
            for reason, n in sorted(r[stage]["rejected"].items()):
                lines.append(f"| {r['round']} | {stage} | {reason} | {n} |")
    lines += ["", "## Time per stage", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {name} | {sec:.1f} |" for name, sec in times.items()]
    lines += ["", f"Total: {report['total_seconds']:.0f} s. Final model: `{final_model}`.", "",
              "![held-out accuracy](report.png)"]
    paths = {"markdown": str(run.path("report.md")), "json": str(run.path("report.json")),
             "plot": str(run.path("report.png"))}
    atomic_write_text(Path(paths["json"]), json.dumps(report, indent=2, default=str))
    atomic_write_text(Path(paths["markdown"]), "\n".join(lines) + "\n")
    _plot(rounds, baselines, Path(paths["plot"]))
    return paths


def _plot(rounds: list[dict], baselines: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trained = [r for r in rounds if r["round"] != "final"]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    xs = [r["round"] for r in trained]
    ax.plot(xs, [100 * r["heldout_accuracy"] for r in trained], marker="o", label="self-trained RM")
    pseudo = [(r["round"], 100 * r["pseudo_label_accuracy"]) for r in trained if r.get("pseudo_label_accuracy")]
    if pseudo:
        ax.plot(*zip(*pseudo, strict=True), marker="x", linestyle=":", label="pseudo-label accuracy")
    styles = {"control_heldout_accuracy": ("control (no unlabeled data)", "--"),
              "label_only_heldout_accuracy": ("label-only GRAM judge", "-.")}
    for key, (name, style) in styles.items():
        if baselines.get(key) is not None:
            ax.axhline(100 * baselines[key], linestyle=style, color="grey" if style == "--" else "tab:red", label=name)
    ax.axhline(50, color="black", linewidth=0.5)
    ax.set_xticks(xs)
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
