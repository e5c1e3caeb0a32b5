"""Does the model work on everyone? Scores group by group on faces-world eval, unmasked and with masks
drawn by `maskgate synth`, next to maskproxy eval.

    python benchmarks/bench_groups.py --model A.pt [--model B.pt ...] --out DIR
        [--faces-world ../shared/data/faces-world/eval] [--maskproxy ../shared/data/maskproxy/eval]
        [--per-person 3] [--seed 0] [--people N] [--tta MODE]

faces-world/eval: 1,501 adults of every race but Asian (white, black, indian, other), balanced over
gender x age band, one unmasked photo each.
  unmasked   the photos as given (subject face of each; the truth is "not worn" + labels.csv)
  masked     the same people written by `maskgate synth --layout eval --per-person 3` into DIR/fw_masked
             (one mask worn, one worn wrongly, one none per person; seeded, made once and reused)
Per model and condition: macro F1, mask / gender / age-band accuracy overall and by race, gender, age
band (and drawn state), and crossed (gender x age band, race x gender, race x gender x age band), with the
worst group and the gap, as tables (printed as markdown) and plots
(DIR/<model>/<condition>/groups_*.png); all numbers in DIR/results.json.
Targets (issue 9): gender >= 0.94 overall and >= 0.92 in every race group, age band >= 0.72.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from maskgate.evaluate import read_table, scores
from maskgate.groups import group_column, group_report, group_scores
from maskgate.predict import Predictor
from maskgate.synth.writer import synthesize


def predict_classes(pred: Predictor, paths: list[str]) -> np.ndarray:
    out = []
    for p, res, err in pred.predict_files(paths, all_faces=False):
        if err:
            raise RuntimeError(err)
        out.append(res[0].cls)
    return np.array(out)


# intersections: where "older women called male" shows, behind good marginals (issue 9)
CROSSED = ["gender+age_band", "race+gender", "race+gender+age_band"]
MIN_N = 30  # a crossed group smaller than this is listed but not named the worst


def condition(pred: Predictor, truth: pd.DataFrame, truth_csv: Path, paths: list[str], groups: list[str],
              report: Path) -> dict:
    y_true = truth["ans"].to_numpy()
    y_pred = predict_classes(pred, paths)
    res = {k: round(v, 4) if isinstance(v, float) else v for k, v in scores(y_true, y_pred).items()}
    # the 18-class macro F1 counts classes no photo has (unmasked photos have 6): also over those present
    res["macro_f1_present"] = round(float(group_scores(y_true, y_pred, np.zeros(len(y_true)))["macro_f1"][0]), 4)
    res["groups"] = {}
    for g in groups:
        name, labels = group_column(g, truth, truth_csv)
        res["groups"][name] = group_report(y_true, y_pred, labels, name, report)
    return res


def markdown(results: dict) -> str:
    lines = []
    for model, conds in results.items():
        lines.append(f"\n### {model}\n")
        lines.append("| condition | n | macro F1 (classes present) | mask acc | gender acc | age acc | worst race: gender "
                     "| worst race: age |")
        lines.append("|---|---|---|---|---|---|---|---|")
        for c, r in conds.items():
            gap = r.get("groups", {}).get("race", {}).get("gap", {})
            wg = f"{gap['gender_acc']['worst']} {gap['gender_acc']['worst_value']:.3f}" if gap else ""
            wa = f"{gap['age_acc']['worst']} {gap['age_acc']['worst_value']:.3f}" if gap else ""
            lines.append(f"| {c} | {r['n']} | {r['macro_f1_present']:.3f} | {r['mask_acc']:.3f} | {r['gender_acc']:.3f} | "
                         f"{r['age_acc']:.3f} | {wg} | {wa} |")
        for c, r in conds.items():
            if "race" not in r.get("groups", {}):
                continue
            lines.append(f"\n{c}, by race:\n")
            lines.append("| race | n | macro F1 (classes present) | mask acc | gender acc | age acc |")
            lines.append("|---|---|---|---|---|---|")
            for row in r["groups"]["race"]["table"]:
                lines.append(f"| {row['group']} | {row['n']} | {row['macro_f1']:.3f} | {row['mask_acc']:.3f} | "
                             f"{row['gender_acc']:.3f} | {row['age_acc']:.3f} |")
        for c, r in conds.items():
            if "gender+age_band" not in r.get("groups", {}):
                continue
            lines.append(f"\n{c}, gender and age-band accuracy by gender x age band (and the worst race in each, "
                         f"of those with at least {MIN_N} images):\n")
            lines.append("| gender / age band | n | gender acc | age acc | worst race: gender | worst race: age |")
            lines.append("|---|---|---|---|---|---|")
            three = r["groups"].get("race+gender+age_band", {}).get("table", [])
            for row in r["groups"]["gender+age_band"]["table"]:
                sub = [x for x in three if x["group"].split("/", 1)[1] == row["group"] and x["n"] >= MIN_N]
                wg = min(sub, key=lambda x: x["gender_acc"]) if sub else None
                wa = min(sub, key=lambda x: x["age_acc"]) if sub else None
                lines.append(f"| {row['group']} | {row['n']} | {row['gender_acc']:.3f} | {row['age_acc']:.3f} | " +
                             (f"{wg['group'].split('/')[0]} {wg['gender_acc']:.3f} (n={wg['n']}) | "
                              f"{wa['group'].split('/')[0]} {wa['age_acc']:.3f} (n={wa['n']}) |" if sub else " | |"))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", action="append", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--faces-world", default="../shared/data/faces-world/eval")
    ap.add_argument("--maskproxy", default="../shared/data/maskproxy/eval", help="'' to skip")
    ap.add_argument("--per-person", type=int, default=3, choices=[3, 7])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--people", type=int, default=0, help="only the first N faces-world people (0 = all)")
    ap.add_argument("--tta", nargs="?", const="on", choices=("off", "on", "auto"),
                    help="as `maskgate predict --tta` (default: each model's own setting)")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    fw = Path(a.faces_world)
    masked = out / f"fw_masked_{a.per_person}_s{a.seed}_n{a.people}"
    if not (masked / "answers.csv").is_file():
        print(f"drawing masks on {fw} -> {masked}", file=sys.stderr)
        synthesize(fw, masked, layout="eval", per_person=a.per_person, seed=a.seed, limit=a.people)
    labels = fw / "labels.csv"
    plain = read_table(labels, "truth")
    if a.people:
        plain = plain.iloc[:a.people]
    mtruth = read_table(masked / "answers.csv", "truth")
    results = {}
    for m in a.model:
        pred = Predictor(m, tta=a.tta)
        name = (Path(m).stem if Path(m).is_file() else Path(m).name) + (f"_tta{a.tta}" if a.tta else "")
        r = {"faces-world unmasked": condition(pred, plain, labels, list(plain.index),
                                               ["race", "gender", "age_band"] + CROSSED, out / name / "unmasked"),
             "faces-world masked": condition(pred, mtruth, masked / "answers.csv",
                                             [str(masked / "images" / i) for i in mtruth.index],
                                             ["race", "gender", "age_band", "state"] + CROSSED,
                                             out / name / "masked")}
        if a.maskproxy:
            mp = Path(a.maskproxy)
            t = read_table(mp / "answers.csv", "truth")
            r["maskproxy eval"] = condition(pred, t, mp / "answers.csv",
                                            [str(mp / "images" / i) for i in t.index],
                                            ["age_band", "gender", "gender+age_band"],
                                            out / name / "maskproxy")
        key = m + (f" --tta {a.tta}" if a.tta else "")
        results[key] = r
        print(markdown({key: r}), flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
