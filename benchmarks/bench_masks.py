"""Does the model judge the mask by where it sits, or by how the pasted templates look? Macro F1 per look.

    python benchmarks/bench_masks.py --model A.pt [--model B.pt ...] [--images 3395] [--out DIR]
                                     [--weak-score S] [--det-size PX] [--det-retry PX]

Every maskproxy mask is a flat template pasted on a photo, and all 7 photos of a person are one photo,
so each masked eval photo minus its person's `normal` photo gives the mask's exact outline. The benchmark
redraws the mask inside that outline in looks no template has, and leaves the photo outside it as is:
  recoloured    a random colour, the template's own folds and print kept (its luminance)
  textured      natural textures (scikit-image's brick, grass, gravel, coffee beans), tinted
  face_shaded   the template under the face's own light (the shading of the skin it covers) with soft
                edges, as a real mask takes the light of the face under it
  ear_loops     the template with thin elastic loops from its sides towards the ears
  skin_tone     a mask the colour of the skin it covers (beige masks), face-shaded: nose and mouth are
                hidden, but nothing but the edge and the missing features says "mask"
Photos without a mask, and the few whose person photo cannot be matched, are scored as given. Where
the model keys on what only templates show (flat colours, hard edges, known prints), mask accuracy
falls; a model that looks at what is covered keeps it. The outline stays the template's, so a wrong
"worn" / "incorrect" shape never enters. Synthetic: it measures sensitivity to the mask's look, not
accuracy on real masks.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from bench_framing import run

from maskgate.train.mask_look import folds, outline


def pair_with_normal(eval_dir: Path, truth: pd.DataFrame) -> dict[str, np.ndarray]:
    """ImageID of each masked photo -> its person's unmasked photo (BGR), matched on the eye region
    among unmasked photos of the same gender and age band, and kept only where everything outside the
    mask is the same photo (mean difference < 3 grey levels)."""
    imgs = {i: cv2.imread(str(eval_dir / "images" / i)) for i in truth.ImageID}

    def key(im):  # 32 px grey thumbnail, top 9 rows: forehead and eyes, never under a mask
        return cv2.cvtColor(cv2.resize(im, (32, 32), interpolation=cv2.INTER_AREA),
                            cv2.COLOR_BGR2GRAY)[:9].astype(np.float32).ravel()

    normal = truth[truth.ans // 6 == 2]
    keys = np.stack([key(imgs[i]) for i in normal.ImageID])
    pairs = {}
    for i, a in zip(truth.ImageID, truth.ans):
        if a // 6 == 2:
            continue
        cand = np.flatnonzero(normal.ans.values % 6 == a % 6)
        n = imgs[normal.ImageID.values[cand[np.abs(keys[cand] - key(imgs[i])).mean(1).argmin()]]]
        if n.shape == imgs[i].shape and outline(imgs[i], n, soft=False)[1] < 3:
            pairs[i] = n
    return pairs


def _luma(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float32)


def _detail(img: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The template's folds and print, ~1 inside the mask."""
    return folds(_luma(img), alpha > 0.5)


def _shading(normal: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The light falling on the covered skin, smoothed and scaled to mean 1 inside the mask."""
    y = cv2.GaussianBlur(_luma(normal), (0, 0), 12)  # large-scale light, not the lips
    return np.clip(y / max(float(y[alpha > 0.5].mean()), 1.0), 0.3, 1.7)


def _compose(img: np.ndarray, mask_bgr: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha[..., None]
    return np.clip(img * (1 - a) + mask_bgr * a, 0, 255).astype(np.uint8)


def _textures() -> list[np.ndarray]:
    from skimage import data
    grey = [np.repeat(getattr(data, n)()[..., None], 3, 2) for n in ("brick", "grass", "gravel")]
    return grey + [data.coffee()[..., ::-1]]


class Looks:
    """The redrawn masks, each a function (photo, index) -> photo, seeded by the index."""

    def __init__(self, truth: pd.DataFrame, pairs: dict[str, np.ndarray]):
        self.ids, self.pairs = list(truth.ImageID), pairs
        self.textures = _textures()

    def _get(self, img, i):
        n = self.pairs.get(self.ids[i])
        return (None, None) if n is None else (n, outline(img, n)[0])

    def recoloured(self, img, i):
        n, a = self._get(img, i)
        if n is None:
            return img
        colour = np.random.default_rng(2000 + i).uniform(30, 230, 3).astype(np.float32)
        return _compose(img, colour * _detail(img, a)[..., None], a)

    def textured(self, img, i):
        n, a = self._get(img, i)
        if n is None:
            return img
        rng = np.random.default_rng(3000 + i)
        tex = self.textures[i % len(self.textures)]
        y, x = rng.integers(0, tex.shape[0] - 200), rng.integers(0, tex.shape[1] - 200)
        patch = tex[y:y + 200, x:x + 200].astype(np.float32)
        patch = cv2.resize(patch, img.shape[1::-1]) * rng.uniform(0.6, 1.2, 3).astype(np.float32)
        return _compose(img, patch, a)

    def face_shaded(self, img, i):
        n, a = self._get(img, i)
        if n is None:
            return img
        return _compose(img, img * _shading(n, a)[..., None], cv2.GaussianBlur(a, (0, 0), 1.5))

    def ear_loops(self, img, i):
        n, a = self._get(img, i)
        if n is None:
            return img
        ys, xs = np.nonzero(a > 0.5)
        out = img.copy()
        top = ys.min() + (ys.max() - ys.min()) // 4
        colour = tuple(int(c) for c in np.median(img[ys, xs], 0))
        w = img.shape[1]
        for x0, x1 in ((xs.min(), max(xs.min() - w // 6, 0)), (xs.max(), min(xs.max() + w // 6, w - 1))):
            cv2.line(out, (int(x0), int(top)), (int(x1), int(top - w // 12)), colour, 2, cv2.LINE_AA)
        return out

    def skin_tone(self, img, i):
        n, a = self._get(img, i)
        if n is None:
            return img
        skin = n[a > 0.5].astype(np.float32).mean(0)
        look = skin * (_detail(img, a) ** 0.5 * _shading(n, a))[..., None]
        return _compose(img, look, cv2.GaussianBlur(a, (0, 0), 1.5))


def main() -> None:
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--eval", default="../shared/data/maskproxy/eval")
    ap.add_argument("--images", type=int, default=3395)
    a, _ = ap.parse_known_args()
    if {"-h", "--help"} & set(sys.argv[1:]):  # the shared command line's help, before any pairing work
        run({}, "masks.png")
    every = pd.read_csv(Path(a.eval) / "answers.csv")  # unmasked photos of people beyond --images count too
    truth = every.head(a.images)
    pairs = pair_with_normal(Path(a.eval), every)
    looks = Looks(truth, pairs)
    redrawn = [k for k, i in enumerate(truth.ImageID) if i in pairs]
    print(f"masked photos redrawn: {len(redrawn)} of {int((truth.ans // 6 < 2).sum())}")
    run({"as given": None, **{n: getattr(looks, n) for n in
                              ("recoloured", "textured", "face_shaded", "ear_loops", "skin_tone")}}, "masks.png",
        example=redrawn[0])


if __name__ == "__main__":
    main()
