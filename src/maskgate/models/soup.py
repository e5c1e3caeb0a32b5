"""Model soup: the weight average of models fine-tuned from one start, saved as one network.

Why: fine-tunes that share a start (e.g. the fw1 and fw2 recipes, both from the GPU model) sit in one
basin, and their weight average predicts about as well as their soft-vote ensemble at the cost of one
network (Wortsman et al., "Model soups", ICML 2022), so a shipped model stays one network at the
same predict speed. Every member is first brought to the same folded form (batch norms folded into
the convolutions, as in the shipped graph; a bundle with weights is traced to that graph), so members
with real batch-norm statistics and graph-only members average alike. The soup is saved graph-only,
like the shipped model: predict, export and `model.init` all take it.

Averaging weights also averages away what each member's batch norms knew: a channel of the soup no longer
has the mean and spread its next layer expects, most where members moved far apart (whole-network
fine-tunes). `repair_soup` (REPAIR, Jordan et al., ICLR 2023) measures every normalised channel on real face
crops, in the members and in the soup, and rescales the soup's channels to the members' average mean and
spread, layer by layer in one pass, so each layer is corrected for the corrected layers before it.
"""
from __future__ import annotations

import copy
import hashlib
import os
from pathlib import Path
from typing import Collection, Sequence

import numpy as np
import torch
import torch.nn as nn

from .classifier import MaskClassifier, Preprocess, net_from_arch, read_bundle, script_net
from .transfer import load_from_graph


def _member(path: str | os.PathLike) -> tuple[dict, bytes, Path]:
    """A member's bundle and its frozen graph (traced here when the bundle has only weights)."""
    blob, p = read_bundle(path, "soup")
    graph = blob.get("torchscript")
    if not graph:
        if blob.get("state_dict") is None:
            raise ValueError(f"soup: {p}: the bundle has neither weights nor a graph")
        model = MaskClassifier.load(p, eager=True)
        graph = script_net(model.net, model.preprocess.input_size)
    return blob, graph, p


MEMBER_ONLY = ("finished", "epoch", "best_epoch", "val", "val_with_age_bias", "val_by_source", "age_bias")


def _val_f1(blob: dict) -> dict:
    v = blob.get("info", {}).get("val_with_age_bias", {}).get("macro_f1")
    return {} if v is None else {"val_macro_f1": round(float(v), 4)}


def _shape(arch: dict) -> dict:
    """What fixes the layers (the frozen part does not: it keeps their order)."""
    return {"backbone": arch["backbone"], "head": arch.get("head", "multi")}


def make_soup(paths: Sequence[str | os.PathLike], weights: Sequence[float] | None = None) -> MaskClassifier:
    """The weighted average (uniform by default) of the members' folded weights and age offsets.

    The members must share the backbone, head and preprocessing (crop, input size, normalisation):
    the soup keeps the first member's, and its provenance lists every member with its share.
    """
    if len(paths) < 2:
        raise ValueError("soup: give at least two models to average")
    w = torch.tensor([1.0] * len(paths) if weights is None else list(weights), dtype=torch.float64)
    if len(w) != len(paths) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"soup: {len(paths)} models need {len(paths)} non-negative weights, not {list(w.tolist())}")
    w = w / w.sum()
    members = [_member(p) for p in paths]
    blob0, _, p0 = members[0]
    for blob, _, p in members[1:]:
        for what, mine, first in (("arch", _shape(blob["arch"]), _shape(blob0["arch"])),
                                  ("preprocess", blob["preprocess"], blob0["preprocess"])):
            if mine != first:
                raise ValueError(f"soup: {p} has another {what} than {p0} ({mine} vs {first}): "
                                 "only models of one architecture and preprocessing can be averaged")

    nets = []
    avg: dict[str, torch.Tensor] = {}
    bias = torch.zeros(2, 3, dtype=torch.float64)
    for share, (blob, graph, _) in zip(w, members):
        member = net_from_arch(blob0["arch"])
        load_from_graph(member, graph)  # every member in the folded form, whatever it was saved as
        nets.append(member.eval())
        for k, v in member.state_dict().items():
            if v.is_floating_point():
                avg[k] = avg.get(k, 0) + share * v.double()
        bias += share * torch.as_tensor(blob["age_bias"], dtype=torch.float64).reshape(-1, 3).expand(2, 3)
    net = copy.deepcopy(nets[0])  # the folded form (its batch norms pass biases) takes the average
    state = net.state_dict()
    net.load_state_dict({**state, **{k: v.to(state[k].dtype) for k, v in avg.items()}})
    # the first member's provenance (data, sources, start), without the scores and offsets of its own run:
    # those were measured on member 0, not on the soup; each member's validation score goes with it
    info = {k: v for k, v in blob0.get("info", {}).items() if k not in MEMBER_ONLY}
    info["soup"] = {"members": [{"path": str(p), "sha1": hashlib.sha1(g).hexdigest()[:16], "weight": round(float(s), 6),
                                 **_val_f1(b)} for (b, g, p), s in zip(members, w)]}
    soup = MaskClassifier(net.eval(), Preprocess.from_dict(blob0["preprocess"]), dict(blob0["arch"]),
                          bias.float(), info).eval()
    soup.members = nets  # for repair_soup; not saved
    soup.member_shares = w.tolist()
    return soup


# --- REPAIR: the soup's channels brought back to the members' statistics ---------------------------------
def _norms(net: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]


def _tap(bn: nn.BatchNorm2d, fn):
    """Call fn on the norm's affine output, before any activation fused into it (timm's BatchNormAct2d);
    whatever fn returns replaces that output."""
    act = getattr(bn, "act", None)
    if isinstance(act, nn.Module):
        return act.register_forward_pre_hook(lambda _m, args: (fn(args[0]),) + tuple(args[1:]))
    return bn.register_forward_hook(lambda _m, _a, out: fn(out))


def _channel_stats(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    var, mean = torch.var_mean(y, dim=(0, 2, 3))
    return mean.double(), var.double().sqrt()


@torch.no_grad()
def norm_stats(net: nn.Module, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per-channel mean and standard deviation of every batch norm's output on the batch x, in module order."""
    norms = _norms(net)
    stats: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def keep(i):
        def fn(y):
            stats[i] = _channel_stats(y)
            return y
        return fn

    hooks = [_tap(bn, keep(i)) for i, bn in enumerate(norms)]
    try:
        net.eval()(x)
    finally:
        for h in hooks:
            h.remove()
    return [stats[i] for i in range(len(norms))]


@torch.no_grad()
def repair_soup(soup: MaskClassifier, x: torch.Tensor) -> dict:
    """Rescale each normalised channel of the soup to the share-weighted mean of its members' channel mean and
    standard deviation on the batch x (network inputs: normalised face crops). Changes only the batch norms'
    scale and shift, so the soup keeps its size and speed. Returns how far the channels were moved."""
    members, shares = getattr(soup, "members", None), getattr(soup, "member_shares", None)
    if not members:
        raise ValueError("repair_soup: the model has no members (make it with make_soup)")
    target: list[tuple[torch.Tensor, torch.Tensor]] | None = None
    for share, m in zip(shares, members):
        st = [(share * mu, share * sd) for mu, sd in norm_stats(m, x)]
        target = st if target is None else [(a + c, b + d) for (a, b), (c, d) in zip(target, st)]
    norms = _norms(soup.net)
    assert target is not None and len(target) == len(norms)
    scales: list[float] = []

    def fix(i: int, bn: nn.BatchNorm2d):
        def fn(y):
            mu_s, sd_s = _channel_stats(y)
            mu_t, sd_t = target[i]
            a = torch.where(sd_s > 1e-6, sd_t / sd_s.clamp_min(1e-6), torch.ones_like(sd_s))
            # y = g*z' + b  ->  a*(y - mu_s) + mu_t = (a*g)*z' + a*(b - mu_s) + mu_t
            bn.weight.copy_((a * bn.weight.double()).float())
            bn.bias.copy_((a * (bn.bias.double() - mu_s) + mu_t).float())
            scales.append(float((a - 1).abs().max()))
            # in place: a copy of every activation of a 512-crop batch costs GBs
            col = lambda v: v.view(1, -1, 1, 1).to(y.dtype)  # noqa: E731
            return y.sub_(col(mu_s)).mul_(col(a)).add_(col(mu_t))
        return fn

    hooks = [_tap(bn, fix(i, bn)) for i, bn in enumerate(norms)]
    try:
        soup.net.eval()(x)
    finally:
        for h in hooks:
            h.remove()
    soup.info.setdefault("soup", {})["repair"] = {"images": int(x.shape[0]), "norms": len(norms),
                                                  "largest_scale_change": round(max(scales), 4)}
    return soup.info["soup"]["repair"]


def calibration_batch(preprocess: Preprocess, folders: Sequence[str | os.PathLike], n: int = 512,
                      seed: int = 0, workers: int = 2, skip: Collection[str | os.PathLike] = ()
                      ) -> tuple[torch.Tensor, list[str]]:
    """n photos spread evenly over the folders (searched recursively, a seeded draw), cut by the model's own
    face cropper (crops cached as in training) -> the network's input batch, and any unreadable files.
    `skip`: photos never drawn (the validation people a soup is then scored on)."""
    from ..data.images import list_images
    from ..faces.cache import CropCache, default_cache_root

    rng = np.random.default_rng(seed)
    left_out = {os.path.abspath(p) for p in skip}
    paths: list[str] = []
    for k, folder in enumerate(folders):
        found = sorted(str(p) for p in list_images(folder) if os.path.abspath(p) not in left_out)
        if not found:
            raise ValueError(f"soup --calibrate: {folder}: no images (.jpg, .jpeg, .png, ...) found"
                             + (" outside the validation photos" if left_out else ""))
        take = n // len(folders) + (1 if k < n % len(folders) else 0)
        paths += [found[i] for i in sorted(rng.choice(len(found), min(take, len(found)), replace=False))]
    crops, _found, _lm, keys, problems = CropCache(default_cache_root(), preprocess.crop).crop_all(
        paths, workers=workers, desc="calibration crops")
    ok = np.array([bool(k) for k in keys])
    if ok.sum() < 2:
        raise ValueError(f"soup --calibrate: fewer than 2 readable photos in {list(map(str, folders))}")
    return preprocess.to_tensor(preprocess.resize(crops[ok])), problems


def save_soup(model: MaskClassifier, path: str | os.PathLike) -> None:
    """Graph only, as shipped: the folded weights have no real batch-norm statistics to train on."""
    model.save(path, script=True, weights=False)


def soup_models(paths: Sequence[str | os.PathLike], out: str | os.PathLike, weights: Sequence[float] | None = None,
                calibrate: Sequence[str | os.PathLike] = (), n: int = 512, workers: int = 2,
                log=print, skip: Collection[str | os.PathLike] = (), seed: int = 0) -> dict:
    """make_soup + (REPAIR on `n` photos of the `calibrate` folders, if any, drawn with `seed`, leaving out the
    photos in `skip`) + save_soup: what `maskgate soup`, `maskgate seeds`, `maskgate kfold --soup` and
    benchmarks/bench_soup_draws.py do, in one place. Returns the summary the commands print."""
    model = make_soup(paths, weights)
    repaired = None
    if calibrate:
        x, problems = calibration_batch(model.preprocess, calibrate, n, seed=seed, workers=workers, skip=skip)
        for p in problems:
            log(f"skipped: {p}")
        repaired = repair_soup(model, x)
        model.info["soup"]["repair"]["folders"] = [str(f) for f in calibrate]
        if skip:
            model.info["soup"]["repair"]["left_out"] = len(skip)
    save_soup(model, out)
    return {"out": str(out), "members": model.info["soup"]["members"], "repair": repaired,
            "age_bias": [[round(v, 4) for v in row] for row in model.age_bias.tolist()],
            "mb": round(Path(out).stat().st_size / 1e6, 1)}
