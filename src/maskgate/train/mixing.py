"""Batch mixing (config `train.mix`, `train.erase`): the competition's half-image CutMix, mixup, erasing.

A mixer takes a batch and returns the input to train on, the row each row was mixed with (`pair`;
itself where nothing was mixed) and the weight `lam` of its own labels; the loop then trains on
lam * loss(own labels) + (1 - lam) * loss(partner's labels), so any loss in the registry works.

Where they act: on the network's input. With cached trunk features (the CPU recipe) that input is the
frozen blocks' feature map (80 x 10 x 10 for Lite0 at 160 px): convolutional, so its left half is still
the face's left half, and CutMix of halves, mixup and erasing act on it as on the image, one stage
later. With `train.cache_features: false` (the GPU recipe) they act on the images themselves.
- cutmix_half: the right half of a row's input from its partner (two people's half faces), labels by area
  (1/2 each); `mix_same_class`: partners only from the same 18 classes, so the labels stay exact.
- mixup: rows of `mix_age_bands` mixed with partners of those bands, lam ~ Beta(alpha, alpha).
- erase (`train.erase` = probability per row): a random rectangle (2-25% of the area) set to 0.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..labels import encode
from ..registry import Registry

MIXERS = Registry("batch mixer")
register_mixer = MIXERS.register

Mixer = Callable[[dict, torch.Generator], tuple[torch.Tensor, torch.Tensor, float]]


def create_mixer(name: str, **kwargs) -> Mixer:
    return MIXERS.create(name, **kwargs)


def _partners(groups: torch.Tensor, chosen: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """For each chosen row, a random other chosen row of the same group (itself if it has none): the
    group's rows in a random cycle, each paired with the next, so no row is its own partner."""
    pair = torch.arange(len(groups))
    for v in torch.unique(groups[chosen]):
        idx = torch.nonzero(chosen & (groups == v)).flatten()
        if len(idx) > 1:
            idx = idx[torch.randperm(len(idx), generator=g)]
            pair[idx] = idx.roll(-1)
    return pair


@register_mixer("cutmix_half")
def cutmix_half(prob: float = 0.5, same_class: bool = False, **_) -> Mixer:
    def mix(batch: dict, g: torch.Generator):
        x = batch["x"]
        n = len(x)
        chosen = torch.rand(n, generator=g) < prob
        groups = encode(batch["mask"], batch["gender"], batch["age_band"]) if same_class else torch.zeros(n)
        pair = _partners(torch.as_tensor(groups), chosen, g)
        moved = pair != torch.arange(n)
        if not moved.any():
            return x, pair, 1.0
        x = x.clone()
        half = x.shape[-1] // 2
        x[moved, ..., half:] = batch["x"][pair[moved], ..., half:]
        lam = 1.0 - (x.shape[-1] - half) / x.shape[-1]  # own labels by area (the left half is its own)
        if same_class:  # both halves are the same class: nothing to mix in the labels
            return x, torch.arange(n), 1.0
        return x, pair, lam
    return mix


@register_mixer("mixup")
def mixup(alpha: float = 0.4, prob: float = 0.5, age_bands: list | None = None, **_) -> Mixer:
    bands = torch.tensor(age_bands if age_bands is not None else [0, 1, 2])

    def mix(batch: dict, g: torch.Generator):
        x = batch["x"]
        n = len(x)
        chosen = (torch.rand(n, generator=g) < prob) & torch.isin(batch["age_band"].cpu(), bands)
        pair = _partners(torch.zeros(n), chosen, g)
        moved = pair != torch.arange(n)
        if not moved.any():
            return x, pair, 1.0
        lam = float(torch.distributions.Beta(alpha, alpha).sample()) if alpha > 0 else 0.5
        lam = max(lam, 1 - lam)  # the row's own labels weigh most
        x = x.clone()
        x[moved] = lam * x[moved] + (1 - lam) * batch["x"][pair[moved]]
        return x, pair, lam
    return mix


def random_erase(x: torch.Tensor, prob: float, g: torch.Generator) -> torch.Tensor:
    """Each row with probability `prob`: a random rectangle of 2-25% of the area set to 0."""
    if prob <= 0:
        return x
    h, w = x.shape[-2:]
    out = None
    for i in torch.nonzero(torch.rand(len(x), generator=g) < prob).flatten().tolist():
        area = float(torch.empty(1).uniform_(0.02, 0.25, generator=g)) * h * w
        ratio = float(torch.empty(1).uniform_(0.5, 2.0, generator=g))
        eh, ew = max(1, min(h, round((area * ratio) ** 0.5))), max(1, min(w, round((area / ratio) ** 0.5)))
        top = int(torch.randint(0, h - eh + 1, (1,), generator=g))
        left = int(torch.randint(0, w - ew + 1, (1,), generator=g))
        if out is None:
            out = x.clone()
        out[i, ..., top:top + eh, left:left + ew] = 0
    return x if out is None else out


def make_batch_transform(train_cfg: dict) -> Callable[[dict, torch.Generator], tuple[dict, dict | None, float]] | None:
    """From the config: fn(batch, generator) -> (batch to train on, partner batch or None, lam); None if off."""
    name, erase = train_cfg.get("mix"), float(train_cfg.get("erase", 0.0))
    if not name and erase <= 0:
        return None
    mixer = create_mixer(name, prob=float(train_cfg.get("mix_prob", 0.5)),
                         same_class=bool(train_cfg.get("mix_same_class", False)),
                         alpha=float(train_cfg.get("mixup_alpha", 0.4)),
                         age_bands=train_cfg.get("mix_age_bands")) if name else None

    def transform(batch: dict, g: torch.Generator):
        partner, lam = None, 1.0
        if mixer is not None:
            cpu = {k: v.cpu() if k != "x" else v for k, v in batch.items()}
            x, pair, lam = mixer(cpu, g)
            batch = {**batch, "x": x}
            if lam < 1.0:
                partner = {k: v[pair.to(v.device)] for k, v in batch.items() if k != "x"}
        batch = {**batch, "x": random_erase(batch["x"], erase, g)}
        return batch, partner, lam
    return transform
