"""How much do predictions move when the same photo comes from a worse camera? Macro F1 per condition.

    python benchmarks/bench_sources.py --model A.pt [--model B.pt ...] [--images 3395] [--out DIR]
                                       [--weak-score S] [--det-size PX] [--det-retry PX]

Other photo sources than the proxy's clean, evenly lit face photos: each maskproxy eval photo is also
shown degraded the way phones, webcams and entrance cameras degrade pictures (seeded, per photo):
  jpeg_q15      heavy JPEG compression (messaging apps, cheap cameras)
  low_light     a dark exposure brightened back, with the sensor noise that brings
  colour_cast   a warm white balance (indoor light)
  defocus       an out-of-focus lens (Gaussian blur, sigma 2 px on a 200 px photo)
  low_res       a far-away face: the photo at 56 px, scaled back up
  tilted        the head tilted by 20 degrees (the aligned crop should undo it)
  grayscale     a monochrome (IR or CCTV) camera
The table reports macro F1, per-task accuracy, and how often the class agrees with the clean photo's.
Synthetic degradations of one data set, not other data sets: they measure sensitivity, not accuracy
on real camera photos.
"""
from __future__ import annotations

import cv2
import numpy as np
from bench_framing import run


def _rng(i: int) -> np.random.Generator:
    return np.random.default_rng(1000 + i)


def jpeg(img: np.ndarray, i: int, q: int = 15) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def low_light(img: np.ndarray, i: int) -> np.ndarray:
    """A quarter of the light, then brightened 4x by the camera: quantisation and noise grow with it."""
    dark = np.round(img.astype(np.float32) * 0.25)
    dark += _rng(i).normal(0, 2.0, img.shape)  # read noise at the dark level, amplified 4x below
    return np.clip(dark * 4.0, 0, 255).astype(np.uint8)


def colour_cast(img: np.ndarray, i: int) -> np.ndarray:
    gains = np.array([0.78, 0.95, 1.18], np.float32)  # BGR: warm tungsten light
    return np.clip(img.astype(np.float32) * gains, 0, 255).astype(np.uint8)


def defocus(img: np.ndarray, i: int) -> np.ndarray:
    return cv2.GaussianBlur(img, (0, 0), 2.0)


def low_res(img: np.ndarray, i: int, side: int = 56) -> np.ndarray:
    h, w = img.shape[:2]
    small = cv2.resize(img, (side, side * h // w), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def tilted(img: np.ndarray, i: int, deg: float = 20.0) -> np.ndarray:
    h, w = img.shape[:2]
    sign = 1 if i % 2 == 0 else -1  # half to each side
    m = cv2.getRotationMatrix2D((w / 2, h / 2), sign * deg, 1.0)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def grayscale(img: np.ndarray, i: int) -> np.ndarray:
    return cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)


SOURCES = {"clean (as given)": None, "jpeg_q15": jpeg, "low_light": low_light, "colour_cast": colour_cast,
           "defocus": defocus, "low_res": low_res, "tilted": tilted, "grayscale": grayscale}


def main() -> None:
    run(SOURCES, "sources.png")


if __name__ == "__main__":
    main()
