"""Loss registry and the multi-task loss (mask, gender, age band on soft targets + age regression)."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..labels import AGE_BOUNDS, TASK_SIZES
from ..registry import Registry

LOSSES = Registry("loss")
register_loss = LOSSES.register


def create_loss(name: str, **kwargs) -> Callable:
    """A per-sample loss fn(logits, target_probs) -> (B,) tensor."""
    return LOSSES.create(name, **kwargs)


@register_loss("ce")
def soft_cross_entropy(**_):
    def fn(logits, target):
        return -(target * F.log_softmax(logits.float(), 1)).sum(1)
    return fn


@register_loss("focal")
def focal(gamma: float = 2.0, **_):
    def fn(logits, target):
        logp = F.log_softmax(logits.float(), 1)
        return -(target * (1 - logp.exp()) ** gamma * logp).sum(1)
    return fn


def smooth_one_hot(y: torch.Tensor, n: int, eps: float) -> torch.Tensor:
    return F.one_hot(y.long(), n).float() * (1 - eps) + eps / n


def soft_age_targets(age: torch.Tensor, sigma: float, eps: float) -> torch.Tensor:
    """P(band | true age + N(0, sigma)) for the 3 bands: near-boundary ages get shared targets."""
    if sigma <= 0:
        bands = torch.bucketize(age, torch.tensor(AGE_BOUNDS, dtype=age.dtype, device=age.device), right=True)
        return smooth_one_hot(bands, 3, eps)
    edges = torch.tensor([b - 0.5 for b in AGE_BOUNDS], dtype=torch.float32, device=age.device)
    cdf = 0.5 * (1 + torch.erf((edges[None, :] - age.float()[:, None]) / (sigma * 2 ** 0.5)))
    p = torch.cat([cdf[:, :1], cdf[:, 1:] - cdf[:, :1], 1 - cdf[:, 1:]], 1)
    return p * (1 - eps) + eps / 3


def class_weights(counts: np.ndarray, mode: str) -> torch.Tensor:
    counts = np.maximum(np.asarray(counts, np.float64), 1)
    if mode == "none":
        w = np.ones_like(counts)
    elif mode == "sqrt":
        w = 1 / np.sqrt(counts)
    elif mode == "inverse":
        w = 1 / counts
    else:
        raise ValueError(f"unknown balance mode {mode!r}")
    return torch.tensor(w / (w * counts).sum() * counts.sum(), dtype=torch.float32)


class MultiTaskLoss(nn.Module):
    def __init__(self, train_cfg: dict, age_band_counts: np.ndarray):
        super().__init__()
        t = train_cfg
        self.fn = create_loss(t["loss"], gamma=t.get("focal_gamma", 2.0))
        self.eps = float(t["label_smoothing"])
        self.sigma = float(t["age_sigma"])
        self.task_w = {k: float(v) for k, v in t["task_weights"].items()}
        self.reg_w = float(t["age_regression"])
        self.register_buffer("age_w", class_weights(age_band_counts, t["age_balance"]))

    def forward(self, out: dict, batch: dict) -> tuple[torch.Tensor, dict]:
        parts = {}
        for task in ("mask", "gender"):
            tgt = smooth_one_hot(batch[task], TASK_SIZES[task], self.eps)
            parts[task] = self.fn(out[task], tgt).mean()
        age_t = soft_age_targets(batch["age"], self.sigma, self.eps)
        w = self.age_w.to(age_t.device)[batch["age_band"].long()]
        parts["age"] = (self.fn(out["age"], age_t) * w).sum() / w.sum()
        total = sum(self.task_w[k] * v for k, v in parts.items())
        if self.reg_w > 0:
            parts["age_reg"] = F.smooth_l1_loss(out["age_years"].float() / 10, batch["age"].float() / 10)
            total = total + self.reg_w * parts["age_reg"]
        return total, {k: float(v.detach()) for k, v in parts.items()}
