"""What one epoch's validation costs the on-the-fly (GPU) path in data preparation, before and after the masks
of its rows were drawn once in worker processes.

    python benchmarks/bench_validation.py [--data ../shared/data/faces-world/train] [--people 300] [--busy 6]

Rows as training makes them from an extra source: each photo's face crop (RetinaFace, the default crop) in
three rows, a mask drawn worn and worn wrongly, one bare. The network is left out (a mean over the image
stands in for it): on a GPU it costs little next to preparing the rows, which is what is measured here.
`--busy N` starts N busy processes beside it, as other runs' loaders on one machine do (a GPU lease ran three
trainings at once and its validation took minutes per epoch). Prints seconds per epoch, two epochs each:
- before: every row made in the loop's own process at every epoch (the code before this benchmark);
- after: `ImageDataset.prepare_drawn` (masks drawn once, in `--workers` processes) and validation through
  `--workers` loader processes.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from maskgate.config import load_config
from maskgate.faces.cache import CropCache, default_cache_root
from maskgate.labels import Mask
from maskgate.train.features import ImageDataset
from maskgate.train.images import RowImages, crop_landmarks
from maskgate.train.loop import collect_logits
from maskgate.train.recipe import build_preprocess


class MeanHeads(torch.nn.Module):
    """Stands in for the network: the heads' outputs from the image mean (no weights, ~no time)."""

    def forward(self, x):
        f = x.mean((2, 3))
        return {"mask": f, "gender": f[:, :2], "age": f, "age_years": f[:, 0]}


def busy() -> None:
    while True:
        pass


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/faces-world/train")
    ap.add_argument("--people", type=int, default=300)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--busy", type=int, default=0, help="busy processes beside it (cores shared with other runs)")
    a = ap.parse_args()

    cfg = load_config()
    pre = build_preprocess(cfg)
    labels = pd.read_csv(Path(a.data) / "labels.csv").head(a.people)
    paths = [str(Path(a.data) / p) for p in labels["path"]]
    crops, _, landmarks, _, _ = CropCache(default_cache_root() / "crops", pre.crop).crop_all(paths, workers=2)
    n = 3 * len(paths)
    draw = np.tile([Mask.WEAR, Mask.INCORRECT, Mask.NOT_WEAR], len(paths))
    images = RowImages(crops, np.repeat(np.arange(len(paths)), 3), draw, crop_landmarks(landmarks, pre.crop),
                       pre.crop, cfg["synth"]["incorrect_kinds"])
    targets = {"mask": draw.astype(np.int64), "gender": np.zeros(n, np.int64), "age_band": np.zeros(n, np.int64),
               "age": np.zeros(n, np.float32)}
    hogs = [mp.Process(target=busy, daemon=True) for _ in range(a.busy)]
    for h in hogs:
        h.start()
    rows = []
    try:
        for label, workers, prepare in (("before", 0, False), ("after", a.workers, True)):
            ds = ImageDataset(images, targets, pre, None, seed=1)
            t0 = time.time()
            made = ds.prepare_drawn(workers) if prepare else 0
            prep = time.time() - t0
            epochs = []
            for _ in range(2):
                t0 = time.time()
                collect_logits(MeanHeads(), ds, 128, torch.device("cpu"), workers=workers)
                epochs.append(time.time() - t0)
            rows.append({"code": label, "rows": n, "drawn once": made, "prepare s": round(prep, 2),
                         "epoch 1 s": round(epochs[0], 2), "epoch 2 s": round(epochs[1], 2)})
    finally:
        for h in hogs:
            h.terminate()
    print(f"\n{n} validation rows ({len(paths)} photos x 3), {a.busy} busy processes beside, "
          f"{torch.get_num_threads()} torch threads")
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
