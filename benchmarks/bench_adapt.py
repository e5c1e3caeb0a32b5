"""How many labelled people does `maskgate adapt` need before it helps a site's own new people?

    python benchmarks/bench_adapt.py --site ../shared/data/faces-world/eval [--also ../shared/data/maskproxy/eval]
        [--model M] [--draw-masks 3] [--sizes 50,100,200,400,750] [--repeats 10] --out runs/bench_adapt

The site: a labelled source (labels.csv) whose people the model never trained on, with masks drawn by
`maskgate synth` (3 photos a person: worn, worn incorrectly, none; seed 1). Its people are split in half
(seeded): the pool, from which the site labels K people and runs `maskgate adapt`, and the test half, the
site's *other* people, on which the adapted model is scored against the model as it is. For each K, R draws
of K people; the offsets are what `adapt_offsets` returns, its held-out check included (no gain there: the
model's own offsets stay). `--also`: other labelled sets scored with the same offsets (e.g. the population the
model was fitted on, to show what the site's offsets cost elsewhere). Prints markdown tables of the gains
(mean +- std over the draws, the worst draw, how often adapt kept new offsets) and writes
DIR/adapt_gain[_<shares>].png and DIR/results[_<shares>].json; the model's probabilities are cached per set in DIR/<model>/.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from maskgate.adapt import adapt_offsets, apply_offsets, model_probs, read_labelled_photos, score
from maskgate.models.runtime import default_model_path


def cached_probs(model: str, name: str, data, out: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    f = out / Path(model).stem / f"{name}.npz"
    if not f.is_file():
        f.parent.mkdir(parents=True, exist_ok=True)
        print(f"{name}: classifying {len(data.paths)} photos", file=sys.stderr, flush=True)
        p, ok = model_probs(model, data.paths, log=lambda m: print(m, file=sys.stderr))
        np.savez(f, probs=p, y=data.classes[ok], persons=data.persons[ok])
    z = np.load(f)
    return z["probs"], z["y"], z["persons"]


METRICS = ("accuracy", "macro_f1", "age_acc")


def with_band_shares(people: np.ndarray, persons: np.ndarray, y: np.ndarray, shares: list[float]) -> np.ndarray:
    """The largest seeded subset of `people` whose age bands have these shares (a site of another age mix)."""
    band = {p: b for p, b in zip(persons.tolist(), (y % 3).tolist())}
    by = [np.array([p for p in people if band[p] == b]) for b in range(3)]
    total = min(len(g) / s for g, s in zip(by, shares) if s > 0)
    rng = np.random.default_rng(0)
    return np.concatenate([rng.choice(g, int(round(total * s)), replace=False) for g, s in zip(by, shares)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=str(default_model_path("torch")))
    ap.add_argument("--site", required=True, help="labelled source (labels.csv) of the site's people")
    ap.add_argument("--draw-masks", type=int, choices=[0, 3, 7], default=3)
    ap.add_argument("--also", action="append", default=[], help="other labelled sets scored with the offsets")
    ap.add_argument("--sizes", default="50,100,200,400,750")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--objective", default="accuracy", choices=["accuracy", "age_acc", "macro_f1"])
    ap.add_argument("--band-shares", default="", metavar="Y,M,O",
                    help="a site of another age mix: keep as many of the site's people as give these shares of "
                         "<30, 30-59, >=60 (e.g. 0.15,0.35,0.5: an older site); default: the site as it is")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    site = read_labelled_photos([a.site], a.draw_masks, out / "photos", seed=1)
    site_key = "site_" + "_".join(Path(a.site).resolve().parts[-2:]) + f"_masks{a.draw_masks}"
    sp, sy, sper = cached_probs(a.model, site_key, site, out)
    people = np.unique(sper)
    if a.band_shares:
        people = with_band_shares(people, sper, sy, [float(v) for v in a.band_shares.split(",")])
        keep = np.isin(sper, people)
        sp, sy, sper = sp[keep], sy[keep], sper[keep]
    half = np.random.default_rng(0).permutation(people)
    pool_people, test = half[: len(people) // 2], np.isin(sper, half[len(people) // 2:])
    pp, py, pper = sp[~test], sy[~test], sper[~test]
    evals = {"site's other people": (sp[test], sy[test])}
    if a.draw_masks:
        masked = test & (sy // 6 != 2)  # worn or worn incorrectly
        evals["site's other people, masked"] = (sp[masked], sy[masked])
    for i, e in enumerate(a.also):
        ep, ey, _ = cached_probs(a.model, f"also{i}_{Path(e).name}", read_labelled_photos([e]), out)
        evals["/".join(Path(e).resolve().parts[-2:])] = (ep, ey)
    people = pool_people
    base = {k: score(y, p.argmax(1)) for k, (p, y) in evals.items()}
    rows = []
    # at most the whole pool; a size close to it (>= 85%) becomes the whole pool
    for k in sorted({int(s) if int(s) < 0.85 * len(people) else len(people) for s in a.sizes.split(",")}):
        draws = []
        for r in range(a.repeats):
            pick = np.random.default_rng((k, r)).choice(people, k, replace=False)
            sel = np.isin(pper, pick)
            ad = adapt_offsets(pp[sel], py[sel], pper[sel], a.objective, seed=r)
            gains = {name: {m: score(y, apply_offsets(p, *ad.offsets))[m] - base[name][m]
                            for m in METRICS} for name, (p, y) in evals.items()}
            draws.append({"offsets": list(ad.offsets), "kept": ad.kept, "gains": gains})
        rows.append({"people": k, "draws": draws})
        print(f"{k} people: kept {sum(d['kept'] for d in draws)}/{len(draws)}", file=sys.stderr, flush=True)

    names = list(evals)
    tag = "_" + a.band_shares.replace(",", "_") if a.band_shares else ""
    print(f"\nmodel {a.model}; site {a.site}{' with age-band shares ' + a.band_shares if a.band_shares else ''}: {len(people)} people in the pool, {len(half) - len(people)} in the "
          f"test half (masks drawn: {a.draw_masks}); objective {a.objective}; {a.repeats} draws per size\n")
    print("| eval set | model as it is: 18-class accuracy / macro F1 / age-band accuracy |")
    print("|---|---|")
    for n in names:
        print(f"| {n} | " + " / ".join(f"{base[n][m]:.4f}" for m in METRICS) + " |")
    print("\n| people labelled | adapt kept new offsets | " +
          " | ".join(f"{n}: gain in accuracy / macro F1 / age acc" for n in names) + " |")
    print("|---|---|" + "---|" * len(names))
    for row in rows:
        d = row["draws"]
        cells = []
        for n in names:
            v = {m: np.array([x["gains"][n][m] for x in d]) for m in METRICS}
            cells.append(" / ".join(f"{v[m].mean():+.4f} +- {v[m].std():.4f}" for m in METRICS) +
                         f" (worst accuracy {v['accuracy'].min():+.4f})")
        print(f"| {row['people']} | {sum(x['kept'] for x in d)}/{len(d)} | " + " | ".join(cells) + " |")
    (out / f"results{tag}.json").write_text(json.dumps({"model": a.model, "base": base, "rows": rows}, indent=1))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    for ax, m, title in zip(axes, METRICS, ("18-class accuracy gain", "macro F1 gain", "age-band accuracy gain")):
        for n in names:
            ks = [row["people"] for row in rows]
            v = [np.array([x["gains"][n][m] for x in row["draws"]]) for row in rows]
            ax.errorbar(ks, [x.mean() for x in v], yerr=[x.std() for x in v], marker="o", capsize=3, label=n)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xscale("log")
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.minorticks_off()
        ax.set_xlabel("labelled people given to adapt")
        ax.set_title(title)
    axes[0].legend(fontsize=8)
    site_name = "/".join(Path(a.site).resolve().parts[-2:]) + (f", age bands {a.band_shares}" if a.band_shares else "")
    fig.suptitle(f"maskgate adapt, site {site_name}: gain against the model as it is (mean +- std over draws)")
    fig.tight_layout()
    fig.savefig(out / f"adapt_gain{tag}.png", dpi=110)
    print(f"\nplot: {out / f'adapt_gain{tag}.png'}", file=sys.stderr)


if __name__ == "__main__":
    main()
