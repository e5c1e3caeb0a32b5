"""Experiment tracking of a run (config `track`): TensorBoard logs in the run folder, and pictures.

Per epoch: the training loss, learning rate and every validation score (macro F1, per-task accuracy and
F1, per source). At the end: the validation confusion matrix and a grid of the validation images the
model got most wrong (lowest probability of the true class), each with its true and predicted class;
both also as PNGs in the run folder (confusion_val.png, most_wrong_val.png). `tensorboard --logdir RUN/tb`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from ..labels import AGE_NAMES, AgeBand, decode

_MASK_SHORT, _GENDER_SHORT = ("mask", "wrong", "none"), ("M", "F")


def short_name(cls: int) -> str:
    """'mask F 30-59': a class in a tile's width."""
    m, g, a = decode(int(cls))
    return f"{_MASK_SHORT[m]} {_GENDER_SHORT[g]} {AGE_NAMES[AgeBand(a)]}"


class RunTracker:
    def __init__(self, out: Path, enabled: bool = True, log: Callable[[str], None] = print):
        self.out, self.writer = Path(out), None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                log("tensorboard is not installed: no TensorBoard logs (pip install tensorboard)")
            else:
                self.writer = SummaryWriter(str(self.out / "tb"))

    def epoch(self, metrics: dict) -> None:
        if self.writer is None:
            return
        step = int(metrics["epoch"])
        for k, v in metrics.items():
            if k in ("epoch", "seconds") or not isinstance(v, (int, float)):
                continue
            tag = "val/" + k[4:] if k.startswith("val_") else "train/" + k
            self.writer.add_scalar(tag, float(v), step)
        self.writer.flush()

    def finish(self, y_true: np.ndarray, y_pred: np.ndarray, wrong_grid: np.ndarray | None, step: int) -> None:
        from ..evaluate import plot_confusion

        plot_confusion(y_true, y_pred, self.out / "confusion_val.png", "validation (after age-band offsets)")
        if wrong_grid is not None:
            cv2.imwrite(str(self.out / "most_wrong_val.png"), wrong_grid[..., ::-1])
        if self.writer is not None:
            cm = cv2.imread(str(self.out / "confusion_val.png"))[..., ::-1]
            self.writer.add_image("val/confusion", np.ascontiguousarray(cm), step, dataformats="HWC")
            if wrong_grid is not None:
                self.writer.add_image("val/most_wrong", wrong_grid, step, dataformats="HWC")
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def most_wrong(probs: np.ndarray, true: np.ndarray, k: int = 16) -> np.ndarray:
    """Rows with the lowest probability of their true class, worst first."""
    return np.argsort(probs[np.arange(len(true)), true], kind="stable")[:k]


def label_grid(images: list[np.ndarray], true: list[int], pred: list[int], p_true: list[float],
               cols: int = 4, tile: int = 200) -> np.ndarray:
    """Tiles with 'true ...' / 'pred ... (p)' under each image; RGB uint8."""
    band = 34
    rows = -(-len(images) // cols)
    grid = np.full((rows * (tile + band), cols * tile, 3), 255, np.uint8)
    for i, (im, t, p_, pt) in enumerate(zip(images, true, pred, p_true)):
        r, c = divmod(i, cols)
        y, x = r * (tile + band), c * tile
        grid[y:y + tile, x:x + tile] = cv2.resize(im, (tile, tile), interpolation=cv2.INTER_AREA)
        cv2.putText(grid, f"true {short_name(t)} p={pt:.2f}", (x + 3, y + tile + 13), cv2.FONT_HERSHEY_SIMPLEX,
                    0.38, (20, 120, 20), 1, cv2.LINE_AA)
        cv2.putText(grid, f"pred {short_name(p_)}", (x + 3, y + tile + 28), cv2.FONT_HERSHEY_SIMPLEX, 0.38,
                    (200, 30, 30), 1, cv2.LINE_AA)
    return grid
