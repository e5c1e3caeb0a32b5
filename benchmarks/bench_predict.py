"""`maskgate predict` end to end on 448x448 jpgs: start-up (imports + model load) and images/s.

    python benchmarks/bench_predict.py --images 600 [--model RUN_OR_PT]

The 448x448 inputs are made from maskproxy eval photos placed in a wider frame (face ~45% of the
width, blurred surroundings), i.e. portrait-like framing, written to a temporary folder.
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

import cv2


def make_inputs(src: Path, n: int, dst: Path) -> None:
    files = sorted(src.glob("*.jpg"))[:n]
    for f in files:
        face = cv2.imread(str(f))
        bg = cv2.GaussianBlur(cv2.resize(face, (448, 448)), (0, 0), 25)
        s = 240
        small = cv2.resize(face, (s, s), interpolation=cv2.INTER_AREA)
        y, x = 70, (448 - s) // 2
        bg[y:y + s, x:x + s] = small
        cv2.imwrite(str(dst / f.name), bg, [cv2.IMWRITE_JPEG_QUALITY, 92])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/maskproxy/eval/images")
    ap.add_argument("--images", type=int, default=600)
    ap.add_argument("--model")
    a = ap.parse_args()
    model = ["--model", a.model] if a.model else []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "imgs"
        folder.mkdir()
        make_inputs(Path(a.data), a.images, folder)
        # start-up: a fresh process that imports maskgate and loads the model, nothing else
        t0 = time.time()
        subprocess.run([sys.executable, "-c", "from maskgate.predict import Predictor; Predictor(" +
                        (repr(a.model) if a.model else "") + ")"], check=True)
        startup = time.time() - t0
        t0 = time.time()
        r = subprocess.run([sys.executable, "-m", "maskgate", "predict", "--data-dir", str(folder), "--out",
                            str(Path(tmp) / "p.csv"), *model], capture_output=True, text=True, check=True)
        total = time.time() - t0
    rate = float(re.search(r"([0-9.]+) img/s", r.stderr).group(1))
    print(json.dumps({"images": a.images, "size": "448x448 jpg", "startup_s": round(startup, 2),
                      "steady_img_per_s": rate, "end_to_end_s": round(total, 1),
                      "end_to_end_img_per_s": round(a.images / total, 1), "cores": os.cpu_count()}))


if __name__ == "__main__":
    main()
