"""Train the default recipe from raw images, then score maskproxy eval: time, peak memory, macro F1.

    python benchmarks/bench_train.py --data ../shared/data/maskproxy --out runs/default [key=value ...]

Uses a fresh cache folder (crop and feature caches are part of the measured time) unless --cache is given.
Prints one JSON line and writes it to <out>/benchmark.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(args, env=None):
    r = subprocess.run([sys.executable, "-m", "maskgate", *map(str, args)], env=env, text=True,
                       stdout=subprocess.PIPE, stderr=None)
    if r.returncode:
        sys.exit(f"maskgate {args[0]} failed ({r.returncode})")
    return r.stdout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/maskproxy")
    ap.add_argument("--out", default="runs/default")
    ap.add_argument("--cache", help="cache folder (default: a fresh temporary one)")
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_args()
    data, out = Path(a.data), Path(a.out)
    env = dict(os.environ)
    tmp = None
    if not a.cache:
        tmp = tempfile.TemporaryDirectory(prefix="maskgate-bench-")
        a.cache = tmp.name
    env["MASKGATE_CACHE"] = a.cache
    t0 = time.time()
    run(["train", "--data-dir", data / "train", "--out", out, *a.overrides], env)
    train_s = time.time() - t0
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 ** 2
    sub = out / "eval_submission.csv"
    run(["predict", "--data-dir", data / "eval", "--out", sub, "--model", out], env)
    res = json.loads(run(["evaluate", "--pred", sub, "--truth", data / "eval" / "answers.csv",
                          "--report", out / "eval_report"], env))
    summary = json.loads((out / "summary.json").read_text())
    result = {"train_seconds": round(train_s, 1), "train_peak_rss_gb": round(peak_gb, 2),
              "val_macro_f1": round(summary["val_with_age_bias"]["macro_f1"], 4),
              "eval": {k: round(v, 4) if isinstance(v, float) else v for k, v in res.items()},
              "overrides": a.overrides, "machine": f"{platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} cores", "python": platform.python_version()}
    (out / "benchmark.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
