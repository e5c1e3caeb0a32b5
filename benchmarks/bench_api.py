"""`maskgate serve` under load, on loopback: latency of single photos, then many clients at once.

    python benchmarks/bench_api.py [--model M] [--clients 16] [--seconds 60] [--single 100] [--threads 1]
                                   [--workers 2 --kill-at 20 --kill-at 40]

Starts the real server (`python -m maskgate serve`, uvicorn) in its own process, sends 448x448 jpgs made
from maskproxy eval photos (bench_framing.py's `portrait_blur`), and reports:
- one client, one photo at a time: latency p50 / p95 (ms);
- N clients sending as fast as answers come for S seconds: requests/s, latency p50 / p95 / p99, every
  status seen (5xx must be 0), requests lost (a connection error or no answer), and the server's memory
  (RSS) after warm-up and at the end.
- `--workers N --kill-at S ...`: N server processes; at each S seconds of the load phase one worker is killed
  (SIGKILL, as the out-of-memory killer does), the workers in turn; for each kill, how long until uvicorn had
  started a new one and the requests lost (sent before the kill, no answer). Memory: all processes summed.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
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
    """The server's resident memory, its worker processes included."""
    total = 0.0
    for q in [pid] + children(pid):
        try:
            for line in Path(f"/proc/{q}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            pass
    return total or float("nan")


def children(pid: int) -> list[int]:
    """Worker processes of `serve --workers N` (not multiprocessing's resource tracker)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
                if ppid == pid and b"resource_tracker" not in Path(f"/proc/{d}/cmdline").read_bytes():
                    out.append(int(d))
            except OSError:
                pass
    return sorted(out)


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
    ap.add_argument("--workers", type=int, default=1, help="serve --workers")
    ap.add_argument("--kill-at", type=float, action="append", default=[], metavar="S",
                    help="SIGKILL a worker S seconds into the load (repeat; needs --workers >= 2)")
    a = ap.parse_args()
    if a.kill_at and a.workers < 2:
        ap.error("--kill-at needs --workers >= 2 (one process killed is the service gone)")
    imgs = photos(Path(a.data), a.photos)
    port = free_port()
    cmd = [sys.executable, "-m", "maskgate", "serve", "--port", str(port), "--threads", str(a.threads),
           "--workers", str(a.workers)]
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

        lost_at: list[float] = []
        ok_at: list[float] = []

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
                            lost_at.append(t)
                        continue
                    with lock:
                        statuses[code] += 1
                        if code == 200:
                            load_lat.append(time.perf_counter() - t)
                            ok_at.append(t)
                    i += a.clients

        t1 = time.perf_counter()
        th = [threading.Thread(target=client, args=(k,)) for k in range(a.clients)]
        for t in th:
            t.start()
        rss_series = []  # the server's memory every 10 s under load: flat, or growing?
        kills, todo = [], sorted(a.kill_at)
        while any(t.is_alive() for t in th):
            rss_series.append(round(rss_mb(srv.pid)))
            next_sample = time.perf_counter() + 10
            while time.perf_counter() < next_sample and any(t.is_alive() for t in th):
                if todo and time.perf_counter() - t1 >= todo[0]:
                    todo.pop(0)
                    workers = children(srv.pid)
                    victim = workers[0]  # the oldest: after a kill the clients reconnect to the survivor
                    tk = time.perf_counter()
                    os.kill(victim, signal.SIGKILL)
                    while len(children(srv.pid)) != a.workers or victim in children(srv.pid):
                        time.sleep(0.02)
                    kills.append({"at_s": round(tk - t1, 1), "new_worker_after_s": round(time.perf_counter() - tk, 2),
                                  "_t": tk})
                time.sleep(0.02)
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
        "rss_mb_after_warmup": round(rss0, 1), "rss_mb_end": round(rss1, 1), "rss_mb_every_10s": rss_series,
        **({"workers": a.workers, "kills": [
            {"at_s": k["at_s"], "new_worker_after_s": k["new_worker_after_s"],
             "lost_sent_in_the_2_s_before": sum(k["_t"] - 2 <= t < k["_t"] for t in lost_at),
             "answers_in_the_5_s_after": sum(k["_t"] <= t < k["_t"] + 5 for t in ok_at)} for k in kills]}
           if a.kill_at else {})}))


if __name__ == "__main__":
    main()
