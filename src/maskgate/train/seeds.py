"""`maskgate seeds`: several runs of one config that differ only in the loop's seed, weight-averaged into one network.

Why: on 2 CPU cores one run of the recipe moves by ~0.01 macro F1 from seed to seed, and the weight average
of a few short runs (a "soup", models/soup.py) scores above every member at the size and speed of one
network, where more epochs of one run, or averaging along one run's own path (train.swa_epochs), add nothing
(docs/benchmarks.md, "The toolbox ablation"). Runs share the person split and the cached crops and trunk
outputs (`train.seed` is the loop's seed: batch order, dropout, erasing, the drawn masks' looks), so only the
first run pays for the caches.

Run s is OUT/seed{s}. As `maskgate kfold`: a run with summary.json is done and skipped, one with last.pt is
resumed, the rest start; so a killed `seeds` command goes on run by run. Then OUT/soup.pt: the members'
uniform weight average with REPAIR on training photos (`--calibrate`; default the train folder), and
OUT/seeds.json: each run's validation macro F1 and time, mean +- std, the soup's provenance.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

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


def run_seeds(data_dir: str | os.PathLike, out: str | os.PathLike, cfg: dict, seeds: Sequence[int],
              calibrate: Sequence[str | os.PathLike] | None = None, calibrate_images: int = 512,
              log: Callable[[str], None] = print) -> dict:
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
    log(f"soup of {len(runs)} runs, REPAIR on photos of {', '.join(folders)}")
    soup = soup_models([r["run"] for r in runs], out / "soup.pt", calibrate=folders, n=calibrate_images, log=log)
    f1 = np.array([r["val_macro_f1"] for r in runs])
    res = {"runs": runs, "mean_macro_f1": float(f1.mean()), "std_macro_f1": float(f1.std(ddof=1)),
           "soup": soup, "soup_seconds": round(time.time() - t_soup, 1),
           "seconds_this_call": round(time.time() - t0, 1)}
    tmp = out / ".seeds.json.tmp"
    tmp.write_text(json.dumps(res, indent=2))
    os.replace(tmp, out / "seeds.json")
    for r in runs:
        log(f"seed {r['seed']}: validation macro F1 {r['val_macro_f1']:.4f} ({r['seconds'] / 60:.1f} min)")
    log(f"mean {res['mean_macro_f1']:.4f} +- {res['std_macro_f1']:.4f} over {len(runs)} seeds; "
        f"one network: {out / 'soup.pt'} ({soup['mb']} MB; score it with `maskgate predict --model {out / 'soup.pt'}`)")
    return res
