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


def present_macro_f1(y_true, y_pred) -> float:
    """Macro F1 over the classes present in the truth (a group or a site rarely holds all 18)."""
    y_true = np.asarray(y_true)
    return float(f1_from_confusion(confusion(y_true, np.asarray(y_pred), NUM_CLASSES))[np.unique(y_true)].mean())


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


def _check_ans(df: pd.DataFrame, key: str, p: Path, role: str) -> pd.DataFrame:
    ans = pd.to_numeric(df["ans"], errors="coerce")
    bad = df[key][ans.isna() | (ans < 0) | (ans >= NUM_CLASSES) | (ans != ans.round())]
    if len(bad):
        raise ValueError(f"{p}: {len(bad)} row(s) with {'class' if key == 'path' else 'ans'} not an integer 0..17, "
                         f"e.g. {bad.iloc[0]!r}")
    if df[key].duplicated().any():
        raise ValueError(f"{p}: duplicate {key} {df[key][df[key].duplicated()].iloc[0]!r}")
    return df.assign(ans=ans.astype(int)).set_index(key)


def read_table(path: str | os.PathLike, role: str) -> pd.DataFrame:
    """A csv of answers or predictions -> DataFrame indexed by image key with `ans` (0..17) and every
    other column (group columns). Three kinds are read:

    - the eval layout's `ImageID,ans[,...]` (answers, submissions): keyed by ImageID;
    - `maskgate predict`'s csv of plain files (`path,face,class,...`): the subject (face 0) of each file,
      keyed by its absolute path;
    - a source's `labels.csv` (`path,age,gender[,mask][,...]`, paths relative to its folder): keyed by
      absolute path; the class from gender, age and `mask` (wear / incorrect / not_wear or 0..2; without
      the column the photos count as unmasked).
    """
    from .labels import MASK_NAMES, Mask, age_band, encode, parse_gender

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: {role} csv not found")
    df = pd.read_csv(p, dtype={"ImageID": str, "path": str})
    cols = set(df.columns)
    if {"ImageID", "ans"} <= cols:
        return _check_ans(df, "ImageID", p, role)
    if {"path", "face", "class"} <= cols:
        df = df[df["face"] == 0].rename(columns={"class": "ans"})
        df = df.assign(path=[str(Path(v).resolve()) for v in df["path"]])
        return _check_ans(df, "path", p, role)
    if {"path", "age", "gender"} <= cols:
        names = {v: int(k) for k, v in MASK_NAMES.items()}
        problems, ans = [], []
        for i, r in df.iterrows():
            try:
                g = int(parse_gender(r["gender"]))
                age = float(r["age"])
                if not age >= 0:
                    raise ValueError(f"age {r['age']!r} is not a number >= 0")
                m = r.get("mask", int(Mask.NOT_WEAR))
                m = names[m] if m in names else int(m)
                if m not in (0, 1, 2):
                    raise ValueError(f"mask {r.get('mask')!r} is not wear, incorrect or not_wear")
                ans.append(encode(m, g, age_band(age)))
            except (ValueError, TypeError, KeyError) as e:
                problems.append(f"{p}:{i + 2}: {e}")
        if problems:
            raise ValueError(f"{p}: {len(problems)} bad row(s): " + "; ".join(problems[:10]))
        df = df.assign(ans=ans, path=[str((p.parent / v).resolve()) for v in df["path"]])
        return _check_ans(df, "path", p, role)
    raise ValueError(f"{p}: {role} csv needs columns ImageID,ans (eval layout), path,face,class (maskgate predict) "
                     f"or path,age,gender (labels.csv); has {list(df.columns)}")


def read_labels(path: str | os.PathLike, role: str) -> pd.Series:
    """The classes of an answers or predictions csv (any kind `read_table` reads), by image key."""
    return read_table(path, role)["ans"]


def evaluate_files(pred_csv, truth_csv, report_dir=None, groups: list[str] | None = None,
                   min_group: int = 1) -> dict:
    """Scores of a prediction csv against the truth; `groups`: per-group tables (groups.py) as well, their
    gaps over groups of at least `min_group` images."""
    pred, truth = read_labels(pred_csv, "prediction"), read_table(truth_csv, "truth")
    missing = truth.index.difference(pred.index)
    if len(missing):
        raise ValueError(f"{pred_csv}: {len(missing)} image(s) of {truth_csv} have no prediction, "
                         f"e.g. {missing[0]!r}")
    y_true, y_pred = truth["ans"].to_numpy(), pred.loc[truth.index].to_numpy()
    result = scores(y_true, y_pred)
    if report_dir:
        d = Path(report_dir)
        d.mkdir(parents=True, exist_ok=True)
        per_class_table(y_true, y_pred).to_csv(d / "per_class.csv", index=False, float_format="%.4f")
        plot_confusion(y_true, y_pred, d / "confusion.png",
                       f"macro F1 {result['macro_f1']:.4f}, accuracy {result['accuracy']:.4f}")
    if groups:
        from .groups import group_column, group_report

        result["groups"] = {}
        for spec in groups:
            name, labels = group_column(spec, truth, truth_csv)
            result["groups"][name] = group_report(y_true, y_pred, labels, name, report_dir, min_group)
    if report_dir:
        (Path(report_dir) / "scores.json").write_text(json.dumps(result, indent=2))
    return result
