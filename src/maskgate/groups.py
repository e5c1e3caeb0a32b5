"""Scores group by group (race, gender, age band, source, camera...), and the gap between the best and the
worst group: the fairness report of a face-attribute system (`maskgate evaluate --groups`).

A group column is named as `COLUMN` (a column of the truth csv, or `mask`, `gender`, `age_band` read
from the true class) or `FILE:COLUMN` (a csv keyed by ImageID or by path, as the truth is); several joined
by `+` (`race+gender+age_band`) make intersectional groups ("black/female/>=60"), where a model's failures
often hide behind good marginals. Gaps can leave out groups too small to say much (`min_n`).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from .labels import AGE_NAMES, GENDER_NAMES, MASK_NAMES, AgeBand, Gender, Mask, decode

METRICS = ("accuracy", "macro_f1", "mask_acc", "gender_acc", "age_acc")
DERIVED = {"mask": (0, lambda v: MASK_NAMES[Mask(v)]), "gender": (1, lambda v: GENDER_NAMES[Gender(v)]),
           "age_band": (2, lambda v: AGE_NAMES[AgeBand(v)])}


def group_column(spec: str, truth: pd.DataFrame, truth_csv: str | os.PathLike) -> tuple[str, np.ndarray]:
    """(name, group label per truth row) for a `--groups` spec; `A+B`: the groups of A and B crossed."""
    if "+" in spec and spec not in truth.columns:
        parts = [group_column(p, truth, truth_csv) for p in spec.split("+")]
        return "+".join(n for n, _ in parts), np.array(["/".join(v) for v in zip(*(g for _, g in parts))])
    file, sep, column = spec.rpartition(":")
    if sep and file:
        p = Path(file)
        if not p.is_file():
            raise FileNotFoundError(f"--groups {spec}: {p} not found")
        if Path(p).resolve() == Path(truth_csv).resolve():
            table = truth
        else:
            raw = pd.read_csv(p, dtype=str)
            if "ImageID" in raw.columns:
                table = raw.set_index("ImageID")
            elif "path" in raw.columns:
                table = raw.assign(path=[str((p.parent / v).resolve()) for v in raw["path"]]).set_index("path")
            else:
                raise ValueError(f"--groups {spec}: {p} needs an ImageID or path column to join on")
        if column not in table.columns:
            raise ValueError(f"--groups {spec}: {p} has no column {column!r} (has {list(table.columns)})")
        missing = truth.index.difference(table.index)
        if len(missing):
            raise ValueError(f"--groups {spec}: {len(missing)} image(s) of the truth are not in {p}, "
                             f"e.g. {missing[0]!r}")
        return column, table.loc[truth.index, column].astype(str).to_numpy()
    if column in truth.columns and column != "ans":
        return column, truth[column].astype(str).to_numpy()
    if column in DERIVED:
        part, name = DERIVED[column]
        return column, np.array([name(v) for v in decode(truth["ans"].to_numpy())[part]])
    raise ValueError(f"--groups {spec}: no column {column!r} in the truth (has {list(truth.columns)}), and not one "
                     f"of {sorted(DERIVED)} (from the true class); use FILE:COLUMN for a column of another csv")


def group_scores(y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray) -> pd.DataFrame:
    """One row per group: n, 18-class accuracy, macro F1 over the classes in the group's truth, and the
    accuracy of each part (mask, gender, age band)."""
    from .evaluate import present_macro_f1

    y_true, y_pred, groups = np.asarray(y_true), np.asarray(y_pred), np.asarray(groups)
    rows = []
    for g in sorted(set(groups.tolist())):
        sel = groups == g
        t, p = y_true[sel], y_pred[sel]
        dt, dp = decode(t), decode(p)
        rows.append({"group": g, "n": int(sel.sum()), "accuracy": float((t == p).mean()),
                     "macro_f1": present_macro_f1(t, p), "mask_acc": float((dt[0] == dp[0]).mean()),
                     "gender_acc": float((dt[1] == dp[1]).mean()), "age_acc": float((dt[2] == dp[2]).mean())})
    return pd.DataFrame(rows)


def gaps(table: pd.DataFrame, min_n: int = 1) -> dict:
    """For each metric: the best and the worst group (of those with at least `min_n` images) and the
    difference between them."""
    out = {}
    table = table[table["n"] >= min_n]
    if table.empty:
        return out
    for m in METRICS:
        best, worst = table.loc[table[m].idxmax()], table.loc[table[m].idxmin()]
        out[m] = {"best": best["group"], "best_value": float(best[m]), "worst": worst["group"],
                  "worst_value": float(worst[m]), "gap": float(best[m] - worst[m])}
    return out


def plot_groups(table: pd.DataFrame, name: str, path: str | os.PathLike) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = list(METRICS)
    if len(table) > 8:  # many (intersectional) groups: a table of colours reads better than 40 bars
        fig, ax = plt.subplots(figsize=(7, 1.2 + 0.32 * len(table)))
        vals = table[metrics].to_numpy(float)
        im = ax.imshow(vals, cmap="RdYlGn", vmin=max(0.0, float(np.nanmin(vals)) - 0.05), vmax=1.0, aspect="auto")
        for (i, j), v in np.ndenumerate(vals):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7)
        ax.set_xticks(range(len(metrics)), metrics, fontsize=8)
        ax.set_yticks(range(len(table)), [f"{g} (n={n})" for g, n in zip(table["group"], table["n"])], fontsize=7)
        fig.colorbar(im, ax=ax, fraction=0.04)
    else:
        fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(metrics) * max(1, len(table)) / 3), 4))
        width = 0.8 / max(1, len(table))
        x = np.arange(len(metrics))
        for i, r in table.reset_index(drop=True).iterrows():
            vals = [r[m] for m in metrics]
            bars = ax.bar(x + i * width - 0.4 + width / 2, vals, width, label=f"{r['group']} (n={r['n']})")
            for b, v in zip(bars, vals):
                ax.text(b.get_x() + b.get_width() / 2, v + 0.01, f"{v:.2f}", ha="center", fontsize=6, rotation=90)
        ax.set_xticks(x, metrics)
        ax.set_ylim(0, 1.12)
        ax.legend(fontsize=7, ncol=min(4, len(table)), loc="lower center")
        ax.grid(axis="y", alpha=0.3)
    ax.set_title(f"scores by {name}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def file_stem(name: str) -> str:
    """groups_<name> in a report folder: `race+gender` -> groups_race_gender."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def group_report(y_true, y_pred, groups, name: str, report_dir: str | os.PathLike | None = None,
                 min_n: int = 1) -> dict:
    """The table and gaps (over groups of at least `min_n` images) for one group column; with `report_dir`,
    groups_<name>.csv and .png there."""
    table = group_scores(y_true, y_pred, groups)
    if report_dir:
        d = Path(report_dir)
        d.mkdir(parents=True, exist_ok=True)
        safe = file_stem(name)
        table.to_csv(d / f"groups_{safe}.csv", index=False, float_format="%.4f")
        plot_groups(table, name, d / f"groups_{safe}.png")
    return {"table": table.to_dict("records"), "gap": gaps(table, min_n), "gap_min_n": min_n}


def format_report(name: str, report: dict) -> str:
    """A plain-text table of one group report, with its gaps, for the terminal."""
    table = pd.DataFrame(report["table"])
    lines = [f"by {name}:", table.to_string(index=False, float_format=lambda v: f"{v:.3f}")]
    if report.get("gap_min_n", 1) > 1:
        lines.append(f"  (gaps between groups of at least {report['gap_min_n']} images)")
    for m, g in report["gap"].items():
        lines.append(f"  {m}: best {g['best']} {g['best_value']:.3f}, worst {g['worst']} {g['worst_value']:.3f}, "
                     f"gap {g['gap']:.3f}")
    return "\n".join(lines)
