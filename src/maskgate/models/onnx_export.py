"""`maskgate export --format onnx`: the classifier after the face crop as one ONNX file.

The graph takes the face crops at the model's input size as uint8 N x I x I x 3 (what the cropper
makes) and returns `log18` (the 18-class log-probabilities, age-band offsets included) and `age_years`;
the normalisation is inside the graph. The bundle's preprocessing, architecture and provenance go
into the file's metadata, so `models/runtime.py` predicts with onnxruntime alone, no PyTorch.
"""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from .classifier import MaskClassifier, ScriptedNet, net_from_arch
from .heads import combine18
from .runtime import ONNX_FORMAT

OPSET = 17


class _OnnxNet(nn.Module):
    """uint8 NHWC crops -> (log18, age_years): normalisation and the 18-class product in the graph."""

    def __init__(self, model: MaskClassifier, net: nn.Module):
        super().__init__()
        self.net = net
        pre = model.preprocess
        self.register_buffer("mean", torch.tensor(pre.mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(pre.std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("age_bias", model.age_bias.detach().clone().float())

    def forward(self, images):
        x = (images.permute(0, 3, 1, 2).float() - self.mean) / self.std
        out = self.net(x)
        return combine18(out, self.age_bias), out["age_years"]


def _eager_net(model: MaskClassifier) -> nn.Module:
    """The eager network; a graph-only bundle's frozen graph is unfolded exactly (models/transfer.py)."""
    if not isinstance(model.net, ScriptedNet):
        return model.net
    from .transfer import load_from_graph

    net = net_from_arch(model.arch)
    load_from_graph(net, model.net.blob)
    return net


def export_graph(module: nn.Module, example: tuple, f, inputs: list[str], outputs: list[str]) -> None:
    """`module` as an ONNX graph in `f` (path or file object): the project's opset, the TorchScript-based exporter,
    the batch axis of every input and output dynamic. Used by `export_onnx` and the training trunk runner."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notice
        torch.onnx.export(module, example, f, input_names=inputs, output_names=outputs,
                          dynamic_axes={name: {0: "batch"} for name in inputs + outputs},
                          opset_version=OPSET, dynamo=False)


def export_onnx(model: MaskClassifier, path: str | os.PathLike) -> Path:
    """Write `model` as an ONNX bundle at `path` (atomically)."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapped = _OnnxNet(model, _eager_net(model).float().cpu().eval()).eval()
    size = model.preprocess.input_size
    example = torch.zeros(2, size, size, 3, dtype=torch.uint8)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    export_graph(wrapped, (example,), str(tmp), ["images"], ["log18", "age_years"])
    proto = onnx.load(str(tmp))
    meta = {"maskgate_format": ONNX_FORMAT, "preprocess": json.dumps(asdict(model.preprocess)),
            "arch": json.dumps(model.arch), "info": json.dumps(model.info, default=str),
            "inputs": f"images: uint8 N x {size} x {size} x 3 RGB face crops (the cropper's, resized)"}
    for k, v in meta.items():
        proto.metadata_props.add(key=k, value=v)
    proto.producer_name = "maskgate"
    onnx.save(proto, str(tmp))
    os.replace(tmp, path)
    return path


def parity(model: MaskClassifier, onnx_path: str | os.PathLike, crops: np.ndarray) -> dict:
    """Largest probability difference and class agreement, PyTorch vs onnxruntime, on the same crops."""
    from .runtime import OnnxRuntime, TorchRuntime

    imgs = model.preprocess.resize(crops)
    a = TorchRuntime(model, "cpu").probs(imgs)
    b = OnnxRuntime(onnx_path, "cpu").probs(imgs)
    return {"crops": len(imgs), "max_prob_diff": float(np.abs(a - b).max()),
            "class_agreement": float((a.argmax(1) == b.argmax(1)).mean())}


def export_checked(model: MaskClassifier, path: str | os.PathLike, reference: MaskClassifier | None = None,
                   extra_crops: np.ndarray | None = None) -> dict:
    """`export_onnx`, then the parity check against `reference` (default: `model`, what PyTorch predicts with) on
    the demo's real face crops and `extra_crops`; raises if a probability differs by more than 1e-3."""
    export_onnx(model, path)
    crops = demo_crops(model)
    if extra_crops is not None and len(extra_crops):
        crops = np.concatenate([crops, extra_crops])
    check = parity(model if reference is None else reference, path, crops)
    if check["max_prob_diff"] > 1e-3:
        raise RuntimeError(f"{path}: the ONNX model disagrees with PyTorch (difference "
                           f"{check['max_prob_diff']:.2e} > 1e-3 on {check['crops']} real face crops, same class "
                           f"{check['class_agreement']:.1%}); do not use it")
    return check


def demo_crops(model: MaskClassifier) -> np.ndarray:
    """Real face crops to check an export on: the demo's photos (scikit-image's astronaut: bare, masks drawn,
    tight, grey) cut by the model's own cropper, each also mirrored and darkened."""
    import tempfile

    from ..data.images import read_image
    from ..demo import make_inputs
    from ..faces.crop import FaceCropper

    cropper = FaceCropper(model.preprocess.crop)
    crops = []
    with tempfile.TemporaryDirectory() as d:
        for p in make_inputs(Path(d)):
            rgb = read_image(p)
            for f in cropper.faces(rgb, True):
                c = cropper.crop_face(rgb, f).image
                crops += [c, np.ascontiguousarray(c[:, ::-1]), (c * 0.6).astype(np.uint8)]
    return np.stack(crops)
