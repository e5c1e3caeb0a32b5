"""The training loop: epochs, validation by 18-class macro F1, resumable state, DDP-ready.

It knows no file paths and no CLI: the caller passes datasets, a module to train, and a
`save(state, metrics, is_best)` callback that decides where checkpoints go.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler
from tqdm import tqdm

from ..evaluate import scores
from ..labels import encode
from ..models.heads import combine18


@dataclass
class LoopConfig:
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup_frac: float
    amp: bool
    seed: int
    workers: int = 0


def is_main() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def _to(batch: dict, device) -> dict:
    out = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    if out["x"].ndim == 4:
        out["x"] = out["x"].contiguous(memory_format=torch.channels_last)
    return out


@torch.inference_mode()
def collect_logits(module: nn.Module, ds: Dataset, batch_size: int, device, amp: bool = False) -> dict[str, np.ndarray]:
    """Run `module` over a dataset in order; returns numpy logits per head plus the targets."""
    module.eval()
    outs: dict[str, list] = {}
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=0)
    for batch in loader:
        b = _to(batch, device)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
            out = module(b["x"])
        for k, v in out.items():
            outs.setdefault(k, []).append(v.float().cpu())
        for k in ("mask", "gender", "age_band", "age"):
            outs.setdefault("t_" + k, []).append(batch[k])
    return {k: torch.cat(v).numpy() for k, v in outs.items()}


def logits_scores(lg: dict[str, np.ndarray], age_bias=None) -> dict:
    log18 = combine18({k: torch.from_numpy(lg[k]) for k in ("mask", "gender", "age")},
                      None if age_bias is None else torch.as_tensor(np.asarray(age_bias), dtype=torch.float32))
    y_pred = log18.argmax(1).numpy()
    y_true = encode(lg["t_mask"], lg["t_gender"], lg["t_age_band"])
    out = scores(y_true, y_pred)
    out["age_mae"] = float(np.abs(lg["age_years"] - lg["t_age"]).mean())
    return out


def fit(module: nn.Module, loss_fn: nn.Module, train_ds: Dataset, val_ds: Dataset, cfg: LoopConfig,
        device: torch.device, save: Callable[[dict, dict, bool], None], resume: dict | None = None,
        log: Callable[[str], None] = print, sampler: Sampler | None = None,
        val_parts: dict[str, np.ndarray] | None = None,
        batch_transform: Callable | None = None) -> dict:
    """Train `module` (its trainable parameters) and return the final training state.

    sampler: the order of training rows (train/samplers.py; None: shuffled). It needs `set_epoch`, and
    `set_shard(rank, world)` under DDP. val_parts: named index sets of the validation rows (data
    sources, say) also scored on their own, as `val_<name>_<metric>` columns.
    """
    torch.manual_seed(cfg.seed)
    module.to(device)
    model = module
    distributed = dist.is_initialized()
    if distributed:
        model = nn.parallel.DistributedDataParallel(
            module, device_ids=[device.index] if device.type == "cuda" else None)
    params = [p for p in module.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    if sampler is not None and distributed:
        sampler.set_shard(dist.get_rank(), dist.get_world_size())
    elif distributed:
        sampler = DistributedSampler(train_ds, shuffle=True, seed=cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    g_mix = torch.Generator().manual_seed(cfg.seed + 1)  # batch-mixing draws
    loader = DataLoader(train_ds, batch_size=cfg.batch_size, shuffle=sampler is None, sampler=sampler,
                        num_workers=cfg.workers, drop_last=len(train_ds) > cfg.batch_size, generator=g,
                        persistent_workers=cfg.workers > 0, pin_memory=device.type == "cuda")
    steps = cfg.epochs * len(loader)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(1, steps),
                                                pct_start=max(cfg.warmup_frac, 1e-3), anneal_strategy="cos",
                                                div_factor=20, final_div_factor=200)
    start, best, history = 0, -1.0, []
    if resume:
        module.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        sched.load_state_dict(resume["scheduler"])
        start, best, history = resume["epoch"] + 1, resume["best_f1"], resume["history"]
        torch.set_rng_state(resume["rng"])
        if "loader_rng" in resume:  # the shuffle order of the epochs still to come (saved since issue 11)
            g.set_state(resume["loader_rng"])
        if "mix_rng" in resume:
            g_mix.set_state(resume["mix_rng"])
        if device.type == "cuda" and "cuda_rng" in resume:
            torch.cuda.set_rng_state(resume["cuda_rng"], device)
        log(f"resumed after epoch {resume['epoch'] + 1}/{cfg.epochs} (best macro F1 so far {best:.4f})")
    state = resume or {}
    for epoch in range(start, cfg.epochs):
        t0 = time.time()
        if hasattr(train_ds, "set_epoch"):  # per-epoch augmentation / view draws
            train_ds.set_epoch(epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        model.train()
        run_loss, n = 0.0, 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", mininterval=2,
                   disable=False if is_main() else True, leave=False)
        for batch in bar:
            b = _to(batch, device)
            partner, lam = None, 1.0
            if batch_transform is not None:
                b, partner, lam = batch_transform(b, g_mix)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=cfg.amp and device.type == "cuda"):
                out = model(b["x"])
            loss, parts = loss_fn(out, b)
            if partner is not None:  # mixed rows: their partners' labels by weight
                loss = lam * loss + (1 - lam) * loss_fn(out, partner)[0]
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"epoch {epoch + 1}: loss is {loss.item()} (lower train.lr?)")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            run_loss += loss.item() * len(b["x"])
            n += len(b["x"])
            bar.set_postfix(loss=f"{run_loss / n:.4f}")
        metrics = {"epoch": epoch + 1, "train_loss": run_loss / max(n, 1), "lr": sched.get_last_lr()[0]}
        if is_main():
            lg = collect_logits(module, val_ds, cfg.batch_size * 2, device, cfg.amp)
            val = logits_scores(lg)
            metrics.update({f"val_{k}": v for k, v in val.items() if k != "n"})
            for name, idx in (val_parts or {}).items():
                part = logits_scores({k: v[idx] for k, v in lg.items()})
                metrics.update({f"val_{name}_{k}": part[k] for k in ("macro_f1", "mask_acc", "gender_acc", "age_acc")})
            metrics["seconds"] = round(time.time() - t0, 1)
            is_best = val["macro_f1"] > best
            best = max(best, val["macro_f1"])
            history.append(metrics)
            state = {"model": module.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                     "epoch": epoch, "best_f1": best, "history": history, "rng": torch.get_rng_state(),
                     "loader_rng": g.get_state(), "mix_rng": g_mix.get_state()}
            if device.type == "cuda":
                state["cuda_rng"] = torch.cuda.get_rng_state(device)
            save(state, metrics, is_best)
            log(f"epoch {epoch + 1}/{cfg.epochs}: loss {metrics['train_loss']:.4f}  val macro F1 "
                f"{val['macro_f1']:.4f}  mask {val['mask_acc']:.3f} gender {val['gender_acc']:.3f} "
                f"age {val['age_acc']:.3f}  ({metrics['seconds']}s){'  *best' if is_best else ''}")
        if distributed:
            dist.barrier()
    return state
