"""The label scheme of the competition, in one place.

class = mask * 6 + gender * 3 + age_band; 18 classes scored by macro F1.
"""
from __future__ import annotations

from enum import IntEnum

import numpy as np

NUM_CLASSES = 18
AGE_BOUNDS = (30, 60)  # band 0: < 30, band 1: 30..59, band 2: >= 60


class Mask(IntEnum):
    WEAR = 0
    INCORRECT = 1
    NOT_WEAR = 2


class Gender(IntEnum):
    MALE = 0
    FEMALE = 1


class AgeBand(IntEnum):
    YOUNG = 0  # < 30
    MIDDLE = 1  # 30 - 59
    OLD = 2  # >= 60


TASKS: dict[str, type[IntEnum]] = {"mask": Mask, "gender": Gender, "age": AgeBand}
TASK_SIZES = {name: len(enum) for name, enum in TASKS.items()}

# Human-readable names used in csv output and annotated pictures.
MASK_NAMES = {Mask.WEAR: "wear", Mask.INCORRECT: "incorrect", Mask.NOT_WEAR: "not_wear"}
GENDER_NAMES = {Gender.MALE: "male", Gender.FEMALE: "female"}
AGE_NAMES = {AgeBand.YOUNG: "<30", AgeBand.MIDDLE: "30-59", AgeBand.OLD: ">=60"}

# File stems of the train layout -> mask state.
MASK_FILE_STEMS = {
    **{f"mask{i}": Mask.WEAR for i in range(1, 6)},
    "incorrect_mask": Mask.INCORRECT,
    "normal": Mask.NOT_WEAR,
}


def encode(mask, gender, age) -> np.ndarray | int:
    """(mask, gender, age band) -> class 0..17. Works on ints or numpy arrays."""
    out = np.asarray(mask) * 6 + np.asarray(gender) * 3 + np.asarray(age)
    return int(out) if out.ndim == 0 else out


def marginals(probs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """18 class probabilities -> those of mask (3), gender (2) and age band (3); the layout of `encode`."""
    q = np.asarray(probs).reshape(3, 2, 3)
    return q.sum((1, 2)), q.sum((0, 2)), q.sum((0, 1))


def decode(cls) -> tuple:
    """class 0..17 -> (mask, gender, age band); inverse of `encode`. Ints or numpy arrays."""
    c = np.asarray(cls)
    if np.any((c < 0) | (c >= NUM_CLASSES)):
        raise ValueError(f"class out of range 0..{NUM_CLASSES - 1}: {cls!r}")
    parts = (c // 6, (c // 3) % 2, c % 3)
    return tuple(int(p) for p in parts) if c.ndim == 0 else parts


def age_band(age) -> np.ndarray | int:
    """Age in years -> band (0: <30, 1: 30-59, 2: >=60)."""
    out = np.digitize(np.asarray(age), AGE_BOUNDS)
    return int(out) if out.ndim == 0 else out


def parse_gender(text: str) -> Gender:
    """'male'/'female' (any case, also 'm'/'f') -> Gender; raises ValueError otherwise."""
    t = str(text).strip().lower()
    if t in ("male", "m"):
        return Gender.MALE
    if t in ("female", "f"):
        return Gender.FEMALE
    raise ValueError(f"unknown gender {text!r} (expected male or female)")


def class_name(cls: int) -> str:
    m, g, a = decode(cls)
    return f"{MASK_NAMES[Mask(m)]}/{GENDER_NAMES[Gender(g)]}/{AGE_NAMES[AgeBand(a)]}"
