"""`maskgate predict` end to end on 448x448 jpgs: start-up (imports + model load) and images/s.

    python benchmarks/bench_predict.py --images 600 [--model RUN_OR_PT [--model ...]] [--framing NAME]
                                       [--weak-score S] [--det-retry PX] [--tta MODE]   (as `maskgate predict`)

The 448x448 inputs are made from maskproxy eval photos framed as portraits (bench_framing.py's
`portrait_blur`: the photo at 240 px on an out-of-focus backdrop; `--framing small_face` for faces that
are small in the frame), written to a temporary folder.
More than one --model measures a soft-vote ensemble.
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
from bench_framing import FRAMINGS


def make_inputs(src: Path, n: int, dst: Path, framing: str = "portrait_blur") -> None:
    for f in sorted(src.glob("*.jpg"))[:n]:
        frame = FRAMINGS[framing](cv2.imread(str(f)))
        cv2.imwrite(str(dst / f.name), frame, [cv2.IMWRITE_JPEG_QUALITY, 92])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/maskproxy/eval/images")
    ap.add_argument("--images", type=int, default=600)
    ap.add_argument("--model", action="append", default=[], help="bundle or run folder; repeat for an ensemble")
    ap.add_argument("--weak-score", type=float, help="as `maskgate predict --weak-score` (members saved with "
                                                      "different values need it)")
    ap.add_argument("--det-retry", type=int, help="as `maskgate predict --det-retry`")
    ap.add_argument("--framing", default="portrait_blur", choices=[k for k, v in FRAMINGS.items() if v])
    ap.add_argument("--tta", nargs="?", const="on", choices=("off", "on", "auto"),
                    help="as `maskgate predict --tta` (default: the model's own setting)")
    a = ap.parse_args()
    model = [arg for m in a.model for arg in ("--model", m)]
    if a.weak_score is not None:
        model += ["--weak-score", str(a.weak_score)]
    if a.det_retry is not None:
        model += ["--det-retry", str(a.det_retry)]
    if a.tta:
        model += ["--tta", a.tta]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "imgs"
        folder.mkdir()
        make_inputs(Path(a.data), a.images, folder, a.framing)
        # start-up: a fresh process that imports maskgate and loads the model, nothing else
        t0 = time.time()
        subprocess.run([sys.executable, "-c", "from maskgate.predict import Predictor; Predictor(" +
                        (repr(a.model) if a.model else "None")
                        + f", weak_score={a.weak_score!r}, det_retry={a.det_retry!r})"],
                       check=True)
        startup = time.time() - t0
        t0 = time.time()
        r = subprocess.run([sys.executable, "-m", "maskgate", "predict", "--data-dir", str(folder), "--out",
                            str(Path(tmp) / "p.csv"), *model], capture_output=True, text=True, check=True)
        total = time.time() - t0
    rate = float(re.search(r"([0-9.]+) img/s", r.stderr).group(1))
    print(json.dumps({"models": a.model or ["default"], "images": a.images, "size": "448x448 jpg",
                      "framing": a.framing, "options": {"weak_score": a.weak_score, "det_retry": a.det_retry, "tta": a.tta},
                      "startup_s": round(startup, 2),
                      "steady_img_per_s": rate, "end_to_end_s": round(total, 1),
                      "end_to_end_img_per_s": round(a.images / total, 1), "cores": os.cpu_count()}))


if __name__ == "__main__":
    main()
