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

from ..device import batch_to
from ..evaluate import scores
from ..labels import encode
from ..models.heads import combine18
from .optim import Schedule, Unfreeze, create_optimizer
from .swa import WeightAverage, refresh_norms, swa_lr_factor


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
    optimizer: str = "adamw"     # any timm optimiser (train/optim.py)
    momentum: float = 0.9
    scheduler: str = "onecycle"  # onecycle | cosine | step | plateau | none
    step_epochs: int = 1         # step: decay every N epochs; plateau: patience
    decay_rate: float = 0.1
    early_stop: int = 0          # stop after N epochs without a better validation macro F1 (0 = never)
    swa_epochs: int = 0          # epochs of weight averaging after the schedule (train/swa.py; 0 = none)
    swa_lr: float = 0.25         # each SWA epoch anneals from this x lr down to lr / 200
    swa_bn_batches: int = 50     # training batches that measure the average's batch-norm statistics


def is_main() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


@torch.inference_mode()
def collect_logits(module: nn.Module, ds: Dataset, batch_size: int, device, amp: bool = False,
                   workers: int = 0) -> dict[str, np.ndarray]:
    """Run `module` over a dataset in order; returns numpy logits per head plus the targets.

    `workers`: loader processes that prepare the rows (the on-the-fly path's images). In the loop's own
    process, with its full OpenCV and PyTorch thread pools, that work crawls when the cores are busy
    (other runs' loaders on one machine): one epoch's validation outlasted its training many times over."""
    module.eval()
    outs: dict[str, list] = {}
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers)
    for batch in loader:
        b = batch_to(batch, device)
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
        batch_transform: Callable | None = None, unfreeze: Unfreeze | None = None) -> dict:
    """Train `module` (its trainable parameters) and return the final training state.

    sampler: the order of training rows (train/samplers.py; None: shuffled). It needs `set_epoch`, and
    `set_shard(rank, world)` under DDP. val_parts: named index sets of the validation rows (data
    sources, say) also scored on their own, as `val_<name>_<metric>` columns. unfreeze: a freeze schedule
    (train/optim.py): parameters trained from a later epoch on.
    """
    torch.manual_seed(cfg.seed)
    module.to(device)
    model = module
    distributed = dist.is_initialized()
    if distributed:
        model = nn.parallel.DistributedDataParallel(
            module, device_ids=[device.index] if device.type == "cuda" else None)
    if unfreeze is not None and distributed:
        raise ValueError("model.unfreeze_at is not supported under DDP yet (DDP fixes its parameters at the start)")
    opt = create_optimizer(module, cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum,
                           later=unfreeze.params if unfreeze else None,
                           later_lr_scale=unfreeze.lr_scale if unfreeze else 0.1)
    if sampler is not None and distributed:
        sampler.set_shard(dist.get_rank(), dist.get_world_size())
    elif distributed:
        sampler = DistributedSampler(train_ds, shuffle=True, seed=cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    g_mix = torch.Generator().manual_seed(cfg.seed + 1)  # batch-mixing draws
    loader = DataLoader(train_ds, batch_size=cfg.batch_size, shuffle=sampler is None, sampler=sampler,
                        num_workers=cfg.workers, drop_last=len(train_ds) > cfg.batch_size, generator=g,
                        persistent_workers=cfg.workers > 0, pin_memory=device.type == "cuda")
    base_lrs = [grp["lr"] for grp in opt.param_groups]  # before a schedule rewrites them (SWA epochs restart from them)
    sched = Schedule(opt, cfg.scheduler, cfg.lr, cfg.epochs, len(loader), cfg.warmup_frac, cfg.step_epochs,
                     cfg.decay_rate, patience=cfg.step_epochs)
    start, best, history = 0, -1.0, []
    total = cfg.epochs + cfg.swa_epochs
    avg = WeightAverage()
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
        if "swa" in resume:
            avg.load_state_dict(resume["swa"])
        if device.type == "cuda" and "cuda_rng" in resume:
            torch.cuda.set_rng_state(resume["cuda_rng"], device)
        log(f"resumed after epoch {resume['epoch'] + 1}/{total} (best macro F1 so far {best:.4f})")
        if cfg.early_stop and start < cfg.epochs and _epochs_since_best(history) >= cfg.early_stop:
            start = total  # it had stopped early: nothing left to train
    state = resume or {}
    for epoch in range(start, total):
        t0 = time.time()
        in_swa = epoch >= cfg.epochs  # an SWA epoch: its own annealing, not the schedule's
        if hasattr(train_ds, "set_epoch"):  # per-epoch augmentation / view draws
            train_ds.set_epoch(epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        if unfreeze is not None and epoch + 1 >= unfreeze.at:
            if epoch + 1 == unfreeze.at or epoch == start:
                log(f"epoch {epoch + 1}: frozen blocks unfrozen (lr x{unfreeze.lr_scale})")
            unfreeze.enable()
        model.train()
        run_loss, n = 0.0, 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{total}" + (" (swa)" if in_swa else ""), unit="batch",
                   mininterval=2, disable=False if is_main() else True, leave=False)
        for step, batch in enumerate(bar):
            if in_swa:
                f = swa_lr_factor(step, len(loader), cfg.swa_lr)
                for grp, lr0 in zip(opt.param_groups, base_lrs):
                    grp["lr"] = lr0 * f
            b = batch_to(batch, device)
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
            if not in_swa:
                sched.batch()
            run_loss += loss.item() * len(b["x"])
            n += len(b["x"])
            bar.set_postfix(loss=f"{run_loss / n:.4f}", refresh=False)  # redrawn at mininterval, not per batch
        metrics = {"epoch": epoch + 1, "train_loss": run_loss / max(n, 1), "lr": sched.last_lr()}
        if cfg.swa_epochs and epoch + 1 >= cfg.epochs:  # the schedule's last weights, then every SWA epoch's
            avg.add(module)
        net = module
        if in_swa:
            metrics["swa_members"] = avg.n
        # this epoch's validation macro F1 and epochs since the best one, shared by every rank under DDP
        score = torch.zeros(2, device=device if device.type == "cuda" else "cpu")
        if is_main():
            if in_swa:  # validate (and keep, if best) the average, with its own batch-norm statistics
                net = avg.model(module)
                refresh_norms(net, train_ds, cfg.batch_size, device, cfg.swa_bn_batches, cfg.seed + epoch,
                              sampler, cfg.workers)
            lg = collect_logits(net, val_ds, cfg.batch_size * 2, device, cfg.amp, cfg.workers)
            val = logits_scores(lg)
            metrics.update({f"val_{k}": v for k, v in val.items() if k != "n"})
            for name, idx in (val_parts or {}).items():
                part = logits_scores({k: v[idx] for k, v in lg.items()})
                metrics.update({f"val_{name}_{k}": part[k] for k in ("macro_f1", "mask_acc", "gender_acc", "age_acc")})
            metrics["seconds"] = round(time.time() - t0, 1)
            is_best = val["macro_f1"] > best
            best = max(best, val["macro_f1"])
            history.append(metrics)
            score[0], score[1] = val["macro_f1"], _epochs_since_best(history)
        if distributed:
            dist.broadcast(score, 0)
        if not in_swa:
            sched.epoch(epoch + 1, float(score[0]))  # before the save: the schedule's step is part of the state
        if is_main():
            state = {"model": module.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                     "epoch": epoch, "best_f1": best, "history": history, "rng": torch.get_rng_state(),
                     "loader_rng": g.get_state(), "mix_rng": g_mix.get_state()}
            if avg.n:
                state["swa"] = avg.state_dict()
            if in_swa:  # the weights validated this epoch (the average), for the best checkpoint
                state["swa_model"] = net.state_dict()
            if device.type == "cuda":
                state["cuda_rng"] = torch.cuda.get_rng_state(device)
            save(state, metrics, is_best)
            log(f"epoch {epoch + 1}/{total}{' (swa of ' + str(avg.n) + ')' if in_swa else ''}: loss {metrics['train_loss']:.4f}  val macro F1 "
                f"{val['macro_f1']:.4f}  mask {val['mask_acc']:.3f} gender {val['gender_acc']:.3f} "
                f"age {val['age_acc']:.3f}  lr {metrics['lr']:.2e}  ({metrics['seconds']}s)"
                f"{'  *best' if is_best else ''}")
        stale = int(score[1])
        if cfg.early_stop and stale >= cfg.early_stop and epoch + 1 < cfg.epochs:  # SWA epochs always run
            log(f"early stop after epoch {epoch + 1}: no better validation macro F1 for {stale} epochs "
                f"(train.early_stop={cfg.early_stop})")
            break
        if distributed:
            dist.barrier()
    return state


def _epochs_since_best(history: list[dict]) -> int:
    f1 = [h["val_macro_f1"] for h in history]
    return len(f1) - 1 - int(np.argmax(f1)) if f1 else 0
