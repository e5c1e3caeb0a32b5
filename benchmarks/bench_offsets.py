"""How far do age-band offsets (and mirror TTA) move a trained model, fitted on held-out people?

    python benchmarks/bench_offsets.py --model A.pt [--model B.pt ...] --split runs/RUN/split.csv --out DIR [--tta MODE]
        [--extra-train ../shared/data/faces-world/train] [--faces-world ../shared/data/faces-world/eval]
        [--maskproxy ../shared/data/maskproxy/eval]

A model's age band is decided with offsets added to its age logits (`models/heads.combine18`); training fits
them on validation people for 18-class macro F1 (`train/calibrate.py`). This asks what other offsets would
give, on the two populations of issue 9, fitted only on people no model here trained on:
  validation  the `val` rows of a run's split.csv (the person split every run with that seed shares):
              maskproxy's validation photos as they are, and the extra source's validation people unmasked
              and with masks drawn by `maskgate synth --layout eval --per-person 3 --seed 1`
  eval        maskproxy eval; faces-world eval unmasked and with masks drawn (seed 0, as bench_groups.py)
Offsets (0, b1, b2) for the three bands, shared by both genders, on a grid of -1..1 in steps of 0.1, applied
to the model's 18-class probabilities (its own offsets already in them). For each model: scores as shipped,
the offsets that a validation objective picks (maskproxy macro F1; faces-world masked age accuracy), the
validation Pareto front of the two and each front point's eval scores, and the best faces-world masked age
accuracy any grid point reaches on eval itself (a bound: chosen on the answers). Tables printed as markdown,
all numbers in DIR/results.json; each set's probabilities cached in DIR/<model>/<set>.npz.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from maskgate.adapt import apply_offsets
from maskgate.evaluate import read_table
from maskgate.groups import group_scores
from maskgate.predict import Predictor
from maskgate.synth.writer import synthesize

GRID = [round(float(v), 1) for v in np.arange(-1.0, 1.01, 0.1)]


def probs_of(pred: Predictor, paths: list[str]) -> np.ndarray:
    out = []
    for p, res, err in pred.predict_files(paths, all_faces=False):
        if err:
            raise RuntimeError(f"{p}: {err}")
        out.append(res[0].probs)
    return np.array(out)


def truth_set(csv: Path, images: Path | None = None) -> tuple[list[str], np.ndarray]:
    """Photos and classes of an eval layout's answers.csv (`images`: its images/ folder) or of a source's
    labels.csv (unmasked photos: 'not worn' + gender + age band), as `maskgate evaluate` reads them."""
    t = read_table(csv, "truth")
    return [str(images / i) if images else i for i in t.index], t["ans"].to_numpy()


def build_sets(a, out: Path) -> dict[str, tuple[list[str], np.ndarray]]:
    split = pd.read_csv(a.split)
    val = split[split["split"] == "val"]
    main = val[val["source"] == "main"] if "source" in val else val
    sets = {"maskproxy val": (list(main["path"]), main["label"].to_numpy())}
    xroot = Path(a.extra_train).resolve()
    xl = pd.read_csv(xroot / "labels.csv")
    val_paths = set(val["path"])
    xl = xl[[str(xroot / p) in val_paths for p in xl["path"]]]
    if xl.empty:
        raise SystemExit(f"{a.split}: no validation rows of {xroot} (was the run trained with --extra {a.extra_train}?)")
    src = out / "extra_val"
    src.mkdir(parents=True, exist_ok=True)
    xl.assign(path=[str(xroot / p) for p in xl["path"]]).to_csv(src / "labels.csv", index=False)
    masked_val = out / "extra_val_masked_s1"
    if not (masked_val / "answers.csv").is_file():
        synthesize(src, masked_val, layout="eval", per_person=3, seed=1)
    sets["faces-world val masked"] = truth_set(masked_val / "answers.csv", masked_val / "images")
    sets["faces-world val unmasked"] = truth_set(src / "labels.csv")
    mp = Path(a.maskproxy)
    sets["maskproxy eval"] = truth_set(mp / "answers.csv", mp / "images")
    fw = Path(a.faces_world)
    masked_eval = out / "fw_masked_3_s0_n0"  # bench_groups.py's drawn-mask set (same seed and plan)
    if not (masked_eval / "answers.csv").is_file():
        synthesize(fw, masked_eval, layout="eval", per_person=3, seed=0)
    sets["faces-world eval masked"] = truth_set(masked_eval / "answers.csv", masked_eval / "images")
    sets["faces-world eval unmasked"] = truth_set(fw / "labels.csv")
    return sets


def measure(p: np.ndarray, y: np.ndarray, b1: float, b2: float) -> dict:
    """Macro F1 over the classes present (an unmasked set has 6, as bench_groups.py), gender and age accuracy."""
    r = group_scores(y, apply_offsets(p, b1, b2), np.zeros(len(y))).iloc[0]
    return {k: round(float(r[k]), 4) for k in ("macro_f1", "gender_acc", "age_acc")}


def study(probs: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict:
    def at(b):
        return {k: measure(p, y, *b) for k, (p, y) in probs.items()}

    pts = [(b1, b2, measure(*probs["maskproxy val"], b1, b2)["macro_f1"],
            measure(*probs["faces-world val masked"], b1, b2)["age_acc"]) for b1, b2 in itertools.product(GRID, GRID)]
    front = [p for p in pts if not any(q[2] >= p[2] and q[3] >= p[3] and (q[2] > p[2] or q[3] > p[3]) for q in pts)]
    pick_f1 = max(pts, key=lambda q: q[2])[:2]
    pick_age = max(pts, key=lambda q: q[3])[:2]
    bound = max(((b1, b2, measure(*probs["faces-world eval masked"], b1, b2)["age_acc"])
                 for b1, b2 in itertools.product(GRID, GRID)), key=lambda q: q[2])
    return {"as_is": at((0.0, 0.0)),
            "fitted": {"maskproxy val macro F1": {"offsets": pick_f1, **at(pick_f1)},
                       "faces-world val masked age": {"offsets": pick_age, **at(pick_age)}},
            "front": [{"offsets": (p[0], p[1]), **at(p[:2])} for p in sorted(front, key=lambda p: p[2])],
            "eval_bound_masked_age": {"offsets": bound[:2], "age_acc": round(bound[2], 4)}}


def _b(o) -> str:
    return f"(0, {o[0]:+.1f}, {o[1]:+.1f})"


def markdown(name: str, r: dict) -> str:
    cols = ["maskproxy val", "faces-world val masked", "maskproxy eval", "faces-world eval masked",
            "faces-world eval unmasked"]
    lines = [f"\n### {name}\n", "| offsets on top of the model's (cells: macro F1 / gender / age-band acc) | " + " | ".join(cols) + " |",
             "|---|" + "---|" * len(cols)]

    def row(label, d):
        return f"| {label} | " + " | ".join(
            f"{d[c]['macro_f1']:.4f} / {d[c]['gender_acc']:.3f} / {d[c]['age_acc']:.4f}" for c in cols) + " |"
    lines.append(row("as the model is", r["as_is"]))
    for k, d in r["fitted"].items():
        lines.append(row(f"{_b(d['offsets'])}: best {k}", d))
    for d in r["front"]:
        lines.append(row(f"{_b(d['offsets'])}: validation front", d))
    b = r["eval_bound_masked_age"]
    lines.append(f"\nbest faces-world eval masked age accuracy of any grid point (chosen on the answers: a bound): "
                 f"{b['age_acc']:.4f} at {_b(b['offsets'])}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", action="append", required=True)
    ap.add_argument("--split", required=True, help="a run's split.csv (its val rows are the held-out people)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--extra-train", default="../shared/data/faces-world/train")
    ap.add_argument("--faces-world", default="../shared/data/faces-world/eval")
    ap.add_argument("--maskproxy", default="../shared/data/maskproxy/eval")
    ap.add_argument("--tta", nargs="?", const="on", choices=("off", "on", "auto"),
                    help="as `maskgate predict --tta` (default: each model's own setting)")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    sets = build_sets(a, out)
    results = {}
    for m in a.model:
        name = (Path(m).stem if Path(m).is_file() else Path(m).name) + (f"_tta{a.tta}" if a.tta else "")
        (out / name).mkdir(exist_ok=True)
        pred, probs = None, {}
        for k, (paths, y) in sets.items():
            f = out / name / (k.replace(" ", "_") + ".npz")
            if not f.is_file():
                pred = pred or Predictor(m, tta=a.tta)
                print(f"{name}: {k} ({len(paths)} photos)", file=sys.stderr, flush=True)
                np.savez(f, probs=probs_of(pred, paths), y=y)
            z = np.load(f)
            probs[k] = (z["probs"], z["y"])
        results[m + (f" --tta {a.tta}" if a.tta else "")] = r = study(probs)
        print(markdown(m + (f" --tta {a.tta}" if a.tta else ""), r), flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
