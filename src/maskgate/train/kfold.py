"""`maskgate kfold`: every person-level fold of one config, out-of-fold predictions, mean +- std macro F1.

Fold k is the run folder OUT/fold{k} (data.folds = K, data.fold = k: each person validates once). A fold
with summary.json is done and skipped, one with last.pt is resumed, the rest start: a killed k-fold run
goes on fold by fold. OUT/oof.csv: every person's validation predictions from the fold that held them out;
OUT/kfold.json: per-fold and mean +- std validation macro F1 and the out-of-fold macro F1.
`maskgate predict --model OUT` ensembles the folds (soft or `--vote hard`), as `--model OUT/fold0 --model OUT/fold1 ...`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from ..config import load_config
from ..evaluate import scores


def run_kfold(data_dir: str | os.PathLike, out: str | os.PathLike, cfg: dict, folds: int,
              log: Callable[[str], None] = print) -> dict:
    from .recipe import run_training

    if folds < 2:
        raise ValueError(f"--folds {folds}: k-fold needs at least 2 folds")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    per_fold = []
    for k in range(folds):
        run = out / f"fold{k}"
        if (run / "summary.json").is_file():
            log(f"fold {k + 1}/{folds}: done already ({run})")
        else:
            resume = (run / "last.pt").is_file()
            log(f"fold {k + 1}/{folds}: {'resuming' if resume else 'training'} {run}")
            fold_cfg = load_config(overrides=[f"data.folds={folds}", f"data.fold={k}"], base=cfg)
            run_training(data_dir, run, fold_cfg, resume=resume)
        s = json.loads((run / "summary.json").read_text())
        per_fold.append({"fold": k, "run": str(run), "val_macro_f1": s["val_with_age_bias"]["macro_f1"],
                         "val_people": s["val_people"], "seconds": s["seconds"]})
        if "val_by_source" in s:  # extra sources: each source's validation rows scored on their own
            per_fold[-1]["val_by_source"] = {name: v["macro_f1"] for name, v in s["val_by_source"].items()}
    oof = pd.concat([pd.read_csv(out / f"fold{k}" / "val_predictions.csv", dtype={"person": str}).assign(fold=k)
                     for k in range(folds)],
                    ignore_index=True)
    if "source" in oof:  # extra sources validate the same people in every fold: not out-of-fold, left out
        oof = oof[oof["source"] == "main"].drop(columns="source").reset_index(drop=True)
    if oof.duplicated("path").any():
        raise RuntimeError(f"{out}: a photo is in more than one fold's validation (the folds are not one k-fold)")
    tmp = out / ".oof.csv.tmp"
    oof.to_csv(tmp, index=False)
    os.replace(tmp, out / "oof.csv")
    f1 = np.array([f["val_macro_f1"] for f in per_fold])
    res = {"folds": per_fold, "mean_macro_f1": float(f1.mean()), "std_macro_f1": float(f1.std(ddof=1)),
           "oof": scores(oof["true"].to_numpy(), oof["pred"].to_numpy())}
    (out / "kfold.json").write_text(json.dumps(res, indent=2))
    for f in per_fold:
        by = "".join(f"; {name} {v:.4f}" for name, v in f.get("val_by_source", {}).items())
        log(f"fold {f['fold']}: validation macro F1 {f['val_macro_f1']:.4f} ({f['val_people']} people{by})")
    log(f"mean {res['mean_macro_f1']:.4f} +- {res['std_macro_f1']:.4f} (std over {folds} folds); "
        f"out-of-fold macro F1 {res['oof']['macro_f1']:.4f} over {len(oof)} photos -> {out / 'oof.csv'}")
    return res
