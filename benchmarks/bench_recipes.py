"""Train several recipes side by side on one train/ folder and tabulate their validation scores.

    python benchmarks/bench_recipes.py --data-dir ../shared/data/maskproxy/train --out runs/sweep \
        --recipe "ft15:model.freeze_blocks=0 train.cache_features=false train.epochs=15" \
        --recipe "ft15_m02:model.freeze_blocks=0 train.cache_features=false train.epochs=15 face.margin=0.2" \
        [--config FILE.yaml] [--eval-dir ../shared/data/maskproxy/eval] [--deadline-s 540]

Every recipe is one `maskgate train` run (same seed, so the same person split) into <out>/<name>;
all share one crop cache. With --eval-dir each run is also scored on that eval split. A recipe that
would start after --deadline-s is skipped (so a lease-limited GPU session still gets its table).
Writes <out>/recipes.csv and prints it as a table.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import pandas as pd
from bench_train import run as maskgate  # `python -m maskgate ...`; exits with a message on failure


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", required=True, help="train/ folder of the competition layout")
    ap.add_argument("--out", required=True, help="folder for the runs and the table")
    ap.add_argument("--recipe", action="append", required=True, help='"name:key=value key=value ..."')
    ap.add_argument("--config", help="base config file for every recipe")
    ap.add_argument("--eval-dir", help="also score each run on this eval/ folder (needs answers.csv)")
    ap.add_argument("--cache", help="crop/feature cache folder shared by the runs (default: $MASKGATE_CACHE)")
    ap.add_argument("--deadline-s", type=float, default=0, help="start no recipe after this many seconds")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if a.cache:
        env["MASKGATE_CACHE"] = a.cache
    t_all = time.time()
    rows = []
    for spec in a.recipe:
        name, _, rest = spec.partition(":")
        if a.deadline_s and time.time() - t_all > a.deadline_s:
            print(f"[bench_recipes] {name}: skipped (past --deadline-s)", flush=True)
            continue
        run_dir = out / name
        t0 = time.time()
        try:
            maskgate(["train", "--data-dir", a.data_dir, "--out", run_dir,
                      *(["--config", a.config] if a.config else []), *rest.split()], env)
        except SystemExit as e:  # one failed recipe does not stop the others
            print(f"[bench_recipes] {name}: {e}", flush=True)
            continue
        s = json.loads((run_dir / "summary.json").read_text())
        v, vb = s["val"], s["val_with_age_bias"]
        row = {"recipe": name, "seconds": round(time.time() - t0, 1), "best_epoch": s["best_epoch"],
               "val_f1": round(v["macro_f1"], 4), "val_f1_bias": round(vb["macro_f1"], 4),
               "mask_acc": round(vb["mask_acc"], 4), "gender_acc": round(vb["gender_acc"], 4),
               "age_acc": round(vb["age_acc"], 4), "age_mae": round(v["age_mae"], 2), "device": s["device"],
               "overrides": rest}
        if a.eval_dir:
            sub = run_dir / "eval_submission.csv"
            maskgate(["predict", "--data-dir", a.eval_dir, "--out", sub, "--model", run_dir], env)
            ev = json.loads(maskgate(["evaluate", "--pred", sub, "--truth", Path(a.eval_dir) / "answers.csv"], env))
            row["eval_f1"] = round(ev["macro_f1"], 4)
        rows.append(row)
        pd.DataFrame(rows).to_csv(out / "recipes.csv", index=False)
        print(f"[bench_recipes] {json.dumps(row)}", flush=True)
    if rows:
        print(pd.DataFrame(rows).drop(columns=["overrides"]).to_string(index=False))


if __name__ == "__main__":
    main()
