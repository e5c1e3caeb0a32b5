"""One prediction job as N shards (`maskgate predict --shard K/N` + `maskgate merge`) against one process.

    python benchmarks/bench_shards.py [--data-dir ../shared/data/maskproxy/eval] [--shards 2] [--out runs/shards]

Runs the whole job once as a single process (its default --workers 2), then as N processes side by side on
this machine (each `--workers W`, default 1), merges the parts, and says whether the merged csv is
byte-identical to the single run's; wall seconds and images/s of each. On one machine this measures what
splitting costs or gains against the one process's own threads; across machines each shard is one job.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _run(cmd: list[str]) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr[-2000:]}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default="../shared/data/maskproxy/eval")
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--workers", type=int, default=1, help="--workers of each shard")
    ap.add_argument("--out", default="runs/shards")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    base = [sys.executable, "-m", "maskgate", "predict", "--data-dir", a.data_dir]
    n_images = sum(1 for _ in open(Path(a.data_dir) / "info.csv")) - 1

    t = time.perf_counter()
    _run(base + ["--out", str(out / "one.csv")])
    one = time.perf_counter() - t

    t = time.perf_counter()
    procs = [subprocess.Popen(base + ["--out", str(out / f"part{k}.csv"), "--shard", f"{k}/{a.shards}",
                                      "--workers", str(a.workers)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for k in range(a.shards)]
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            sys.exit(f"a shard failed ({p.returncode}):\n{err[-2000:]}")
    _run([sys.executable, "-m", "maskgate", "merge", *[str(out / f"part{k}.csv") for k in range(a.shards)],
          "--out", str(out / "merged.csv")])
    sharded = time.perf_counter() - t

    res = {"images": n_images, "machine": f"{_cpu_name()}, {os.cpu_count()} cores",
           "one_process_s": round(one, 1), "one_process_img_s": round(n_images / one, 1),
           "shards": a.shards, "workers_per_shard": a.workers, "sharded_with_merge_s": round(sharded, 1),
           "sharded_img_s": round(n_images / sharded, 1),
           "identical": (out / "one.csv").read_bytes() == (out / "merged.csv").read_bytes()}
    print(json.dumps(res, indent=1))
    (out / "result.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
