"""What runs a model at predict time: PyTorch (a .pt bundle) or onnxruntime (a .onnx bundle).

Both take face crops already at the model's input size (N x I x I x 3 uint8) and give the 18-class
distribution, so `Predictor` (and through it the CLI, the service and the video watcher) does not care
which one it has. This module imports neither torch nor onnxruntime until a model of that kind is
loaded: the slim install (onnxruntime, OpenCV, NumPy, no PyTorch) predicts with .onnx bundles.
"""
from __future__ import annotations

import importlib.resources as ir
import importlib.util
import json
import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .preprocess import Preprocess

ONNX_FORMAT = "1"  # metadata key maskgate_format of an ONNX bundle


class Runtime(Protocol):
    name: str  # where it came from (for messages and /v1/model)
    kind: str  # "torch" | "onnx"
    preprocess: Preprocess
    info: dict

    def probs(self, images: np.ndarray, tta: bool = False) -> np.ndarray:
        """N x I x I x 3 uint8 crops at input size -> N x 18 class probabilities (float32)."""
        ...


def torch_available() -> bool:
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):  # a broken or blocked install counts as none
        return False


def default_model_path(kind: str = "onnx") -> Path:
    """The shipped model: "onnx" (what predicts on a CPU: faster start and throughput than the TorchScript
    graph, the same answers to 2e-6, no PyTorch needed) or "torch" (the bundle `model.init` and a GPU use)."""
    if kind not in ("onnx", "torch"):
        raise ValueError(f"kind={kind!r}: onnx or torch")
    return Path(str(ir.files("maskgate") / "assets" / ("default_model.pt" if kind == "torch" else "default_model.onnx")))


def default_model_for(device: str = "auto") -> Path:
    """The shipped model for a device: its PyTorch bundle where a GPU will run it, else the ONNX twin.

    "auto" looks for an NVIDIA device node rather than importing torch, so a CPU start stays fast.
    """
    gpu = device.startswith("cuda") or (device == "auto" and torch_available() and os.path.exists("/dev/nvidiactl"))
    if gpu:
        from ..device import resolve_device

        gpu = resolve_device(device).type == "cuda"
    return default_model_path("torch" if gpu else "onnx")


class TorchRuntime:
    """A `MaskClassifier` (TorchScript graph on CPU, the eager network on a GPU)."""

    kind = "torch"

    def __init__(self, model: Any, device: str = "auto", name: str = "model"):
        import torch

        from ..device import resolve_device

        self.device = resolve_device(device) if isinstance(device, str) else device
        self.model = model.to(self.device).eval()
        if self.device.type == "cpu":
            self.model.net.to(memory_format=torch.channels_last)
        self.preprocess, self.info, self.name = self.model.preprocess, self.model.info, name

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "auto") -> "TorchRuntime":
        from ..device import resolve_device
        from .classifier import MaskClassifier

        dev = resolve_device(device)
        return cls(MaskClassifier.load(path, dev, eager=dev.type != "cpu"), dev, str(path))

    def probs(self, images: np.ndarray, tta: bool = False) -> np.ndarray:
        x = self.preprocess.to_tensor(images).to(self.device)
        p = self.model.predict_logits(x)["log18"].exp()
        if tta:  # mirror image: average the two class distributions
            p = (p + self.model.predict_logits(x.flip(3))["log18"].exp()) / 2
        return p.float().cpu().numpy()


class OnnxRuntime:
    """An ONNX bundle (`maskgate export --format onnx`): the network with normalisation and the 18-class
    combination (age offsets included) inside the graph; preprocessing and provenance in its metadata."""

    kind = "onnx"

    def __init__(self, path: str | os.PathLike, device: str = "auto", threads: int = 0):
        try:
            import onnxruntime as ort
        except ImportError as e:  # pragma: no cover - onnxruntime is in both installs
            raise ImportError("ONNX models need onnxruntime (`pip install onnxruntime`)") from e
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such ONNX model file")
        if device not in ("auto", "cpu") and not device.startswith("cuda"):
            raise ValueError(f"device={device}: an ONNX model runs on cpu or cuda")
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ValueError(f"device={device} asked for, but this onnxruntime has no CUDA provider")
            providers.insert(0, "CUDAExecutionProvider")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(os.environ.get("MASKGATE_ORT_THREADS", threads))
        # no busy-waiting between runs: the decode / detect / classify threads share the cores
        opts.add_session_config_entry("session.intra_op.allow_spinning", os.environ.get("MASKGATE_ORT_SPIN", "0"))
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=providers)
        except Exception as e:  # noqa: BLE001 - a corrupt or foreign file: say which and why
            raise ValueError(f"{path}: not a readable ONNX model ({str(e).splitlines()[0][:200]})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if meta.get("maskgate_format") != ONNX_FORMAT:
            raise ValueError(f"{path}: an ONNX model, but not a maskgate bundle (no maskgate_format metadata)")
        self.preprocess = Preprocess.from_dict(json.loads(meta["preprocess"]))
        self.info = json.loads(meta.get("info", "{}"))
        self.arch = json.loads(meta.get("arch", "{}"))
        self.name = str(path)
        self.input = self.session.get_inputs()[0].name

    def probs(self, images: np.ndarray, tta: bool = False) -> np.ndarray:
        x = np.ascontiguousarray(images, dtype=np.uint8)
        p = np.exp(self.session.run(["log18"], {self.input: x})[0])
        if tta:
            p = (p + np.exp(self.session.run(["log18"], {self.input: np.ascontiguousarray(x[:, :, ::-1])})[0])) / 2
        return p.astype(np.float32)


def expand_members(models: list[Any]) -> list[Any]:
    """Each `maskgate kfold` output folder (OUT/fold0, fold1, ... and no best.pt of its own) becomes its folds,
    so `--model OUT` is the k-fold ensemble; everything else is kept as given. A fold still training is an
    error that names it, not a silently smaller ensemble."""
    out: list[Any] = []
    for m in models:
        path = Path(m) if isinstance(m, (str, os.PathLike)) else None
        folds = sorted((d for d in path.glob("fold*") if d.is_dir() and d.name[4:].isdigit()),
                       key=lambda d: int(d.name[4:])) if path is not None and path.is_dir() else []
        if not folds or (path / "best.pt").is_file():
            out.append(m)
            continue
        unfinished = [d.name for d in folds if not (d / "summary.json").is_file()]
        if unfinished:
            raise ValueError(f"{path}: a k-fold folder whose {', '.join(unfinished)} did not finish (rerun "
                             "`maskgate kfold` with the same --out to finish it, or name finished folds with --model)")
        out.extend(folds)
    return out


def load_runtime(model: Any, device: str = "auto") -> Runtime:
    """A path (.onnx file, .pt bundle, run folder), a loaded `MaskClassifier`, or a runtime already."""
    if hasattr(model, "probs") and hasattr(model, "preprocess"):
        return model
    if hasattr(model, "predict_logits"):  # a MaskClassifier object
        return TorchRuntime(model, device)
    path = Path(model)
    if path.suffix.lower() == ".onnx":
        return OnnxRuntime(path, device)
    if not torch_available():
        raise ValueError(f"{path}: a PyTorch model, and PyTorch is not installed (the slim install runs .onnx "
                         "models: make one with `maskgate export --format onnx` where PyTorch is)")
    return TorchRuntime.load(path, device)
