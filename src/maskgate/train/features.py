"""Datasets for the loop: cached outputs of the frozen trunk (fast on CPU) or augmented images (GPU)."""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ..models.classifier import Preprocess
from .augment import EvalTransform, TrainTransform
from .images import RowImages

TARGET_KEYS = ("mask", "gender", "age_band", "age")


def targets_from(samples) -> dict[str, np.ndarray]:
    return {"mask": samples["mask"].to_numpy(np.int64), "gender": samples["gender"].to_numpy(np.int64),
            "age_band": samples["age_band"].to_numpy(np.int64), "age": samples["age"].to_numpy(np.float32)}


class _Targets(Dataset):
    def __init__(self, targets: dict[str, np.ndarray]):
        self.targets = targets

    def __len__(self):
        return len(self.targets["mask"])

    def _t(self, i):
        return {k: torch.as_tensor(self.targets[k][i]) for k in TARGET_KEYS}


class FeatureDataset(_Targets):
    """Rows of a [N, V, C, H, W] cache; training draws one of the V views at random per visit."""

    def __init__(self, feats: np.ndarray, targets: dict, train: bool, seed: int = 0):
        super().__init__(targets)
        self.feats, self.train, self.seed, self.epoch = feats, train, seed, 0

    def set_epoch(self, epoch: int):
        self.epoch = epoch

    def __getitem__(self, i):
        v = 0
        if self.train and self.feats.shape[1] > 1:
            v = int(np.random.default_rng((self.seed, self.epoch, i)).integers(self.feats.shape[1]))
        return {"x": torch.from_numpy(np.asarray(self.feats[i, v], np.float32)), **self._t(i)}


class ImageDataset(_Targets):
    """Crops augmented on the fly (train) or plainly resized (eval), then normalised.

    Rows with a mask to draw (extra sources) get a new look every epoch in training, one fixed look
    in evaluation."""

    def __init__(self, images: RowImages | np.ndarray, targets: dict, preprocess: Preprocess, aug: dict | None,
                 seed: int = 0, mask_alphas: np.ndarray | None = None):
        """images: the rows' images (train/images.py), or an N x S x S x 3 array of crops shown as they are."""
        super().__init__(targets)
        images = images if isinstance(images, RowImages) else RowImages(images)
        self.images, self.pre, self.seed, self.epoch = images, preprocess, seed, 0
        self.alphas = mask_alphas
        self.train = bool(aug)
        self.tf = TrainTransform(preprocess, aug) if aug else EvalTransform(preprocess)
        self.ready: dict[int, np.ndarray] = {}  # evaluation rows made once (prepare_drawn)

    def set_epoch(self, epoch: int):
        self.epoch = epoch

    def _image(self, i: int) -> np.ndarray:
        crop = self.images.image(i, (self.seed, self.epoch if self.train else 0))
        return self.tf(crop, np.random.default_rng((self.seed, self.epoch, i)),
                       None if self.alphas is None else self.alphas[i])

    def __getitem__(self, i):
        img = self.ready.get(i)
        if img is None:
            img = self._image(i)
        return {"x": self.pre.to_tensor(img[None])[0], **self._t(i)}

    def prepare_drawn(self, workers: int = 0, desc: str = "validation masks") -> int:
        """Draw the masks of evaluation rows once and keep those images (uint8), in `workers` processes.

        Evaluation rows never change (no augmentation, one fixed mask look per row), but drawing a mask
        costs a few milliseconds, and many times that in the loop's own process when other processes hold
        the cores: redrawn there at every epoch, the 1,200 validation people of faces-world took minutes
        per epoch on a GPU machine whose epoch of training took 40 s (benchmarks/bench_validation.py).
        Rows without a drawn mask stay a plain resize of their crop (kept once already), so the memory
        goes only where the time was. Returns the number of rows made."""
        if self.train:
            raise ValueError("only evaluation rows can be prepared once: training rows change every epoch")
        rows = [i for i in range(len(self)) if self.images.drawn(i) and i not in self.ready]
        if not rows:
            return 0
        loader = DataLoader(_Rows(self, rows), batch_size=64, num_workers=workers,
                            collate_fn=list)  # (row, image) pairs as they are, not stacked into tensors
        for batch in tqdm(loader, desc=desc, unit="batch", leave=False, mininterval=2):
            self.ready.update(batch)
        return len(rows)


class _Rows(Dataset):
    """(row, image) of chosen rows of an ImageDataset: what prepare_drawn runs in worker processes."""

    def __init__(self, ds: ImageDataset, rows: list[int]):
        self.ds, self.rows = ds, rows

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, k):
        return self.rows[k], self.ds._image(self.rows[k])


def feature_cache_key(keys: list[str], parts: dict) -> str:
    h = hashlib.sha1(json.dumps(parts, sort_keys=True).encode())
    for k in keys:
        h.update(k.encode())
    return h.hexdigest()[:24]


def cache_finished(path: str | os.PathLike) -> bool:
    """A trunk-output cache written to the end (its .done marker beside it); a killed run's is not."""
    path = Path(path)
    return path.is_file() and path.with_suffix(".done").is_file()


def cache_trunk_features(run: Callable[[torch.Tensor], np.ndarray], images: RowImages, preprocess: Preprocess,
                         aug: dict, views: int, path: str | os.PathLike, seed: int, batch_size: int,
                         desc: str = "trunk features", mask_alphas: np.ndarray | None = None,
                         prefetch: bool = True) -> np.ndarray:
    """Run the frozen trunk over `views` versions of every crop once; store fp16 [N, V, C, H, W] at `path`.

    `run`: the trunk as a function of a normalised batch (train/trunk_runner.py: PyTorch or onnxruntime).
    View 0 is the plain eval crop; views 1.. are random train augmentations (seeded per image and view;
    `mask_alphas`: pasted-mask outlines for the mask-look augmentation, see mask_look.py). Rows with a
    mask to draw (images.py) get it in a new look in every view.
    A finished cache is reused; an unfinished one (killed run) is recomputed. `prefetch`: make the next
    batch's images while the trunk runs (False: one after the other, as benchmarks/bench_trunk_cache.py compares).
    """
    path = Path(path)
    if cache_finished(path):
        return np.load(path, mmap_mode="r")
    ev, tr = EvalTransform(preprocess), TrainTransform(preprocess, aug)
    n = len(images)
    probe = run(preprocess.to_tensor(ev(images.image(0, (seed, 0)))[None]))
    shape = (n, views) + tuple(probe.shape[1:])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=shape)

    def batch(v: int, idx: range) -> torch.Tensor:
        return preprocess.to_tensor(np.stack([
            ev(images.image(i, (seed, v))) if v == 0 else
            tr(images.image(i, (seed, v)), np.random.default_rng((seed, v, i)),
               None if mask_alphas is None else mask_alphas[i]) for i in idx]))

    jobs = [(v, range(s, min(n, s + batch_size))) for v in range(views) for s in range(0, n, batch_size)]
    # the next batch's images are made in a thread while the trunk runs on this one (OpenCV and onnxruntime
    # release the GIL); each image depends only on (seed, view, row), so the cache is the same either way
    with tqdm(total=n * views, desc=desc, unit="img", mininterval=2) as bar, ThreadPoolExecutor(1) as pool:
        nxt = pool.submit(batch, *jobs[0]) if prefetch else None
        for k, (v, idx) in enumerate(jobs):
            x = nxt.result() if prefetch else batch(v, idx)
            if prefetch and k + 1 < len(jobs):
                nxt = pool.submit(batch, *jobs[k + 1])
            out[idx.start:idx.stop, v] = run(x).astype(np.float16)
            bar.update(len(idx))
    out.flush()
    del out
    os.replace(tmp, path)
    path.with_suffix(".done").write_text("ok")
    return np.load(path, mmap_mode="r")
