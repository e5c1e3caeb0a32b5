"""Training-label rules for the hard part, age (config `train.drop_ages`, `train.old_age_from`).

Both change the training rows only; validation keeps the true labels, so its scores stay the task's.
- drop_ages: leave out people whose age sits on a blurry boundary (e.g. 27-29 and 57-59: one seed
  write-up's best trick), so the bands the model learns are cleanly apart.
- old_age_from: count ages from this one up as ">= 60" (e.g. 58): the >= 60 band is rare and its
  neighbours look alike, so a lower threshold gives it more (near-)examples.
"""
from __future__ import annotations

import numpy as np

from ..labels import AGE_BOUNDS


def kept_by_age(ages: np.ndarray, drop: list) -> np.ndarray:
    """Boolean mask: True where an age is outside every [lo, hi] range (inclusive) of `drop`."""
    ages = np.asarray(ages, np.float64)
    keep = np.ones(len(ages), bool)
    for lo, hi in drop or []:
        keep &= ~((ages >= lo) & (ages <= hi))
    return keep


def shift_old_age(targets: dict[str, np.ndarray], old_from: int) -> dict[str, np.ndarray]:
    """Training targets with ages in [old_from, 60) labelled >= 60; their age in years becomes 60, so the
    soft age-band targets (which come from the years) agree with the new band."""
    old = AGE_BOUNDS[1]
    if old_from >= old:
        return targets
    out = dict(targets)
    moved = (out["age"] >= old_from) & (out["age"] < old)
    out["age"] = np.where(moved, np.float32(old), out["age"]).astype(out["age"].dtype)
    out["age_band"] = np.where(moved, 2, out["age_band"]).astype(out["age_band"].dtype)
    return out
