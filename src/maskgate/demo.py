"""`maskgate demo`: make sample inputs from a photo shipped by a PyPI package, run the shipped model.

The photo is scikit-image's `astronaut` (public domain, NASA). From it the demo makes three inputs:
the photo as it is (no mask), a surgical-style mask drawn over nose and mouth (worn), and the same
mask pulled below the nose (worn incorrectly); plus a tighter face crop and a grayscale copy.
It writes the inputs, annotated copies, predictions.csv and one contact sheet (demo.png).
"""
from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np

from .faces.detect import create_detector
from .predict import Predictor, annotate, rescale_boxes


def sample_photo() -> np.ndarray:
    try:
        from skimage import data
    except ImportError as e:
        raise ImportError("the demo takes its photo from scikit-image: `pip install scikit-image`") from e
    return np.ascontiguousarray(data.astronaut()[..., :3])


def draw_mask(rgb: np.ndarray, landmarks: np.ndarray, worn: bool, colour=(120, 190, 230)) -> np.ndarray:
    """Draw a pleated surgical-style mask from 5 landmarks: over the nose (worn) or below it (incorrect)."""
    le, re, nose, lm, rm = landmarks.astype(np.float64)
    eyes = (le + re) / 2
    mouth = (lm + rm) / 2
    down = mouth - eyes
    down /= np.linalg.norm(down)
    right = np.array([down[1], -down[0]]) * -1
    w = np.linalg.norm(re - le) * 1.25
    top = eyes + (nose - eyes) * 0.45 if worn else nose + (mouth - nose) * 0.45
    chin = mouth + (mouth - eyes) * 0.85
    bottom_w = w * 0.75
    pts = np.array([top - right * w * 0.7, top + right * w * 0.7, top + right * w + down * np.linalg.norm(chin - top) * 0.45,
                    chin + right * bottom_w * 0.6, chin - right * bottom_w * 0.6,
                    top - right * w + down * np.linalg.norm(chin - top) * 0.45]).round().astype(np.int32)
    out = rgb.copy()
    cv2.fillPoly(out, [pts], colour, lineType=cv2.LINE_AA)
    for f in (0.3, 0.5, 0.7):  # pleats
        a = top + down * np.linalg.norm(chin - top) * f
        p1, p2 = (a - right * w * 0.9).round().astype(int), (a + right * w * 0.9).round().astype(int)
        cv2.line(out, tuple(p1), tuple(p2), (90, 150, 190), max(1, int(w / 40)), cv2.LINE_AA)
    cv2.polylines(out, [pts], True, (80, 140, 180), max(1, int(w / 50)), cv2.LINE_AA)
    return out


def make_inputs(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    photo = sample_photo()
    faces = create_detector("retinaface").detect(photo)
    if not faces:
        raise RuntimeError("demo: no face found in the sample photo")
    f = faces[0]
    x1, y1, x2, y2 = f.box
    cx, cy, s = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) * 1.6
    tight = lambda im: im[int(max(0, cy - s / 2)):int(cy + s / 2), int(max(0, cx - s / 2)):int(cx + s / 2)]  # noqa: E731
    worn = draw_mask(photo, f.landmarks, worn=True)
    incorrect = draw_mask(photo, f.landmarks, worn=False)
    images = {
        "portrait_no_mask.jpg": photo,
        "portrait_mask_worn.jpg": worn,
        "portrait_mask_below_nose.jpg": incorrect,
        "face_mask_worn.jpg": tight(worn),
        "face_no_mask_gray.png": cv2.cvtColor(cv2.cvtColor(tight(photo), cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB),
    }
    paths = []
    for name, im in images.items():
        p = folder / name
        cv2.imwrite(str(p), np.ascontiguousarray(im)[..., ::-1])
        paths.append(p)
    return paths


def contact_sheet(images: list[np.ndarray], height: int = 320) -> np.ndarray:
    tiles = [cv2.resize(im, (int(im.shape[1] * height / im.shape[0]), height), interpolation=cv2.INTER_AREA)
             for im in images]
    return np.concatenate(tiles, 1)


def run_demo(out: Path, model=None) -> None:
    from .data.images import read_image_sized

    inputs = make_inputs(out / "inputs")
    pred = Predictor(model)
    rows, annotated = [], []
    (out / "annotated").mkdir(parents=True, exist_ok=True)
    for p, results, err in pred.predict_files(inputs, all_faces=True):
        if err:
            raise RuntimeError(err)
        img, full = read_image_sized(p)
        img = annotate(img, rescale_boxes(results, full, img.shape[:2]))
        cv2.imwrite(str(out / "annotated" / (p.stem + ".jpg")), img[..., ::-1])
        annotated.append(img)
        for i, r in enumerate(results):
            rows.append({"path": str(p), "face": i, **r.as_row()})
            print(f"{p.name:32s} face {i}: {r.as_row()['mask']:9s} {r.as_row()['gender']:6s} "
                  f"{r.as_row()['age']:5s} (class {r.cls}, p={r.confidence:.2f})")
    with open(out / "predictions.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    cv2.imwrite(str(out / "demo.png"), contact_sheet(annotated)[..., ::-1])
    print(f"wrote {out / 'predictions.csv'}, {out / 'annotated'}/, {out / 'demo.png'}")


def make_walk_video(path: str | Path, seconds: float = 4.0, fps: float = 25.0, size: tuple[int, int] = (640, 480),
                    masked_until: float = 0.5, face_px: int = 200) -> Path:
    """A test video made from the demo photo: the astronaut's head crosses the frame left to right, a
    surgical mask worn for the first `masked_until` of the time, then none. Written as MJPG .avi (any
    OpenCV reads it). Returns the path."""
    from .synth.masks import MaskStyle, draw_mask

    photo = sample_photo()
    f = create_detector("retinaface").detect(photo)[0]
    masked, _ = draw_mask(photo, f.landmarks, "worn", np.random.default_rng(0), MaskStyle(shape="surgical"))
    x1, y1, x2, y2 = f.box
    cx, cy, s = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) * 1.8
    box = (int(cx - s / 2), int(cy - s / 2), int(cx + s / 2), int(cy + s / 2))
    heads = [cv2.resize(np.ascontiguousarray(im[box[1]:box[3], box[0]:box[2]]), (face_px, face_px),
                        interpolation=cv2.INTER_AREA) for im in (masked, photo)]
    w, h = size
    n = int(round(seconds * fps))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    if not out.isOpened():
        raise RuntimeError(f"{path}: OpenCV cannot write an MJPG video here")
    y = (h - face_px) // 2
    for i in range(n):
        frame = np.full((h, w, 3), (92, 104, 118), np.uint8)
        frame[:, :, 0] += (np.arange(w) * 40 // w).astype(np.uint8)[None, :]  # a little background texture
        x = int(round(i / max(n - 1, 1) * (w - face_px)))
        frame[y:y + face_px, x:x + face_px] = heads[0 if i < masked_until * n else 1]
        out.write(frame[..., ::-1])
    out.release()
    return path
