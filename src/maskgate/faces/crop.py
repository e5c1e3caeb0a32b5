"""Landmarks -> aligned face crop. The one function used at train time and at predict time."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import cv2
import numpy as np

from .detect import Face, FaceDetector, check_detection, create_detector
from .options import DETECTION_OPTIONS

# ArcFace 5-point template in a 112x112 crop, normalised to [0, 1].
TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                     [41.5493, 92.3655], [70.7299, 92.2041]], np.float32) / 112.0


@dataclass
class CropSettings:
    """Everything that defines a crop; saved with each model so predict crops exactly as training did."""

    detector: str = "retinaface"
    det_max_side: int = 256
    min_score: float = 0.5
    crop_size: int = 192
    margin: float = 0.0
    # Context window (top, left, right, bottom) as fractions of the margin-0 template crop; outside it
    # every crop shows its own edge pixels repeated. None = no window (bundles saved before it existed).
    window: tuple[float, float, float, float] | None = None
    # No face at min_score: take the single best face scoring at least this (None = the fallback crop).
    weak_score: float | None = None
    # No face at min_score on the det_max_side copy of a larger photo: look again on a copy this large
    # (None = off). Only where faces are looked for; training photos no larger than det_max_side never use it.
    det_retry_side: int | None = None
    # Also look again on that copy when the first look is doubtful: its best face scores below this, it found
    # several faces, or its only face is at one side (faces/detect.py). None = only when nothing was found.
    det_retry_below: float | None = 0.9
    # Which face is the photo's subject (the answer in the eval layout, face 0 in predictions): the one
    # scoring highest on sqrt(area / largest area) - subject_centre * (distance from the photo's centre /
    # half its diagonal). None or 0 = simply the largest (bundles saved before this rule).
    subject_centre: float | None = None
    # With the subject rule: minus this x (the most confident face's detection score - this face's), so a
    # large, doubtful detection (a pattern in the background, a pet) does not outrank a clear face.
    subject_confidence: float = 3.0

    def __post_init__(self):
        """Every value checked here, once: a config, a saved bundle and a predict / export flag all end up here."""
        if self.window is not None:
            w = tuple(float(v) for v in self.window)
            if len(w) != 4 or not (0 <= w[0] < w[3] <= 1 and 0 <= w[1] < w[2] <= 1):
                raise ValueError(f"face.window must be [top, left, right, bottom] with 0 <= top < bottom <= 1 "
                                 f"and 0 <= left < right <= 1, got {self.window!r}")
            self.window = w
        bad = []
        try:
            check_detection(self.det_max_side, self.min_score, self.weak_score, self.det_retry_side,
                            self.det_retry_below)
        except ValueError as e:
            bad.append(str(e))
        if not self.crop_size >= 32:
            bad.append(f"face.crop_size must be at least 32 pixels, got {self.crop_size}")
        if self.subject_centre is not None and not 0 <= self.subject_centre <= 4:
            bad.append(f"face.subject_centre (--subject-centre) must be in [0, 4] (0 = the largest face is the "
                       f"subject); got {self.subject_centre}")
        if not 0 <= self.subject_confidence <= 10:
            bad.append(f"face.subject_confidence (--subject-confidence) must be in [0, 10] (0 = detection scores do "
                       f"not count in choosing the subject); got {self.subject_confidence}")
        if bad:
            raise ValueError("; ".join(bad))

    @classmethod
    def from_config(cls, face: dict) -> "CropSettings":
        """The config's `face:` section -> settings; a value of the wrong type is named by its key. As with the
        flags, 0 turns an optional setting off (the same as null)."""
        def num(key: str, kind: type, optional: bool = False, zero_off: bool = False):
            v = face.get(key)
            if v is None and optional:
                return None
            try:
                v = kind(v)
            except (TypeError, ValueError):
                raise ValueError(f"face.{key} must be a number{' or null' if optional else ''}, got {v!r}") from None
            return None if zero_off and v == 0 else v

        return cls(detector=str(face["detector"]), det_max_side=num("det_max_side", int),
                   min_score=num("min_score", float), crop_size=num("crop_size", int), margin=num("margin", float),
                   window=face.get("window"), weak_score=num("weak_score", float, True, zero_off=True),
                   det_retry_side=num("det_retry_side", int, True, zero_off=True),
                   det_retry_below=num("det_retry_below", float, True, zero_off=True),
                   subject_centre=num("subject_centre", float, True, zero_off=True),
                   subject_confidence=num("subject_confidence", float, True) or 0.0)

    def key(self) -> str:
        key = "{detector}-{det_max_side}-{min_score}-{crop_size}-{margin}".format(**asdict(self))
        if self.window is not None:
            key += "-w" + "_".join(f"{v:g}" for v in self.window)
        if self.weak_score is not None:
            key += f"-k{self.weak_score:g}"
        if self.subject_centre:
            key += f"-c{self.subject_centre:g}"
            if self.subject_confidence:
                key += f"-q{self.subject_confidence:g}"
        if self.det_retry_side is not None:
            key += f"-z{self.det_retry_side}"
            if self.det_retry_below is not None:
                key += f"-r{self.det_retry_below:g}"
        return key

    def detection(self) -> dict:
        """The part that decides where faces are (models that share it can share one detection pass)."""
        return {"detector": self.detector, "det_max_side": self.det_max_side, "min_score": self.min_score,
                "weak_score": self.weak_score, "det_retry_side": self.det_retry_side,
                "det_retry_below": self.det_retry_below, "subject_centre": self.subject_centre or None,
                "subject_confidence": self.subject_confidence}

    def with_detection(self, **changes: float | int | None) -> "CropSettings":
        """These settings with where-to-look options changed, by the names of `DETECTION_OPTIONS` (None = keep;
        0 = off where the option says so). They decide only where faces are found and which is the subject,
        never how a found face is cut, so they can change after training (`maskgate predict` / `export` /
        `serve` / `watch` flags) without any drift in the crops. Checked by `__post_init__`."""
        options = {o.name: o for o in DETECTION_OPTIONS}
        unknown = sorted(set(changes) - set(options))
        if unknown:
            raise TypeError(f"not a detection option: {', '.join(unknown)} (options: {', '.join(options)})")
        new = {}
        for name, value in changes.items():
            if value is None:
                continue
            o = options[name]
            value = o.kind(value)
            new[o.field] = None if o.zero_off and value == 0 else value
        return replace(self, **new) if new else self

    @classmethod
    def check_options(cls, **changes: float | int | None) -> None:
        """Check where-to-look options before any model is loaded, so a bad flag fails at once (the weak score
        is checked against each model's own min_score again when `with_detection` applies it)."""
        cls(min_score=1.0).with_detection(**changes)

    def alignment(self) -> tuple[int, float, tuple[float, float, float, float] | None]:
        """The part that cuts a crop around a found face."""
        return self.crop_size, self.margin, self.window


@dataclass
class FaceCrop:
    image: np.ndarray  # crop_size x crop_size x 3 uint8 RGB
    found: bool  # False: no face detected, fallback crop
    score: float
    box: np.ndarray = field(default_factory=lambda: np.zeros(4, np.float32))
    landmarks: np.ndarray = field(default_factory=lambda: np.zeros((5, 2), np.float32))
    # the same face cut with other alignment settings (ensemble members), keyed by CropSettings.alignment()
    others: dict = field(default_factory=dict)


# The template sits a little high in the crop: more chin and neck (where a pulled-down mask sits),
# less empty space above the forehead.
TEMPLATE_SHIFT = np.array([0.0, -0.05], np.float32)


def template_points(size: int, margin: float) -> np.ndarray:
    """Where the 5 landmarks land in a size x size crop with `margin` extra context."""
    return ((TEMPLATE + TEMPLATE_SHIFT - 0.5) / (1.0 + margin) + 0.5) * size


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (Umeyama) mapping src points to dst; 2x3 matrix."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    cov = d0.T @ s0 / len(src)
    u, d, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1
    r = u @ np.diag(sign) @ vt
    var = (s0 ** 2).sum() / len(src)
    scale = (d * sign).sum() / var if var > 0 else 1.0
    t = mu_d - scale * r @ mu_s
    return np.hstack([scale * r, t[:, None]]).astype(np.float32)


def fallback_landmarks(h: int, w: int) -> np.ndarray:
    """No face found: assume the face fills the central square of the image (a pre-cropped face)."""
    side = min(h, w)
    x0, y0 = (w - side) / 2, (h - side) / 2
    return (TEMPLATE * side + [x0, y0]).astype(np.float32)


def window_box(size: int, margin: float, window: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
    """The context window in crop pixels (top, left, right, bottom); it shrinks with the margin like the face."""
    t, l, r, b = (int(round(((v - 0.5) / (1.0 + margin) + 0.5) * size)) for v in window)
    return max(t, 0), max(l, 0), min(r, size), min(b, size)


def align_crop(rgb: np.ndarray, landmarks: np.ndarray, size: int, margin: float,
               window: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """Similarity-align the 5 landmarks onto the template; outside `window` repeat the window's edge.

    Why the window: the training photos (tight face crops) end a little above the eyebrows and beside
    the cheeks, so their aligned crops show repeated edge pixels there, while a wider portrait shows
    hair, ears and background. Cutting every crop to the same landmark-relative window, at train and
    predict time alike, makes a portrait's crop look like a training crop instead of something new.
    """
    m = similarity(landmarks, template_points(size, margin))
    crop = cv2.warpAffine(rgb, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return apply_window(crop, margin, window)


def apply_window(crop: np.ndarray, margin: float, window: tuple[float, float, float, float] | None) -> np.ndarray:
    """Outside the context window, repeat the window's edge pixels (None: the crop as it is)."""
    if window is None:
        return crop
    size = crop.shape[0]
    t, l, r, b = window_box(size, margin, window)
    return cv2.copyMakeBorder(np.ascontiguousarray(crop[t:b, l:r]), t, size - b, l, size - r, cv2.BORDER_REPLICATE)


def landmarks_in_crop(landmarks: np.ndarray, size: int, margin: float) -> np.ndarray:
    """Where a face's 5 landmarks (image pixels) fall in its aligned crop."""
    m = similarity(landmarks, template_points(size, margin))
    return (np.asarray(landmarks, np.float32) @ m[:, :2].T + m[:, 2]).astype(np.float32)


def subject_order(faces: list[Face], h: int, w: int, centre: float, confidence: float = 0.0) -> list[Face]:
    """Faces ordered subject first: the largest and most central face of the photo.

    score = sqrt(area / largest area) - centre * (distance of the face's centre from the photo's centre,
    over half the photo's diagonal). Why: a photo handed in for one person shows that person in the
    middle; a bystander at the edge can be as large (closer to the camera) and must not be the answer.
    With centre 0.5 a face at the centre beats an equally large one in a corner, and one 1.5x its size
    halfway out, but not one twice its size. centre 0 = the largest first (ties: the detector's order).
    With the rule, `confidence` x (the best detection score - the face's) is subtracted too: detections of
    ~0.5-0.8 on background patterns, pets or printed faces are often larger than the real face (which scores
    ~0.99 at a resolution it is seen at), and must not become the subject.
    """
    if len(faces) < 2 or not centre:
        return sorted(faces, key=lambda f: -f.area)
    biggest = max(f.area for f in faces) or 1.0
    half_diag = 0.5 * float(np.hypot(h, w))
    best = max(f.score for f in faces)

    def score(f: Face) -> float:
        cx, cy = (f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2
        off = float(np.hypot(cx - w / 2, cy - h / 2)) / half_diag
        return float(np.sqrt(f.area / biggest)) - centre * off - confidence * (best - f.score)

    return sorted(faces, key=score, reverse=True)


class FaceCropper:
    """detect -> pick faces -> align -> crop, with a defined fallback when no face is found."""

    def __init__(self, settings: CropSettings, threads: int = 0):
        self.settings = settings
        self.detector: FaceDetector = create_detector(
            settings.detector, max_side=settings.det_max_side, min_score=settings.min_score,
            weak_score=settings.weak_score, retry_side=settings.det_retry_side,
            retry_below=settings.det_retry_below, threads=threads)

    def faces(self, rgb: np.ndarray, all_faces: bool) -> list[Face | None]:
        """Detected faces, the subject first (only the subject unless `all_faces`); [None] when there is none."""
        faces = subject_order(self.detector.detect(rgb), *rgb.shape[:2], self.settings.subject_centre or 0.0,
                              self.settings.subject_confidence)
        return (faces if all_faces else faces[:1]) or [None]

    def crop_face(self, rgb: np.ndarray, face: Face | None, settings: CropSettings | None = None) -> FaceCrop:
        """Align one face (None: the fallback crop); `settings` overrides this cropper's alignment part."""
        s = settings or self.settings
        if face is None:
            lm = fallback_landmarks(*rgb.shape[:2])
            return FaceCrop(align_crop(rgb, lm, s.crop_size, s.margin, s.window), False, 0.0, landmarks=lm)
        return FaceCrop(align_crop(rgb, face.landmarks, s.crop_size, s.margin, s.window), True, face.score,
                        face.box, face.landmarks)

    def all_faces(self, rgb: np.ndarray) -> list[FaceCrop]:
        """Every detected face (largest first); the fallback crop when there is none."""
        return [self.crop_face(rgb, f) for f in self.faces(rgb, all_faces=True)]

    def main_face(self, rgb: np.ndarray) -> FaceCrop:
        """The largest face, as used for one-label-per-image data (the competition layouts)."""
        return self.crop_face(rgb, self.faces(rgb, all_faces=False)[0])
