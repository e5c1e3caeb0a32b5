"""How a photo's face crop becomes the network's input, saved in every model bundle.

Torch-free on purpose: the ONNX runtime (no PyTorch installed) reads the same settings and runs the same
resize, so a model predicts with exactly the preprocessing it was trained with whatever runs it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from ..faces.crop import CropSettings


TTA_MODES = ("off", "on", "auto")


def check_tta(mode: str, below: float) -> None:
    if mode not in TTA_MODES:
        raise ValueError(f"tta={mode!r}: one of {', '.join(TTA_MODES)}")
    if not 0.0 < float(below) <= 1.0:
        raise ValueError(f"tta_below={below!r}: a probability in (0, 1]")


def tta_mode(value: bool | str | None, own: str) -> str:
    """A run's mirror-image setting: None = the model's own; True / False = "on" / "off"; or a mode."""
    if value is None:
        return own
    if isinstance(value, bool):
        return "on" if value else "off"
    check_tta(value, 0.5)
    return value


@dataclass
class Preprocess:
    """Face crop settings, input size and normalisation."""

    crop: CropSettings = field(default_factory=CropSettings)
    input_size: int = 160
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    # How predict runs the network on a crop, saved with the model like the detection settings (and, like
    # them, no part of training: left out of repr, which keys the training caches). "off": the crop alone;
    # "on": the crop and its mirror image, the two distributions averaged; "auto": the mirror only where
    # the crop's top class probability is under `tta_below` (the doubtful faces: the same scores as "on"
    # for a fraction of its cost, docs/benchmarks.md). Bundles saved before these keys existed are "off".
    tta: str = field(default="off", repr=False)
    tta_below: float = field(default=0.8, repr=False)

    def __post_init__(self) -> None:
        check_tta(self.tta, self.tta_below)

    def resize(self, crops: np.ndarray) -> np.ndarray:
        """N x S x S x 3 uint8 crops -> N x I x I x 3 uint8 at the network's input size."""
        if crops.shape[1] == self.input_size:
            return crops
        interp = cv2.INTER_AREA if crops.shape[1] > self.input_size else cv2.INTER_LINEAR
        return np.stack([cv2.resize(c, (self.input_size, self.input_size), interpolation=interp) for c in crops])

    def to_tensor(self, images: np.ndarray):
        """N x I x I x 3 uint8 (already at input size) -> normalised float torch N x 3 x I x I (channels-last)."""
        import torch  # only the PyTorch paths call this

        # NHWC memory viewed as NCHW is already channels-last: no copy besides the float conversion
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
        mean = torch.tensor(self.mean).view(1, 3, 1, 1) * 255.0
        std = torch.tensor(self.std).view(1, 3, 1, 1) * 255.0
        return x.sub_(mean).div_(std)

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocess":
        d = dict(d)
        d["crop"] = CropSettings(**d.get("crop", {}))
        d["mean"], d["std"] = tuple(d.get("mean", cls.mean)), tuple(d.get("std", cls.std))
        return cls(**d)
