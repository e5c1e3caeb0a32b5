"""Start a network from an existing maskgate model (`model.init`): fine-tune it on more data.

A bundle with weights loads tensor by tensor (any `freeze_blocks`: the trunk/tail split does not change
the order of the parameters). A graph-only bundle (the shipped model) holds a frozen TorchScript graph
whose batch norms were folded into the convolutions; its convolutions and linear layers are read back in
order, each conv's weight and bias go into the conv and a batch norm that passes them through
(mean 0, variance 1 - eps, scale 1, shift = bias). Such a network is exact in eval mode, and its batch
norms must stay in eval mode while training (`MaskgateNet.frozen_bn`): their statistics are not real.
"""
from __future__ import annotations

import hashlib
import io
import os
import warnings

import torch
import torch.nn as nn

from .classifier import MaskgateNet, read_bundle


def _graph_layers(blob: bytes) -> list[tuple[str, torch.Tensor, torch.Tensor | None]]:
    """(kind, weight, bias) of every convolution and linear layer of a frozen graph, in execution order."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = torch.jit.load(io.BytesIO(blob), map_location="cpu")
    out = []
    for node in graph.graph.nodes():
        kind = {"aten::_convolution": "conv", "aten::conv2d": "conv", "aten::linear": "linear"}.get(node.kind())
        if kind is None:
            continue
        ins = list(node.inputs())
        if ins[1].node().kind() != "prim::Constant":
            raise ValueError("model.init: the graph's weights are not constants (not a frozen maskgate graph)")
        bias = ins[2].toIValue() if ins[2].node().kind() == "prim::Constant" else None
        out.append((kind, ins[1].toIValue().float(), None if bias is None else bias.float()))
    return out


def load_from_graph(net: MaskgateNet, blob: bytes) -> None:
    """Unfold a frozen graph's layers into `net` (same backbone); its batch norms then pass folded biases."""
    layers = _graph_layers(blob)
    mods = list(net.modules())
    convs = [(i, m) for i, m in enumerate(mods) if isinstance(m, nn.Conv2d)]
    linears = [m for m in mods if isinstance(m, nn.Linear)]
    g_convs = [layer for layer in layers if layer[0] == "conv"]
    g_lin = [layer for layer in layers if layer[0] == "linear"]
    if len(g_convs) != len(convs) or len(g_lin) != len(linears):
        raise ValueError(f"model.init: the graph has {len(g_convs)} convolutions and {len(g_lin)} linear layers, "
                         f"the network {len(convs)} and {len(linears)}: not the same backbone")
    with torch.no_grad():
        for (i, conv), (_, w, b) in zip(convs, g_convs):
            if tuple(w.shape) != tuple(conv.weight.shape):
                raise ValueError(f"model.init: graph conv {tuple(w.shape)} does not fit {tuple(conv.weight.shape)}")
            conv.weight.copy_(w)
            bn = next((m for m in mods[i + 1:] if isinstance(m, nn.BatchNorm2d)), None)
            if bn is None or b is None:
                raise ValueError("model.init: a convolution without its folded batch norm")
            bn.weight.fill_(1.0)
            bn.bias.copy_(b)
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
        for lin, (_, w, b) in zip(linears, g_lin):
            if tuple(w.shape) != tuple(lin.weight.shape):
                raise ValueError(f"model.init: graph linear {tuple(w.shape)} does not fit {tuple(lin.weight.shape)}")
            lin.weight.copy_(w)
            lin.bias.copy_(b)
    net.frozen_bn = True


def init_from_model(net: MaskgateNet, path: str | os.PathLike) -> str:
    """Load a maskgate model's weights into `net`; returns a digest of what was loaded (for cache keys)."""
    blob, p = read_bundle(path, "model.init")
    state = blob.get("state_dict")
    if state is not None:
        target = net.state_dict()
        if len(state) != len(target):
            raise ValueError(f"model.init: {p} has {len(state)} tensors, the network {len(target)}: "
                             "not the same backbone")
        new = {}
        for (sk, sv), (tk, tv) in zip(state.items(), target.items()):
            if tuple(sv.shape) != tuple(tv.shape):
                raise ValueError(f"model.init: {p}: {sk} {tuple(sv.shape)} does not fit {tk} {tuple(tv.shape)}")
            new[tk] = sv.to(tv.dtype)
        net.load_state_dict(new)
        digest = hashlib.sha1(b"".join(v.float().numpy().tobytes()[:4096] for v in state.values())).hexdigest()
    elif blob.get("torchscript"):
        load_from_graph(net, blob["torchscript"])
        digest = hashlib.sha1(blob["torchscript"]).hexdigest()
    else:
        raise ValueError(f"model.init: {p}: the bundle has neither weights nor a graph")
    return digest[:16]
