"""The scoring report: a MAMBO Table 2 style table, ROC curves (MAM-E Fig. 17), rating histograms; MD, HTML, CSV, JSON."""
from __future__ import annotations

import csv
import html
import io
import json
import math
import os
from pathlib import Path

import numpy as np

from MammoSynthLogic import __version__
from MammoSynthLogic.fileio import atomic_path, write_text_atomic
from MammoSynthLogic.reader_study.responses import RATINGS
from MammoSynthLogic.reader_study.scoring import METRICS, StudyScore

HEADERS = ("Precision", "Recall", "F1", "Accuracy", "AUC")


def _fmt(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"


def table_rows(score: StudyScore) -> list[list[str]]:
    """Rows of the results table: one per reader, then "Overall" as mean ± sd, then the pooled answers."""
    rows = [[s.reader, *(_fmt(s.metrics[m]) for m in METRICS), str(s.answered)] for s in score.readers]
    rows.append(["Overall (mean ± sd)", *(f"{_fmt(score.overall_mean[m])} ± {_fmt(score.overall_sd[m])}"
                                         for m in METRICS), str(sum(s.answered for s in score.readers))])
    rows.append(["Pooled answers", *(_fmt(score.pooled.metrics[m]) for m in METRICS), str(score.pooled.answered)])
    return rows


def plot_roc(score: StudyScore, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5), dpi=120)
    ax.plot([0, 1], [0, 1], ls="--", color="0.6", label="chance")
    for s in score.readers:
        ax.plot(s.fpr, s.tpr, marker="o", ms=3, lw=1, alpha=0.8, label=f"{s.reader} (AUC {_fmt(s.metrics['auc'])})")
    p = score.pooled
    ax.plot(p.fpr, p.tpr, color="black", lw=2.5, label=f"pooled (AUC {_fmt(p.metrics['auc'])})")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false-positive rate (real called synthetic)",
           ylabel="true-positive rate (synthetic spotted)", title="Reader ROC from 0-4 ratings")
    ax.legend(loc="lower right", fontsize=7)
    return _save(fig, path)


def plot_ratings(score: StudyScore, key: dict[str, str], readers, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = {truth: np.zeros(len(RATINGS), int) for truth in ("real", "synthetic")}
    for r in readers:
        for case, a in r.answers.items():
            counts[key[case]][a.rating] += 1
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    x = np.arange(len(RATINGS))
    ax.bar(x - 0.2, counts["real"], width=0.4, label="real images")
    ax.bar(x + 0.2, counts["synthetic"], width=0.4, label="synthetic images")
    ax.set_xticks(x, [f"{k}\n{v}" for k, v in RATINGS.items()], fontsize=7)
    ax.set(ylabel="answers", title="Ratings by truth (all readers)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    plt.close(fig)
    return path


def markdown(score: StudyScore) -> str:
    head = ["Reader", *HEADERS, "Answered"]
    lines = ["# Reader study results\n",
             f"{len(score.readers)} reader(s), {score.cases} cases in the key. Positive class: synthetic; a rating "
             f">= {score.synthetic_from} on MAM-E's 0-4 scale (0 definitely real ... 4 definitely synthetic) counts "
             "as \"spotted as synthetic\". AUC from the ratings (ties count one half). Overall: mean ± sample sd "
             "over readers (MAMBO Table 2 layout).\n",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(score)]
    lines += ["", "![ROC curves](roc.png)", "", "![Ratings by truth](ratings.png)", "", "## Findings marked",
              "", "| Reader | truth | cases | mass | calcification | BI-RADS >= 3 |", "|---|---|---|---|---|---|"]
    for s in [*score.readers, score.pooled]:
        for truth, f in s.findings.items():
            lines.append(f"| {s.reader} | {truth} | {f['cases']} | {f['mass']} | {f['calcification']} | {f['birads>=3']} |")
    lines += ["", f"Made by mammosynth {__version__} `reader-study score`.", ""]
    return "\n".join(lines)


def html_report(score: StudyScore) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ["Reader", *HEADERS, "Answered"])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in table_rows(score))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Reader study results</title>"
            "<style>body{font-family:sans-serif;max-width:60em;margin:auto}td,th{padding:.2em .6em;"
            "border-bottom:1px solid #ccc;text-align:right}td:first-child{text-align:left}</style></head><body>"
            f"<h1>Reader study results</h1><p>{len(score.readers)} reader(s), {score.cases} cases. Positive class: "
            f"synthetic (rating &ge; {score.synthetic_from} of 0-4). Overall: mean &plusmn; sample sd over readers.</p>"
            f"<table><tr>{head}</tr>{body}</table><p><img src='roc.png' alt='ROC curves'> "
            "<img src='ratings.png' alt='Ratings by truth'></p></body></html>")


def _json_safe(value):
    """NaN (an undefined metric) becomes null; numpy numbers become Python numbers."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    return int(value) if isinstance(value, np.integer) else value


def write_report(score: StudyScore, key: dict[str, str], readers, out: str | os.PathLike) -> dict[str, Path]:
    """report.md, report.html, metrics.csv, summary.json, roc.png, ratings.png in `out`."""
    out = Path(out)
    written = {"roc": plot_roc(score, out / "roc.png"), "ratings": plot_ratings(score, key, readers, out / "ratings.png")}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["reader", "answered", "tp", "fp", "tn", "fn", *METRICS])
    for s in [*score.readers, score.pooled]:
        writer.writerow([s.reader, s.answered, *(s.metrics[k] for k in ("tp", "fp", "tn", "fn")),
                         *(f"{s.metrics[m]:.6f}" for m in METRICS)])
    writer.writerow(["overall_mean", "", "", "", "", "", *(f"{score.overall_mean[m]:.6f}" for m in METRICS)])
    writer.writerow(["overall_sd", "", "", "", "", "", *(f"{score.overall_sd[m]:.6f}" for m in METRICS)])
    write_text_atomic(out / "metrics.csv", buffer.getvalue())
    summary = {"cases": score.cases, "synthetic_from": score.synthetic_from,
               "readers": {s.reader: {"answered": s.answered, **s.metrics, "roc_fpr": s.fpr.tolist(),
                                      "roc_tpr": s.tpr.tolist(), "findings": s.findings} for s in score.readers},
               "overall_mean": score.overall_mean, "overall_sd": score.overall_sd,
               "pooled": {"answered": score.pooled.answered, **score.pooled.metrics}}
    write_text_atomic(out / "summary.json", json.dumps(_json_safe(summary), indent=2))
    write_text_atomic(out / "report.md", markdown(score))
    write_text_atomic(out / "report.html", html_report(score))
    written.update({name: out / f for name, f in (("metrics", "metrics.csv"), ("summary", "summary.json"),
                                                  ("markdown", "report.md"), ("html", "report.html"))})
    return written
