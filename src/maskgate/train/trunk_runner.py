"""Who runs the frozen trunk when its outputs are cached: PyTorch, or ONNX Runtime on the CPU.

The CPU recipe runs the ImageNet-frozen first blocks once per cached view of every crop (train/features.py);
on a 2-core EPYC that was 12.5 of the 15 minutes of caches of `best_fast` (maskproxy + faces-world), a
fifth of its three-seed run. Exported as a graph, the same blocks run about twice as fast on onnxruntime as in eager
PyTorch (batch norms folded into the convolutions, fused activations; benchmarks/bench_trunk_cache.py),
and their outputs agree to ~1e-4, below the fp16 the cache stores them in. The trunk is frozen, so no
gradient is lost. On a GPU PyTorch stays (`auto`).
"""
from __future__ import annotations

import io
import warnings
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from ..config import TRUNK_RUNTIMES as RUNTIMES


def _onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_trunk_runtime(name: str | None, device: torch.device) -> str:
    """'auto' -> 'onnxruntime' on the CPU when it is installed, else 'torch'. Explicit names are checked."""
    name = name or "auto"
    if name not in RUNTIMES:
        raise ValueError(f"train.trunk_runtime={name!r}: choose one of {', '.join(RUNTIMES)}")
    if name == "auto":
        return "onnxruntime" if device.type == "cpu" and _onnxruntime_available() else "torch"
    if name == "onnxruntime":
        if device.type != "cpu":
            raise ValueError(f"train.trunk_runtime=onnxruntime runs on the CPU, but the device is {device}; "
                             "use auto or torch on a GPU")
        if not _onnxruntime_available():
            raise ValueError("train.trunk_runtime=onnxruntime, but onnxruntime is not installed "
                             "(pip install -r requirements.txt)")
    return name


def _torch_runner(trunk: nn.Module, device: torch.device) -> Callable[[torch.Tensor], np.ndarray]:
    trunk = trunk.to(device).eval()
    if device.type == "cpu":  # small channels-last batches are ~3x faster on CPU (cache-friendly)
        trunk = trunk.to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def run(x: torch.Tensor) -> np.ndarray:
        return trunk(x.to(device)).float().cpu().numpy()

    return run


def _onnx_runner(trunk: nn.Module, input_size: int) -> Callable[[torch.Tensor], np.ndarray]:
    import onnxruntime as ort

    from ..models.onnx_export import export_graph

    buf = io.BytesIO()
    export_graph(trunk.float().cpu().eval(), (torch.zeros(2, 3, input_size, input_size),), buf, ["x"], ["y"])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, torch.get_num_threads())  # the cores PyTorch was given, no more
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])

    def run(x: torch.Tensor) -> np.ndarray:
        return sess.run(None, {"x": x.detach().float().contiguous().cpu().numpy()})[0]

    return run


def trunk_runner(trunk: nn.Module, device: torch.device, runtime: str, input_size: int, fallback: bool = False
                 ) -> tuple[Callable[[torch.Tensor], np.ndarray], str]:
    """(run, runtime used): run maps a normalised N x 3 x I x I batch to the trunk's N x C x H x W outputs
    (float32 numpy).

    `runtime` is a resolved name (resolve_trunk_runtime). The graph is exported from these very weights
    (ImageNet's, or a `model.init` model's), so both runners compute the same function. `fallback`: a
    backbone that will not export (some timm models) runs in PyTorch instead of failing (`auto`)."""
    if runtime == "onnxruntime":
        try:
            return _onnx_runner(trunk, input_size), "onnxruntime"
        except Exception as e:  # noqa: BLE001 - any exporter or runtime failure: the eager path still works
            if not fallback:
                raise RuntimeError(f"train.trunk_runtime=onnxruntime: the trunk did not export to ONNX ({e})") from e
            warnings.warn(f"the frozen trunk did not export to ONNX ({type(e).__name__}: {e}); "
                          "running it in PyTorch instead", RuntimeWarning, stacklevel=2)
    return _torch_runner(trunk, device), "torch"
