"""`maskgate train`: data -> person split -> face crops -> (cached trunk features) -> loop -> bundle.

This is the one place that knows paths: the run folder gets config.yaml, metrics.csv, metrics.png,
train.log, split.csv, last.pt (full training state, resumable) and best.pt (the predict bundle),
all written atomically.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist

from .. import __version__
from ..config import complete_saved, dump_config
from ..data.duplicates import dhash_image, duplicate_groups
from ..data.layout import LayoutError, read_train
from ..data.sources import SourceSpec, read_labelled
from ..device import resolve_device
from ..data.splits import kfold_people, split_people
from ..faces.cache import CropCache, default_cache_root
from ..faces.crop import CropSettings
from ..labels import Mask, encode
from ..models.backbones import packaged_weights_path
from ..models.heads import combine18
from ..models.classifier import MaskClassifier, MaskgateNet, Preprocess, atomic_torch_save
from ..models.preprocess import tta_mode
from ..models.transfer import init_from_model
from .calibrate import tune_age_bias
from .features import (FeatureDataset, ImageDataset, cache_finished, cache_trunk_features, feature_cache_key,
                       targets_from)
from .trunk_runner import resolve_trunk_runtime, trunk_runner
from .loop import LoopConfig, collect_logits, fit, is_main, logits_scores
from .age_rules import kept_by_age, shift_old_age
from .losses import MultiTaskLoss
from .mixing import make_batch_transform
from .optim import Unfreeze
from .images import NO_DRAW, RowImages, crop_landmarks
from .mask_look import pasted_mask_alphas
from .samplers import balance_classes, balance_weights, create_sampler, source_shares
from .tracking import RunTracker, label_grid, most_wrong


FEATURE_CACHE_VERSION = 2  # bump when the code that makes cached views changes (old caches are then ignored)
SYNTH_VERSION = 1  # likewise for the code that draws masks on extra sources' faces
STATE_CLASSES = {"wear": Mask.WEAR, "incorrect": Mask.INCORRECT, "not_wear": Mask.NOT_WEAR}


def expand_states(table: pd.DataFrame, states: dict[str, int]) -> pd.DataFrame:
    """One row per photo and drawn mask class: `states` says how many rows of each class a photo gives
    (`wear: 1, incorrect: 1, not_wear: 1`: a masked, a wrongly masked and the bare face). Rows of a
    photo stay together."""
    reps = [(STATE_CLASSES[k], int(n)) for k, n in states.items() for _ in range(int(n))]
    out = table.loc[table.index.repeat(len(reps))].reset_index(drop=True)
    mask = np.tile([int(m) for m, _ in reps], len(table))
    out["mask"] = mask
    out["draw"] = mask
    out["label"] = encode(mask, out["gender"].to_numpy(), out["age_band"].to_numpy())
    return out


class RunExistsError(FileExistsError):
    pass


def init_distributed(device_name: str) -> bool:
    """Under torchrun (WORLD_SIZE > 1) join the process group; the loop then wraps the model in DDP.
    True when this call made the group (its caller then destroys it)."""
    if int(os.environ.get("WORLD_SIZE", 1)) > 1 and not dist.is_initialized():
        use_nccl = device_name != "cpu" and torch.cuda.is_available()
        if use_nccl:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group("nccl" if use_nccl else "gloo")
        return True
    return False


def _barrier():
    if dist.is_initialized():
        dist.barrier()


def duplicate_groups_of(samples: pd.DataFrame, crops: np.ndarray, rows: np.ndarray, near: int = 0) -> dict[str, str]:
    """Person ids whose face crops (crops[rows], one per sample) are the same picture (equal difference
    hashes, or >= 2 photos within `near` bits; flat crops ignored)."""
    hashes = np.array([dhash_image(crops[i]) for i in rows], np.uint64)
    usable = np.array([float(crops[i][::4, ::4].std()) > 8.0 for i in rows])
    return duplicate_groups(samples["person"].to_numpy(), hashes, usable, near=near)


def build_preprocess(cfg: dict) -> Preprocess:
    f, m = cfg["face"], cfg["model"]
    crop = CropSettings.from_config(f)
    # YAML reads a bare off / on as false / true: tta_mode takes those too
    return Preprocess(crop=crop, input_size=int(m["input_size"]), tta=tta_mode(m["tta"], "off"),
                      tta_below=float(m["tta_below"]))


def plot_history(history: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = pd.DataFrame(history)
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    ax[0].plot(h["epoch"], h["train_loss"], "o-")
    ax[0].set_title("train loss")
    for k in ("val_macro_f1", "val_mask_acc", "val_gender_acc", "val_age_acc"):
        ax[1].plot(h["epoch"], h[k], "o-", label=k[4:])
    ax[1].set_title("validation")
    ax[1].legend(fontsize=8)
    for a in ax:
        a.set_xlabel("epoch")
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_val_predictions(path: Path, rows: pd.DataFrame, lg: dict, bias: np.ndarray,
                          source_names: list[str] | None = None) -> pd.DataFrame:
    """Each validation row's truth and prediction with its 18 probabilities (k-fold: out-of-fold
    predictions; label-noise reports read them). With extra sources, a `source` column names each row's
    source (an extra source's photo gives one row per drawn mask state, so its path repeats)."""
    log18 = combine18({k: torch.from_numpy(lg[k]) for k in ("mask", "gender", "age")},
                      torch.as_tensor(bias, dtype=torch.float32))
    p = log18.exp().numpy()
    table = pd.DataFrame({"path": rows["path"].to_numpy(), "person": rows["person"].astype(str).to_numpy(),
                          "true": encode(lg["t_mask"], lg["t_gender"], lg["t_age_band"]), "pred": p.argmax(1),
                          "confidence": p.max(1).round(5)})
    if source_names is not None:
        table.insert(2, "source", [source_names[k] for k in rows["source"].to_numpy()])
    table = pd.concat([table, pd.DataFrame(p.round(5), columns=[f"p{k}" for k in range(18)])], axis=1)
    tmp = path.with_name(f".{path.name}.tmp")
    table.to_csv(tmp, index=False)
    os.replace(tmp, path)
    return table


def _wrong_grid(vp: pd.DataFrame, rows: pd.DataFrame, cache: CropCache, pre: Preprocess, seed: int, cfg: dict,
                k: int = 16) -> np.ndarray:
    """The validation rows the model got most wrong, as it saw them (masks drawn as in validation)."""
    probs = vp[[f"p{c}" for c in range(18)]].to_numpy()
    idx = most_wrong(probs, vp["true"].to_numpy(), k)
    paths = rows["path"].to_numpy()[idx].tolist()
    crops, _, landmarks, _, _ = cache.crop_all(paths, workers=1, desc="most-wrong crops")
    draw = rows["draw"].to_numpy()[idx] if "draw" in rows else None
    images = RowImages(crops, None, draw, crop_landmarks(landmarks, pre.crop), pre.crop,
                       cfg.get("synth", {}).get("incorrect_kinds"))
    pictures = [images.image(i, (seed, 0)) for i in range(len(idx))]  # view 0: what validation scored
    true = vp["true"].to_numpy()[idx]
    return label_grid(pictures, true.tolist(), vp["pred"].to_numpy()[idx].tolist(),
                      probs[idx, true].tolist())


def run_training(train_dir: str | os.PathLike, out_dir: str | os.PathLike, cfg: dict, resume: bool = False) -> dict:
    """Train one run into `out_dir` (resuming from its last.pt with `resume`); its summary.

    Under torchrun the process group made here is destroyed once every rank has finished: a process that
    exits with it alive can abort in gloo's threads at interpreter shutdown (SIGABRT, "terminate called
    without an active exception"). After a failure it is left alone (destroying it then can deadlock).
    """
    owned = init_distributed(cfg["device"])
    summary = _run_training(train_dir, out_dir, cfg, resume)
    if owned:
        dist.destroy_process_group()
    return summary


def _run_training(train_dir: str | os.PathLike, out_dir: str | os.PathLike, cfg: dict, resume: bool) -> dict:
    device = resolve_device(cfg["device"])
    out = Path(out_dir)
    t_start = time.time()
    if is_main():
        if (out / "last.pt").exists() and not resume:
            raise RunExistsError(f"{out}: holds a run already (last.pt); pass --resume to continue it, "
                                 "or choose another --out")
        out.mkdir(parents=True, exist_ok=True)
    _barrier()
    logf = open(out / "train.log", "a") if is_main() else None

    def log(msg: str) -> None:
        if is_main():
            line = f"[{datetime.now().strftime('%H:%M:%S')}] {msg}"
            print(line, flush=True)
            logf.write(line + "\n")
            logf.flush()

    resume_state = None
    if resume:
        if not (out / "last.pt").is_file():
            raise FileNotFoundError(f"{out}/last.pt: nothing to resume")
        resume_state = torch.load(out / "last.pt", map_location="cpu", weights_only=False)
        cfg = complete_saved(resume_state["config"])  # a resumed run continues with the config it started with
        log(f"resuming {out}")
    if is_main():
        dump_config(cfg, out / "config.yaml")
    seed = int(cfg["seed"])
    torch.manual_seed(seed)
    if device.type == "cpu":
        torch.set_num_threads(max(1, os.cpu_count() or 1))

    if not cfg["model"].get("init") and cfg["model"]["weights"] == "packaged":
        packaged_weights_path(cfg["model"]["backbone"])  # a missing weights package fails now, not after the crops

    # data -> person split (each source split on its own, so the main layout's split never depends on them)
    samples = read_train(train_dir, verify_images=False)  # images are decoded (and checked) by the crop pass
    d = cfg["data"]
    if d["max_people"] and d["max_people"] < samples["person"].nunique():
        frac = d["max_people"] / samples["person"].nunique()
        _, keep = split_people(samples, frac, seed)
        samples = samples[samples["person"].isin(keep)].reset_index(drop=True)
    specs = [SourceSpec.parse(e) for e in d.get("extra") or []]
    sources = [{"name": "main", "path": str(train_dir), "people": int(samples["person"].nunique()),
                "rows": len(samples), "weight": 1.0, "share": None}]
    parts_of_samples = [samples.assign(source=0, draw=NO_DRAW)]
    extra_splits = []
    for k, spec in enumerate(specs, start=1):
        table = read_labelled(spec.path)
        extra_splits.append(split_people(table, float(d["val_fraction"]), seed))
        rows = expand_states(table, cfg["synth"]["states"]).assign(source=k)
        parts_of_samples.append(rows)
        sources.append({"name": spec.name, "path": spec.path, "people": len(table), "rows": len(rows),
                        "weight": spec.weight, "share": spec.share})
    n_main = len(samples)
    main_samples = samples
    samples = pd.concat(parts_of_samples, ignore_index=True) if specs else parts_of_samples[0]

    # faces
    pre = build_preprocess(cfg)
    cache_root = Path(cfg["cache_dir"]).expanduser() if cfg["cache_dir"] else default_cache_root()
    cache = CropCache(cache_root, pre.crop)
    crop_of_row, paths = pd.factorize(samples["path"])  # a photo of an extra source is cropped once
    if not is_main():
        _barrier()
    crops, found, landmarks, keys, problems = cache.crop_all(list(paths), workers=int(cfg["workers"]))
    if is_main():
        _barrier()
    if problems:
        raise LayoutError(train_dir, problems)

    # person split (each source on its own, so the main layout's split never depends on them); ids that
    # share a photo stay on one side
    groups = None
    if d.get("group_duplicates", True):
        groups = duplicate_groups_of(main_samples, crops, crop_of_row[:n_main], int(d["duplicate_near"]))
        if groups:
            log(f"{len(groups)} person ids share a photo with another id: kept together in "
                f"{len(set(groups.values()))} groups on one side of the split (data.group_duplicates)")
    if int(d["folds"]) >= 2:
        train_ids, val_ids = kfold_people(main_samples, int(d["folds"]), seed, groups)[int(d["fold"])]
    else:
        train_ids, val_ids = split_people(main_samples, float(d["val_fraction"]), seed, groups)
    log(f"{n_main} images of {main_samples['person'].nunique()} people: {len(train_ids)} people train, "
        f"{len(val_ids)} validate (split by person)")
    for spec, (tr_k, va_k), src in zip(specs, extra_splits, sources[1:]):
        val_ids, train_ids = set(val_ids) | va_k, set(train_ids) | tr_k
        log(f"extra source {spec.name} ({spec.path}): {src['people']} people, {src['rows']} rows "
            f"(masks drawn: {cfg['synth']['states']}); {len(tr_k)} train, {len(va_k)} validate")
    is_val = samples["person"].isin(val_ids).to_numpy()
    if is_main():
        cols = ["path", "person", "label", "split"] + (["source"] if specs else [])
        samples.assign(split=np.where(is_val, "val", "train"),
                       source=[sources[k]["name"] for k in samples["source"]])[cols].to_csv(out / "split.csv",
                                                                                          index=False)
    log(f"face found in {found.mean():.1%} of images (the rest take the fallback crop)")
    alphas = None
    if cfg["augment"].get("mask_look"):  # the main layout's rows come first, one crop each
        main = samples.iloc[:n_main]
        alphas = pasted_mask_alphas(main, crops[:n_main], landmarks[:n_main], pre.crop)
        if len(samples) > n_main:
            alphas = np.concatenate([alphas, np.zeros((len(samples) - n_main,) + alphas.shape[1:], alphas.dtype)])
        n_masked = int((main["mask"] != Mask.NOT_WEAR).sum())
        log(f"mask-look augmentation: pasted-mask outline found in {int(alphas.any((1, 2)).sum())} of "
            f"{n_masked} masked images (the rest keep their own look)")
    draw = samples["draw"].to_numpy()
    images = RowImages(crops, crop_of_row, draw, crop_landmarks(landmarks, pre.crop) if specs else None, pre.crop,
                       cfg.get("synth", {}).get("incorrect_kinds"))
    keys = [keys[c] for c in crop_of_row]

    # model and datasets
    m, t = cfg["model"], cfg["train"]
    net = MaskgateNet(m["backbone"], "none" if m.get("init") else m["weights"], int(m["freeze_blocks"]),
                      float(m["dropout"]), m["head"])
    init_digest = None
    if m.get("init"):
        init_digest = init_from_model(net, m["init"])
        how = "batch norms frozen: graph-only model" if net.frozen_bn else "its weights"
        log(f"network initialised from {m['init']} ({how})")
    loop_seed = seed if t.get("seed") is None else int(t["seed"])  # batch order, dropout, views drawn
    targets = targets_from(samples)
    tr_idx, va_idx = np.nonzero(~is_val)[0], np.nonzero(is_val)[0]
    if t.get("drop_ages"):  # boundary ages left out of training (train/age_rules.py); validation keeps them
        keep = kept_by_age(targets["age"][tr_idx], t["drop_ages"])
        log(f"train.drop_ages {t['drop_ages']}: {int((~keep).sum())} of {len(tr_idx)} training rows left out")
        tr_idx = tr_idx[keep]
    train_targets = shift_old_age({k: v[tr_idx] for k, v in targets.items()}, int(t.get("old_age_from", 60)))
    sub = lambda idx: {k: v[idx] for k, v in targets.items()}  # noqa: E731
    if t["cache_features"] and net.trunk is not None:
        parts = {"backbone": m["backbone"], "weights": m["weights"], "k": net.freeze_blocks, "pre": repr(pre),
                 "views": t["views"], "aug": cfg["augment"], "seed": seed, "v": FEATURE_CACHE_VERSION}
        if m.get("init"):  # another model's trunk: its weights are part of what the features are
            parts["init"] = init_digest
        if specs:  # drawn masks: which rows get them, and the code that draws them
            parts.update(synth=cfg["synth"], synth_v=SYNTH_VERSION,
                         draw=hashlib.sha1(np.ascontiguousarray(draw).tobytes()).hexdigest())
        asked = t.get("trunk_runtime") or "auto"
        runtime = resolve_trunk_runtime(asked, device)
        if runtime != "torch":  # outputs agree to ~1e-4 (below fp16), but a cache says what made it
            parts["runtime"] = runtime
        fpath = cache_root / "features" / f"{feature_cache_key(keys, parts)}.npy"
        if not is_main():
            _barrier()
        run, used = None, runtime  # a finished cache is read: the trunk does not run
        if not cache_finished(fpath):
            run, used = trunk_runner(net.trunk, device, runtime, pre.input_size, fallback=asked == "auto")
            log(f"frozen trunk runs on {used} to cache its outputs (train.trunk_runtime={asked})")
        # images made beside onnxruntime gain ~1.5x; beside eager PyTorch's own threads they gain nothing
        feats = cache_trunk_features(run, images, pre, cfg["augment"], int(t["views"]), fpath, seed,
                                     8 if device.type == "cpu" else 128, mask_alphas=alphas,
                                     prefetch=used == "onnxruntime")
        if is_main():
            _barrier()
        train_ds = FeatureDataset(np.ascontiguousarray(feats[tr_idx]), train_targets, train=True, seed=loop_seed)
        val_ds = FeatureDataset(np.ascontiguousarray(feats[va_idx, :1]), sub(va_idx), train=False)
        module = net.tail
        log(f"cached frozen-trunk outputs {tuple(feats.shape)} at {fpath}")
    else:
        train_ds = ImageDataset(images.subset(tr_idx), train_targets, pre, cfg["augment"], seed,
                                None if alphas is None else alphas[tr_idx])
        val_ds = ImageDataset(images.subset(va_idx), sub(va_idx), pre, None, seed)
        n_ready = val_ds.prepare_drawn(int(cfg["workers"])) if is_main() else 0  # only rank 0 validates
        if n_ready:
            log(f"validation: masks drawn once on {n_ready} rows of extra sources (kept for every epoch)")
        module = net
    del crops, alphas, images
    counts = {task: np.bincount(train_targets[key], minlength=n)
              for task, key, n in (("mask", "mask", 3), ("gender", "gender", 2), ("age", "age_band", 3))}
    class18 = encode(train_targets["mask"], train_targets["gender"], train_targets["age_band"])
    counts["class18"] = np.bincount(class18, minlength=18)
    loss_fn = MultiTaskLoss(t, counts, m["head"]).to(device)
    arch = {"backbone": m["backbone"], "freeze_blocks": net.freeze_blocks, "dropout": float(m["dropout"]),
            "head": m["head"]}

    def bundle(age_bias=None, info=None) -> MaskClassifier:
        return MaskClassifier(net, pre, arch, age_bias, info)

    track = cfg.get("track", {})
    tracker = RunTracker(out, bool(track.get("tensorboard", True)), log, track, cfg) if is_main() else None

    def save(state: dict, metrics: dict, is_best: bool) -> None:
        # best before last: last.pt is where a resumed run starts, so a run killed between the two
        # redoes this epoch rather than resuming with a best epoch whose weights were never written
        if is_best:
            weights = state.get("swa_model") if "swa_members" in metrics else None  # an SWA epoch: the average won
            atomic_torch_save(module.state_dict() if weights is None else weights, out / "best_weights.pt")
            if weights is not None:
                module.load_state_dict(weights)
            bundle(info={"epoch": metrics["epoch"], "val": metrics}).save(out / "best.pt")
            if weights is not None:
                module.load_state_dict(state["model"])  # training goes on from its own weights
        atomic_torch_save({**state, "config": cfg}, out / "last.pt")
        pd.DataFrame(state["history"]).to_csv(out / "metrics.csv", index=False, float_format="%.5f")
        tracker.epoch(metrics)
        plot_history(state["history"], out / "metrics.png")

    loop_cfg = LoopConfig(epochs=int(t["epochs"]), batch_size=int(t["batch_size"]), lr=float(t["lr"]),
                          weight_decay=float(t["weight_decay"]), warmup_frac=float(t["warmup_frac"]),
                          amp=bool(t["amp"]), seed=loop_seed,
                          workers=0 if t["cache_features"] else int(cfg["workers"]),
                          optimizer=str(t["optimizer"]), momentum=float(t["momentum"]), scheduler=str(t["scheduler"]),
                          step_epochs=int(t["step_epochs"]), decay_rate=float(t["decay_rate"]),
                          early_stop=int(t["early_stop"]), swa_epochs=int(t["swa_epochs"]),
                          swa_lr=float(t["swa_lr"]), swa_bn_batches=int(t["swa_bn_batches"]))
    sampler, val_parts, by = None, None, None
    if t.get("sampler"):
        by = balance_classes(t["balance_by"], train_targets, class18, samples.iloc[tr_idx])
        log(f"sampler {t['sampler']} by {t['balance_by']} (power {t['balance_power']}, >=60 x{t['oversample_old']})"
            + (", inside each source" if specs else ""))
        if not specs:
            sampler = create_sampler(t["sampler"], classes=by, power=float(t["balance_power"]),
                                     age_band=train_targets["age_band"], oversample_old=float(t["oversample_old"]),
                                     seed=loop_cfg.seed)
    if specs:  # batches made of the sources' shares; each source also scored on its own in validation
        src = samples["source"].to_numpy()
        shares = source_shares([int((src[tr_idx] == k).sum()) for k in range(len(sources))],
                               [s_["weight"] for s_ in sources], [s_["share"] for s_ in sources])
        for s_, sh in zip(sources, shares):
            s_["batch_share"] = round(float(sh), 4)
        log("batch shares: " + ", ".join(f"{s_['name']} {sh:.2f}" for s_, sh in zip(sources, shares)))
        weights = None
        if by is not None:  # the balanced sampler's weights, counted inside each source
            weights = np.zeros(len(tr_idx))
            for k in range(len(sources)):
                rows = src[tr_idx] == k
                if rows.any():
                    weights[rows] = balance_weights(by[rows], float(t["balance_power"]),
                                                    train_targets["age_band"][rows], float(t["oversample_old"]))
        sampler = create_sampler("sources", source_of_row=src[tr_idx], shares=shares,
                                 batch_size=int(t["batch_size"]), seed=loop_cfg.seed, weights=weights)
        val_parts = {s_["name"]: np.nonzero(src[va_idx] == k)[0] for k, s_ in enumerate(sources)}
    mixing = make_batch_transform(t)
    if mixing is not None:
        on = "cached trunk features (feature-map halves)" if t["cache_features"] and net.trunk is not None else "images"
        log(f"batch mixing: {t.get('mix') or 'none'} (p {t.get('mix_prob')}), erase {t.get('erase', 0)}, on {on}")
    unfreeze = None
    if m.get("unfreeze_at"):
        if module is not net or net.trunk is None:
            raise ValueError("model.unfreeze_at needs train.cache_features=false and model.freeze_blocks > 0 "
                             "(cached trunk outputs cannot be trained)")
        unfreeze = Unfreeze(list(net.trunk.parameters()), int(m["unfreeze_at"]), float(m["unfreeze_lr_scale"]),
                            net.unfreeze_trunk)
    fit(module, loss_fn, train_ds, val_ds, loop_cfg, device, save, resume_state, log, sampler, val_parts, mixing,
        unfreeze)

    summary = {}
    if is_main():
        module.load_state_dict(torch.load(out / "best_weights.pt", map_location="cpu", weights_only=True))
        module.to(device)
        lg = collect_logits(module, val_ds, 256, device, workers=loop_cfg.workers)
        bias = np.zeros((2, 3), np.float32)
        val_plain = logits_scores(lg)
        if t["tune_age_bias"]:
            bias, f_before, f_after = tune_age_bias(lg)
            log(f"age-band offsets {bias.tolist()} tuned on validation: macro F1 {f_before:.4f} -> {f_after:.4f}")
        val_tuned = logits_scores(lg, bias)
        history = pd.read_csv(out / "metrics.csv")
        summary = {"maskgate": __version__, "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   "train_dir": str(train_dir), "images": int(len(samples)), "people": int(samples["person"].nunique()),
                   "val_people": len(val_ids), "best_epoch": int(history["val_macro_f1"].idxmax() + 1),
                   "val": val_plain, "val_with_age_bias": val_tuned, "age_bias": bias.tolist(),
                   "face_found_rate": float(found.mean()), "seconds": round(time.time() - t_start, 1),
                   "device": str(device), "sources": sources}
        if val_parts:
            summary["val_by_source"] = {name: logits_scores({k: v[idx] for k, v in lg.items()}, bias)
                                        for name, idx in val_parts.items()}
        if m.get("init"):
            summary["init"] = str(m["init"])
        bundle(bias, {k: summary[k] for k in ("maskgate", "finished", "images", "people", "best_epoch",
                                               "val_with_age_bias", "age_bias", "sources", "val_by_source", "init")
                      if k in summary}).save(out / "best.pt", script=True)
        vp = write_val_predictions(out / "val_predictions.csv", samples.iloc[va_idx], lg, bias,
                                   [s_["name"] for s_ in sources] if specs else None)
        tracker.finish(vp["true"].to_numpy(), vp["pred"].to_numpy(),
                       _wrong_grid(vp, samples.iloc[va_idx], cache, pre, seed, cfg), int(summary["best_epoch"]))
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        tracker.close()
        log(f"done in {summary['seconds']}s: validation macro F1 {val_tuned['macro_f1']:.4f} -> {out / 'best.pt'}")
        logf.close()
    _barrier()
    return summary
