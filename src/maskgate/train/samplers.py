"""Sampler registry: the order in which training rows are visited.

Without a sampler (one data source) the loader shuffles: every row once per epoch in a random order.
- `sources`: every batch is made of fixed shares of each data source (`data.extra[].share`), or
  shares by size x weight (`data.extra[].weight`) where none is fixed; each source is visited in its
  own shuffled cycle, so a small source repeats rather than being drawn at random with replacement.
- `balanced`: rows drawn with replacement, each with weight (size of its class)^-power, times
  `oversample_old` for the >= 60 band (`train.sampler: balanced`, `train.balance_by`: class18, age_band,
  mask, gender or a person group column such as `group:race`); power 1 visits every class equally often,
  0 as in the data. With extra sources the two combine: the source shares make each batch, and inside
  each source its rows are drawn by these weights (`balance_weights` over that source's rows alone).
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import pandas as pd
from torch.utils.data import Sampler

from ..registry import Registry

SAMPLERS = Registry("sampler")
register_sampler = SAMPLERS.register


def create_sampler(name: str, **kwargs) -> Sampler:
    return SAMPLERS.create(name, **kwargs)


def source_shares(sizes: list[int], weights: list[float], shares: list[float | None]) -> np.ndarray:
    """Each source's share of a batch: the fixed ones as given, the rest split by size x weight."""
    sizes_a, w = np.asarray(sizes, np.float64), np.asarray(weights, np.float64)
    fixed = np.array([s is not None for s in shares])
    out = np.array([s if s is not None else 0.0 for s in shares], np.float64)
    if out[fixed].sum() >= 1.0 + 1e-9 or (fixed.all() and abs(out.sum() - 1) > 1e-6):
        raise ValueError(f"source shares must add up to 1 (or leave room for the unset ones), got {shares}")
    free = ~fixed & (sizes_a > 0)
    rest = 1.0 - out[fixed].sum()
    if free.any():
        out[free] = rest * sizes_a[free] * w[free] / (sizes_a[free] * w[free]).sum()
    out[sizes_a == 0] = 0.0
    return out / out.sum()


def balance_classes(by: str, targets: dict[str, np.ndarray], class18: np.ndarray, rows: pd.DataFrame) -> np.ndarray:
    """What `train.balance_by` names, per training row: the 18 classes, one task's labels, or the values of a
    person group column of the data (`group:race`, `group:source`, ...; a missing value is a group of its own)."""
    if by == "class18":
        return np.asarray(class18)
    if by in ("age_band", "mask", "gender"):
        return np.asarray(targets[by])
    col = by.split(":", 1)[1] if by.startswith("group:") else by
    if col not in rows.columns:
        raise ValueError(f"train.balance_by={by}: the training data has no column {col!r} (group columns here: "
                         f"{', '.join(c for c in rows.columns if c not in ('path', 'label', 'draw')) or 'none'})")
    return rows[col].astype("string").fillna("").to_numpy(dtype=str)


def balance_weights(classes: np.ndarray, power: float = 0.5, age_band: np.ndarray | None = None,
                    oversample_old: float = 1.0) -> np.ndarray:
    """Each row's draw weight: (size of its class)^-power, times `oversample_old` for the >= 60 band."""
    classes = np.asarray(classes)
    _, inv, counts = np.unique(classes, return_inverse=True, return_counts=True)
    w = counts[inv].astype(np.float64) ** -float(power)
    if age_band is not None and oversample_old != 1.0:
        w = w * np.where(np.asarray(age_band) == 2, float(oversample_old), 1.0)
    return w


class _Epoch:
    """Holds the epoch (for per-epoch draws) and the DDP shard (rank takes every world-th batch)."""

    epoch, rank, world = 0, 0, 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def set_shard(self, rank: int, world: int) -> None:
        self.rank, self.world = rank, world


@register_sampler("sources")
class SourceMixSampler(Sampler, _Epoch):
    """Batches composed by source shares; an epoch has as many rows as the sources together.

    weights (optional, one per row): inside each source, rows are drawn with replacement by these weights
    (the balanced sampler's) instead of visited once each in a shuffled cycle."""

    def __init__(self, source_of_row: np.ndarray, shares: np.ndarray, batch_size: int, seed: int = 0,
                 weights: np.ndarray | None = None):
        self.src = np.asarray(source_of_row)
        self.shares = np.asarray(shares, np.float64)
        if len(self.shares) <= self.src.max(initial=0):
            raise ValueError("a share is needed for every source")
        if weights is not None and (len(weights) != len(self.src) or not np.all(np.asarray(weights) > 0)):
            raise ValueError("source sampler: one positive weight per row is needed")
        self.weights = None if weights is None else np.asarray(weights, np.float64)
        self.batch_size, self.seed = int(batch_size), int(seed)
        self.n = len(self.src)

    def __len__(self) -> int:
        return len(self._batches_of_rank()) * self.batch_size

    def _batches_of_rank(self) -> range:
        n_batches = max(1, self.n // self.batch_size)
        return range(self.rank, n_batches, self.world)

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng((self.seed, self.epoch, 11))
        pools = [np.nonzero(self.src == k)[0] for k in range(len(self.shares))]
        probs = None if self.weights is None else [self.weights[p] / self.weights[p].sum() for p in pools]
        cycles = [rng.permutation(p) for p in pools]
        pos = [0] * len(pools)
        n_batches = max(1, self.n // self.batch_size)
        exp = self.shares * self.batch_size
        out = []
        for b in range(n_batches):
            # whole counts per source that add up to the batch, the fractions drawn at random
            counts = np.floor(exp).astype(int)
            short = self.batch_size - counts.sum()
            if short:
                frac = exp - counts
                extra = rng.choice(len(exp), size=short, replace=False, p=frac / frac.sum())
                counts[extra] += 1
            batch = []
            for k, c in enumerate(counts):
                if probs is not None:  # balanced inside the source: weighted draws with replacement
                    if len(pools[k]) and c:
                        batch.extend(rng.choice(pools[k], size=c, replace=True, p=probs[k]))
                    continue
                for _ in range(c):
                    if not len(pools[k]):
                        break
                    if pos[k] == len(cycles[k]):
                        cycles[k], pos[k] = rng.permutation(pools[k]), 0
                    batch.append(cycles[k][pos[k]])
                    pos[k] += 1
            rng.shuffle(batch)
            if b % self.world == self.rank:
                out.extend(int(i) for i in batch)
        return iter(out)


@register_sampler("balanced")
class BalancedSampler(Sampler, _Epoch):
    """Weighted random sampling by class (an epoch draws as many rows as there are, with replacement)."""

    def __init__(self, classes: np.ndarray, power: float = 0.5, age_band: np.ndarray | None = None,
                 oversample_old: float = 1.0, seed: int = 0):
        classes = np.asarray(classes)
        if not len(classes):
            raise ValueError("balanced sampler: no rows")
        w = balance_weights(classes, power, age_band, oversample_old)
        self.p = w / w.sum()
        self.n, self.seed = len(classes), int(seed)

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world))

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng((self.seed, self.epoch, 13))
        draw = rng.choice(self.n, size=self.n, replace=True, p=self.p)
        return iter(int(i) for i in draw[self.rank::self.world])
