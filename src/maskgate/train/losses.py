"""Loss registry and the multi-task loss (mask, gender, age band on soft targets + age regression).

Every loss is made per head from that head's class count and its training class counts (never a fixed 3):
`fn(logits B x C, target probabilities B x C) -> (B,)`. A batch-level loss (soft-F1) gives its one value
to every sample. `train.loss` names one, or several joined by "+" (summed), e.g. `ce+soft_f1`.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..labels import AGE_BOUNDS, NUM_CLASSES, TASK_SIZES
from ..registry import Registry

LOSSES = Registry("loss")
register_loss = LOSSES.register


def create_loss(name: str, **kwargs) -> Callable:
    """A per-sample loss fn(logits, target_probs) -> (B,) tensor; "a+b" sums registered losses."""
    parts = [LOSSES.create(n.strip(), **kwargs) for n in name.split("+")]
    if len(parts) == 1:
        return parts[0]
    return lambda logits, target: sum(f(logits, target) for f in parts)


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


@register_loss("soft_f1")
def soft_f1(eps: float = 1e-6, **_):
    """1 - macro F1 over the head's classes, with probabilities for counts (differentiable): what the
    competition scores, on each batch. Batch-level: every sample carries the batch's value."""
    def fn(logits, target):
        p = F.softmax(logits.float(), 1)
        tp = (p * target).sum(0)
        fp = (p * (1 - target)).sum(0)
        fn_ = ((1 - p) * target).sum(0)
        present = target.sum(0) > 0  # classes absent from the batch (no target mass) do not count
        f1 = 2 * tp / (2 * tp + fp + fn_ + eps)
        loss = 1 - (f1[present].mean() if present.any() else f1.mean())
        return loss.expand(len(logits))
    return fn


@register_loss("ldam")
def ldam(counts=None, max_margin: float = 0.5, scale: float = 1.0, **_):
    """Label-distribution-aware margins (Cao et al. 2019): the true class's logit is lowered by a margin
    proportional to n_c^(-1/4), largest (`max_margin`) for the rarest class, so rare classes need a wider
    lead. Soft targets lower each class's logit by its target mass times its margin."""
    if counts is None:
        raise ValueError("loss 'ldam' needs the head's training class counts")
    m = np.maximum(np.asarray(counts, np.float64), 1) ** -0.25
    margins = torch.tensor(m / m.max() * max_margin, dtype=torch.float32)

    def fn(logits, target):
        z = (logits.float() - target * margins.to(logits.device)[None, :]) * scale
        return -(target * F.log_softmax(z, 1)).sum(1)
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
    """counts: training class counts per head ({"mask": (3,), "gender": (2,), "age": (3,)}); a bare array is
    the age bands' (the mask and gender heads then count as balanced)."""

    def __init__(self, train_cfg: dict, counts: dict | np.ndarray, head: str = "multi"):
        super().__init__()
        t = train_cfg
        if not isinstance(counts, dict):
            counts = {"age": np.asarray(counts)}
        sizes = {**TASK_SIZES, "class18": NUM_CLASSES}
        counts = {task: np.asarray(counts.get(task, np.ones(n)), np.float64) for task, n in sizes.items()}
        self.head = head
        tasks = ["class18"] if head == "class18" else list(TASK_SIZES)
        self.fns = {task: create_loss(t["loss"], gamma=t.get("focal_gamma", 2.0), counts=counts[task],
                                      max_margin=t.get("ldam_margin", 0.5)) for task in tasks}
        self.eps = float(t["label_smoothing"])
        self.sigma = float(t["age_sigma"])
        self.task_w = {k: float(v) for k, v in t["task_weights"].items()}
        self.reg_w = float(t["age_regression"])
        self.register_buffer("age_w", class_weights(counts["age"], t["age_balance"]))
        balance = t.get("class_balance") or {}
        for task in ("mask", "gender"):  # class-weighted loss for the other heads (none = plain)
            self.register_buffer(f"{task}_w", class_weights(counts[task], balance.get(task, "none")))
        by_age = [float(v) for v in t.get("gender_by_age", [1.0, 1.0, 1.0])]
        if head == "class18" and by_age != [1.0, 1.0, 1.0]:
            raise ValueError("train.gender_by_age weighs the gender head's loss: it needs the three heads, not "
                             "model.head: class18")
        self.register_buffer("gender_by_age", torch.tensor(by_age, dtype=torch.float32))

    def forward(self, out: dict, batch: dict) -> tuple[torch.Tensor, dict]:
        if self.head == "class18":
            return self._forward18(out, batch)
        parts = {}
        for task in ("mask", "gender"):
            tgt = smooth_one_hot(batch[task], TASK_SIZES[task], self.eps)
            w = getattr(self, f"{task}_w").to(tgt.device)[batch[task].long()]
            if task == "gender":  # rows of some age bands may count more (train.gender_by_age)
                w = w * self.gender_by_age.to(tgt.device)[batch["age_band"].long()]
            parts[task] = (self.fns[task](out[task], tgt) * w).sum() / w.sum()
        age_t = soft_age_targets(batch["age"], self.sigma, self.eps)
        w = self.age_w.to(age_t.device)[batch["age_band"].long()]
        parts["age"] = (self.fns["age"](out["age"], age_t) * w).sum() / w.sum()
        return self._plus_age_regression(sum(self.task_w[k] * v for k, v in parts.items()), parts, out, batch)

    def _plus_age_regression(self, total: torch.Tensor, parts: dict, out: dict, batch: dict) -> tuple[torch.Tensor, dict]:
        """Every head kind: + the auxiliary age-in-years regression; (total, parts as floats)."""
        if self.reg_w > 0:
            parts["age_reg"] = F.smooth_l1_loss(out["age_years"].float() / 10, batch["age"].float() / 10)
            total = total + self.reg_w * parts["age_reg"]
        return total, {k: float(v.detach()) for k, v in parts.items()}

    def _forward18(self, out: dict, batch: dict) -> tuple[torch.Tensor, dict]:
        """One 18-way head: its target is the product of the three heads' (smoothed, soft-age) targets,
        its row weight the product of their class weights; task_weights do not apply."""
        tm = smooth_one_hot(batch["mask"], TASK_SIZES["mask"], self.eps)
        tg = smooth_one_hot(batch["gender"], TASK_SIZES["gender"], self.eps)
        ta = soft_age_targets(batch["age"], self.sigma, self.eps)
        target = (tm[:, :, None, None] * tg[:, None, :, None] * ta[:, None, None, :]).flatten(1)
        w = (self.mask_w.to(target.device)[batch["mask"].long()] * self.gender_w.to(target.device)[batch["gender"].long()]
             * self.age_w.to(target.device)[batch["age_band"].long()])
        parts = {"class18": (self.fns["class18"](out["class18"], target) * w).sum() / w.sum()}
        return self._plus_age_regression(parts["class18"], parts, out, batch)
