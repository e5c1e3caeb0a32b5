"""Backbone + heads, split into a frozen trunk and a trainable tail, and the bundle predict loads.

The bundle (one .pt file) holds the weights, the age-band offsets tuned on validation, and the
exact preprocessing (crop settings, input size, normalisation), so predict cannot drift from train.
"""
from __future__ import annotations

import io
import os
import warnings
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn as nn

from .heads import combine18, create_head
from .preprocess import Preprocess  # noqa: F401 - re-exported: the bundle's preprocessing

BUNDLE_FORMAT = 1


class Trunk(nn.Module):
    """Stem + the first `k` blocks of an EfficientNet/MobileNet-style timm model (kept frozen)."""

    def __init__(self, backbone: nn.Module, k: int):
        super().__init__()
        self.stem = nn.Sequential(backbone.conv_stem, backbone.bn1)
        self.blocks = nn.Sequential(*list(backbone.blocks)[:k])

    def forward(self, x):
        return self.blocks(self.stem(x))


class Tail(nn.Module):
    """Remaining blocks + head conv + pooling + task heads: the part that is trained."""

    def __init__(self, backbone: nn.Module, k: int, heads: nn.Module, with_stem: bool):
        super().__init__()
        self.stem = nn.Sequential(backbone.conv_stem, backbone.bn1) if with_stem else nn.Identity()
        self.blocks = nn.Sequential(*list(backbone.blocks)[k:])
        self.head_conv = nn.Sequential(backbone.conv_head, backbone.bn2)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.heads = heads
        self.frozen_bn = False  # True: batch norms stay in eval mode in training (models/transfer.py)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen_bn:
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self

    def forward(self, x):
        return self.heads(self.pool(self.head_conv(self.blocks(self.stem(x)))))


class MaskgateNet(nn.Module):
    """Full network = trunk (frozen, maybe empty) + tail (trained)."""

    def __init__(self, backbone: str = "tf_efficientnet_lite0", weights: str = "packaged",
                 freeze_blocks: int = 0, dropout: float = 0.2, head: str = "multi"):
        super().__init__()
        from .backbones import create_backbone  # timm is imported only where a network is built

        bb = create_backbone(backbone, weights)
        if not all(hasattr(bb, a) for a in ("conv_stem", "bn1", "blocks", "conv_head", "bn2")):
            raise ValueError(f"{backbone}: trunk/tail split needs an EfficientNet/MobileNet-style timm model")
        n_blocks = len(bb.blocks)
        if not 0 <= freeze_blocks <= n_blocks:
            raise ValueError(f"freeze_blocks={freeze_blocks} outside 0..{n_blocks} for {backbone}")
        self.freeze_blocks = freeze_blocks
        heads = create_head(head, bb.num_features, dropout)
        self.head = head
        self.trunk = Trunk(bb, freeze_blocks) if freeze_blocks > 0 else None
        self.tail = Tail(bb, freeze_blocks, heads, with_stem=freeze_blocks == 0)
        self.trunk_trainable = False  # a freeze schedule sets it (unfreeze_trunk) partway through training
        if self.trunk is not None:
            self.trunk.requires_grad_(False).eval()

    def unfreeze_trunk(self) -> None:
        """Train the frozen blocks from now on (their batch norms keep ImageNet's statistics)."""
        if self.trunk is not None:
            self.trunk.requires_grad_(True)
            self.trunk_trainable = True

    @property
    def frozen_bn(self) -> bool:
        """Batch norms kept in eval mode while training (the trunk's always are)."""
        return self.tail.frozen_bn

    @frozen_bn.setter
    def frozen_bn(self, value: bool) -> None:
        self.tail.frozen_bn = bool(value)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.trunk is not None:
            self.trunk.eval()  # frozen BN statistics stay ImageNet's
        return self

    def forward(self, x):
        if self.trunk is not None:
            with torch.set_grad_enabled(torch.is_grad_enabled() and self.trunk_trainable):
                x = self.trunk(x)
        return self.tail(x)


class _Outputs(nn.Module):
    """Tuple outputs for tracing (TorchScript wants tensors, not dicts)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        o = self.net(x)
        return tuple(o[k] for k in ScriptedNet.KEYS if k in o)


class ScriptedNet(nn.Module):
    """A frozen TorchScript graph of the network (batch norms folded): ~2x faster on CPU, and
    predict needs neither timm nor torchvision to import."""

    KEYS = ("mask", "gender", "age", "age_years", "class18")  # class18: an 18-way head's graph only

    def __init__(self, graph, blob: bytes | None = None):
        super().__init__()
        self.graph = graph
        self.blob = blob  # the serialised graph it was loaded from (a graph-only bundle re-saves it as is)

    def forward(self, x):
        return dict(zip(self.KEYS, self.graph(x)))


def script_net(net: nn.Module, input_size: int) -> bytes:
    net = net.eval()
    example = torch.zeros(2, 3, input_size, input_size).contiguous(memory_format=torch.channels_last)
    buf = io.BytesIO()
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript deprecation notices
        graph = torch.jit.freeze(torch.jit.trace(_Outputs(net).eval(), example, check_trace=False))
        torch.jit.save(graph, buf)
    return buf.getvalue()


class MaskClassifier(nn.Module):
    """What `maskgate predict` loads: network + age offsets + preprocessing + provenance."""

    def __init__(self, net: MaskgateNet, preprocess: Preprocess, arch: dict, age_bias=None, info: dict | None = None):
        super().__init__()
        self.net = net
        self.preprocess = preprocess
        self.arch = arch
        bias = torch.zeros(2, 3) if age_bias is None else torch.as_tensor(age_bias, dtype=torch.float32)
        self.register_buffer("age_bias", bias.reshape(-1, 3).expand(2, 3).clone())  # per gender x age band
        self.info = info or {}

    @torch.inference_mode()
    def predict_logits(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.net(x)
        out["log18"] = combine18(out, self.age_bias.to(x.device))
        return out

    def save(self, path: str | os.PathLike, half: bool = True, script: bool = False, weights: bool = True) -> None:
        """Weights in fp16 (half the size; predictions agree to ~1e-3), plus a TorchScript graph if `script`.

        `weights=False` (with `script`) keeps only the graph: the smallest file that predicts, as shipped.
        """
        if not (weights or script):
            raise ValueError("a bundle needs weights or a TorchScript graph")
        blob = {"format": BUNDLE_FORMAT, "arch": self.arch, "preprocess": asdict(self.preprocess),
                "age_bias": self.age_bias.tolist(), "info": self.info, "state_dict": None}
        if isinstance(self.net, ScriptedNet):  # loaded from a graph-only bundle: its graph is all there is
            if weights or self.net.blob is None:
                raise ValueError("this model has only its TorchScript graph (no weights): it can be saved only "
                                 "as a graph (`maskgate export --graph-only`); for weights, load a bundle with them")
            blob["torchscript"] = self.net.blob
            atomic_torch_save(blob, path)
            return
        state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in self.net.state_dict().items()}
        blob["state_dict"] = state if weights else None
        if script:
            net = net_from_arch(self.arch)
            net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
            blob["torchscript"] = script_net(net, self.preprocess.input_size)  # exactly the shipped fp16 weights
        atomic_torch_save(blob, path)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu", eager: bool = False
             ) -> "MaskClassifier":
        """The bundle; its TorchScript graph when it has one (unless `eager`), else the timm network."""
        blob, _ = read_bundle(path)
        arch = dict(blob["arch"])
        if blob.get("torchscript") and (not eager or blob.get("state_dict") is None):
            with warnings.catch_warnings():  # torch.jit.load's deprecation notice is not for our users
                warnings.simplefilter("ignore")
                net = ScriptedNet(torch.jit.load(io.BytesIO(blob["torchscript"]), map_location=device),
                                  blob["torchscript"])
        else:
            net = net_from_arch(arch)
            net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in blob["state_dict"].items()})
        model = cls(net, Preprocess.from_dict(blob["preprocess"]), arch, blob["age_bias"], blob.get("info", {}))
        return model.to(device).eval()


def read_bundle(path: str | os.PathLike, context: str = "") -> tuple[dict, Path]:
    """A bundle file's contents and its path (a run folder stands for its best.pt); each failure names
    the file, after `context` (the command reading it, e.g. "model.init") when given."""
    where = f"{context}: " if context else ""
    p = Path(path)
    if p.is_dir():
        p = p / "best.pt"
    if not p.is_file():
        raise FileNotFoundError(f"{where}{p}: no model file (expected a run folder with best.pt, or a .pt bundle)")
    try:
        blob = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - corrupt/foreign file: say which and why
        raise ValueError(f"{where}{p}: not a readable maskgate model ({e})") from None
    if not isinstance(blob, dict) or blob.get("format") != BUNDLE_FORMAT:
        raise ValueError(f"{where}{p}: not a maskgate model bundle (format {BUNDLE_FORMAT})")
    return blob, p


def net_from_arch(arch: dict) -> MaskgateNet:
    """An untrained network of a bundle's architecture (its weights are loaded after)."""
    return MaskgateNet(arch["backbone"], "none", arch.get("freeze_blocks", 0), arch.get("dropout", 0.0),
                       arch.get("head", "multi"))


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    """Write to a temporary file then rename: a killed run never leaves a half-written checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
