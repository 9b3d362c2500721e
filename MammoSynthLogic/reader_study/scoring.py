"""Reader-study metrics: spotting synthetic images (MAMBO Table 2) and ROC from 0–4 ratings (MAM-E Fig. 17).

The positive class is "synthetic". Precision, recall, F1 and accuracy come from the binary call (rating >= 3 by
default); the ROC curve sweeps the threshold over the ratings and its area equals the Mann–Whitney statistic
(ties count one half). "Overall" is the mean ± sample standard deviation (ddof=1) over readers, as in MAMBO.
"""
from __future__ import annotations

import csv
import dataclasses
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from MammoSynthLogic.errors import MammoSynthError
from MammoSynthLogic.reader_study.responses import RATINGS, SYNTHETIC_FROM, ReaderResponses

METRICS = ("precision", "recall", "f1", "accuracy", "auc")


def load_key(path: str | os.PathLike) -> dict[str, str]:
    """case name -> "real" | "synthetic" from the answer key CSV."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            key = {row["case"]: row["truth"] for row in csv.DictReader(f)}
    except (OSError, KeyError, csv.Error) as e:
        raise MammoSynthError(path, f"not a reader-study key ({type(e).__name__}); pass _key/key.csv") from None
    bad = sorted({t for t in key.values()} - {"real", "synthetic"})
    if not key or bad:
        raise MammoSynthError(path, f"key has no cases or unknown truth values {bad}; pass _key/key.csv")
    return key


def _ratio(num: float, den: float) -> float:
    return num / den if den else math.nan


def binary_metrics(is_synthetic: np.ndarray, called_synthetic: np.ndarray) -> dict[str, float]:
    """Confusion counts, precision, recall, F1 and accuracy with "synthetic" as the positive class."""
    y, p = np.asarray(is_synthetic, bool), np.asarray(called_synthetic, bool)
    tp, fp = int(np.sum(y & p)), int(np.sum(~y & p))
    fn, tn = int(np.sum(y & ~p)), int(np.sum(~y & ~p))
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    return {"tp": tp, "fp": fp, "tn": tn, "fn": fn, "precision": precision, "recall": recall, "f1": f1,
            "accuracy": _ratio(tp + tn, len(y))}


def roc_curve(is_synthetic: np.ndarray, ratings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false-positive rate, true-positive rate) for "synthetic if rating >= t", t from above 4 down to 0."""
    y, r = np.asarray(is_synthetic, bool), np.asarray(ratings, float)
    thresholds = [max(RATINGS) + 1, *sorted(RATINGS, reverse=True)]
    tpr = np.array([_ratio(np.sum(y & (r >= t)), y.sum()) for t in thresholds])
    fpr = np.array([_ratio(np.sum(~y & (r >= t)), (~y).sum()) for t in thresholds])
    return fpr, tpr


def auc(is_synthetic: np.ndarray, ratings: np.ndarray) -> float:
    """Area under the ROC curve: P(rating of a synthetic > rating of a real) + ½ P(tie)."""
    y, r = np.asarray(is_synthetic, bool), np.asarray(ratings, float)
    pos, neg = r[y], r[~y]
    if not len(pos) or not len(neg):
        return math.nan
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


@dataclasses.dataclass
class ReaderScore:
    reader: str
    answered: int
    metrics: dict[str, float]
    fpr: np.ndarray
    tpr: np.ndarray
    findings: dict[str, dict[str, int]]  # truth -> {"mass": n, "calcification": n, "birads>=3": n, "cases": n}


@dataclasses.dataclass
class StudyScore:
    cases: int
    synthetic_from: int
    readers: list[ReaderScore]
    overall_mean: dict[str, float]
    overall_sd: dict[str, float]
    pooled: ReaderScore


def _score_one(name: str, key: dict[str, str], answers: dict, synthetic_from: int) -> ReaderScore:
    cases = sorted(answers)
    y = np.array([key[c] == "synthetic" for c in cases], bool)
    ratings = np.array([answers[c].rating for c in cases], float)
    metrics = binary_metrics(y, ratings >= synthetic_from)
    metrics["auc"] = auc(y, ratings)
    fpr, tpr = roc_curve(y, ratings)
    findings = {truth: {"cases": 0, "mass": 0, "calcification": 0, "birads>=3": 0} for truth in ("real", "synthetic")}
    for c in cases:
        a, f = answers[c], findings[key[c]]
        f["cases"] += 1
        f["mass"] += int(a.mass)
        f["calcification"] += int(a.calcification)
        f["birads>=3"] += int(a.birads is not None and a.birads.isdigit() and int(a.birads) >= 3)
    return ReaderScore(reader=name, answered=len(cases), metrics=metrics, fpr=fpr, tpr=tpr, findings=findings)


def score_study(key: dict[str, str], readers: Sequence[ReaderResponses], synthetic_from: int = SYNTHETIC_FROM) -> StudyScore:
    """Per-reader scores over the cases each reader answered, overall mean ± sd, and the pooled ROC."""
    scores = []
    pooled: dict = {}
    for r in readers:
        unknown = sorted(set(r.answers) - set(key))
        if unknown:
            raise MammoSynthError(r.reader, f"answers for cases not in the key ({', '.join(unknown[:3])}); "
                                            "the responses belong to another study")
        if r.answers:
            scores.append(_score_one(r.reader, key, r.answers, synthetic_from))
            pooled.update({f"{r.reader}/{c}": a for c, a in r.answers.items()})
    if not scores:
        raise MammoSynthError("responses", "no reader has answered any case yet")
    pooled_key = {name: key[name.split("/", 1)[1]] for name in pooled}
    values = {m: np.array([s.metrics[m] for s in scores], float) for m in METRICS}
    mean = {m: float(np.nanmean(v)) if np.isfinite(v).any() else math.nan for m, v in values.items()}
    sd = {m: float(np.nanstd(v, ddof=1)) if np.isfinite(v).sum() > 1 else math.nan for m, v in values.items()}
    return StudyScore(cases=len(key), synthetic_from=synthetic_from, readers=scores, overall_mean=mean,
                      overall_sd=sd, pooled=_score_one("pooled", pooled_key, pooled, synthetic_from))
