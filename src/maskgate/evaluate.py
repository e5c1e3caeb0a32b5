"""Scores as the competition computed them (18-class macro F1) plus per-task scores and pictures."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from .labels import NUM_CLASSES, class_name, decode


def confusion(y_true, y_pred, n: int) -> np.ndarray:
    return np.bincount(np.asarray(y_true) * n + np.asarray(y_pred), minlength=n * n).reshape(n, n)


def f1_from_confusion(cm: np.ndarray) -> np.ndarray:
    """Per-class F1; a class with no true and no predicted samples scores 0 (as sklearn's default)."""
    tp = np.diag(cm).astype(np.float64)
    denom = cm.sum(0) + cm.sum(1)
    return np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)


def macro_f1(y_true, y_pred, n: int = NUM_CLASSES) -> float:
    """Macro F1 over labels 0..n-1 (all of them, as the competition's sklearn f1_score(average='macro'))."""
    return float(f1_from_confusion(confusion(y_true, y_pred, n)).mean())


def scores(y_true, y_pred) -> dict:
    y_true, y_pred = np.asarray(y_true, int), np.asarray(y_pred, int)
    out = {"n": int(len(y_true)), "macro_f1": macro_f1(y_true, y_pred), "accuracy": float((y_true == y_pred).mean())}
    for task, t, p, n in zip(("mask", "gender", "age"), decode(y_true), decode(y_pred), (3, 2, 3)):
        out[f"{task}_f1"] = macro_f1(t, p, n)
        out[f"{task}_acc"] = float((t == p).mean())
    return out


def per_class_table(y_true, y_pred) -> pd.DataFrame:
    cm = confusion(y_true, y_pred, NUM_CLASSES)
    tp = np.diag(cm)
    prec = np.divide(tp, cm.sum(0), out=np.zeros(NUM_CLASSES), where=cm.sum(0) > 0)
    rec = np.divide(tp, cm.sum(1), out=np.zeros(NUM_CLASSES), where=cm.sum(1) > 0)
    return pd.DataFrame({"class": range(NUM_CLASSES), "name": [class_name(c) for c in range(NUM_CLASSES)],
                         "precision": prec, "recall": rec, "f1": f1_from_confusion(cm),
                         "support": cm.sum(1), "predicted": cm.sum(0)})


def plot_confusion(y_true, y_pred, path: str | os.PathLike, title: str = "") -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = confusion(y_true, y_pred, NUM_CLASSES)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(11, 9.5))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    names = [f"{c} {class_name(c)}" for c in range(NUM_CLASSES)]
    ax.set_xticks(range(NUM_CLASSES), names, rotation=90, fontsize=7)
    ax.set_yticks(range(NUM_CLASSES), names, fontsize=7)
    for i in range(NUM_CLASSES):
        for j in range(NUM_CLASSES):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=6,
                        color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion matrix (row-normalised colour, counts in cells)")
    fig.colorbar(im, fraction=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def read_labels(path: str | os.PathLike, role: str) -> pd.Series:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: {role} csv not found")
    df = pd.read_csv(p, dtype={"ImageID": str})
    if not {"ImageID", "ans"} <= set(df.columns):
        raise ValueError(f"{p}: {role} csv needs columns ImageID,ans (has {list(df.columns)})")
    ans = pd.to_numeric(df["ans"], errors="coerce")
    bad = df["ImageID"][ans.isna() | (ans < 0) | (ans >= NUM_CLASSES) | (ans != ans.round())]
    if len(bad):
        raise ValueError(f"{p}: {len(bad)} row(s) with ans not an integer 0..17, e.g. {bad.iloc[0]!r}")
    if df["ImageID"].duplicated().any():
        raise ValueError(f"{p}: duplicate ImageID {df['ImageID'][df['ImageID'].duplicated()].iloc[0]!r}")
    return pd.Series(ans.astype(int).to_numpy(), index=df["ImageID"])


def evaluate_files(pred_csv, truth_csv, report_dir=None) -> dict:
    pred, truth = read_labels(pred_csv, "prediction"), read_labels(truth_csv, "truth")
    missing = truth.index.difference(pred.index)
    if len(missing):
        raise ValueError(f"{pred_csv}: {len(missing)} ImageID(s) of {truth_csv} have no prediction, "
                         f"e.g. {missing[0]!r}")
    y_true, y_pred = truth.to_numpy(), pred.loc[truth.index].to_numpy()
    result = scores(y_true, y_pred)
    if report_dir:
        d = Path(report_dir)
        d.mkdir(parents=True, exist_ok=True)
        per_class_table(y_true, y_pred).to_csv(d / "per_class.csv", index=False, float_format="%.4f")
        plot_confusion(y_true, y_pred, d / "confusion.png",
                       f"macro F1 {result['macro_f1']:.4f}, accuracy {result['accuracy']:.4f}")
        (d / "scores.json").write_text(json.dumps(result, indent=2))
    return result
