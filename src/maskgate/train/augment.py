"""Transform presets (train / eval) from an aligned face crop to the network input, as uint8 images.

Eval is exactly `Preprocess.resize`, the call predict uses. Train first redraws a pasted mask in a new
look where its outline is known (`mask_look.py`), then one random similarity warp (flip, scale, shift,
rotation) done in a single interpolation, then photometric jitter, a far-away face's resolution, sensor noise
and JPEG compression.
"""
from __future__ import annotations

import cv2
import numpy as np

from ..models.classifier import Preprocess
from .mask_look import restyle


class EvalTransform:
    def __init__(self, preprocess: Preprocess):
        self.pre = preprocess

    def __call__(self, crop: np.ndarray, rng: np.random.Generator | None = None,
                 mask_alpha: np.ndarray | None = None) -> np.ndarray:
        """The crop as predict sees it (`rng` and `mask_alpha`: as TrainTransform's, unused)."""
        return self.pre.resize(crop[None])[0]


class TrainTransform:
    def __init__(self, preprocess: Preprocess, aug: dict):
        self.pre, self.aug = preprocess, aug

    def __call__(self, crop: np.ndarray, rng: np.random.Generator, mask_alpha: np.ndarray | None = None
                 ) -> np.ndarray:
        """`mask_alpha`: the outline of a pasted mask in `crop` (uint8), if known; None or all zero: none."""
        a, size, src = self.aug, self.pre.input_size, crop.shape[0]
        # no draw when off or without an outline: old recipes, and unmasked images, replay exactly
        if a.get("mask_look") and mask_alpha is not None and mask_alpha.any() and rng.random() < a["mask_look"]:
            crop = restyle(crop, mask_alpha, rng)
        scale = rng.uniform(*a["scale"]) * size / src
        angle = rng.uniform(-a["rotate"], a["rotate"])
        m = cv2.getRotationMatrix2D((src / 2, src / 2), angle, scale)
        m[:, 2] += (size - src) / 2 + rng.uniform(-a["shift"], a["shift"], 2) * size
        if rng.random() < a["hflip"]:
            m = np.array([[-1, 0, size - 1], [0, 1, 0]], np.float64) @ np.vstack([m, [0, 0, 1]])
        out = cv2.warpAffine(crop, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        # photometric jitter in uint8 with OpenCV (saturating arithmetic; ~10x faster than float numpy)
        b = rng.uniform(1 - a["brightness"], 1 + a["brightness"]) if a["brightness"] else 1.0
        c = rng.uniform(1 - a["contrast"], 1 + a["contrast"]) if a["contrast"] else 1.0
        mean = float(out.mean())
        img = cv2.convertScaleAbs(out, alpha=b * c, beta=mean * b * (1 - c))
        gray = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
        if rng.random() < a["grayscale"]:
            img = gray
        elif a["saturation"]:
            sat = rng.uniform(1 - a["saturation"], 1 + a["saturation"])
            img = cv2.addWeighted(img, sat, gray, 1 - sat, 0)
        if rng.random() < a["blur"]:
            img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.2))
        # a small face in the photo: the aligned crop is an upscaled copy of few pixels (wide framing, a camera
        # at a doorway); shrink to a face width of 24-80 px and back, as the crop of such a face looks
        if a.get("low_res") and rng.random() < a["low_res"]:  # no draw when off: old recipes replay exactly
            small = int(rng.integers(24, 81))
            if small < size:
                tiny = cv2.resize(img, (small, small), interpolation=cv2.INTER_AREA)
                img = cv2.resize(tiny, (size, size), interpolation=cv2.INTER_LINEAR)
        # camera sensor noise, then compression, in the order a camera applies them (other photo sources
        # than the proxy's clean photos; .get: configs saved before these keys existed keep working)
        if a.get("noise") and rng.random() < a["noise"]:  # no draw when off: old recipes replay exactly
            noise = rng.normal(0.0, rng.uniform(2.0, 10.0), img.shape).astype(np.float32)
            img = np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)
        if a.get("jpeg") and rng.random() < a["jpeg"]:
            ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(15, 61))])
            img = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
        return np.ascontiguousarray(img)
