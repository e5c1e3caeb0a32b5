"""Draw a mask on any face from its 5 landmarks: worn, worn incorrectly, or none.

Why: the competition's data (and maskproxy) shows a few hundred people, all Asian adults; data sets
of faces of everyone else come unmasked. Drawing masks from landmarks turns any labelled face set into
3-state mask training data. The drawing must not look like one template, or a model learns the
template instead of what is covered, so every mask gets a random shape (surgical, KN95, N95 cup,
cloth), colour, print, fabric, pleats or seams, light from the face it lies on, a contact shadow and
soft edges.

Geometry: the landmarks give a face frame (eye midpoint, eye axis = roll, eye-to-mouth distance =
scale and pitch); yaw is read from how far the nose tip sits off the eye midpoint. The mask outline is
laid out on a simple model of the lower face (an elliptic cylinder) in that frame and projected with
the yaw, so a turned head shows the far cheek narrower and hides what turns away.

States (`STATES`): `worn` covers nose and mouth; `below_nose` (nose out, mouth covered), `on_chin`
(nose and mouth out) and `mouth_exposed` (nose covered, mouth out) are the incorrect ways; `none`
draws nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from ..labels import Mask

STATES: dict[str, Mask] = {"worn": Mask.WEAR, "below_nose": Mask.INCORRECT, "on_chin": Mask.INCORRECT,
                           "mouth_exposed": Mask.INCORRECT, "none": Mask.NOT_WEAR}
INCORRECT_KINDS = ("below_nose", "on_chin", "mouth_exposed")
SHAPES = ("surgical", "kn95", "n95", "cloth")

# Common mask colours (RGB); about half of the masks take one of these, the rest a random colour.
PALETTE = ((122, 178, 222), (96, 160, 196), (120, 190, 170), (236, 236, 232), (30, 30, 34), (62, 64, 72),
           (150, 150, 156), (232, 180, 190), (40, 52, 96), (210, 196, 170), (170, 40, 50), (90, 110, 70))

NOSE_DEPTH = 0.6  # nose tip in front of the eye plane, in inter-ocular distances (for yaw)


@dataclass
class MaskStyle:
    """The look of one drawn mask; `random_style` draws one."""

    shape: str = "surgical"
    colour: tuple[float, float, float] = (122.0, 178.0, 222.0)
    pattern: str = "plain"  # plain | stripes | checks | dots | mottle
    pattern_strength: float = 0.2
    pattern_freq: float = 12.0
    pattern_angle: float = 0.0
    fabric: float = 0.04  # fine noise of the weave
    face_light: float = 0.5  # how much of the face's own shading shows through (0..1)
    light_angle: float = 0.0  # direction light comes from
    light_strength: float = 0.25
    edge_soft: float = 0.8  # edge blur, in pixels per 100 px of eye distance
    rim: float = 0.15  # darker binding along the edge (surgical, cloth)
    ear_loops: bool = True
    loop_colour: tuple[float, float, float] = (235.0, 235.0, 235.0)
    # jitter of the outline (fractions; the state's meaning never changes)
    width: float = 1.0
    top_shift: float = 0.0
    bottom_shift: float = 0.0
    extra: dict = field(default_factory=dict)


def random_style(rng: np.random.Generator) -> MaskStyle:
    shape = SHAPES[int(rng.choice(len(SHAPES), p=[0.4, 0.2, 0.15, 0.25]))]
    if rng.random() < 0.5:
        colour = np.asarray(PALETTE[int(rng.integers(len(PALETTE)))], np.float64) * rng.uniform(0.85, 1.12, 3)
    else:
        colour = rng.uniform(15, 245, 3)
    pattern = "plain"
    if shape == "cloth" and rng.random() < 0.6 or rng.random() < 0.12:
        pattern = ("stripes", "checks", "dots", "mottle")[int(rng.integers(4))]
    loop = (235.0, 235.0, 235.0) if rng.random() < 0.6 else tuple(np.clip(colour * 0.9, 0, 255))
    return MaskStyle(shape=shape, colour=tuple(float(c) for c in np.clip(colour, 0, 255)), pattern=pattern,
                     pattern_strength=float(rng.uniform(0.1, 0.35)), pattern_freq=float(rng.uniform(5, 20)),
                     pattern_angle=float(rng.uniform(0, np.pi)), fabric=float(rng.uniform(0.0, 0.08)),
                     face_light=float(rng.uniform(0.2, 0.9)), light_angle=float(rng.uniform(0, 2 * np.pi)),
                     light_strength=float(rng.uniform(0.0, 0.45)), edge_soft=float(rng.uniform(0.4, 1.6)),
                     rim=float(rng.uniform(0.0, 0.3)) if shape in ("surgical", "cloth") else 0.0,
                     ear_loops=bool(rng.random() < 0.8), loop_colour=loop,
                     width=float(rng.uniform(0.92, 1.1)), top_shift=float(rng.uniform(-1, 1)),
                     bottom_shift=float(rng.uniform(-1, 1)))


@dataclass
class FaceFrame:
    """Where the face is: origin (eye midpoint), axes (ex across, ey down), unit (pixels per head unit),
    yaw (radians) and the landmarks' heights below the eyes (in head units)."""

    origin: np.ndarray
    ex: np.ndarray
    ey: np.ndarray
    unit: float
    yaw: float
    v_nose: float
    v_mouth: float
    v_chin: float
    mouth_half: float

    def to_image(self, x: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Projected (across, down) head-unit coordinates -> image pixels, shape (N, 2)."""
        return self.origin + (np.outer(x, self.ex) + np.outer(v, self.ey)) * self.unit


def face_frame(landmarks: np.ndarray) -> FaceFrame | None:
    """The face frame of 5 landmarks; None when they are degenerate (no size, not finite)."""
    lm = np.asarray(landmarks, np.float64).reshape(5, 2)
    if not np.isfinite(lm).all():
        return None
    le, re, nose, ml, mr = lm
    eyes, mouth = (le + re) / 2, (ml + mr) / 2
    d = float(np.linalg.norm(re - le))
    em = float(np.linalg.norm(mouth - eyes))
    if em < 1.0:
        return None
    if d < 0.25 * em:  # eyes on top of each other (profile or bad landmarks): take the axis from the mouth line
        ey = (mouth - eyes) / em
        ex = np.array([-ey[1], ey[0]])
        d = max(d, 0.25 * em)
    else:
        ex = (re - le) / d
        ey = np.array([-ex[1], ex[0]])
        if np.dot(mouth - eyes, ey) < 0:  # upside-down face: keep "down" towards the mouth
            ey = -ey
    nx = float(np.dot(nose - eyes, ex)) / d
    yaw = float(np.arctan(np.clip(nx / NOSE_DEPTH, -1.7, 1.7)))  # +-60 degrees at most
    unit = d / max(np.cos(yaw), 0.35)  # the eye distance of the face seen from the front, in pixels

    def down(p):
        return float(np.dot(p - eyes, ey)) / unit

    v_mouth = max(down(mouth), 0.5)
    v_nose = float(np.clip(down(nose), 0.2 * v_mouth, 0.8 * v_mouth))
    mouth_half = max(float(np.linalg.norm(mr - ml)) / 2 / unit / max(np.cos(yaw), 0.35), 0.25)
    return FaceFrame(eyes, ex, ey, unit, yaw, v_nose, v_mouth, v_mouth * 1.8, mouth_half)


# --- the lower face as an elliptic cylinder: depth of the surface at head-unit x (across) ---------------
_R, _ZF, _ZB = 1.15, 0.85, 0.55


def _depth(x: np.ndarray) -> np.ndarray:
    return _ZF * np.sqrt(np.clip(1 - (x / _R) ** 2, 0, 1)) - _ZB


def _project(x: np.ndarray, yaw: float) -> np.ndarray:
    """Across-coordinate seen by the camera (orthographic, head turned by `yaw`)."""
    return x * np.cos(yaw) + _depth(x) * np.sin(yaw)


def _visible_range(yaw: float) -> tuple[float, float]:
    """The span of x whose surface still faces the camera (the far cheek turns away)."""
    xs = np.linspace(-_R, _R, 241)
    p = _project(xs, yaw)
    dp = np.diff(p)
    ok = np.nonzero(dp > 0)[0]
    return float(xs[ok[0]]), float(xs[ok[-1] + 1])


def _vertical_span(f: FaceFrame, state: str, style: MaskStyle) -> tuple[float, float]:
    """Top and bottom of the mask (head units below the eye line) for a state, jittered within its meaning."""
    vn, vm, vc = f.v_nose, f.v_mouth, f.v_chin
    j_top, j_bot = style.top_shift, style.bottom_shift
    if state == "worn":  # from the nose bridge to under the chin
        top = vn * (0.45 + 0.1 * j_top)
        bottom = vc + 0.12 + 0.06 * j_bot
    elif state == "below_nose":  # under the nose tip, over the mouth
        top = vn + (vm - vn) * (0.42 + 0.1 * j_top)
        bottom = vc + 0.1 + 0.06 * j_bot
    elif state == "on_chin":  # under the lower lip, round the chin
        top = vm + (vc - vm) * (0.4 + 0.08 * j_top)
        bottom = vc + 0.3 + 0.08 * j_bot
    elif state == "mouth_exposed":  # over the nose, pulled up off the mouth
        top = vn * (0.45 + 0.1 * j_top)
        bottom = vn + (vm - vn) * (0.62 + 0.08 * j_bot)
    else:
        raise ValueError(f"unknown mask state {state!r}; choose from {sorted(STATES)}")
    return top, bottom


def _outline(shape: str, top: float, bottom: float, half: float, n: int = 24) -> np.ndarray:
    """Closed outline in head units (x across, v down), before projection: clockwise from top-left."""
    h = bottom - top
    t = np.linspace(0, 1, n)
    if shape == "surgical":  # straight-ish top with a rise over the nose, vertical sides, round chin
        top_v = top - 0.06 * h * np.exp(-((t - 0.5) / 0.18) ** 2)
        top_e = np.stack([-half + 2 * half * t, top_v], 1)
        right = np.stack([np.full(n, half), top + h * 0.55 * t], 1)
        a = np.linspace(0, np.pi, n)
        bot = np.stack([half * np.cos(a), top + h * 0.55 + h * 0.45 * np.sin(a) ** 0.8], 1)
        left = np.stack([np.full(n, -half), top + h * 0.55 * (1 - t)], 1)
    elif shape == "kn95":  # folded flat: a peak at the nose, straight edges, a point under the chin
        top_e = np.stack([-half + 2 * half * t, top + 0.16 * h * np.abs(2 * t - 1) ** 1.2], 1)
        right = np.stack([half - 0.1 * half * t, top + 0.16 * h + h * 0.35 * t], 1)
        bot = np.stack([0.9 * half * (1 - 2 * t), top + 0.51 * h + 0.49 * h * (1 - np.abs(2 * t - 1) ** 1.6)], 1)
        left = np.stack([-0.9 * half - 0.1 * half * t, top + 0.51 * h - h * 0.35 * t], 1)
    elif shape == "n95":  # a rounded cup
        a = np.linspace(0, 2 * np.pi, 4 * n, endpoint=False)
        return np.stack([0.92 * half * np.sin(a), top + h * 0.5 * (1 - np.cos(a))], 1)
    elif shape == "cloth":  # a curved top (peak at the nose, sagging to the sides), rounded to the chin
        top_e = np.stack([-half + 2 * half * t, top + 0.12 * h * (2 * t - 1) ** 2 - 0.04 * h], 1)
        right = np.stack([half * (1 - 0.05 * t), top + 0.08 * h + 0.4 * h * t], 1)
        a = np.linspace(0, np.pi, n)
        bot = np.stack([0.95 * half * np.cos(a), top + 0.48 * h + 0.52 * h * np.sin(a)], 1)
        left = np.stack([-half * (0.95 + 0.05 * t), top + 0.48 * h - 0.4 * h * t], 1)
    else:
        raise ValueError(f"unknown mask shape {shape!r}; choose from {SHAPES}")
    return np.concatenate([top_e, right, bot, left])


def _half_width(f: FaceFrame, state: str, style: MaskStyle) -> float:
    base = {"on_chin": 0.75, "mouth_exposed": 0.95}.get(state, 1.0)
    return float(np.clip(max(base, f.mouth_half * 1.9) * style.width, 0.6, 1.12))


def mask_polygon(landmarks: np.ndarray, state: str, style: MaskStyle | None = None,
                 frame: FaceFrame | None = None) -> np.ndarray | None:
    """The mask's outline in image pixels (M x 2), or None for `none` / degenerate landmarks.
    `frame`: the landmarks' face frame, where the caller has it already."""
    if state not in STATES:
        raise ValueError(f"unknown mask state {state!r}; choose from {sorted(STATES)}")
    f = frame if frame is not None else face_frame(landmarks)
    if state == "none" or f is None:
        return None
    style = style or MaskStyle()
    top, bottom = _vertical_span(f, state, style)
    pts = _outline(style.shape, top, bottom, _half_width(f, state, style))
    lo, hi = _visible_range(f.yaw)
    x = _project(np.clip(pts[:, 0], lo, hi), f.yaw)
    return f.to_image(x, pts[:, 1])


def _pattern(style: MaskStyle, h: int, w: int, scale: float, rng: np.random.Generator) -> np.ndarray:
    if style.pattern == "plain":
        return np.ones((h, w), np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) / max(scale, 1.0)
    c, s = np.cos(style.pattern_angle), np.sin(style.pattern_angle)
    u, v = xx * c + yy * s, -xx * s + yy * c
    f = style.pattern_freq / 4
    if style.pattern == "stripes":
        p = np.sign(np.sin(2 * np.pi * f * u))
    elif style.pattern == "checks":
        p = np.sign(np.sin(2 * np.pi * f * u) * np.sin(2 * np.pi * f * v))
    elif style.pattern == "dots":
        p = (np.hypot(np.sin(np.pi * f * u), np.sin(np.pi * f * v)) < 0.55).astype(np.float32) * 2 - 1
    else:  # mottle
        small = rng.normal(0, 1, (6, 6)).astype(np.float32)
        p = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return (1 + style.pattern_strength * p).astype(np.float32)


def draw_mask(rgb: np.ndarray, landmarks: np.ndarray, state: str, rng: np.random.Generator | None = None,
              style: MaskStyle | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Draw a mask in `state` on an RGB uint8 image; returns (new image, alpha float32 HxW in 0..1).

    The style comes from `style`, else is drawn from `rng` (deterministic for a seeded generator).
    `none`, or landmarks too degenerate to place a mask, return the image unchanged and a zero alpha.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected HxWx3 uint8 RGB, got {rgb.shape} {rgb.dtype}")
    rng = rng if rng is not None else np.random.default_rng(0)
    style = style or random_style(rng)
    h, w = rgb.shape[:2]
    f = face_frame(landmarks)
    poly = mask_polygon(landmarks, state, style, f)
    alpha = np.zeros((h, w), np.float32)
    if poly is None:
        return rgb.copy(), alpha
    unit = f.unit
    # work inside the mask's bounding box (plus room for blur, loops, shadow), clipped to the image
    pad = int(np.ceil(0.6 * unit)) + 4
    x0, y0 = (np.floor(poly.min(0)) - pad).astype(int)
    x1, y1 = (np.ceil(poly.max(0)) + pad).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 - x0 < 2 or y1 - y0 < 2:  # the mask lies outside the image
        return rgb.copy(), alpha
    bw, bh = x1 - x0, y1 - y0
    local = poly - [x0, y0]
    hard = np.zeros((bh, bw), np.uint8)
    cv2.fillPoly(hard, [np.round(local * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    a = hard.astype(np.float32) / 255
    if not a.any():
        return rgb.copy(), alpha
    soft = max(0.3, style.edge_soft * unit / 100)
    a_soft = cv2.GaussianBlur(a, (0, 0), soft)
    region = rgb[y0:y1, x0:x1].astype(np.float32)

    # the look: colour x face light x one-sided light x 3D shading x pattern x fabric x folds
    luma = cv2.cvtColor(rgb[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY).astype(np.float32)
    inside = a > 0.5
    face_l = cv2.GaussianBlur(luma, (0, 0), max(1.0, unit * 0.3))  # broad light only, no features
    face_l = np.clip(face_l / max(float(face_l[inside].mean()), 1.0), 0.4, 1.6) ** style.face_light
    yy, xx = np.mgrid[0:bh, 0:bw].astype(np.float32)
    rel = np.stack([xx + x0 - f.origin[0], yy + y0 - f.origin[1]], -1) / unit
    across = rel @ f.ex  # head units across the face (projected)
    down = rel @ f.ey
    light = 1 + style.light_strength * (np.cos(style.light_angle) * across + np.sin(style.light_angle) * (down - 1))
    look = face_l * light * _pattern(style, bh, bw, unit / 10, rng)
    if style.fabric:
        look *= 1 + style.fabric * cv2.GaussianBlur(rng.normal(0, 1, (bh, bw)).astype(np.float32), (0, 0), 0.7)
    pd = ((poly - f.origin) / unit) @ f.ey  # the outline's heights, head units below the eyes
    top, bottom = float(pd.min()), float(pd.max())
    centre = float((((poly - f.origin) / unit) @ f.ex).mean())
    if style.shape == "surgical":  # three pleats across, following the face's own axes
        for k in (0.32, 0.5, 0.68):
            v = top + (bottom - top) * k
            look *= 1 - 0.18 * np.exp(-((down - v) / 0.025) ** 2)
            look *= 1 + 0.08 * np.exp(-((down - v + 0.04) / 0.03) ** 2)
    elif style.shape == "kn95":  # the centre seam
        look *= 1 - 0.22 * np.exp(-(across - centre) ** 2 / 0.0015)
    elif style.shape == "n95":  # a moulded cup: brighter in the middle
        look *= 1 + 0.12 * np.exp(-((across - centre) ** 2 + (down - (top + bottom) / 2) ** 2) / 0.25)
    look *= 1 - 0.25 * np.clip(np.abs(across - centre) / 1.1, 0, 1) ** 2  # curvature: darker sides
    if style.rim:
        edge = cv2.GaussianBlur(a, (0, 0), max(1.0, unit * 0.03))
        look *= 1 - style.rim * np.clip(1 - np.abs(edge - 0.5) * 2, 0, 1)
    mask_rgb = np.asarray(style.colour, np.float32)[None, None, :] * look[..., None]

    # contact shadow on the skin just outside the edge, then composite, then ear loops
    shadow = cv2.GaussianBlur(a, (0, 0), max(1.0, unit * 0.05)) * (1 - a_soft)
    out = region * (1 - 0.35 * shadow[..., None])
    out = out * (1 - a_soft[..., None]) + mask_rgb * a_soft[..., None]
    if style.ear_loops:
        thick = max(1, int(round(unit * 0.025)))
        for side in (-1, 1):
            idx = np.argsort(side * local[:, 0])[-6:]
            upper = local[idx[np.argmin(local[idx, 1])]]
            lower = local[idx[np.argmax(local[idx, 1])]]
            ear = (np.array([f.origin[0], f.origin[1]]) - [x0, y0]
                   + (f.ex * side * 1.25 * np.cos(f.yaw) + f.ey * 0.35) * unit)
            for p in (upper, lower):
                cv2.line(out, tuple(int(v) for v in p), tuple(int(v) for v in ear), style.loop_colour, thick,
                         cv2.LINE_AA)
    result = rgb.copy()
    result[y0:y1, x0:x1] = np.clip(out, 0, 255).astype(np.uint8)
    alpha[y0:y1, x0:x1] = a_soft
    return result, alpha


def mask_of(state: str) -> Mask:
    """The competition's mask class of a drawn state."""
    if state not in STATES:
        raise ValueError(f"unknown mask state {state!r}; choose from {sorted(STATES)}")
    return STATES[state]


def pick_state(mask: Mask, rng: np.random.Generator, incorrect_kinds: dict[str, float] | None = None) -> str:
    """A drawn state for a mask class: `worn`, one of the incorrect kinds (by weight), or `none`."""
    if mask == Mask.WEAR:
        return "worn"
    if mask == Mask.NOT_WEAR:
        return "none"
    kinds = incorrect_kinds or {"below_nose": 0.5, "on_chin": 0.35, "mouth_exposed": 0.15}
    names = list(kinds)
    p = np.asarray([kinds[k] for k in names], np.float64)
    bad = [k for k in names if k not in INCORRECT_KINDS]
    if bad or (p < 0).any() or p.sum() <= 0:
        raise ValueError(f"incorrect kinds must be weights >= 0 over {INCORRECT_KINDS}, got {kinds}")
    return names[int(rng.choice(len(names), p=p / p.sum()))]
