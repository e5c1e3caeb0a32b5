"""Large photos: is the right face chosen and found when the photo is much larger than the detection copy?

    python benchmarks/bench_large_photos.py [--model M] [--images 200] [--out DIR]

The eval photos (maskproxy) are tight 200 px crops; photos from phones and cameras are 640-4000 px with
the face a small part. Each of the first N maskproxy eval photos is pasted, as the subject, into:
  blur_W_S      a W px wide frame (4:3) of its own blurred corner colours, the photo at S px near the centre
  scene_W_S     the same on real scenes that scikit-image ships (a coffee cup, a rocket, a cat, a
                microscope slide, the Hubble deep field): backgrounds with face-like patterns
  bystander_W   a masked subject in the middle of a W px frame and an unmasked person (another eval
                photo, 0.8x its size) at the left or right edge: the subject must not be the bystander
Each detection setting is scored by how often the face chosen as the subject is the pasted subject
(`subject`), and by macro F1 / mask / gender / age-band accuracy of the answers against the subject's
labels, with images/s (2 predict threads, as `maskgate predict`). The settings:
  before    what the model did before the doubtful-look rule: a second look at 640 px only when no face
            was found, the subject by size and centre alone (det_retry_side 640, det_retry_below null,
            subject_confidence 0)
  now       the model's own settings (the shipped model: a second look at up to 1280 px when the first is
            doubtful, detection confidence in the subject rule)
Synthetic: pasted squares are not real scenes; this measures where faces are looked for and which one is
chosen, the classifier is the same.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import cv2
import numpy as np

from maskgate.evaluate import read_table, scores
from maskgate.faces.crop import FaceCropper
from maskgate.labels import decode
from maskgate.predict import Predictor

BEFORE = dict(det_retry_side=640, det_retry_below=None, subject_confidence=0.0)


def _backdrop(img: np.ndarray, w: int, h: int) -> np.ndarray:
    """The photo's corner colours, enlarged and blurred (no face in it)."""
    q = img.shape[0] // 8
    corners = np.concatenate([np.concatenate([img[:q, :q], img[:q, -q:]], 1),
                              np.concatenate([img[-q:, :q], img[-q:, -q:]], 1)], 0)
    return cv2.GaussianBlur(cv2.resize(corners, (w, h)), (0, 0), 15)


def _scenes() -> list[np.ndarray]:
    from skimage import data

    out = []
    for name in ("coffee", "rocket", "chelsea", "hubble_deep_field", "immunohistochemistry"):
        im = getattr(data, name)()
        out.append(cv2.cvtColor(im if im.ndim == 3 else cv2.cvtColor(im, cv2.COLOR_GRAY2RGB), cv2.COLOR_RGB2BGR))
    return out


def make_sets(eval_dir: Path, n: int, out: Path) -> dict[str, list[tuple[str, tuple, int]]]:
    """{set: [(image path, subject rectangle, subject's class)]}, written once under `out`."""
    t = read_table(eval_dir / "answers.csv", "truth")
    photos = [(i, int(y)) for i, y in zip(t.index, t["ans"])]
    masked = [p for p in photos if decode(p[1])[0] != 2][:n]
    bare = [p for p in photos if decode(p[1])[0] == 2][:n]
    scenes = _scenes()
    rng = np.random.default_rng(0)
    sets: dict[str, list] = {}
    for kind, w, s in (("blur", 1280, 200), ("blur", 1280, 120), ("scene", 1280, 200), ("scene", 1280, 120)):
        h, rows = w * 3 // 4, []
        d = out / f"{kind}_{w}_{s}"
        d.mkdir(parents=True, exist_ok=True)
        for k, (i, y) in enumerate(photos[:n]):
            img = cv2.imread(str(eval_dir / "images" / i))
            bg = _backdrop(img, w, h) if kind == "blur" else cv2.resize(scenes[k % len(scenes)], (w, h))
            x0 = int(w / 2 - s / 2 + rng.integers(-w // 6, w // 6))
            y0 = int(h / 2 - s / 2 + rng.integers(-h // 8, h // 8))
            bg[y0:y0 + s, x0:x0 + s] = cv2.resize(img, (s, s), interpolation=cv2.INTER_AREA)
            cv2.imwrite(str(d / i), bg, [cv2.IMWRITE_JPEG_QUALITY, 90])
            rows.append((str(d / i), (x0, y0, x0 + s, y0 + s), y))
        sets[d.name] = rows
    for w, s, b in ((448, 150, 120), (640, 160, 128), (1280, 200, 170)):
        h, rows = w * 3 // 4 if w > 448 else w, []
        d = out / f"bystander_{w}"
        d.mkdir(parents=True, exist_ok=True)
        for k, ((i, y), (j, _)) in enumerate(zip(masked, bare)):
            bg = np.empty((h, w, 3), np.uint8)
            bg[:] = rng.integers(60, 200, 3)
            bg = cv2.GaussianBlur((bg + rng.normal(0, 20, bg.shape)).clip(0, 255).astype(np.uint8), (0, 0), 5)
            x0, y0 = (w - s) // 2, (h - s) // 2
            bg[y0:y0 + s, x0:x0 + s] = cv2.resize(cv2.imread(str(eval_dir / "images" / i)), (s, s))
            bx, by = (5 if rng.random() < 0.5 else w - b - 5), int(rng.integers(0, h - b))
            bg[by:by + b, bx:bx + b] = cv2.resize(cv2.imread(str(eval_dir / "images" / j)), (b, b))
            p = d / f"{k:04d}.jpg"
            cv2.imwrite(str(p), bg, [cv2.IMWRITE_JPEG_QUALITY, 90])
            rows.append((str(p), (x0, y0, x0 + s, y0 + s), y))
        sets[d.name] = rows
    return sets


def score_set(pred: Predictor, rows: list) -> dict:
    t0 = time.time()
    cls, hit = [], []
    for (p, res, err), (_, (x1, y1, x2, y2), _) in zip(pred.predict_files([r[0] for r in rows]), rows):
        if err:
            raise RuntimeError(err)
        r = res[0]
        cls.append(r.cls)
        cx, cy = (r.box[0] + r.box[2]) / 2, (r.box[1] + r.box[3]) / 2
        hit.append(bool(r.face_found and x1 <= cx <= x2 and y1 <= cy <= y2))
    secs = time.time() - t0
    s = scores(np.array([r[2] for r in rows]), np.array(cls))
    return {"subject": round(float(np.mean(hit)), 3), "macro_f1": round(s["macro_f1"], 3),
            "mask_acc": round(s["mask_acc"], 3), "gender_acc": round(s["gender_acc"], 3),
            "age_acc": round(s["age_acc"], 3), "images_per_s": round(len(rows) / secs, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None, help="default: the shipped model")
    ap.add_argument("--eval", default="../shared/data/maskproxy/eval")
    ap.add_argument("--images", type=int, default=200, help="photos per set")
    ap.add_argument("--out", default="runs/large_photos")
    a = ap.parse_args()
    out = Path(a.out)
    sets = make_sets(Path(a.eval), a.images, out / "images")
    pred = Predictor(a.model)
    own = pred.cropper.settings
    results = {}
    for name, settings in (("before", dataclasses.replace(own, **BEFORE)), ("now", own)):
        pred.cropper = FaceCropper(settings, threads=1)  # only where faces are looked for and which is chosen
        results[name] = {k: score_set(pred, rows) for k, rows in sets.items()}
        print(f"\n{name}: {settings.detection()}")
    print("\n| set | n | subject chosen right: before / now | macro F1 | mask acc | gender acc | age acc | images/s |")
    print("|---|---|---|---|---|---|---|---|")
    for k, rows in sets.items():
        b, n = results["before"][k], results["now"][k]
        print(f"| {k} | {len(rows)} | " + " | ".join(f"{b[m]} / **{n[m]}**" for m in
              ("subject", "macro_f1", "mask_acc", "gender_acc", "age_acc", "images_per_s")) + " |")
    (out / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
