"""What each training row shows: its face crop, with a mask drawn on it where the row asks for one.

Rows of the competition layout show their crop as it is. A photo of an extra source (unmasked, with
age and gender) stands in several rows, one per mask class (`synth.states`); a row in class `wear`
or `incorrect` gets a mask drawn on the crop from the face's landmarks, in a new random look each time
it is drawn (each cached view, each epoch), and an incorrect row a random incorrect kind. The crop of
such a photo is stored once, whatever the number of its rows.

Drawing on the aligned crop, then cutting the context window again, gives the same pixels as drawing on
the photo and cropping it (what `maskgate synth` does), at a fraction of the cost.
"""
from __future__ import annotations

import numpy as np

from ..faces.crop import CropSettings, apply_window, landmarks_in_crop
from ..labels import Mask
from ..synth.masks import draw_mask, pick_state

NO_DRAW = -1
SYNTH_STREAM = 7  # a separate random stream: drawing masks never changes the augmentation draws


class RowImages:
    """Crops shared by rows (`crop_of_row`), and per row the mask class to draw (NO_DRAW: the crop as is)."""

    def __init__(self, crops: np.ndarray, crop_of_row: np.ndarray | None = None, draw: np.ndarray | None = None,
                 landmarks: np.ndarray | None = None, settings: CropSettings | None = None,
                 incorrect_kinds: dict[str, float] | None = None):
        n = len(crops) if crop_of_row is None else len(crop_of_row)
        self.crops = crops
        self.crop_of_row = np.arange(n) if crop_of_row is None else np.asarray(crop_of_row)
        self.draw = np.full(n, NO_DRAW) if draw is None else np.asarray(draw)
        self.landmarks = landmarks  # per crop, in crop pixels
        self.settings = settings
        self.incorrect_kinds = incorrect_kinds
        if (self.draw != NO_DRAW).any() and (landmarks is None or settings is None):
            raise ValueError("rows with masks to draw need the crops' landmarks and crop settings")

    def __len__(self) -> int:
        return len(self.crop_of_row)

    def subset(self, idx: np.ndarray) -> "RowImages":
        return RowImages(self.crops, self.crop_of_row[idx], self.draw[idx], self.landmarks, self.settings,
                         self.incorrect_kinds)

    def drawn(self, i: int) -> bool:
        return self.draw[i] != NO_DRAW and self.draw[i] != Mask.NOT_WEAR

    def image(self, i: int, key: tuple) -> np.ndarray:
        """Row i's crop; with its mask drawn in a look seeded by `key` (+ the row) where it has one."""
        c = self.crop_of_row[i]
        crop = self.crops[c]
        if not self.drawn(i):
            return crop
        rng = np.random.default_rng((*key, int(i), SYNTH_STREAM))
        state = pick_state(Mask(int(self.draw[i])), rng, self.incorrect_kinds)
        out, _ = draw_mask(np.ascontiguousarray(crop), self.landmarks[c], state, rng)
        return apply_window(out, self.settings.margin, self.settings.window)


def crop_landmarks(landmarks: np.ndarray, settings: CropSettings) -> np.ndarray:
    """Landmarks of every crop (image pixels, N x 5 x 2) -> where they fall in the aligned crops."""
    return np.stack([landmarks_in_crop(lm, settings.crop_size, settings.margin) for lm in landmarks]) \
        if len(landmarks) else np.zeros((0, 5, 2), np.float32)
