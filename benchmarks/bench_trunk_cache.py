"""How fast the CPU recipe caches its frozen-trunk outputs: PyTorch vs onnxruntime, with and without prefetch.

    python benchmarks/bench_trunk_cache.py --data ../shared/data/maskproxy/train --images 1400

The crops come from the crop cache (made first if missing; not timed). Each variant then writes the
same cache (the default recipe's views and augmentation, seed 42) into a temporary folder; prints
images/s per variant, and how far the onnxruntime cache is from PyTorch's (they store fp16). One JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from maskgate.config import default_config  # noqa: E402
from maskgate.faces.cache import CropCache, default_cache_root  # noqa: E402
from maskgate.models.classifier import MaskgateNet  # noqa: E402
from maskgate.train.features import cache_trunk_features  # noqa: E402
from maskgate.train.images import RowImages  # noqa: E402
from maskgate.train.recipe import build_preprocess  # noqa: E402
from maskgate.train.trunk_runner import trunk_runner  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/maskproxy/train", help="a train layout (train.csv + images/)")
    ap.add_argument("--images", type=int, default=1400, help="the first N photos of the layout")
    ap.add_argument("--views", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    cfg = default_config()
    pre = build_preprocess(cfg)
    table = pd.read_csv(Path(a.data) / "train.csv", dtype=str)
    paths = sorted(str(p) for folder in table["path"] for p in (Path(a.data) / "images" / folder).iterdir()
                   if not p.name.startswith("."))[: a.images]
    crops = CropCache(default_cache_root(), pre.crop).crop_all(paths, workers=2)[0]
    m = cfg["model"]
    trunk = MaskgateNet(m["backbone"], m["weights"], int(m["freeze_blocks"])).trunk
    cpu, res, caches = torch.device("cpu"), {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for runtime in ("torch", "onnxruntime"):  # warm-up, not timed: the first batches of a runtime are slow
            run, _ = trunk_runner(trunk, cpu, runtime, pre.input_size)
            cache_trunk_features(run, RowImages(crops[:64]), pre, cfg["augment"], 1, Path(tmp) / f"w{runtime}.npy",
                                 0, 8, desc="warm-up")
        for runtime, prefetch in (("torch", False), ("torch", True), ("onnxruntime", False), ("onnxruntime", True)):
            name = f"{runtime}{'+prefetch' if prefetch else ''}"
            t0 = time.perf_counter()
            run, _ = trunk_runner(trunk, cpu, runtime, pre.input_size)
            feats = cache_trunk_features(run, RowImages(crops), pre, cfg["augment"], a.views, Path(tmp) / f"{name}.npy",
                                         int(cfg["seed"]), 8, desc=name, prefetch=prefetch)
            dt = time.perf_counter() - t0
            res[name] = {"seconds": round(dt, 1), "images_per_s": round(len(crops) * a.views / dt, 1)}
            caches[name] = np.asarray(feats, np.float32)
    d = np.abs(caches["torch"] - caches["onnxruntime+prefetch"])
    same = bool(np.array_equal(caches["onnxruntime"], caches["onnxruntime+prefetch"]))
    out = {"images": len(crops), "views": a.views, "variants": res,
           "speedup_vs_torch": round(res["torch"]["seconds"] / res["onnxruntime+prefetch"]["seconds"], 2),
           "onnxruntime_vs_torch": {"max_abs": float(d.max()), "mean_abs": float(d.mean()),
                                    "mean_abs_value": float(np.abs(caches["torch"]).mean())},
           "prefetch_changes_nothing": same,
           "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
                      f"{torch.__version__}, threads {torch.get_num_threads()}"}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
