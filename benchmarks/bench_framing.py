"""How much do predictions move when the same face is framed wider? Macro F1 per framing.

    python benchmarks/bench_framing.py --model A.pt [--model B.pt ...] [--images 3395] [--out DIR]
                                       [--weak-score S] [--det-size PX] [--det-retry PX]
    (the last three: predict-time detection options, as `maskgate predict`'s)

The maskproxy eval photos are tight face crops. Each is also shown three wider ways, all 448x448:
  portrait_blur     the photo at 240 px on an out-of-focus backdrop of its corner colours
  portrait_mirror   the photo's outer quarter mirrored outwards (hair, cheeks, background continue)
  small_face        the photo at 150 px on that backdrop: a face further from the camera
Wider framing adds context above the forehead and beside the cheeks that the tight training photos
never have. A crop that depends only on the face (`face.window`) should give the same answer for all
four; the table reports macro F1 and how often the class agrees with the tight photo's.
Synthetic: mirrored or blurred borders are not real hair and shoulders; real wide portraits are the
real test, and this only measures sensitivity to what lies outside the face.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from maskgate.evaluate import scores
from maskgate.predict import Predictor


def backdrop(img: np.ndarray) -> np.ndarray:
    """A 448x448 out-of-focus backdrop in the photo's own corner colours (no face in it: a blurred,
    enlarged copy of the face itself would be a second, bigger face for the detector)."""
    h, w = img.shape[:2]
    corners = np.concatenate([np.concatenate([img[:h // 8, :w // 8], img[:h // 8, -w // 8:]], 1),
                              np.concatenate([img[-h // 8:, :w // 8], img[-h // 8:, -w // 8:]], 1)], 0)
    return cv2.GaussianBlur(cv2.resize(corners, (448, 448)), (0, 0), 15)


def blur_frame(face: np.ndarray, s: int, y: int) -> np.ndarray:
    bg = backdrop(face)
    small = cv2.resize(face, (s, s), interpolation=cv2.INTER_AREA)
    x = (448 - s) // 2
    bg[y:y + s, x:x + s] = small
    return bg


def mirror_frame(face: np.ndarray) -> np.ndarray:
    """Hair, cheeks and background continued by mirroring the photo's outer quarter, then a blurred frame."""
    h, w = face.shape[:2]
    big = cv2.copyMakeBorder(face, h // 4, h // 8, w // 5, w // 5, cv2.BORDER_REFLECT_101)
    s = 300
    big = cv2.resize(big, (s, s * big.shape[0] // big.shape[1]), interpolation=cv2.INTER_AREA)
    bg = backdrop(face)
    y, x = 40, (448 - s) // 2
    hh = min(big.shape[0], 448 - y)
    bg[y:y + hh, x:x + s] = big[:hh]
    return bg


FRAMINGS = {
    "tight (as given)": None,
    "portrait_blur": lambda f: blur_frame(f, 240, 70),
    "portrait_mirror": mirror_frame,
    "small_face": lambda f: blur_frame(f, 150, 110),
}


def render(conditions: dict, eval_dir: Path, truth: pd.DataFrame, tmp: Path, out: str | None,
           picture: str, example: int = 0) -> dict[str, list[Path]]:
    """Write every eval photo once per condition (None = the photo as given); photo number `example`
    in every condition, side by side, as `picture`."""
    folders = {}
    for name, fn in conditions.items():
        if fn is None:
            folders[name] = [eval_dir / "images" / i for i in truth.ImageID]
            continue
        d = tmp / name
        d.mkdir()
        for k, i in enumerate(truth.ImageID):
            img = fn(cv2.imread(str(eval_dir / "images" / i)), k)
            cv2.imwrite(str(d / i), img, [cv2.IMWRITE_JPEG_QUALITY, 92])
        folders[name] = [d / i for i in truth.ImageID]
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        row = [cv2.resize(cv2.imread(str(folders[n][example])), (224, 224)) for n in conditions]
        cv2.imwrite(str(Path(out) / picture), np.concatenate(row, 1))
    return folders


def score(folders: dict[str, list[Path]], truth: pd.DataFrame, model: str, **options) -> dict:
    """Macro F1, per-task accuracy, agreement with the first condition and faces found, per condition."""
    p = Predictor(model, **options)
    preds, found = {}, {}
    for name, paths in folders.items():
        res = [r[0] for _, r, _ in p.predict_files(paths)]
        preds[name] = np.array([r.cls for r in res])
        found[name] = [r.face_found for r in res]
    first = next(iter(folders))
    agrees, ref = "agrees_with_" + first.split()[0], preds[first]
    out = {}
    for n, v in preds.items():
        sc = scores(truth.ans.values, v)
        out[n] = {"macro_f1": round(sc["macro_f1"], 4), agrees: round(float((v == ref).mean()), 4),
                  "face_found": round(float(np.mean(found[n])), 4),
                  **{f"{t}_acc": round(sc[f"{t}_acc"], 4) for t in ("mask", "gender", "age")}}
    out["options"] = options
    return out


def run(conditions: dict, picture: str, example: int = 0) -> None:
    """The command line the condition benchmarks share: render the conditions, score every --model."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--eval", default="../shared/data/maskproxy/eval")
    ap.add_argument("--model", action="append", required=True, help="model bundle(s) to compare")
    ap.add_argument("--images", type=int, default=3395)
    ap.add_argument("--out", help="folder for results.json and an example picture")
    ap.add_argument("--weak-score", type=float, help="as `maskgate predict --weak-score`")
    ap.add_argument("--det-size", type=int, help="as `maskgate predict --det-size`")
    ap.add_argument("--det-retry", type=int, help="as `maskgate predict --det-retry`")
    ap.add_argument("--tta", nargs="?", const="on", choices=("off", "on", "auto"),
                    help="as `maskgate predict --tta` (default: each model's own setting)")
    a = ap.parse_args()
    truth = pd.read_csv(Path(a.eval) / "answers.csv").head(a.images)
    with tempfile.TemporaryDirectory() as tmp:
        folders = render(conditions, Path(a.eval), truth, Path(tmp), a.out, picture, example)
        results = {m: score(folders, truth, m, weak_score=a.weak_score, det_size=a.det_size, det_retry=a.det_retry,
                            tta=a.tta)
                   for m in a.model}
    print(json.dumps(results, indent=1))
    if a.out:
        (Path(a.out) / "results.json").write_text(json.dumps(results, indent=1))


def main() -> None:
    run({k: (None if fn is None else (lambda img, i, fn=fn: fn(img))) for k, fn in FRAMINGS.items()}, "framings.png")


if __name__ == "__main__":
    main()
