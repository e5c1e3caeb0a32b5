"""Age-band offsets fitted on validation to maximise 18-class macro F1 (the rare >=60 band).

One offset per band, shared by both genders, added to the age logits. The grid is kept small
([-1, 1]) and each unit of offset costs 0.002 F1, because a few hundred validation people are a
noisy guide: offsets that win by less than that do not carry over to new people (measured on
maskproxy eval; see docs/benchmarks.md).
"""
from __future__ import annotations

import numpy as np
import torch

from ..evaluate import confusion, f1_from_confusion
from ..labels import encode
from ..models.heads import combine18

PENALTY = 0.002


def tune_age_bias(lg: dict[str, np.ndarray], grid: np.ndarray | None = None) -> tuple[np.ndarray, float, float]:
    """Returns (bias of shape (2, 3): the same row for both genders, band 0 fixed at 0; F1 before; F1 after)."""
    grid = np.round(np.arange(-1.0, 1.01, 0.1), 2) if grid is None else grid
    y_true = encode(lg["t_mask"], lg["t_gender"], lg["t_age_band"])
    heads = {k: torch.from_numpy(np.asarray(lg[k], np.float32)) for k in ("mask", "gender", "age")}

    def f1(b1: float, b2: float) -> float:
        pred = combine18(heads, torch.tensor([0.0, b1, b2])).argmax(1).numpy()
        return float(f1_from_confusion(confusion(y_true, pred, 18)).mean())

    before = f1(0.0, 0.0)
    best, best_v = (0.0, 0.0), before
    for b1 in grid:
        for b2 in grid:
            v = f1(float(b1), float(b2)) - PENALTY * (abs(b1) + abs(b2))
            if v > best_v + 1e-9:
                best, best_v = (float(b1), float(b2)), v
    bias = np.tile(np.array([0.0, *best], np.float32), (2, 1))
    return bias, before, f1(*best)
