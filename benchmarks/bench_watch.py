"""`maskgate watch` on a 640x480, 25 fps video: does it keep real time on the CPU, and what does it report.

    python benchmarks/bench_watch.py [--model M] [--seconds 20] [--crossings 4]

The video is made from the demo photo (scikit-image's astronaut, demo.make_walk_video): the head crosses
the frame `crossings` times, each crossing masked for its first half; between crossings the frame is
empty for a second, so each crossing is one person (one track), with two events (wear, then no mask).
Runs the watcher twice: as on a live feed (frames skipped to keep up; the default) and on every frame.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from maskgate.demo import make_walk_video


def make_video(path: Path, seconds: float, crossings: int, fps: float = 25.0) -> Path:
    """`crossings` walks past with a second of empty frame between them, as one MJPG .avi."""
    with tempfile.TemporaryDirectory() as tmp:
        walk = make_walk_video(Path(tmp) / "walk.avi", seconds=seconds / crossings - 1.0, fps=fps)
        cap = cv2.VideoCapture(str(walk))
        frames = []
        while True:
            ok, f = cap.read()
            if not ok:
                break
            frames.append(f)
    empty = np.full_like(frames[0], (118, 104, 92))
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, frames[0].shape[1::-1])
    for _ in range(crossings):
        for f in frames + [empty] * int(fps):
            out.write(f)
    out.release()
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", help="default: the shipped model")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--crossings", type=int, default=4)
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        video = make_video(Path(tmp) / "walks.avi", a.seconds, a.crossings)
        for mode in ([], ["--all-frames"]):
            cmd = [sys.executable, "-m", "maskgate", "watch", "--source", str(video),
                   "--events", str(Path(tmp) / f"ev{len(rows)}.csv"), *mode] + (["--model", a.model] if a.model else [])
            t0 = time.time()
            r = subprocess.run(cmd, capture_output=True, text=True, check=True)
            s = json.loads(r.stdout[r.stdout.index("\n{") + 1:] if not r.stdout.startswith("{") else r.stdout)
            s.update(mode="every frame" if mode else "real time (skip)", process_s=round(time.time() - t0, 1))
            rows.append(s)
    for s in rows:
        print(json.dumps({k: s[k] for k in ("mode", "fps", "frames_read", "frames_classified", "frames_skipped",
                                             "classified_per_second", "video_seconds", "wall_seconds",
                                             "kept_real_time", "people", "events", "events_by_state",
                                             "process_s")} | {"model": a.model or "default", "cores": os.cpu_count(),
                                                               "expected_people": a.crossings,
                                                               "expected_events": 2 * a.crossings}))


if __name__ == "__main__":
    main()
