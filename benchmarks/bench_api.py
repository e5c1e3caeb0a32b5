"""`maskgate serve` under load, on loopback: latency of single photos, then many clients at once.

    python benchmarks/bench_api.py [--model M] [--clients 16] [--seconds 60] [--single 100] [--threads 1]

Starts the real server (`python -m maskgate serve`, uvicorn) in its own process, sends 448x448 jpgs made
from maskproxy eval photos (bench_framing.py's `portrait_blur`), and reports:
- one client, one photo at a time: latency p50 / p95 (ms);
- N clients sending as fast as answers come for S seconds: requests/s, latency p50 / p95 / p99, every
  status seen (5xx must be 0), requests lost (a connection error or no answer), and the server's memory
  (RSS) after warm-up and at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import cv2
import httpx
import numpy as np
from bench_framing import FRAMINGS


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def photos(src: Path, n: int) -> list[bytes]:
    out = []
    for f in sorted(src.glob("*.jpg"))[:n]:
        frame = FRAMINGS["portrait_blur"](cv2.imread(str(f)))
        out.append(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes())
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/maskproxy/eval/images")
    ap.add_argument("--model", help="default: the shipped model")
    ap.add_argument("--photos", type=int, default=200)
    ap.add_argument("--single", type=int, default=100, help="requests one at a time")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--threads", type=int, default=2, help="serve --threads")
    a = ap.parse_args()
    imgs = photos(Path(a.data), a.photos)
    port = free_port()
    cmd = [sys.executable, "-m", "maskgate", "serve", "--port", str(port), "--threads", str(a.threads)]
    if a.model:
        cmd += ["--model", a.model]
    t0 = time.time()
    srv = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=60) as c:
            while True:
                try:
                    if c.get("/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if srv.poll() is not None:
                    raise RuntimeError(srv.stderr.read())
                time.sleep(0.05)
            ready_s = time.time() - t0
            for b in imgs[:10]:  # warm-up
                c.post("/v1/predict", content=b, headers={"content-type": "image/jpeg"})
            rss0 = rss_mb(srv.pid)
            lat = []
            for i in range(a.single):
                t = time.perf_counter()
                r = c.post("/v1/predict", content=imgs[i % len(imgs)], headers={"content-type": "image/jpeg"})
                lat.append(time.perf_counter() - t)
                assert r.status_code == 200, r.text
        single = np.percentile(np.array(lat) * 1000, [50, 95])

        statuses: Counter = Counter()
        lost = Counter()
        load_lat: list[float] = []
        lock = threading.Lock()
        stop = time.perf_counter() + a.seconds

        def client(k: int) -> None:
            i = k
            with httpx.Client(base_url=base, timeout=120) as c:
                while time.perf_counter() < stop:
                    t = time.perf_counter()
                    try:
                        r = c.post("/v1/predict", files={"image": ("p.jpg", imgs[i % len(imgs)], "image/jpeg")})
                        code = r.status_code
                    except httpx.HTTPError as e:
                        with lock:
                            lost[type(e).__name__] += 1
                        continue
                    with lock:
                        statuses[code] += 1
                        if code == 200:
                            load_lat.append(time.perf_counter() - t)
                    i += a.clients

        t1 = time.perf_counter()
        th = [threading.Thread(target=client, args=(k,)) for k in range(a.clients)]
        for t in th:
            t.start()
        rss_series = []  # the server's memory every 10 s under load: flat, or growing?
        while any(t.is_alive() for t in th):
            rss_series.append(round(rss_mb(srv.pid)))
            next_sample = time.perf_counter() + 10
            while time.perf_counter() < next_sample and any(t.is_alive() for t in th):
                time.sleep(0.2)
        for t in th:
            t.join()
        wall = time.perf_counter() - t1
        rss1 = rss_mb(srv.pid)
        with httpx.Client(base_url=base, timeout=10) as c:
            metrics = c.get("/metrics").text
            health = c.get("/health").status_code
    finally:
        srv.terminate()
        srv.wait(10)
    p = np.percentile(np.array(load_lat) * 1000, [50, 95, 99]) if load_lat else [float("nan")] * 3
    errors = sum(v for k, v in statuses.items() if k >= 500)
    faces = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith("maskgate_faces_total"))
    print(json.dumps({
        "model": a.model or "default", "photos": "448x448 jpg (portrait_blur)", "cores": os.cpu_count(),
        "serve_threads": a.threads, "ready_s": round(ready_s, 2),
        "single_p50_ms": round(float(single[0]), 1), "single_p95_ms": round(float(single[1]), 1),
        "clients": a.clients, "seconds": round(wall, 1), "requests": sum(statuses.values()),
        "requests_per_s": round(sum(statuses.values()) / wall, 1),
        "load_p50_ms": round(float(p[0]), 1), "load_p95_ms": round(float(p[1]), 1), "load_p99_ms": round(float(p[2]), 1),
        "statuses": {str(k): v for k, v in sorted(statuses.items())}, "5xx": errors, "lost": dict(lost),
        "faces_counted_by_server": int(faces), "health_after": health,
        "rss_mb_after_warmup": round(rss0, 1), "rss_mb_end": round(rss1, 1), "rss_mb_every_10s": rss_series}))


if __name__ == "__main__":
    main()
