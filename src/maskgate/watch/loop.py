"""The watch loop: frames -> faces (the prediction core) -> tracks -> mask-state events.

A track's frames are cut into segments of one mask state: a new state counts only after `settle`
classified frames in a row agree on it (a single odd frame is flicker, folded back in). Each segment
with at least `min_frames` frames is one event: the track, its first and last time, the state with its
mean probability over the segment's frames, gender and age band the same way, and a snapshot of the
face from the segment's most confident frame. So a person walking past masked is one event; one who
pulls the mask down in view is two (same track).

Keeping real time: a camera or stream is read by its own thread that keeps only the newest frame; a
file is read at its own pace, and a frame is classified only when the clock has not passed it
(`realtime`, the default), else skipped. Every skip is counted in the summary.

A camera or stream that stops sending (a network camera's connection drops, a USB camera is unplugged
and plugged back) is reopened, with growing pauses, for up to `reconnect_s` seconds; its tracks end as any
track does that is not seen for `max_gap_s`, and the summary counts the reconnections and the time without
frames. Only a source that never opened is an error at once.
"""
from __future__ import annotations

import base64
import csv
import re
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from ..labels import AGE_NAMES, GENDER_NAMES, MASK_NAMES, AgeBand, Gender, Mask, marginals
from ..predict import Predictor, fit_label
from .notify import EventPoster
from .tracker import IoUTracker, Track

MASK_ORDER = ["wear", "incorrect", "not_wear"]  # worst last
COLOURS = {"wear": (40, 180, 60), "incorrect": (255, 150, 0), "not_wear": (220, 40, 40)}  # RGB
EVENT_FIELDS = ["event", "track", "start_s", "end_s", "started_at", "frames", "mask", "mask_conf", "gender",
                "gender_conf", "age_band", "age_conf", "snapshot"]


@dataclass
class WatchOptions:
    realtime: bool = True  # files: skip frames to keep up with the video's clock (cameras always do)
    settle: int = 3  # classified frames in a row a new mask state needs
    min_frames: int = 2  # shorter segments (a face seen once: often a false detection) make no event
    max_gap_s: float = 1.0  # a track unseen this long has left
    iou_min: float = 0.3
    max_seconds: float | None = None  # stop a camera or stream after this long
    reconnect_s: float = 30.0  # a camera or stream that stops sending: how long to keep reopening it (0: end)
    # who counts: a face whose box centre is inside `zone` (x1, y1, x2, y2 as fractions of the frame: the
    # doorway, not the street behind it) and whose box is at least `min_face` pixels high (near the camera,
    # not a passer-by far off); others are neither tracked nor reported, only drawn grey
    zone: tuple[float, float, float, float] | None = None
    min_face: float = 0.0

    def __post_init__(self) -> None:
        if self.zone is not None:
            z = tuple(float(v) for v in self.zone)
            if len(z) != 4 or not (0 <= z[0] < z[2] <= 1 and 0 <= z[1] < z[3] <= 1):
                raise ValueError(f"zone {self.zone}: give x1,y1,x2,y2 as fractions of the frame, "
                                 f"0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1 (e.g. 0.25,0,0.75,1)")
            self.zone = z
        if self.min_face < 0:
            raise ValueError(f"min_face {self.min_face}: a face height in pixels, >= 0")


def parse_zone(text: str) -> tuple[float, float, float, float]:
    """'x1,y1,x2,y2' (fractions of the frame) -> a tuple; checked by WatchOptions."""
    try:
        z = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--zone {text!r}: give four numbers x1,y1,x2,y2 (fractions of the frame)") from None
    if len(z) != 4:
        raise ValueError(f"--zone {text!r}: give four numbers x1,y1,x2,y2 (fractions of the frame)")
    return z  # type: ignore[return-value]


@dataclass
class Event:
    event: int
    track: int
    start_s: float
    end_s: float
    started_at: str
    frames: int
    mask: str
    mask_conf: float
    gender: str
    gender_conf: float
    age_band: str
    age_conf: float
    snapshot: str = ""


@dataclass
class _Segment:
    start: float
    label: str
    probs: list = field(default_factory=list)  # (mask 3, gender 2, age 3) per frame
    end: float = 0.0
    best: tuple[float, np.ndarray | None] = (-1.0, None)
    announced: bool = False  # on_start has been called for it

    def add(self, t: float, obs: tuple, crop_fn: Callable[[], np.ndarray], score: float) -> None:
        self.probs.append(obs)
        self.end = t
        if score > self.best[0]:
            self.best = (score, crop_fn())



class Watcher:
    """Runs the loop over one source; `on_event` is called as each event closes, `on_start` as soon as a
    segment has `min_frames` frames (someone at the door without a mask: an alarm now, not after they left;
    its Event has number 0 and the times and means so far); both with the face's best crop so far (RGB)."""

    def __init__(self, predictor: Predictor, options: WatchOptions | None = None,
                 on_event: Callable[[Event, np.ndarray | None], None] | None = None,
                 on_start: Callable[[Event, np.ndarray | None], None] | None = None):
        self.pred, self.opt, self.on_event, self.on_start = predictor, options or WatchOptions(), on_event, on_start
        self.tracker = IoUTracker(self.opt.iou_min, self.opt.max_gap_s)
        self.events: list[Event] = []
        self.ignored: list[np.ndarray] = []  # boxes of the last frame's faces outside the zone or too small
        self.not_counted = 0  # such faces, over all frames
        self._t0_wall = time.time()

    # --- per-track state segments ----------------------------------------------------------------
    def _observe(self, tr: Track, t: float, probs: np.ndarray, rgb: np.ndarray, box: np.ndarray, det: float):
        self._add(tr, t, probs, rgb, box, det)
        seg = tr.data["seg"]
        if not seg.announced and len(seg.probs) >= self.opt.min_frames:
            seg.announced = True
            if self.on_start:
                self.on_start(self._describe(tr, seg, 0), seg.best[1])

    def _add(self, tr: Track, t: float, probs: np.ndarray, rgb: np.ndarray, box: np.ndarray, det: float):
        pm, pg, pa = marginals(probs)
        label = MASK_NAMES[Mask(int(pm.argmax()))]
        obs = (pm, pg, pa)

        def crop() -> np.ndarray:
            x1, y1, x2, y2 = box
            m = 0.25 * max(x2 - x1, y2 - y1)
            h, w = rgb.shape[:2]
            return rgb[int(max(0, y1 - m)):int(min(h, y2 + m)), int(max(0, x1 - m)):int(min(w, x2 + m))].copy()

        score = float(pm.max()) * det
        d = tr.data
        seg: _Segment | None = d.get("seg")
        if seg is None:
            d["seg"], d["pending"] = _Segment(t, label), []
            d["seg"].add(t, obs, crop, score)
            return
        pending: list = d["pending"]
        if label == seg.label:
            for p in pending:  # flicker: the odd frames belong to this segment
                seg.add(*p[:4])
            pending.clear()
            seg.add(t, obs, crop, score)
            return
        if pending and pending[0][4] != label:  # a different odd frame: fold the earlier ones back in
            for p in pending:
                seg.add(*p[:4])
            pending.clear()
        pending.append((t, obs, crop, score, label))
        if len(pending) >= self.opt.settle:  # the new state holds: close the old segment, start a new one
            self._close(tr, seg)
            new = _Segment(pending[0][0], label)
            for p in pending:
                new.add(*p[:4])
            d["seg"] = new
            pending.clear()

    def _describe(self, tr: Track, seg: _Segment, number: int) -> Event:
        pm = np.mean([o[0] for o in seg.probs], 0)
        pg = np.mean([o[1] for o in seg.probs], 0)
        pa = np.mean([o[2] for o in seg.probs], 0)
        m = MASK_ORDER.index(seg.label)
        g, a = int(pg.argmax()), int(pa.argmax())
        return Event(number, tr.id, round(seg.start, 3), round(seg.end, 3),
                     datetime.fromtimestamp(self._t0_wall + seg.start, timezone.utc).isoformat(timespec="seconds"),
                     len(seg.probs), seg.label, round(float(pm[m]), 4), GENDER_NAMES[Gender(g)],
                     round(float(pg[g]), 4), AGE_NAMES[AgeBand(a)], round(float(pa[a]), 4))

    def _close(self, tr: Track, seg: _Segment) -> None:
        if len(seg.probs) < self.opt.min_frames:
            return
        ev = self._describe(tr, seg, len(self.events) + 1)
        self.events.append(ev)
        if self.on_event:
            self.on_event(ev, seg.best[1])

    def _end(self, tr: Track) -> None:
        seg, pending = tr.data.get("seg"), tr.data.get("pending", [])
        if seg is None:
            return
        for p in pending:
            seg.add(*p[:4])
        self._close(tr, seg)

    # --- frames ------------------------------------------------------------------------------------
    def step(self, t: float, rgb: np.ndarray) -> list[tuple[Track, str, float]]:
        """Classify one frame at time t (seconds); returns (track, mask state, its probability) per face."""
        results = [r for r in self.pred.predict_image(rgb, all_faces=True) if r.face_found]
        keep = [self.counts(r.box, rgb.shape) for r in results]
        self.ignored = [r.box for r, k in zip(results, keep) if not k]
        self.not_counted += len(self.ignored)
        results = [r for r, k in zip(results, keep) if k]
        boxes = np.stack([r.box for r in results]) if results else np.zeros((0, 4))
        tracks, ended = self.tracker.update(t, boxes)
        for tr in ended:
            self._end(tr)
        shown = []
        for tr, r in zip(tracks, results):
            self._observe(tr, t, r.probs, rgb, r.box, r.det_score)
            pm = marginals(r.probs)[0]
            shown.append((tr, MASK_NAMES[Mask(int(pm.argmax()))], float(pm.max())))
        return shown

    def counts(self, box: np.ndarray, shape: tuple) -> bool:
        """Whether a face is one the watch is for: its centre in the zone, its box tall enough."""
        x1, y1, x2, y2 = (float(v) for v in box)
        if y2 - y1 < self.opt.min_face:
            return False
        if self.opt.zone is None:
            return True
        h, w = shape[:2]
        cx, cy = (x1 + x2) / 2 / w, (y1 + y2) / 2 / h
        zx1, zy1, zx2, zy2 = self.opt.zone
        return zx1 <= cx <= zx2 and zy1 <= cy <= zy2

    def finish(self) -> None:
        for tr in self.tracker.finish():
            self._end(tr)


GREY = (150, 150, 150)


def draw(rgb: np.ndarray, shown: list[tuple[Track, str, float]], ignored: list[np.ndarray] = (),
         zone: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """The frame with each counted face's box and state; faces not counted (outside the zone, too small) in
    thin grey, and the zone's outline."""
    img = np.ascontiguousarray(rgb.copy())
    th = max(2, round(max(img.shape[:2]) / 320))
    if zone is not None:
        h, w = img.shape[:2]
        cv2.rectangle(img, (int(zone[0] * w), int(zone[1] * h)), (int(zone[2] * w) - 1, int(zone[3] * h) - 1),
                      GREY, max(1, th // 2))
    for b in ignored:
        x1, y1, x2, y2 = (int(round(v)) for v in b)
        cv2.rectangle(img, (x1, y1), (x2, y2), GREY, 1)
    for tr, label, p in shown:
        x1, y1, x2, y2 = (int(round(v)) for v in tr.box)
        col = COLOURS[label]
        cv2.rectangle(img, (x1, y1), (x2, y2), col, th)
        text = f"#{tr.id} {label} {p:.2f}"
        fs, (tw, tht), base = fit_label(text, img.shape[1], 0.55, 1)
        ty = max(tht + 4, y1 - 4)
        tx = max(0, min(x1, img.shape[1] - tw - 6))  # a face at the right edge keeps its whole label
        cv2.rectangle(img, (tx, ty - tht - 4), (tx + tw + 6, ty + base - 2), col, -1)
        cv2.putText(img, text, (tx + 3, ty - 2), cv2.FONT_HERSHEY_SIMPLEX, fs, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def public_name(source: str) -> str:
    """A source as it may be shown, logged and posted: a stream URL without its user and password
    (rtsp://admin:secret@cam/1 -> rtsp://***@cam/1)."""
    if "://" not in source:
        return source
    from urllib.parse import urlsplit, urlunsplit

    try:
        u = urlsplit(source)
    except ValueError:
        return source
    if "@" not in u.netloc:
        return source
    return urlunsplit(u._replace(netloc="***@" + u.netloc.rsplit("@", 1)[1]))


def open_source(source: str) -> tuple[cv2.VideoCapture, bool]:
    """A camera index, a stream URL (rtsp://, http://...) or a video file -> (capture, live)."""
    live = source.isdigit() or "://" in source
    if not live and not Path(source).is_file():
        raise FileNotFoundError(f"{source}: no such video file (or give a camera index or an rtsp:// URL)")
    cap = _capture(source)
    if not cap.isOpened():
        raise ValueError(f"{public_name(source)}: cannot open as a video source")
    return cap, live


STREAM_TIMEOUT_MS = 5000  # a stream URL that sends nothing for this long counts as stopped


def _capture(source: str) -> cv2.VideoCapture:
    if source.isdigit():
        return cv2.VideoCapture(int(source))
    if "://" in source:  # without a timeout FFmpeg can wait for a dead connection for minutes
        return cv2.VideoCapture(source, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS,
                                                         cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS])
    return cv2.VideoCapture(source)


def _reopen(source: str, seconds: float, stop: Callable[[], bool]) -> cv2.VideoCapture | None:
    """Reopen a live source that stopped, trying again after 0.25, 0.5, 1, 2, 4, 4... s, for up to `seconds`."""
    deadline, pause = time.perf_counter() + seconds, 0.25
    while not stop():
        cap = _capture(source)
        if cap.isOpened():
            return cap
        cap.release()
        left = deadline - time.perf_counter()
        if left <= 0:
            return None
        time.sleep(min(pause, left))
        pause = min(pause * 2, 4.0)
    return None


def _file_frames(cap: cv2.VideoCapture, fps: float, realtime: bool, need_all: bool, counts: dict
                 ) -> Iterator[tuple[float, np.ndarray, bool]]:
    """(video time, BGR frame or None, classify?) for every frame of a file, keeping to its clock."""
    start, i = time.perf_counter(), 0
    while cap.grab():
        t = i / fps
        classify = not realtime or time.perf_counter() - start <= t + 1.0 / fps  # behind the clock: skip
        frame = None
        if classify or need_all:
            ok, frame = cap.retrieve()
            if not ok:
                break
        counts["read"] += 1
        yield t, frame, classify
        i += 1


def _live_frames(cap: cv2.VideoCapture, source: str, opt: WatchOptions, counts: dict,
                 log: Callable[[str], None]) -> Iterator[tuple[float, np.ndarray, bool]]:
    """The newest frame of a camera or stream each time the loop is ready; older ones are skipped. A source
    that stops sending is reopened for up to `opt.reconnect_s` seconds (`_reopen`) before the frames end."""
    latest: dict = {"frame": None, "n": 0, "done": False}
    lock = threading.Lock()
    shown = public_name(source)
    start = time.perf_counter()

    def reader():
        c = cap
        try:
            while not latest["done"]:
                ok, frame = c.read()
                if ok:
                    with lock:
                        latest["frame"], latest["n"] = frame, latest["n"] + 1
                    continue
                c.release()
                if opt.reconnect_s <= 0:
                    break
                lost = time.perf_counter()
                log(f"{shown}: no frames at {lost - start:.1f} s; reopening it (for up to {opt.reconnect_s:g} s)")
                c = _reopen(source, opt.reconnect_s, lambda: latest["done"])
                if c is None:
                    log(f"{shown}: could not reopen it in {opt.reconnect_s:g} s; stopping")
                    break
                counts["reconnects"] += 1
                counts["seconds_without_frames"] += time.perf_counter() - lost
                log(f"{shown}: reopened after {time.perf_counter() - lost:.1f} s")
        finally:  # whatever happens here, the loop learns that no more frames come
            if c is not None:
                c.release()
            latest["done"] = True

    threading.Thread(target=reader, daemon=True, name="maskgate-camera").start()
    taken = 0
    try:
        while not (latest["done"] and latest["n"] == taken):
            if opt.max_seconds is not None and time.perf_counter() - start > opt.max_seconds:
                break
            with lock:
                frame, n = latest["frame"], latest["n"]
            if frame is None or n == taken:
                time.sleep(0.002)
                continue
            counts["read"] = n
            taken = n
            yield time.perf_counter() - start, frame, True
    finally:
        latest["done"] = True


def _jpeg(rgb: np.ndarray | None) -> bytes | None:
    if rgb is None or not rgb.size:
        return None
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return buf.tobytes() if ok else None


def watch(source: str, predictor: Predictor, options: WatchOptions | None = None, out: str | None = None,
          events_csv: str | None = None, progress: bool = True, post: str | None = None,
          post_snapshot: bool = False, name: str | None = None, stop: threading.Event | None = None) -> dict:
    """Run the watcher over `source`; write the annotated video and the events (`post`: also POST each event
    as JSON to this URL, `notify.EventPoster`, with the face as a base64 JPEG when `post_snapshot`); return
    the summary. `name`: what the source is called in posts, messages and the summary (default: the source
    without a URL's password); `stop`: set it to end the watch (the other sources of `watch_many`)."""
    opt = options or WatchOptions()
    label = name or public_name(source)
    tag = f"[{name}] " if name else ""  # whose line it is, when several sources print
    prefix = f"maskgate watch {tag.strip()}".strip()

    def say(msg: str) -> None:  # what the receiver did not get is said even without progress
        print(f"{prefix}: {msg}", file=sys.stderr, flush=True)

    poster = EventPoster(post, log=say) if post else None
    try:
        cap, live = open_source(source)
    except Exception:
        if poster is not None:
            poster.close(0)
        raise
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    fps = fps if 1.0 <= fps <= 240.0 else 25.0
    snap_dir = None
    writer_csv = f = None
    if events_csv:
        Path(events_csv).parent.mkdir(parents=True, exist_ok=True)
        snap_dir = Path(events_csv).with_suffix("")
        snap_dir = snap_dir.with_name(snap_dir.name + "_snapshots")
        snap_dir.mkdir(parents=True, exist_ok=True)
        f = open(events_csv, "w", newline="")
        writer_csv = csv.DictWriter(f, fieldnames=EVENT_FIELDS)
        writer_csv.writeheader()

    def body(kind: str, ev: Event, jpeg: bytes | None) -> dict:
        b = {"kind": kind, "source": label, **asdict(ev)}
        if post_snapshot and jpeg is not None:  # the picture a guard or a chat channel shows with the alarm
            b["snapshot_jpeg"] = base64.b64encode(jpeg).decode("ascii")
        return b

    def on_event(ev: Event, snap: np.ndarray | None) -> None:
        jpeg = _jpeg(snap) if snap_dir is not None or post_snapshot else None
        if snap_dir is not None and jpeg is not None:
            p = snap_dir / f"event{ev.event:05d}_track{ev.track}_{ev.mask}.jpg"
            p.write_bytes(jpeg)
            ev.snapshot = str(p)
        if writer_csv is not None:
            writer_csv.writerow(asdict(ev))
            f.flush()  # an event is on disk as soon as it closes (a killed watcher loses nothing closed)
        if poster is not None:
            poster.post(body("closed", ev, jpeg))
        if progress:
            print(f"{tag}event {ev.event}: track {ev.track} {ev.mask} ({ev.mask_conf:.2f}) "
                  f"{ev.gender} {ev.age_band} {ev.start_s:.1f}-{ev.end_s:.1f} s, {ev.frames} frames", flush=True)

    def on_start(ev: Event, snap: np.ndarray | None) -> None:
        if poster is not None:
            poster.post(body("started", ev, _jpeg(snap) if post_snapshot else None))
        if progress and ev.mask != "wear":
            print(f"{tag}track {ev.track}: {ev.mask} ({ev.mask_conf:.2f}) at "
                  f"{ev.start_s:.1f} s", flush=True)

    w = Watcher(predictor, opt, on_event, on_start)
    counts = {"read": 0, "classified": 0, "reconnects": 0, "seconds_without_frames": 0.0}
    video = None
    shown: list = []
    t_wall = time.perf_counter()
    busy = 0.0
    frames = _live_frames(cap, source, opt, counts, say if progress else lambda m: None) if live else _file_frames(
        cap, fps, opt.realtime, out is not None, counts)
    try:
        for t, frame, classify in frames:
            if stop is not None and stop.is_set():
                break
            if classify:
                t1 = time.perf_counter()
                shown = w.step(t, np.ascontiguousarray(frame[..., ::-1]))
                busy += time.perf_counter() - t1
                counts["classified"] += 1
            if out is not None and frame is not None:
                if video is None:
                    Path(out).parent.mkdir(parents=True, exist_ok=True)
                    h, wd = frame.shape[:2]
                    video = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps if not live else 10.0,
                                            (wd, h))
                    if not video.isOpened():
                        raise ValueError(f"{out}: OpenCV cannot write this video (use a .mp4 or .avi name)")
                video.write(draw(frame[..., ::-1], shown, w.ignored, opt.zone)[..., ::-1])
    except KeyboardInterrupt:
        pass
    finally:
        w.finish()
        if not live:  # a live source is released by its reader thread, which may be inside a read
            cap.release()
        if video is not None:
            video.release()
        if f is not None:
            f.close()
        posted = poster.close() if poster is not None else None
    wall = time.perf_counter() - t_wall
    video_s = counts["read"] / fps if not live else wall
    people: dict[str, int] = {k: 0 for k in MASK_ORDER}
    worst: dict[int, str] = {}
    for ev in w.events:
        if ev.track not in worst or MASK_ORDER.index(ev.mask) > MASK_ORDER.index(worst[ev.track]):
            worst[ev.track] = ev.mask
    for s in worst.values():
        people[s] += 1
    return {"source": label, "live": live, "fps": round(fps, 2), "frames_read": counts["read"],
            "frames_classified": counts["classified"], "frames_skipped": counts["read"] - counts["classified"],
            "video_seconds": round(video_s, 2), "wall_seconds": round(wall, 2),
            "classified_per_second": round(counts["classified"] / max(busy, 1e-9), 2),
            # a file: was the whole video handled within its own duration (live sources drop frames instead)
            "kept_real_time": None if live else bool(wall <= video_s * 1.05 + 0.5),
            # a live source that stopped sending and was reopened (`reconnect_s`)
            "reconnects": counts["reconnects"], "seconds_without_frames": round(counts["seconds_without_frames"], 2),
            "events": len(w.events), "people": len(worst), "people_by_worst_state": people,
            "events_by_state": {k: sum(e.mask == k for e in w.events) for k in MASK_ORDER},
            # faces seen in frames but outside the zone or under min_face (frame by frame, not people)
            **({"faces_not_counted": w.not_counted} if opt.zone is not None or opt.min_face > 0 else {}),
            **({"posted": posted} if posted is not None else {})}


def split_source(text: str) -> tuple[str | None, str]:
    """'door1=rtsp://cam/1' -> ('door1', 'rtsp://cam/1'); a source without a NAME= prefix -> (None, source).
    (An '=' inside a URL's query is not a name: the name is letters, digits, '-', '_' before the first '='.)"""
    head, sep, rest = text.partition("=")
    if sep and rest and re.fullmatch(r"[A-Za-z0-9_-]+", head) and not Path(text).is_file():
        return head, rest
    return None, text


def per_source(path: str | None, name: str) -> str | None:
    """events.csv -> events_door1.csv (each source of `watch_many` its own files)."""
    if path is None:
        return None
    p = Path(path)
    return str(p.with_name(f"{p.stem}_{name}{p.suffix}"))


def named_sources(sources: list[str]) -> list[tuple[str, str]]:
    """`--source` values -> (name, source): NAME=SOURCE, or source1, source2, ... by position; names must differ
    (each names its own files)."""
    named = [split_source(s) for s in sources]
    names = [n or f"source{k + 1}" for k, (n, _) in enumerate(named)]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"--source names must differ: {', '.join(dup)} given more than once")
    return [(n, s) for n, (_, s) in zip(names, named)]


def watch_many(sources: list[str], predictor: Predictor, options: WatchOptions | None = None,
               out: str | None = None, events_csv: str | None = None, progress: bool = True,
               post: str | None = None, post_snapshot: bool = False) -> dict:
    """Several cameras or videos at once, one thread each, sharing one model (the prediction core is
    thread-safe, as `serve --threads` uses it). Each source: `NAME=SOURCE` or a plain source (named source1,
    source2, ... by position); its own events csv, snapshots and video (`events_NAME.csv`, ...), its name in
    posts and messages. One source that cannot be opened, or fails, ends only its own watch (said in its
    summary's `error`); Ctrl-C ends them all. Returns {"sources": {name: summary}, "events", "people"}."""
    named = named_sources(sources)
    stop = threading.Event()
    results: dict[str, dict] = {}

    def run(name: str, src: str) -> None:
        try:
            results[name] = watch(src, predictor, options, per_source(out, name), per_source(events_csv, name),
                                  progress, post, post_snapshot, name=name, stop=stop)
        except Exception as e:  # noqa: BLE001 - one bad source does not end the others' watch
            print(f"maskgate watch [{name}]: error: {e}", file=sys.stderr, flush=True)
            results[name] = {"source": public_name(src), "error": str(e)}

    threads = [threading.Thread(target=run, args=(n, s), name=f"maskgate-watch-{n}", daemon=True) for n, s in named]
    for t in threads:
        t.start()
    try:
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(0.2)
    except KeyboardInterrupt:
        stop.set()
        for t in threads:
            t.join(30)
    ordered = {n: results[n] for n, _ in named if n in results}
    return {"sources": ordered, "events": sum(r.get("events", 0) for r in ordered.values()),
            "people": sum(r.get("people", 0) for r in ordered.values()),
            "errors": sum("error" in r for r in ordered.values())}
