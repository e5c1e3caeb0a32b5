"""onnxruntime vs PyTorch, and the slim install vs the full one.

    python benchmarks/bench_runtime.py [--images 600] [--slim .venv-slim] [--full .venv]

1. The shipped model's TorchScript bundle and its ONNX twin through `maskgate predict` on the same 448x448
   jpgs (bench_predict.py's inputs): images/s, start-up, and how often the two give the same class.
2. The slim install (`make slim`: onnxruntime, OpenCV, NumPy, the web parts; no PyTorch) next to the full
   one: size on disk, and the start-up of `maskgate predict` on one photo (the process from start to exit,
   best of 3), in each.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from bench_predict import make_inputs

from maskgate.models.runtime import default_model_path


def du_mb(path: Path) -> float:
    return int(subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True)
               .stdout.split()[0]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/maskproxy/eval/images")
    ap.add_argument("--images", type=int, default=600)
    ap.add_argument("--slim", default=".venv-slim")
    ap.add_argument("--full", default=".venv")
    a = ap.parse_args()
    out = {"cores": os.cpu_count(), "images": a.images}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "imgs"
        folder.mkdir()
        make_inputs(Path(a.data), a.images, folder)
        preds = {}
        for kind in ("torch", "onnx"):
            t0 = time.time()
            r = subprocess.run([sys.executable, "-m", "maskgate", "predict", "--data-dir", str(folder), "--out",
                                str(Path(tmp) / f"{kind}.csv"), "--model", str(default_model_path(kind))],
                               capture_output=True, text=True, check=True)
            out[f"{kind}_img_per_s"] = float(re.search(r"([0-9.]+) img/s\)", r.stderr).group(1))
            out[f"{kind}_model_load_s"] = float(re.search(r"model loaded in ([0-9.]+)s", r.stderr).group(1))
            out[f"{kind}_end_to_end_s"] = round(time.time() - t0, 1)
            preds[kind] = pd.read_csv(Path(tmp) / f"{kind}.csv")
        same = (preds["torch"]["class"].to_numpy() == preds["onnx"]["class"].to_numpy()).mean()
        out["class_agreement"] = round(float(same), 5)
        out["max_confidence_diff"] = round(float((preds["torch"]["confidence"] - preds["onnx"]["confidence"])
                                                 .abs().max()), 5)
        one = next(folder.glob("*.jpg"))
        for name, venv in (("full", Path(a.full).resolve()), ("slim", Path(a.slim).resolve())):
            exe = venv / "bin" / "maskgate"
            if not exe.exists():
                out[f"{name}_install"] = f"{venv} missing (make {'setup' if name == 'full' else 'slim'})"
                continue
            out[f"{name}_install_mb"] = round(du_mb(venv))
            best = 1e9
            for _ in range(3):
                t0 = time.time()
                subprocess.run([str(exe), "predict", "--out", str(Path(tmp) / "one.csv"), str(one)],
                               capture_output=True, check=True, cwd=tmp)
                best = min(best, time.time() - t0)
            out[f"{name}_predict_one_photo_s"] = round(best, 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
