"""The toolbox ablation: each technique against the default recipe, on the same person-level folds.

    python benchmarks/bench_ablation.py --data-dir ../shared/data/maskproxy/train --out runs/ablation \
        [--folds 3] [--base "data.max_people=1000 train.epochs=4 model.freeze_blocks=6 data.duplicate_near=0"]
        [--rows baseline,focal,...] [--deadline-s N]

Every row is one `maskgate kfold` (same seed, hence the same people in every fold for every row, and the
same cached trunk features: only the technique differs) into OUT/<row>; rerun and finished folds are
skipped, a killed one resumes. Writes OUT/ablation_runs.csv (one line per row and fold), OUT/ablation.csv
and OUT/ablation.md (mean +- std over the folds, and the paired difference to the baseline fold by fold,
which cancels most of the fold-to-fold spread), and OUT/ablation.png.

The scores are validation macro F1 without the age-band offsets (those are tuned on the validation rows
themselves, so they flatter every row a little); the tuned ones are listed beside them.

With an extra source in --base (`data.extra=[{path: ../shared/data/faces-world/train, ...}]`) a second table
scores the main layout's rows and the extra source's validation people apart, with the worst `race` group's
gender accuracy (run it from the repository root: the source's path is read back from each run's summary).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

# name -> (overrides, what it tests). The baseline is the shipped config under --base.
ROWS: dict[str, tuple[str, str]] = {
    "baseline": ("", "default recipe: CE + label smoothing, soft age targets, sqrt age weights, age regression"),
    "focal": ("train.loss=focal", "focal loss (gamma 2) on every head"),
    "ce+soft_f1": ("train.loss=ce+soft_f1", "CE plus differentiable macro F1 per head"),
    "ldam": ("train.loss=ldam", "LDAM margin loss per head"),
    "weighted_ce": ("train.age_balance=inverse train.class_balance={mask: inverse, gender: inverse}",
                    "class-weighted CE, inverse frequency, every head"),
    "sampler18": ("train.sampler=balanced", "weighted sampling by 18-class, power 0.5"),
    "sampler_old": ("train.sampler=balanced train.balance_by=age_band train.oversample_old=2",
                    "weighted sampling by age band, >=60 x2"),
    "drop_ages": ("train.drop_ages=[[27,29],[57,59]]", "boundary ages 27-29 and 57-59 left out of training"),
    "old_from_58": ("train.old_age_from=58", ">=58 counted as >=60 in training labels"),
    "cutmix_half": ("train.mix=cutmix_half", "half-image CutMix (feature-map halves), p 0.5"),
    "cutmix_same": ("train.mix=cutmix_half train.mix_same_class=true", "half CutMix, same-class partners only"),
    "mixup_old": ("train.mix=mixup train.mix_age_bands=[2]", "mixup among >=60 rows only"),
    "erase": ("train.erase=0.25", "random erasing (of feature maps), p 0.25"),
    "head18": ("model.head=class18", "one 18-way head instead of three"),
    "head_deep": ("model.head=deep", "three deeper branches (hidden 256)"),
    "sgd_cosine": ("train.optimizer=sgd train.lr=0.02 train.scheduler=cosine", "SGD Nesterov, cosine + warm-up"),
    "early_stop": ("train.epochs=8 train.early_stop=2", "twice the epochs, stop after 2 epochs without a better F1"),
    "combo": ("model.head=class18 train.sampler=balanced train.loss=focal train.drop_ages=[[27,29],[57,59]]",
              "the rows above that gained most, together: 18-way head, 18-class sampler, focal, drop ages"),
    "head18+sampler18": ("model.head=class18 train.sampler=balanced", "the two largest single gains together"),
    "sampler18+focal": ("train.sampler=balanced train.loss=focal", "two corrections of imbalance at once"),
    "erase_half": ("train.erase=0.5", "random erasing, p 0.5"),
    "erase+sampler18": ("train.erase=0.25 train.sampler=balanced", "random erasing and the 18-class sampler"),
}


def run_row(name: str, overrides: str, a, env) -> list[dict]:
    out = Path(a.out) / name
    cmd = [sys.executable, "-m", "maskgate", "kfold", "--data-dir", a.data_dir, "--out", str(out),
           "--folds", str(a.folds), *_split_overrides(a.base), *_split_overrides(overrides)]
    t0 = time.time()
    with open(Path(a.out) / f"{name}.log", "a") as logf:
        r = subprocess.run(cmd, env=env, stdout=logf, stderr=subprocess.STDOUT)
    if r.returncode:
        print(f"[ablation] {name}: maskgate kfold failed ({r.returncode}); see {out}.log", flush=True)
        return []
    rows = _fold_rows(out, name, a.folds)
    print(f"[ablation] {name}: " + ", ".join(f"{r['val_f1']:.4f}" for r in rows)
          + f"  ({time.time() - t0:.0f}s)", flush=True)
    return rows


def _fold_rows(row_dir: Path, name: str, folds: int) -> list[dict]:
    rows = []
    for k in range(folds):
        s = json.loads((row_dir / f"fold{k}" / "summary.json").read_text())
        v, vb = s["val"], s["val_with_age_bias"]
        row = {"row": name, "fold": k, "val_f1": v["macro_f1"], "val_f1_tuned": vb["macro_f1"],
               "gender_acc": v["gender_acc"], "age_acc": v["age_acc"], "best_epoch": s["best_epoch"],
               "seconds": s["seconds"]}
        if len(s.get("sources", [])) > 1:
            row.update(_extra_scores(row_dir / f"fold{k}", s))
        rows.append(row)
    return rows


def _extra_scores(run: Path, s: dict) -> dict:
    """With an extra source in training (data.extra) the summary's validation scores mix both sources' rows;
    here each apart: the main layout's rows, and the first extra source's validation people (drawn masks; the
    same people in every fold): macro F1, gender and age-band accuracy, and the worst group's gender accuracy
    by the source's `GROUP` column."""
    from maskgate.data.sources import read_labelled
    from maskgate.evaluate import scores

    src = s["sources"][1]
    vp = pd.read_csv(run / "val_predictions.csv")
    main = vp[vp["source"] == "main"]
    own = scores(main["true"].to_numpy(), main["pred"].to_numpy())  # the main layout's rows alone
    vp = vp[vp["source"] == src["name"]]
    sc = scores(vp["true"].to_numpy(), vp["pred"].to_numpy())
    out = {"main_f1": own["macro_f1"], "main_gender": own["gender_acc"], "main_age": own["age_acc"],
           "x_f1": sc["macro_f1"], "x_gender": sc["gender_acc"], "x_age": sc["age_acc"], "x_worst_gender": np.nan}
    labels = read_labelled(src["path"])
    if GROUP in labels:
        group = vp["path"].map(labels.set_index("path")[GROUP])
        ok = (vp["true"] // 3 % 2) == (vp["pred"] // 3 % 2)
        out["x_worst_gender"] = float(ok.groupby(group).mean().min())
    return out


GROUP = "race"


def _split_overrides(text: str) -> list[str]:
    """'a=1 b={x: 1, y: 2}' -> ['a=1', 'b={x: 1, y: 2}']: spaces inside brackets do not split."""
    out, cur, depth = [], "", 0
    for ch in text:
        depth += ch in "[{"
        depth -= ch in "]}"
        if ch == " " and depth == 0:
            if cur:
                out.append(cur)
            cur = ""
        else:
            cur += ch
    return out + ([cur] if cur else [])


def summarise(runs: pd.DataFrame, out: Path, base_desc: str) -> pd.DataFrame:
    base = runs[runs["row"] == "baseline"].set_index("fold")["val_f1"]
    table = []
    for name, g in runs.groupby("row", sort=False):
        f1 = g.set_index("fold")["val_f1"]
        d = (f1 - base.reindex(f1.index)).dropna()
        table.append({"row": name, "what": ROWS.get(name, ("", ""))[1], "folds": len(g),
                      "val_f1": f1.mean(), "std": f1.std(ddof=1), "delta": d.mean() if len(d) else np.nan,
                      "delta_std": d.std(ddof=1) if len(d) > 1 else np.nan,
                      "val_f1_tuned": g["val_f1_tuned"].mean(), "gender_acc": g["gender_acc"].mean(),
                      "age_acc": g["age_acc"].mean(), "min_per_run": g["seconds"].mean() / 60})
        if "x_f1" in g:
            xb = runs[runs["row"] == "baseline"].set_index("fold")["x_f1"]
            xd = (g.set_index("fold")["x_f1"] - xb.reindex(g["fold"])).dropna()
            table[-1].update({k: g[k].mean() for k in ("main_f1", "x_f1", "x_gender", "x_age", "x_worst_gender")},
                             x_delta=xd.mean() if len(xd) else np.nan, x_delta_std=xd.std(ddof=1) if len(xd) > 1 else np.nan)
    t = pd.DataFrame(table)
    t.round(4).to_csv(out / "ablation.csv", index=False)
    lines = [f"Recipe: {base_desc}; {int(t['folds'].max())} person-level folds, same folds and cached features "
             "in every row. macro F1 = validation, without age offsets; delta = paired difference to the "
             "baseline, fold by fold (mean +- std).", "",
             "| row | what | macro F1 (mean +- std) | delta vs baseline | tuned F1 | gender | age | min/run |",
             "|---|---|---|---|---|---|---|---|"]
    for r in t.itertuples():
        delta = "-" if r.row == "baseline" or np.isnan(r.delta) else f"{r.delta:+.4f} +- {r.delta_std:.4f}"
        lines.append(f"| {r.row} | {r.what} | {r.val_f1:.4f} +- {r.std:.4f} | {delta} | {r.val_f1_tuned:.4f} | "
                     f"{r.gender_acc:.3f} | {r.age_acc:.3f} | {r.min_per_run:.1f} |")
    if "x_f1" in t:
        lines += ["", "With an extra source in training: the main layout's own validation rows (macro F1; the table "
                  "above scores main and extra rows together), and the extra source's validation people (drawn "
                  f"masks, the same people in every fold): macro F1, its paired delta, gender, age band, and the worst "
                  f"{GROUP} group's gender accuracy (mean over folds; predictions with each run's age offsets, as "
                  "in its val_predictions.csv).", "",
                  "| row | main F1 | extra F1 | extra delta | extra gender | extra age | worst group gender |",
                  "|---|---|---|---|---|---|---|"]
        for r in t.itertuples():
            delta = "-" if r.row == "baseline" or np.isnan(r.x_delta) else f"{r.x_delta:+.4f} +- {r.x_delta_std:.4f}"
            lines.append(f"| {r.row} | {r.main_f1:.4f} | {r.x_f1:.4f} | {delta} | {r.x_gender:.3f} | {r.x_age:.3f} | "
                         f"{r.x_worst_gender:.3f} |")
    (out / "ablation.md").write_text("\n".join(lines) + "\n")
    _plot(t, out / "ablation.png")
    return t


def _plot(t: pd.DataFrame, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = t[t["row"] != "baseline"].sort_values("delta")
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(d) + 1.2))
    colours = ["tab:green" if x > 0 else "tab:red" for x in d["delta"]]
    ax.barh(d["row"], d["delta"], xerr=d["delta_std"].fillna(0), color=colours, alpha=0.8, capsize=3)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("validation macro F1 minus the baseline's, same folds (mean +- std)")
    ax.set_title("maskgate toolbox ablation")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--base", default="data.max_people=1000 train.epochs=4 model.freeze_blocks=6 data.duplicate_near=0",
                    help="overrides of every row: the shorter recipe (2 CPU cores), and the duplicate grouping "
                         "the measured folds were made with")
    ap.add_argument("--rows", help=f"comma-separated rows (default all: {', '.join(ROWS)})")
    ap.add_argument("--deadline-s", type=float, default=0, help="start no row after this many seconds")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    names = a.rows.split(",") if a.rows else list(ROWS)
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        sys.exit(f"unknown rows {unknown}; known: {', '.join(ROWS)}")
    if "baseline" not in names:
        names.insert(0, "baseline")
    t_all = time.time()
    for name in names:
        if a.deadline_s and time.time() - t_all > a.deadline_s:
            print(f"[ablation] {name}: skipped (past --deadline-s)", flush=True)
            continue
        if run_row(name, ROWS[name][0], a, dict(os.environ)):
            summarise(collect(out, a.folds), out, a.base)  # every finished row, also earlier invocations'
    if (out / "ablation.md").exists():
        print((out / "ablation.md").read_text())


def collect(out: Path, folds: int) -> pd.DataFrame:
    """The rows of OUT whose every fold has finished, in ROWS order: one table over all invocations."""
    rows = []
    for name in ROWS:
        if all((out / name / f"fold{k}" / "summary.json").exists() for k in range(folds)):
            rows += _fold_rows(out / name, name, folds)
    return pd.DataFrame(rows)


if __name__ == "__main__":
    main()
