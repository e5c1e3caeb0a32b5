"""Model soup: the weight average of models fine-tuned from one start, saved as one network.

Why: fine-tunes that share a start (e.g. the fw1 and fw2 recipes, both from the GPU model) sit in one
basin, and their weight average predicts about as well as their soft-vote ensemble at the cost of one
network (Wortsman et al., "Model soups", ICML 2022), so a shipped model stays one network at the
same predict speed. Every member is first brought to the same folded form (batch norms folded into
the convolutions, as in the shipped graph; a bundle with weights is traced to that graph), so members
with real batch-norm statistics and graph-only members average alike. The soup is saved graph-only,
like the shipped model: predict, export and `model.init` all take it.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

import torch

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

    net = net_from_arch(blob0["arch"])  # the first member's network, in the folded form, takes the average
    avg: dict[str, torch.Tensor] = {}
    bias = torch.zeros(2, 3, dtype=torch.float64)
    for i, (share, (blob, graph, _)) in enumerate(zip(w, members)):
        member = net if i == 0 else net_from_arch(blob0["arch"])
        load_from_graph(member, graph)  # every member in the folded form, whatever it was saved as
        for k, v in member.state_dict().items():
            if v.is_floating_point():
                avg[k] = avg.get(k, 0) + share * v.double()
        bias += share * torch.as_tensor(blob["age_bias"], dtype=torch.float64).reshape(-1, 3).expand(2, 3)
    state = net.state_dict()
    net.load_state_dict({**state, **{k: v.to(state[k].dtype) for k, v in avg.items()}})
    # the first member's provenance (data, sources, start), without the scores and offsets of its own run:
    # those were measured on member 0, not on the soup; each member's validation score goes with it
    info = {k: v for k, v in blob0.get("info", {}).items() if k not in MEMBER_ONLY}
    info["soup"] = {"members": [{"path": str(p), "sha1": hashlib.sha1(g).hexdigest()[:16], "weight": round(float(s), 6),
                                 **_val_f1(b)} for (b, g, p), s in zip(members, w)]}
    return MaskClassifier(net.eval(), Preprocess.from_dict(blob0["preprocess"]), dict(blob0["arch"]),
                          bias.float(), info).eval()


def save_soup(model: MaskClassifier, path: str | os.PathLike) -> None:
    """Graph only, as shipped: the folded weights have no real batch-norm statistics to train on."""
    model.save(path, script=True, weights=False)
