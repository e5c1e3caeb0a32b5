"""Stochastic weight averaging within one run (`train.swa_epochs`): a seed soup's gain for one run's time.

Souping the weights of several runs (`maskgate soup`) scored well above each run, but costs a run per
member. SWA (Izmailov et al. 2018, `torch.optim.swa_utils`) takes the members from one run instead: after
the main schedule, `swa_epochs` more epochs each restart the learning rate at `swa_lr` x lr and anneal it
(cosine) to lr / 200; the weights at the end of the main schedule and of every SWA epoch are averaged, and
the average's batch-norm statistics are measured again on training batches (averaged weights do not
match averaged statistics). The loop validates the average like any epoch, so the best checkpoint is
still picked by validation macro F1.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, Sampler

from ..device import images_to


def swa_lr_factor(step: int, steps: int, swa_lr: float) -> float:
    """Learning-rate multiplier (of the optimiser's base rate) at `step` of an SWA epoch of `steps`
    steps: cosine from `swa_lr` down to 1/200."""
    lo = 1.0 / 200
    t = step / max(steps - 1, 1)
    return lo + (swa_lr - lo) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))


class WeightAverage:
    """The running mean of a module's state (parameters and floating buffers); resumable."""

    def __init__(self):
        self.n = 0
        self.avg: dict[str, torch.Tensor] | None = None

    def add(self, module: nn.Module) -> None:
        sd = {k: v.detach().to("cpu", torch.float32, copy=True) if v.is_floating_point() else v.detach().cpu().clone()
              for k, v in module.state_dict().items()}
        if self.avg is None:
            self.avg = sd
        else:
            for k, v in sd.items():
                if v.is_floating_point():
                    self.avg[k] = self.avg[k] + (v - self.avg[k]) / (self.n + 1)  # new tensors: saved states stay
                else:
                    self.avg[k] = v
        self.n += 1

    def model(self, module: nn.Module) -> nn.Module:
        """A copy of `module` holding the average."""
        out = copy.deepcopy(module)
        ref = module.state_dict()
        out.load_state_dict({k: v.to(ref[k].dtype) for k, v in self.avg.items()})
        return out

    def state_dict(self) -> dict:
        return {"n": self.n, "avg": dict(self.avg) if self.avg is not None else None}

    def load_state_dict(self, state: dict) -> None:
        self.n, self.avg = int(state["n"]), dict(state["avg"]) if state["avg"] is not None else None


@torch.no_grad()
def refresh_norms(net: nn.Module, ds: Dataset, batch_size: int, device: torch.device, batches: int,
                  seed: int, sampler: Sampler | None = None, workers: int = 0) -> int:
    """Measure `net`'s batch-norm statistics again (cumulative mean over up to `batches` training batches,
    as `torch.optim.swa_utils.update_bn`); rows in the training sampler's order, else a seeded shuffle.
    The global random state is left as it was, so a resumed run draws the same numbers. Returns the
    number of batches used (0 when `net` has no batch norm)."""
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or batches <= 0:
        return 0
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    g = torch.Generator().manual_seed(seed)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=sampler is None, sampler=sampler, generator=g,
                        num_workers=workers)
    was_training = net.training
    net.train()
    used = 0
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        for batch in loader:
            if used >= batches:
                break
            net(images_to(batch["x"], device))
            used += 1
    for m, mom in zip(norms, momenta):
        m.momentum = mom
    net.train(was_training)
    return used
