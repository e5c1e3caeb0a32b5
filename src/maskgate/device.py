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
