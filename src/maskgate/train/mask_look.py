"""Mask-look augmentation: redraw a pasted mask in random colours, patterns and light, keeping its outline.

Why: in data whose masks are pasted templates (maskproxy) every mask is flat, hard-edged and one of a few
prints, while real masks take the light of the face, crease and come in any colour. A model may learn the
templates' look instead of what matters: whether nose and mouth are covered. Where the 7 photos of a
person are one photo with masks drawn on it, the masked photo minus the person's `normal` photo is the
mask's exact outline; training then shows the same outline in looks no template has.

Only data built that way gets it: a person whose photos differ outside the mask (real photos, as in the
competition's own data) yields no outline and trains as before.
"""
from __future__ import annotations

import cv2
import numpy as np
import pandas as pd

from ..data.images import read_image
from ..faces.crop import CropSettings, align_crop
from ..labels import Mask

ALPHA_SIDE = 96  # outlines are kept at this size (soft edges; 1/4 of the memory of a 192 px crop)


def outline(masked: np.ndarray, plain: np.ndarray, soft: bool = True) -> tuple[np.ndarray, float]:
    """Alpha of what `masked` adds to `plain` (1 inside; 1 px feathered if soft) and the mean absolute
    difference outside it (about 1 grey level when both are the same photo, JPEG noise aside)."""
    diff = np.abs(masked.astype(np.int16) - plain.astype(np.int16)).max(2)
    hard = cv2.morphologyEx((diff > 40).astype(np.uint8), cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    hard = cv2.medianBlur(hard, 3)
    contours, _ = cv2.findContours(hard, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(hard, contours, -1, 1, cv2.FILLED)  # parts of the print as light as the skin under it
    rest = float(diff[hard == 0].mean()) if (hard == 0).any() else 255.0
    alpha = hard.astype(np.float32)
    return (cv2.GaussianBlur(alpha, (0, 0), 1.0) if soft else alpha), rest


def pasted_mask_alphas(samples: pd.DataFrame, crops: np.ndarray, landmarks: np.ndarray,
                       settings: CropSettings, max_rest: float = 3.0) -> np.ndarray:
    """uint8 [N, ALPHA_SIDE, ALPHA_SIDE] outlines of pasted masks in each masked image's crop; all zero
    where there is none (unmasked images, people without a `normal` photo, or real photos).

    The person's normal photo is cut with the masked photo's own landmarks, so both crops line up
    pixel for pixel; an outline is kept only if everything outside it is the same photo (`max_rest`
    grey levels) and it covers 2-70% of the crop.
    """
    out = np.zeros((len(samples), ALPHA_SIDE, ALPHA_SIDE), np.uint8)
    size, margin, window = settings.alignment()
    plain_rows = samples["mask"] == Mask.NOT_WEAR
    normal = dict(zip(samples.loc[plain_rows, "person"], samples.loc[plain_rows, "path"]))
    photo_of, photo = None, None
    for i, (person, mask) in enumerate(zip(samples["person"], samples["mask"])):
        if mask == Mask.NOT_WEAR or person not in normal:
            continue
        if person != photo_of:  # a person's images are consecutive rows: each normal photo is read once
            photo_of, photo = person, read_image(normal[person])
        plain = align_crop(photo, landmarks[i], size, margin, window)
        alpha, rest = outline(crops[i], plain)
        if rest < max_rest and 0.02 < alpha.mean() < 0.7:
            out[i] = np.round(cv2.resize(alpha, (ALPHA_SIDE, ALPHA_SIDE), interpolation=cv2.INTER_AREA) * 255)
    return out


def folds(luma: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """A mask's own folds and print as a brightness factor, ~1 inside it: luminance over its mean there."""
    return np.clip(luma / max(float(luma[inside].mean()), 1.0), 0.4, 1.6)


def _pattern(rng: np.random.Generator, size: int) -> np.ndarray:
    """A procedural print, ~1 on average: stripes, checks, dots or smooth mottling."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    kind, f = int(rng.integers(4)), rng.uniform(6, 24)
    t = rng.uniform(0, np.pi)
    u, v = xx * np.cos(t) + yy * np.sin(t), -xx * np.sin(t) + yy * np.cos(t)
    if kind == 0:
        p = np.sin(2 * np.pi * f * u)
    elif kind == 1:
        p = np.sign(np.sin(2 * np.pi * f * u) * np.sin(2 * np.pi * f * v))
    elif kind == 2:
        p = (np.hypot(np.sin(np.pi * f * u), np.sin(np.pi * f * v)) < 0.5).astype(np.float32) * 2 - 1
    else:
        p = cv2.resize(rng.normal(0, 1, (8, 8)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    return 1 + rng.uniform(0.1, 0.35) * p.astype(np.float32)


def restyle(crop: np.ndarray, alpha: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`crop` (uint8 RGB) with the mask inside `alpha` (uint8, any size) redrawn: a random colour, part
    of the template's own folds, maybe a print, light falling across it, edges 0.5-2 px soft."""
    size = crop.shape[0]
    a = cv2.resize(alpha, (size, size), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255
    inside = a > 0.5
    own = folds(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY).astype(np.float32), inside) ** rng.uniform(0.0, 1.0)
    look = own * (_pattern(rng, size) if rng.random() < 0.4 else 1.0)
    t = rng.uniform(0, 2 * np.pi)  # light from one side: a linear ramp across the face
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    look = look * (1 + rng.uniform(0, 0.5) * (xx * np.cos(t) + yy * np.sin(t)))
    colour = rng.uniform(20, 235, 3).astype(np.float32)
    a = cv2.GaussianBlur(a, (0, 0), rng.uniform(0.5, 2.0))[..., None]
    return np.clip(crop * (1 - a) + colour * look[..., None] * a, 0, 255).astype(np.uint8)
