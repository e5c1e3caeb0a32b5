"""`maskgate watch` on a 640x480, 25 fps video: does it keep real time on the CPU, and what does it report.

    python benchmarks/bench_watch.py [--model M] [--seconds 20] [--crossings 4] [--sources N]

The video is made from the demo photo (scikit-image's astronaut, demo.make_walk_video): the head crosses
the frame `crossings` times, each crossing masked for its first half; between crossings the frame is
empty for a second, so each crossing is one person (one track), with two events (wear, then no mask).
Runs the watcher twice: as on a live feed (frames skipped to keep up; the default) and on every frame.
`--sources N`: N copies of the video watched at once by one process (`--source s1=... --source s2=...`, one
model), as a live feed: frames classified per second and events of each source.
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
    ap.add_argument("--sources", type=int, default=1, help="watch N copies of the video at once")
    a = ap.parse_args()
    if a.sources > 1:
        with tempfile.TemporaryDirectory() as tmp:
            video = make_video(Path(tmp) / "walks.avi", a.seconds, a.crossings)
            cmd = [sys.executable, "-m", "maskgate", "watch", "--events", str(Path(tmp) / "ev.csv")]
            for k in range(a.sources):
                cmd += ["--source", f"s{k + 1}={video}"]
            t0 = time.time()
            r = subprocess.run(cmd + (["--model", a.model] if a.model else []), capture_output=True, text=True,
                               check=True)
            s = json.loads(r.stdout[r.stdout.index('{\n  "sources"'):])
        for name, one in s["sources"].items():
            print(json.dumps({"source": name} | {k: one[k] for k in (
                "frames_read", "frames_classified", "frames_skipped", "classified_per_second", "video_seconds",
                "wall_seconds", "kept_real_time", "people", "events", "events_by_state")}))
        print(json.dumps({"sources": a.sources, "process_s": round(time.time() - t0, 1), "cores": os.cpu_count(),
                          "classified_per_second_all": round(sum(o["frames_classified"] for o in s["sources"].values())
                                                             / max(o["wall_seconds"] for o in s["sources"].values()), 1),
                          "expected_people_each": a.crossings, "expected_events_each": 2 * a.crossings}))
        return
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
