"""More views at predict time: zoomed crops beside the mirror image, and soft-vote ensembles of given models.

    python benchmarks/bench_tta_views.py --model A.pt [--model B.pt ...] --out DIR [--zoom 1.1 ...]
        [--faces-world ../shared/data/faces-world/eval] [--maskproxy ../shared/data/maskproxy/eval]

Each photo's subject face is found and cut once (the first model's detection settings; each model gets its own
crop alignment and input size, as `maskgate predict` does). Views of a 192 px crop: the crop as predict uses it
(zoom 1), its mirror image, and for the first model zoomed crops: zoom z > 1 takes the centre 1/z of the crop
(closer in), z < 1 pads the crop by repeating its border (further out), each resized to the input size. Every
view is classified once and cached (DIR/<set>.npz); the combinations are then averaged from the cache:
  views      the first model: each zoom alone, with its mirror, and beside the plain crop and mirror; each
             combination applied to every face ("all") and, as `tta: auto` does, only where the plain crop's top
             class probability is under the model's `tta_below` ("auto")
  ensembles  every subset of two or more models: the normalised geometric mean of the members' distributions
             (`Predictor`'s soft vote), each member with the crop alone ("off") and with `tta auto`
Sets: maskproxy eval; faces-world eval with masks drawn as `bench_groups.py` draws them (DIR/fw_masked_3_s0_n0,
made once; the same images as bench_groups' set of that name). Cells: 18-class macro F1 / gender / age-band
accuracy. Tables printed as markdown; all numbers in DIR/results.json.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from maskgate.data.images import read_image
from maskgate.evaluate import read_table, scores
from maskgate.predict import Predictor
from maskgate.synth.writer import synthesize


def predictor(models: list[str]) -> Predictor:
    """All models on one detector; where their detection settings differ, the first model's decide."""
    try:
        return Predictor(models, tta="off")
    except ValueError:
        s = Predictor(models[0]).cropper.settings
        return Predictor(models, tta="off", det_size=s.det_max_side, weak_score=s.weak_score,
                         det_retry=s.det_retry_side, subject_centre=s.subject_centre,
                         det_retry_below=s.det_retry_below, subject_confidence=s.subject_confidence)


def zoomed(crops: np.ndarray, zoom: float, size: int) -> np.ndarray:
    """The centre 1/zoom of each crop (zoom < 1: the crop padded by its border), resized to size x size."""
    s = crops.shape[1]
    c = int(round(s / zoom))
    out = []
    for im in crops:
        if c <= s:
            o = (s - c) // 2
            v = im[o:o + c, o:o + c]
        else:
            p = (c - s) // 2
            v = cv2.copyMakeBorder(im, p, c - s - p, p, c - s - p, cv2.BORDER_REPLICATE)
        out.append(cv2.resize(v, (size, size), interpolation=cv2.INTER_AREA if c > size else cv2.INTER_LINEAR))
    return np.stack(out)


def view_probs(pred: Predictor, paths: list[str], zooms: list[float], batch: int = 64) -> dict[str, np.ndarray]:
    with ThreadPoolExecutor(2) as ex:
        crops = [cs[0] for cs in ex.map(lambda p: pred.faces_of(read_image(p), False), paths)]
    out = {}
    for i, m in enumerate(pred.models):
        key = m.preprocess.crop.alignment()
        own = key == pred.cropper.settings.alignment()
        raw = np.stack([c.image if own else c.others[key] for c in crops])
        views = {1.0: m.preprocess.resize(raw)}
        for z in (zooms if i == 0 else []):
            views[z] = zoomed(raw, z, m.preprocess.input_size)
        for z, x in views.items():
            for mirror in (0, 1):
                xs = np.ascontiguousarray(x[:, :, ::-1]) if mirror else x
                out[f"m{i}_z{z:g}_f{mirror}"] = np.concatenate([m.probs(xs[s:s + batch])
                                                               for s in range(0, len(xs), batch)])
        print(f"  model {i}: {len(views) * 2} views of {len(crops)} crops", file=sys.stderr, flush=True)
    return out


def cell(p: np.ndarray, y: np.ndarray) -> list[float]:
    s = scores(y, p.argmax(1))
    return [round(s["macro_f1"], 4), round(s["gender_acc"], 4), round(s["age_acc"], 4)]


def soft_vote(ps: list[np.ndarray]) -> np.ndarray:
    logp = np.mean([np.log(np.clip(q, 1e-8, None)) for q in ps], axis=0)
    p = np.exp(logp - logp.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


def only_doubtful(plain: np.ndarray, more: np.ndarray, below: float) -> np.ndarray:
    """`tta: auto`'s rule: the averaged views only where the plain crop's top class is under `below`."""
    p = plain.copy()
    d = plain.max(1) < below
    p[d] = more[d]
    return p


def study(v: dict[str, np.ndarray], y: np.ndarray, zooms: list[float], belows: list[float]) -> dict:
    plain, flip = v["m0_z1_f0"], v["m0_z1_f1"]
    combos = {"crop alone": [plain], "crop + mirror": [plain, flip]}
    for z in zooms:
        a, b = v[f"m0_z{z:g}_f0"], v[f"m0_z{z:g}_f1"]
        combos[f"zoom {z:g}"] = [a]
        combos[f"zoom {z:g} + mirror"] = [a, b]
        combos[f"crop + mirror + zoom {z:g}"] = [plain, flip, a]
        combos[f"crop + mirror + zoom {z:g} + mirror"] = [plain, flip, a, b]
    views = {name: {"all": cell(np.mean(ps, 0), y), "auto": cell(only_doubtful(plain, np.mean(ps, 0), belows[0]), y)}
             for name, ps in combos.items()}
    n = len(belows)
    ens = {}
    for r in range(1, n + 1):
        for members in itertools.combinations(range(n), r):
            off = [v[f"m{i}_z1_f0"] for i in members]
            auto = [only_doubtful(v[f"m{i}_z1_f0"], (v[f"m{i}_z1_f0"] + v[f"m{i}_z1_f1"]) / 2, belows[i])
                    for i in members]
            ens["+".join(map(str, members))] = {"off": cell(soft_vote(off), y), "auto": cell(soft_vote(auto), y)}
    return {"views": views, "ensembles": ens}


def markdown(name: str, r: dict, models: list[str]) -> str:
    f = lambda c: " / ".join(f"{x:.4f}" for x in c)  # noqa: E731
    lines = [f"\n### {name}: views of model 0\n", "| views | every face | auto (doubtful faces only) |", "|---|---|---|"]
    lines += [f"| {k} | {f(c['all'])} | {f(c['auto'])} |" for k, c in r["views"].items()]
    if len(models) > 1:
        lines += [f"\n### {name}: soft votes\n", "| models | crop alone | tta auto |", "|---|---|---|"]
        for k, c in r["ensembles"].items():
            lines.append(f"| {' + '.join(Path(models[int(i)]).stem for i in k.split('+'))} | {f(c['off'])} | "
                         f"{f(c['auto'])} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", action="append", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--zoom", action="append", type=float, help="zoom factors of the first model (default 0.9, 1.1)")
    ap.add_argument("--faces-world", default="../shared/data/faces-world/eval")
    ap.add_argument("--maskproxy", default="../shared/data/maskproxy/eval")
    a = ap.parse_args()
    zooms = [z for z in (a.zoom or [0.9, 1.1]) if z != 1.0]
    if any(z <= 0 for z in zooms):
        raise SystemExit(f"--zoom {zooms}: factors > 0")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    masked = out / "fw_masked_3_s0_n0"  # bench_groups.py's drawn-mask set (same seed and plan)
    if not (masked / "answers.csv").is_file():
        print(f"drawing masks on {a.faces_world} -> {masked}", file=sys.stderr)
        synthesize(Path(a.faces_world), masked, layout="eval", per_person=3, seed=0)
    pred = predictor(a.model)
    belows = [m.preprocess.tta_below for m in pred.models]
    results = {"models": a.model, "zooms": zooms, "sets": {}}
    for name, root in (("maskproxy eval", Path(a.maskproxy)), ("faces-world masked", masked)):
        t = read_table(root / "answers.csv", "truth")
        cache = out / f"{name.replace(' ', '_')}.npz"
        if cache.is_file() and json.loads(str(np.load(cache)["key"])) == [a.model, zooms]:
            v = {k: x for k, x in np.load(cache).items() if k != "key"}
        else:
            print(f"{name}: {len(t)} photos", file=sys.stderr, flush=True)
            v = view_probs(pred, [str(root / "images" / i) for i in t.index], zooms)
            np.savez(cache, key=json.dumps([a.model, zooms]), **v)
        r = study(v, t["ans"].to_numpy(), zooms, belows)
        results["sets"][name] = r
        print(markdown(name, r, a.model), flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
