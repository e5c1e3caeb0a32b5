"""How much does a soup's REPAIR photo draw move its scores? The same members, REPAIRed on other seeded draws.

    python benchmarks/bench_soup_draws.py --run runs/fastlr/seed42 --run runs/fastlr/seed43 --run runs/fastlr/seed44 \
        [--calibrate ../shared/data/maskproxy/train] [--eval ../shared/data/maskproxy/eval] \
        [--draw 0:512 --draw 1:512 ...] --out runs/soup_draws

The runs must share their person split (as `maskgate seeds` makes them): each draw's soup is REPAIRed on `N`
photos drawn with seed `S` from --calibrate, never the validation people's photos (as `maskgate seeds` does),
then scored on those validation photos and on the eval layout. Prints a markdown table and the spread of each
column; writes DIR/draws.json and each soup as DIR/soup_d<S>_n<N>.pt.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from maskgate.models.soup import soup_models
from maskgate.train.seeds import score_on_photos, validation_photos


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", action="append", required=True, help="a run folder (its best.pt and split.csv); 2 or more")
    ap.add_argument("--calibrate", default="../shared/data/maskproxy/train", help="training photo folder for REPAIR")
    ap.add_argument("--eval", default="../shared/data/maskproxy/eval", help="eval layout (answers.csv + images/)")
    ap.add_argument("--draw", action="append", default=[], metavar="SEED:N",
                    help="a REPAIR draw: its seed and photo count (repeat; default 0:512 1:512 2:512 3:512)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    if len(a.run) < 2:
        ap.error("give at least two --run folders")
    try:
        draws = [(int(d.split(":")[0]), int(d.split(":")[1])) for d in (a.draw or ["0:512", "1:512", "2:512", "3:512"])]
    except (ValueError, IndexError):
        ap.error(f"--draw takes SEED:N, e.g. 0:512; got {a.draw}")
    val = validation_photos(a.run)
    if val is None or val.empty:
        ap.error("the runs do not share a validation split (split.csv): train them with `maskgate seeds`")
    ev = pd.read_csv(Path(a.eval) / "answers.csv")
    ev_photos = pd.DataFrame({"path": [str(Path(a.eval) / "images" / i) for i in ev["ImageID"]],
                              "person": ev["ImageID"], "label": ev["ans"]})
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    rows = []
    for seed, n in draws:
        t = time.time()
        path = out / f"soup_d{seed}_n{n}.pt"
        soup_models([str(Path(r) / "best.pt") for r in a.run], path, calibrate=[a.calibrate], n=n, log=log,
                    skip=val["path"].tolist(), seed=seed)
        log(f"draw seed {seed}, {n} photos:")
        (v,) = score_on_photos([("validation", str(path), None)], val, log)
        (e,) = score_on_photos([("eval", str(path), None)], ev_photos, log)
        rows.append({"seed": seed, "photos": n, "val_macro_f1": v["macro_f1"], "val_age_acc": v["age_acc"],
                     "eval_macro_f1": e["macro_f1"], "eval_gender_acc": e["gender_acc"], "eval_age_acc": e["age_acc"],
                     "seconds": round(time.time() - t, 1)})
    (out / "draws.json").write_text(json.dumps({"runs": a.run, "calibrate": a.calibrate, "eval": a.eval,
                                                "validation_photos": len(val), "draws": rows}, indent=2))
    df = pd.DataFrame(rows)
    print("| " + " | ".join(df.columns) + " |\n|" + "---|" * len(df.columns))
    for r in rows:
        print("| " + " | ".join(f"{v:.4f}" if isinstance(v, float) and k != "seconds" else str(v)
                                for k, v in r.items()) + " |")
    for n, g in df.groupby("photos"):
        print(f"{n} photos, {len(g)} draws: validation {g.val_macro_f1.min():.4f}-{g.val_macro_f1.max():.4f}, "
              f"eval {g.eval_macro_f1.min():.4f}-{g.eval_macro_f1.max():.4f} (mean {np.mean(g.eval_macro_f1):.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
