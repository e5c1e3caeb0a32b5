"""The prediction core: images in, per-face results out.

The CLI, the HTTP service (serve/), the video watcher (watch/) and batch jobs all call `Predictor`. It
crops faces with the settings saved in the model bundle, so prediction reproduces training-time
preprocessing, and runs the network with PyTorch or onnxruntime (models/runtime.py): with a .onnx bundle
nothing here imports PyTorch.
"""
from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from .data.images import ImageError, read_image_sized
from .faces.crop import CropSettings, FaceCrop, FaceCropper
from .labels import AGE_NAMES, GENDER_NAMES, MASK_NAMES, AgeBand, Gender, Mask, class_name, decode
from .models.preprocess import tta_mode
from .models.runtime import Runtime, default_model_for, default_model_path, expand_members, load_runtime

__all__ = ["FaceResult", "Predictor", "annotate", "default_model_path", "rescale_boxes"]


@dataclass
class FaceResult:
    cls: int  # 0..17
    confidence: float  # probability of the chosen class
    probs: np.ndarray  # 18 class probabilities
    face_found: bool  # False: no face detected, the whole-image fallback crop was used
    det_score: float
    box: np.ndarray  # x1 y1 x2 y2 (zeros for the fallback)

    @property
    def parts(self) -> tuple[int, int, int]:
        return decode(self.cls)

    def as_row(self) -> dict:
        m, g, a = self.parts
        return {"class": self.cls, "mask": MASK_NAMES[Mask(m)], "gender": GENDER_NAMES[Gender(g)],
                "age": AGE_NAMES[AgeBand(a)], "confidence": round(self.confidence, 4),
                "face_found": self.face_found, "det_score": round(self.det_score, 4),
                "box": " ".join(f"{v:.0f}" for v in self.box)}


ModelLike = Runtime | str | os.PathLike  # also a loaded MaskClassifier


def _decide_hint(a: CropSettings, b: CropSettings) -> str:
    """How to make two members find faces alike: the flags that set the settings in which they differ."""
    from .faces.options import DETECTION_OPTIONS

    da, db = a.detection(), b.detection()
    flags = [f"{o.flag} (face.{o.field}: {da[o.field]} vs {db[o.field]})"
             for o in DETECTION_OPTIONS if o.field in da and da[o.field] != db[o.field]]
    return "; give " + ", ".join(flags) + " to decide for all of them" if flags else ""


class Predictor:
    """One model, or a soft-vote ensemble of several, from photos to per-face results."""

    def __init__(self, model: ModelLike | Sequence[ModelLike] | None = None, device: str = "auto",
                 batch_size: int = 0, workers: int = 2, tta: bool | str | None = None, det_size: int | None = None,
                 weak_score: float | None = None, det_retry: int | None = None,
                 subject_centre: float | None = None, vote: str = "soft", det_retry_below: float | None = None,
                 subject_confidence: float | None = None):
        """model: a bundle, run folder or loaded model; a list of them averages their class distributions;
        a `maskgate kfold` folder stands for all its folds.

        det_size: detect faces on a copy with this longer side instead of the model's `det_max_side`.
        Larger finds smaller faces (camera frames, group photos) at some speed. It only decides where the
        faces are; the crop around each face (alignment, size, window) stays exactly the model's.
        weak_score: when no face reaches the model's min_score, take the best one above this instead of
        the centre-square fallback (default: the model's own `face.weak_score`; models saved before it
        existed have none); 0 turns it off. Also only a question of where the face is.
        det_retry: when no face reaches min_score on the detection copy of a larger photo, look again on
        a copy this large (default: the model's own `face.det_retry_side`); 0 turns it off.
        subject_centre: how much being central counts in choosing a photo's subject, the face reported
        first and the one answer in the eval layout (faces/crop.py `subject_order`; default: the model's
        own `face.subject_centre`); 0 = simply the largest face.
        det_retry_below, subject_confidence: the model's `face.det_retry_below` (look again closer when the
        first look's best face scores under this, it found several faces, or one at a side; 0 = only when
        nothing was found) and `face.subject_confidence` (detection confidence in the subject rule; 0 = off).

        tta: the mirror image: None = each model's own setting (saved with it: `maskgate export --tta`;
        "auto" for the shipped model, "off" for bundles that do not say), "off", "on" (every crop and its
        mirror, the distributions averaged) or "auto" (the mirror only for crops whose top class probability
        is under the model's `tta_below`); True / False = "on" / "off".

        vote: how an ensemble decides: "soft" (normalised geometric mean of the members' distributions) or
        "hard" (the class most members pick; ties go to the higher soft-vote probability).

        An ensemble detects faces once, so its members must share the detection settings; each member
        gets the face cut with its own alignment settings and input size.
        """
        if vote not in ("soft", "hard"):
            raise ValueError(f"vote={vote!r}: soft or hard")
        self.vote = vote
        where = dict(det_size=det_size, weak_score=weak_score, det_retry=det_retry, subject_centre=subject_centre,
                     det_retry_below=det_retry_below, subject_confidence=subject_confidence)
        CropSettings.check_options(**where)  # bad values fail before the model loads
        tta_mode(tta, "off")
        members = [default_model_for(device)] if model is None else expand_members(
            list(model) if isinstance(model, (list, tuple)) else [model])
        if not members:
            raise ValueError("no model given")
        self.models = [load_runtime(m, device) for m in members]
        on_cpu = all(getattr(getattr(m, "device", None), "type", "cpu") == "cpu" for m in self.models)
        batch_size = batch_size or (8 if on_cpu else 64)  # small batches: faster on CPU
        self.model = self.models[0]
        self.pre = self.model.preprocess
        # where faces are found, per model, after the options given here (they apply to every model)
        found_by = [m.preprocess.crop.with_detection(**where) for m in self.models]
        for src, c in zip(members[1:], found_by[1:]):
            if c.detection() != found_by[0].detection():
                raise ValueError(f"{src}: an ensemble's models must find faces the same way, but its detection "
                                 f"settings {c.detection()} differ from {members[0]}'s {found_by[0].detection()}"
                                 f"{_decide_hint(c, found_by[0])}")
        crop = found_by[0]
        # one detector thread per worker: the workers already run images side by side
        self.cropper = FaceCropper(crop, threads=1 if workers > 1 else 0)
        self._other_cuts = list({m.preprocess.crop.alignment(): m.preprocess.crop for m in self.models
                                 if m.preprocess.crop.alignment() != crop.alignment()}.values())
        self.batch_size, self.workers = batch_size, workers
        self.tta = [tta_mode(tta, m.preprocess.tta) for m in self.models]  # per model: its own unless told

    # --- crops -> results -------------------------------------------------------------------------
    def _probs(self, model: Runtime, crops: list[FaceCrop], tta: str = "off") -> np.ndarray:
        """One model's 18-class distribution for each crop (mirror-image average as `tta` says)."""
        key = model.preprocess.crop.alignment()
        own = key == self.cropper.settings.alignment()
        imgs = model.preprocess.resize(np.stack([c.image if own else c.others[key] for c in crops]))
        run = lambda x, mirror: np.concatenate([model.probs(x[s:s + self.batch_size], mirror)  # noqa: E731
                                                for s in range(0, len(x), self.batch_size)])
        p = run(imgs, tta == "on")
        if tta == "auto":  # the mirror image only where the crop alone leaves the class in doubt
            doubt = np.flatnonzero(p.max(1) < model.preprocess.tta_below)
            if doubt.size:
                p[doubt] = (p[doubt] + run(np.ascontiguousarray(imgs[doubt, :, ::-1]), False)) / 2
        return p

    def classify_crops(self, crops: list[FaceCrop]) -> list[FaceResult]:
        if not crops:
            return []
        if len(self.models) == 1:
            p = self._probs(self.model, crops, self.tta[0])
        else:  # soft vote: normalised geometric mean of the members' distributions
            each = [self._probs(m, crops, t) for m, t in zip(self.models, self.tta)]
            logp = np.mean([np.log(np.clip(q, 1e-8, None)) for q in each], axis=0)
            p = np.exp(logp - logp.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
        score = p  # what the class is chosen by
        if len(self.models) > 1 and self.vote == "hard":  # most votes; the soft vote's probability breaks ties
            votes = np.zeros_like(p)
            for q in each:
                votes[np.arange(len(q)), q.argmax(1)] += 1
            score = votes + p * 0.5  # p < 1: never outweighs a whole vote
        cls = score.argmax(1)
        return [FaceResult(int(k), float(pi[k]), pi, c.found, c.score, c.box) for k, pi, c in zip(cls, p, crops)]

    def faces_of(self, rgb: np.ndarray, all_faces: bool) -> list[FaceCrop]:
        faces = self.cropper.faces(rgb, all_faces)
        crops = [self.cropper.crop_face(rgb, f) for f in faces]
        for settings in self._other_cuts:  # ensemble members that cut faces differently
            for c, f in zip(crops, faces):
                c.others[settings.alignment()] = self.cropper.crop_face(rgb, f, settings).image
        return crops

    def predict_image(self, rgb: np.ndarray, all_faces: bool = True) -> list[FaceResult]:
        """One RGB uint8 image -> a result per face (largest first; the fallback crop if none found)."""
        return self.classify_crops(self.faces_of(rgb, all_faces))

    # --- files -> results, pipelined: decoding + detection in threads, the network in batches -------
    def predict_files(self, paths: Iterable[str | os.PathLike], all_faces: bool = False
                      ) -> Iterator[tuple[Path, list[FaceResult] | None, str | None]]:
        """Yields (path, results, None) or (path, None, error message) in input order; never stops on a bad file.

        Worker threads decode and detect ahead (a bounded window, so any number of paths streams in
        constant memory) while this thread runs the network on batches of crops.
        """

        def load(p):
            try:
                rgb, full = read_image_sized(p)
                return p, self.faces_of(rgb, all_faces), None, (rgb.shape[:2], full)
            except ImageError as e:
                return p, None, str(e), None

        window = max(2 * self.batch_size, 16)
        pending: deque = deque()
        it = iter(Path(p) for p in paths)
        with ThreadPoolExecutor(max_workers=max(1, self.workers)) as ex:
            def fill():
                while len(pending) < window:
                    p = next(it, None)
                    if p is None:
                        return
                    pending.append(ex.submit(load, p))

            fill()
            while pending:
                group = []
                while pending and sum(len(c or []) for _, c, _, _ in group) < self.batch_size:
                    group.append(pending.popleft().result())
                    fill()
                flat = [c for _, crops, _, _ in group if crops for c in crops]
                results = iter(self.classify_crops(flat))
                for p, crops, err, grids in group:  # boxes in the photo's own pixels (a big JPEG was read smaller)
                    yield p, (None if crops is None else rescale_boxes([next(results) for _ in crops], *grids)), err


def rescale_boxes(results: list[FaceResult], from_hw: tuple[int, int], to_hw: tuple[int, int]) -> list[FaceResult]:
    """The results with their boxes moved from one pixel grid (height, width) to another: from a large JPEG's
    array, decoded smaller (`data.images.decode_image_sized`), to the photo's own pixels, or back to draw them."""
    if tuple(from_hw) == tuple(to_hw):
        return results
    sy, sx = to_hw[0] / from_hw[0], to_hw[1] / from_hw[1]
    k = np.array([sx, sy, sx, sy], np.float32)
    return [replace(r, box=np.asarray(r.box, np.float32) * k) for r in results]


def fit_label(text: str, width: int, scale: float, thickness: int) -> tuple[float, tuple[int, int], int]:
    """Font scale, text size and baseline for a label that fits `width` with its 6 px of padding.

    A label wider than a small photo (a tight face crop of ~200 px) is written smaller, not cut off."""
    import cv2

    for _ in range(4):  # getTextSize is not exactly linear in the scale: shrink until it fits
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        if tw + 6 <= width:
            break
        scale *= 0.97 * (width - 6) / (tw + 6)
    return scale, (tw, th), base


def annotate(rgb: np.ndarray, results: list[FaceResult]) -> np.ndarray:
    """Draw boxes and labels (green: mask worn, orange: worn incorrectly, red: no mask)."""
    import cv2

    img = np.ascontiguousarray(rgb.copy())
    h, w = img.shape[:2]
    colours = {0: (40, 180, 60), 1: (255, 150, 0), 2: (220, 40, 40)}
    th = max(2, round(max(h, w) / 300))
    fs = max(0.45, max(h, w) / 900)
    for r in results:
        m, _, _ = r.parts
        col = colours[m]
        if r.face_found:
            x1, y1, x2, y2 = (int(round(v)) for v in r.box)
        else:
            side = min(h, w)
            x1, y1 = (w - side) // 2, (h - side) // 2
            x2, y2 = x1 + side - 1, y1 + side - 1
        cv2.rectangle(img, (x1, y1), (x2, y2), col, th)
        text = f"{class_name(r.cls)} {r.confidence:.2f}" + ("" if r.face_found else " (no face found)")
        lw = max(1, th // 2)
        fs_r, (tw, tht), base = fit_label(text, w, fs, lw)
        ty = y1 - 6 if y1 - tht - 10 > 0 else min(h - base - 2, y2 + tht + 8)
        tx = max(0, min(x1, w - tw - 6))  # keep the label inside the picture
        cv2.rectangle(img, (tx, ty - tht - 4), (tx + tw + 6, ty + base - 2), col, -1)
        cv2.putText(img, text, (tx + 3, ty - 2), cv2.FONT_HERSHEY_SIMPLEX, fs_r, (255, 255, 255), lw, cv2.LINE_AA)
    return img
