"""Optimisers and learning-rate schedules by name, from timm's factories (`train.optimizer`, `train.scheduler`).

Any optimiser timm knows (`timm.optim.list_optimizers()`: adamw, sgd (Nesterov), momentum, adam, madgrad,
adamp, lamb, lion, ...). Schedules: `onecycle` (the default: linear warm-up then cosine, per step),
`cosine` and `step` (timm's, with warm-up, updated every step), `plateau` (reduce-on-plateau on
validation macro F1, per epoch: torch's, whose state resumes; timm's deprecated one does not save its
counters), `none` (constant). Weight decay never applies to biases and norms.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn

SCHEDULES = ("onecycle", "cosine", "step", "plateau", "none")


def create_optimizer(module: nn.Module, name: str, lr: float, weight_decay: float, momentum: float = 0.9,
                     later: list[torch.Tensor] | None = None, later_lr_scale: float = 0.1) -> torch.optim.Optimizer:
    """`later`: parameters frozen now and unfrozen during the run (a freeze schedule): a group of their own at
    `later_lr_scale` x lr from the start (an optimiser skips parameters without gradients), so every
    schedule and a resumed checkpoint see the same groups throughout."""
    from timm.optim import create_optimizer_v2, list_optimizers

    if name not in list_optimizers():
        raise ValueError(f"train.optimizer={name!r}: not an optimiser timm knows (e.g. adamw, sgd, adam, madgrad, "
                         "adamp, lamb, lion; timm.optim.list_optimizers() has them all)")
    params = [p for p in module.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay},
              {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    if later:
        groups.append({"params": list(later), "weight_decay": weight_decay, "lr": lr * later_lr_scale})
    return create_optimizer_v2(groups, opt=name, lr=lr, weight_decay=weight_decay, momentum=momentum)


class Schedule:
    """One interface over torch's OneCycleLR and timm's schedulers: `batch()` after every optimiser step,
    `epoch(epoch, metric)` after every validation; state_dict for resume."""

    def __init__(self, opt: torch.optim.Optimizer, name: str, lr: float, epochs: int, steps_per_epoch: int,
                 warmup_frac: float, step_epochs: int = 1, decay_rate: float = 0.1, patience: int = 1):
        if name not in SCHEDULES:
            raise ValueError(f"train.scheduler={name!r}: choose from {', '.join(SCHEDULES)}")
        self.name, self.opt, self.updates = name, opt, 0
        # one inner scheduler (or none: a constant rate), and how it is driven: "batch" (torch, step() per
        # optimiser step), "timm" (step_update per step, step per epoch) or "plateau" (per epoch, on the metric)
        self.inner, self.drive = None, None
        total = epochs * steps_per_epoch
        if name == "onecycle" and total >= 4:  # under 4 steps in all: a constant learning rate
            # the warm-up must span at least 2 steps (OneCycleLR divides by its length - 1)
            self.inner, self.drive = torch.optim.lr_scheduler.OneCycleLR(
                opt, max_lr=[g.get("lr", lr) for g in opt.param_groups], total_steps=total,
                pct_start=min(max(warmup_frac, 2.0 / total), 0.5),
                anneal_strategy="cos", div_factor=20, final_div_factor=200), "batch"
        elif name == "plateau":
            self.inner, self.drive = torch.optim.lr_scheduler.ReduceLROnPlateau(
                opt, mode="max", factor=decay_rate, patience=patience - 1, threshold=0.0), "plateau"
        elif name in ("cosine", "step"):
            from timm.scheduler import create_scheduler_v2

            self.inner, _ = create_scheduler_v2(
                opt, sched=name, num_epochs=epochs, warmup_epochs=warmup_frac * epochs, warmup_lr=lr / 20,
                min_lr=lr / 200 if name == "cosine" else 0.0, decay_epochs=step_epochs, decay_rate=decay_rate,
                step_on_epochs=False, updates_per_epoch=steps_per_epoch)
            self.drive = "timm"

    def batch(self) -> None:
        self.updates += 1
        if self.drive == "batch":
            self.inner.step()
        elif self.drive == "timm":
            self.inner.step_update(self.updates)

    def epoch(self, epoch: int, metric: float | None) -> None:
        """`epoch` = epochs done; `metric` = this epoch's validation macro F1 (None off the main process)."""
        if self.drive == "timm":
            self.inner.step(epoch)
        elif self.drive == "plateau" and metric is not None:
            self.inner.step(metric)

    def last_lr(self) -> float:
        return float(self.opt.param_groups[0]["lr"])

    def state_dict(self) -> dict:
        return {"updates": self.updates, "inner": self.inner.state_dict() if self.inner is not None else None}

    def load_state_dict(self, state: dict) -> None:
        if "updates" not in state:  # a checkpoint from before train.scheduler: OneCycleLR's own state
            state = {"updates": state.get("_step_count", 1) - 1, "inner": state}
        self.updates = state["updates"]
        if self.inner is not None:
            self.inner.load_state_dict(state["inner"])


@dataclass
class Unfreeze:
    """A freeze schedule: `params` (frozen at the start) are trained from epoch `at` (1-based) on, at
    `lr_scale` x the learning rate; `enable()` makes them trainable (called again on resume)."""

    params: list[torch.Tensor]
    at: int
    lr_scale: float
    enable: Callable[[], None]
