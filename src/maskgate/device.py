"""Which torch device to use: one rule for training and prediction."""
from __future__ import annotations

import os

import torch


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> this process's GPU (LOCAL_RANK under torchrun) if there is one, else the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name} asked for, but no CUDA GPU is available")
    return dev


def images_to(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch of images or of cached trunk feature maps (N, C, H, W) on `device` in channels-last memory, the
    layout the convolutions run fastest in; a tensor of another rank (N x D rows) is only moved. Training,
    validation and the weight average's batch-norm refresh all go through here, so they feed the network alike."""
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x


def batch_to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """A loader's batch (images under "x", targets beside them) on `device`, images as `images_to` puts them."""
    out = {k: v.to(device, non_blocking=True) for k, v in batch.items() if k != "x"}
    out["x"] = images_to(batch["x"], device)
    return out
