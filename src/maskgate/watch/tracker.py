"""A small IoU tracker: who is who across frames, so a person walking past is one track, not one per frame.

Greedy matching, best pairs first, of this frame's boxes to the live tracks' last boxes by IoU; when
frames are skipped a fast face can move past any overlap, so a box whose centre lies within
`max_jump` box sizes of a track's last centre also matches (after every IoU pair). A track unseen for
`max_gap_s` seconds ends. Tracks carry whatever the caller attaches (`data`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in a (N x 4, x1 y1 x2 y2) with every box in b (M x 4) -> N x M."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda z: np.clip(z[:, 2] - z[:, 0], 0, None) * np.clip(z[:, 3] - z[:, 1], 0, None)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


@dataclass
class Track:
    id: int
    box: np.ndarray
    first_t: float
    last_t: float
    hits: int = 1
    data: dict[str, Any] = field(default_factory=dict)


class IoUTracker:
    def __init__(self, iou_min: float = 0.3, max_gap_s: float = 1.0, max_jump: float = 1.0):
        self.iou_min, self.max_gap_s, self.max_jump = iou_min, max_gap_s, max_jump
        self.tracks: list[Track] = []
        self._next = 1

    def update(self, t: float, boxes: np.ndarray) -> tuple[list[Track], list[Track]]:
        """This frame's boxes at time t -> (the track of each box, in order; tracks that just ended)."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        ended = [tr for tr in self.tracks if t - tr.last_t > self.max_gap_s]
        live = [tr for tr in self.tracks if t - tr.last_t <= self.max_gap_s]
        assigned: list[Track | None] = [None] * len(boxes)
        if live and len(boxes):
            old = np.stack([tr.box for tr in live])
            pairs = self._pairs(old, boxes)
            used_t, used_b = set(), set()
            for ti, bi in pairs:
                if ti in used_t or bi in used_b:
                    continue
                used_t.add(ti)
                used_b.add(bi)
                tr = live[ti]
                tr.box, tr.last_t, tr.hits = boxes[bi].copy(), t, tr.hits + 1
                assigned[bi] = tr
        for bi, tr in enumerate(assigned):
            if tr is None:
                tr = Track(self._next, boxes[bi].copy(), t, t)
                self._next += 1
                live.append(tr)
                assigned[bi] = tr
        self.tracks = live
        return assigned, ended  # type: ignore[return-value]

    def _pairs(self, old: np.ndarray, new: np.ndarray) -> list[tuple[int, int]]:
        """Candidate (track, box) pairs, best first: IoU pairs, then near-centre pairs by distance."""
        m = iou(old, new)
        out = [(m[i, j], i, j) for i, j in zip(*np.nonzero(m >= self.iou_min))]
        out.sort(key=lambda x: -x[0])
        co, cn = (old[:, :2] + old[:, 2:]) / 2, (new[:, :2] + new[:, 2:]) / 2
        size = np.maximum(old[:, 2] - old[:, 0], old[:, 3] - old[:, 1])[:, None]
        d = np.linalg.norm(co[:, None] - cn[None], axis=2) / np.maximum(size, 1.0)
        near = sorted((d[i, j], i, j) for i, j in zip(*np.nonzero(d <= self.max_jump)))
        return [(i, j) for _, i, j in out] + [(i, j) for _, i, j in near]

    def finish(self) -> list[Track]:
        """End every live track (the video ended)."""
        ended, self.tracks = self.tracks, []
        return ended
