"""`maskgate seeds`: several runs of one config that differ only in the loop's seed, weight-averaged into one network.

Why: on 2 CPU cores one run of the recipe moves by ~0.01 macro F1 from seed to seed, and the weight average
of a few short runs (a "soup", models/soup.py) scores above every member at the size and speed of one
network, where more epochs of one run, or averaging along one run's own path (train.swa_epochs), add nothing
(docs/benchmarks.md, "The toolbox ablation"). Runs share the person split and the cached crops and trunk
outputs (`train.seed` is the loop's seed: batch order, dropout, erasing, the drawn masks' looks), so only the
first run pays for the caches.

Run s is OUT/seed{s}. As `maskgate kfold`: a run with summary.json is done and skipped, one with last.pt is
resumed, the rest start; so a killed `seeds` command goes on run by run. Then OUT/soup.pt: the members'
uniform weight average with REPAIR on training photos (`--calibrate`; default the train folder; the shared
validation people's photos are left out of it), and OUT/seeds.json: each run's validation macro F1 and time,
mean +- std, the soup's provenance, and every member and the soup scored alike on the validation people's
photos of the competition layout (`validation_photos`): the soup's own held-out score, so it is judged
without the eval set. Those scores come from the photos on disk through `predict`'s path (face found, cut,
classified), the members' in-training scores from cached crops, with the extra sources' validation rows (their
masks drawn during training) beside them: compare the soup with its members within one table, not across.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from ..config import load_config


def seed_list(spec: str | int, cfg: dict) -> list[int]:
    """'3' -> three seeds from the config's loop seed on (42, 43, 44 by default); '42,2,3' -> those seeds."""
    text = str(spec).strip()
    try:
        if "," in text:
            seeds = [int(s) for s in text.split(",") if s.strip()]
        else:
            n = int(text)
            if n < 1:
                raise ValueError
            base = cfg["train"].get("seed")
            base = int(cfg["seed"] if base is None else base)
            seeds = list(range(base, base + n))
    except ValueError:
        raise ValueError(f"--seeds {spec!r}: give a count (3) or a comma-separated list of integers (42,2,3)") from None
    if len(seeds) < 2:
        raise ValueError(f"--seeds {spec!r}: a soup needs at least 2 runs (one run is `maskgate train`)")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds {spec!r}: a seed is given twice (the same run twice adds nothing to a soup)")
    return seeds


def validation_photos(runs: Sequence[str | os.PathLike]) -> pd.DataFrame | None:
    """The competition layout's validation photos (path, person, label) that the runs share, or None where
    their splits differ. Extra sources' validation rows are left out: their masks were drawn in training and
    are not on disk."""
    tables = []
    for run in runs:
        s = pd.read_csv(Path(run) / "split.csv", dtype={"person": str})
        if "source" in s.columns:  # the main layout's rows come first
            s = s[s["source"] == s["source"].iloc[0]]
        tables.append(s.loc[s["split"] == "val", ["path", "person", "label"]].reset_index(drop=True))
    return tables[0] if all(t.equals(tables[0]) for t in tables[1:]) else None


def score_on_photos(models: Sequence[tuple[str, str, str | None]], val: pd.DataFrame,
                    log: Callable[[str], None] = print) -> list[dict]:
    """(name, model path, tta or None for the model's own) -> the scores of `maskgate evaluate` on these photos
    (macro F1 over the classes present, accuracy, each part's accuracy), one row per model."""
    from ..adapt import model_probs, score

    y, rows = val["label"].to_numpy(int), []
    for name, path, tta in models:
        probs, ok = model_probs(path, val["path"].tolist(), tta=tta,  # unreadable photos named, no progress lines
                                log=lambda m: log(m) if m.startswith("skipped") else None)
        row = {"model": name, "tta": tta or "own", **score(y[ok], probs.argmax(1))}
        rows.append({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()})
        log(f"  {name:<24s} macro F1 {row['macro_f1']:.4f}  gender {row['gender_acc']:.4f}  age band "
            f"{row['age_acc']:.4f}  mask {row['mask_acc']:.4f}  ({row['n']} photos)")
    return rows


def run_seeds(data_dir: str | os.PathLike, out: str | os.PathLike, cfg: dict, seeds: Sequence[int],
              calibrate: Sequence[str | os.PathLike] | None = None, calibrate_images: int = 512,
              log: Callable[[str], None] = print, val_scores: bool = True) -> dict:
    """Train (or resume, or skip) OUT/seed{s} for every seed, then write OUT/soup.pt and OUT/seeds.json."""
    from ..models.soup import soup_models
    from .recipe import run_training

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    runs = []
    for i, s in enumerate(seeds):
        run = out / f"seed{s}"
        if (run / "summary.json").is_file():
            log(f"seed {s} ({i + 1}/{len(seeds)}): done already ({run})")
        else:
            resume = (run / "last.pt").is_file()
            log(f"seed {s} ({i + 1}/{len(seeds)}): {'resuming' if resume else 'training'} {run}")
            run_training(data_dir, run, load_config(overrides=[f"train.seed={s}"], base=cfg), resume=resume)
        summ = json.loads((run / "summary.json").read_text())
        runs.append({"seed": s, "run": str(run), "val_macro_f1": summ["val_with_age_bias"]["macro_f1"],
                     "best_epoch": summ.get("best_epoch"), "seconds": summ["seconds"]})
    t_soup = time.time()
    folders = [str(f) for f in (calibrate if calibrate else [data_dir])]
    val = validation_photos([r["run"] for r in runs])
    if val is None:
        log("the runs' validation people differ (split.csv): the soup is not scored on validation")
    elif val.empty:
        val = None
    skip = [] if val is None else val["path"].tolist()
    log(f"soup of {len(runs)} runs, REPAIR on photos of {', '.join(folders)}"
        + (f" (not the {len(skip)} validation photos)" if skip else ""))
    soup = soup_models([r["run"] for r in runs], out / "soup.pt", calibrate=folders, n=calibrate_images, log=log,
                       skip=skip)
    f1 = np.array([r["val_macro_f1"] for r in runs])
    res = {"runs": runs, "mean_macro_f1": float(f1.mean()), "std_macro_f1": float(f1.std(ddof=1)),
           "soup": soup, "soup_seconds": round(time.time() - t_soup, 1)}
    if val is not None and val_scores:
        from ..models.classifier import read_bundle

        own = read_bundle(out / "soup.pt")[0]["preprocess"].get("tta", "off")
        other = "on" if own == "off" else "off"
        log(f"every member and the soup on the {len(val)} validation photos of {val['person'].nunique()} people "
            "(on disk, as predict sees them):")
        models = [(f"seed {r['seed']}", str(Path(r["run"]) / "best.pt"), None) for r in runs]
        models += [("soup", str(out / "soup.pt"), None), (f"soup, mirror TTA {other}", str(out / "soup.pt"), other)]
        try:
            rows = score_on_photos(models, val, log)
        except ValueError as e:  # e.g. run from another folder than training, so split.csv's paths are not found
            log(f"validation scores skipped: {e} (the soup is written: {out / 'soup.pt'})")
        else:
            res["validation_photos"] = {"photos": int(len(val)), "people": int(val["person"].nunique()),
                                        "scores": rows}
            best = max(rows[:len(runs)], key=lambda r: r["macro_f1"])
            log(f"soup {rows[len(runs)]['macro_f1']:.4f} against its best member's {best['macro_f1']:.4f} "
                f"({best['model']})")
    res["seconds_this_call"] = round(time.time() - t0, 1)
    tmp = out / ".seeds.json.tmp"
    tmp.write_text(json.dumps(res, indent=2))
    os.replace(tmp, out / "seeds.json")
    for r in runs:
        log(f"seed {r['seed']}: validation macro F1 {r['val_macro_f1']:.4f} ({r['seconds'] / 60:.1f} min)")
    log(f"mean {res['mean_macro_f1']:.4f} +- {res['std_macro_f1']:.4f} over {len(runs)} seeds; "
        f"one network: {out / 'soup.pt'} ({soup['mb']} MB; score it with `maskgate predict --model {out / 'soup.pt'}`)")
    return res
