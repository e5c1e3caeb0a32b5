"""ONNX export and the slim runtime: the same answers as PyTorch, and predict / serve / watch with PyTorch
made unavailable (as on the slim install: onnxruntime, OpenCV, NumPy, the web parts; no torch)."""
import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch

from maskgate.models.classifier import MaskClassifier, MaskgateNet, Preprocess
from maskgate.models.runtime import OnnxRuntime, default_model_path, load_runtime


@pytest.fixture(scope="module")
def shipped():
    return MaskClassifier.load(default_model_path("torch"))


@pytest.fixture(scope="module")
def real_crops(shipped):
    from maskgate.models.onnx_export import demo_crops

    return demo_crops(shipped)


def test_shipped_onnx_twin_matches_the_shipped_model(shipped, real_crops):
    from maskgate.models.onnx_export import parity

    onnx = OnnxRuntime(default_model_path("onnx"))
    assert onnx.preprocess == shipped.preprocess and onnx.info == json.loads(json.dumps(shipped.info, default=str))
    check = parity(shipped, default_model_path("onnx"), real_crops)
    assert check["crops"] >= 15 and check["max_prob_diff"] < 1e-4 and check["class_agreement"] == 1.0


def test_export_cli_from_weights_and_from_a_graph(tmp_path, shipped, real_crops):
    """A bundle with weights (eager network) and the graph-only shipped bundle (unfolded) both export exactly."""
    from maskgate.cli import main
    from maskgate.models.onnx_export import parity

    net = MaskgateNet("tf_efficientnet_lite0", "none", freeze_blocks=2, dropout=0.0)
    m = MaskClassifier(net, Preprocess(input_size=128), {"backbone": "tf_efficientnet_lite0", "freeze_blocks": 2,
                                                         "dropout": 0.0}, age_bias=[0.3, -0.1, 0.5],
                       info={"note": "random weights"})
    m.save(tmp_path / "w.pt")
    for src, dst in ((tmp_path / "w.pt", tmp_path / "w.onnx"), (default_model_path("torch"), tmp_path / "s.onnx")):
        assert main(["export", "--format", "onnx", "--model", str(src), "--out", str(dst)]) == 0
        check = parity(MaskClassifier.load(src), dst, real_crops)
        assert check["max_prob_diff"] < 1e-4 and check["class_agreement"] == 1.0, (src, check)
    assert OnnxRuntime(tmp_path / "w.onnx").preprocess.input_size == 128
    assert OnnxRuntime(tmp_path / "w.onnx").info == {"note": "random weights"}
    assert main(["export", "--format", "onnx", "--graph-only", "--model", str(tmp_path / "w.pt"),
                 "--out", str(tmp_path / "x.onnx")]) == 2


@pytest.mark.parametrize("head", ["deep", "class18"])
def test_other_heads_save_script_and_export_exactly(tmp_path, real_crops, head):
    """model.head=deep / class18: the bundle keeps its head kind; eager, TorchScript and ONNX agree."""
    from maskgate.models.onnx_export import export_onnx, parity

    torch.manual_seed(1)
    net = MaskgateNet("tf_efficientnet_lite0", "none", freeze_blocks=2, dropout=0.0, head=head).eval()
    arch = {"backbone": "tf_efficientnet_lite0", "freeze_blocks": 2, "dropout": 0.0, "head": head}
    MaskClassifier(net, Preprocess(input_size=128), arch, age_bias=[0.0, 0.2, -0.3]).save(tmp_path / "m.pt",
                                                                                         script=True)
    eager = MaskClassifier.load(tmp_path / "m.pt", eager=True)
    graph = MaskClassifier.load(tmp_path / "m.pt")
    assert eager.arch["head"] == head and type(eager.net.tail.heads).__name__ != "MultiHead"
    x = torch.rand(6, 3, 128, 128)
    a, b = eager.predict_logits(x)["log18"], graph.predict_logits(x)["log18"]
    torch.testing.assert_close(a, b, atol=1e-4, rtol=0)  # the graph is traced from the same fp16 weights
    export_onnx(eager, tmp_path / "m.onnx")
    check = parity(eager, tmp_path / "m.onnx", real_crops)
    assert check["max_prob_diff"] < 1e-4 and check["class_agreement"] == 1.0


def test_onnx_tta_is_the_mirror_average(real_crops):
    rt = OnnxRuntime(default_model_path("onnx"))
    x = rt.preprocess.resize(real_crops[:4])
    np.testing.assert_allclose(rt.probs(x, tta=True), (rt.probs(x) + rt.probs(x[:, :, ::-1])) / 2, atol=1e-6)


def test_not_a_maskgate_onnx_file_is_refused(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="bad.onnx: not a readable ONNX model"):
        load_runtime(bad)
    with pytest.raises(FileNotFoundError):
        load_runtime(tmp_path / "missing.onnx")


def test_predict_cli_same_classes_with_onnx_and_pytorch(tmp_path):
    from maskgate.demo import make_inputs

    inputs = make_inputs(tmp_path / "in")
    outs = {}
    for kind in ("torch", "onnx"):
        out = tmp_path / f"{kind}.csv"
        r = subprocess.run([sys.executable, "-m", "maskgate", "predict", "--model", str(default_model_path(kind)),
                            "--out", str(out), *map(str, inputs)], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        outs[kind] = pd.read_csv(out)
    assert len(outs["onnx"]) == len(inputs)
    assert outs["onnx"]["class"].tolist() == outs["torch"]["class"].tolist()
    np.testing.assert_allclose(outs["onnx"]["confidence"], outs["torch"]["confidence"], atol=2e-3)


SLIM = textwrap.dedent("""
    import sys
    for name in ("torch", "torchvision", "timm"):
        sys.modules[name] = None  # as if not installed: import fails, find_spec gives None
    import json, time
    from pathlib import Path
    import cv2, numpy as np
    from maskgate.cli import main
    from maskgate.models.runtime import default_model_for, torch_available
    assert not torch_available() and default_model_for("auto").suffix == ".onnx"
    out = Path(sys.argv[1])
    photo = cv2.imread(sys.argv[2])
    # predict, with the default model (its ONNX twin, chosen because there is no PyTorch)
    assert main(["predict", "--out", str(out / "p.csv"), sys.argv[2]]) == 0
    # a PyTorch bundle is refused with a clear message, not a traceback
    from maskgate.models.runtime import default_model_path
    assert main(["predict", "--model", str(default_model_path("torch")), "--out", str(out / "x.csv"), sys.argv[2]]) == 2
    # serve
    from fastapi.testclient import TestClient
    from maskgate.serve.app import create_app
    with TestClient(create_app()) as c:
        for _ in range(300):
            if c.get("/ready").status_code == 200:
                break
            time.sleep(0.05)
        r = c.post("/v1/predict", content=cv2.imencode(".jpg", photo)[1].tobytes())
        assert r.status_code == 200 and len(r.json()["faces"]) == 1, r.text
        assert c.get("/v1/model").json()["models"][0]["runtime"] == "onnx"
    # watch
    assert main(["watch", "--source", sys.argv[3], "--all-frames", "--events", str(out / "ev.csv")]) == 0
    print(json.dumps({"torch_loaded": sys.modules.get("torch") is not None,
                      "modules": sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "timm", "torchvision")
                                        and sys.modules[m] is not None)}))
""")


def test_predict_serve_watch_without_pytorch(tmp_path, astronaut):
    import cv2

    from maskgate.demo import make_walk_video

    photo = tmp_path / "a.jpg"
    cv2.imwrite(str(photo), astronaut[..., ::-1])
    video = make_walk_video(tmp_path / "walk.avi", seconds=1.0)
    r = subprocess.run([sys.executable, "-c", SLIM, str(tmp_path), str(photo), str(video)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "PyTorch is not installed" in r.stderr
    last = json.loads(r.stdout.strip().splitlines()[-1])
    assert last == {"torch_loaded": False, "modules": []}
    assert len(pd.read_csv(tmp_path / "p.csv")) == 1
    assert len(pd.read_csv(tmp_path / "ev.csv")) >= 1


def test_auto_tta_mirrors_only_the_doubtful_faces(real_crops):
    """tta "auto": a crop whose top class probability is under tta_below gets the mirror average ("on"),
    the others keep their own distribution ("off"); "on" and "off" are the runtime's own."""
    from maskgate.faces.crop import FaceCrop
    from maskgate.predict import Predictor

    crops = [FaceCrop(image=c, found=True, score=1.0) for c in real_crops]
    pred = Predictor(default_model_path("onnx"), tta="auto")
    model = pred.models[0]
    off, on = pred._probs(model, crops, "off"), pred._probs(model, crops, "on")
    x = model.preprocess.resize(real_crops)
    np.testing.assert_allclose(off, model.probs(x), atol=1e-6)
    np.testing.assert_allclose(on, model.probs(x, tta=True), atol=1e-6)
    top = off.max(1)
    model.preprocess.tta_below = float(np.median(top))  # some crops on each side
    doubt = top < model.preprocess.tta_below
    assert 0 < doubt.sum() < len(crops)
    auto = pred._probs(model, crops, "auto")
    np.testing.assert_allclose(auto[doubt], on[doubt], atol=1e-6)
    np.testing.assert_array_equal(auto[~doubt], off[~doubt])
    assert [r.cls for r in pred.classify_crops(crops)] == auto.argmax(1).tolist()


def test_tta_setting_is_saved_with_the_model_and_can_be_overridden(tmp_path):
    """`maskgate export --tta/--tta-below` saves the setting into the .pt bundle and its ONNX twin; predict
    uses the model's own unless told; a bundle that never said is "off"; bad values are refused."""
    from maskgate.cli import main
    from maskgate.predict import Predictor

    net = MaskgateNet("tf_efficientnet_lite0", "none", freeze_blocks=2, dropout=0.0)
    arch = {"backbone": "tf_efficientnet_lite0", "freeze_blocks": 2, "dropout": 0.0}
    MaskClassifier(net, Preprocess(input_size=128), arch).save(tmp_path / "plain.pt")
    assert Predictor(tmp_path / "plain.pt").tta == ["off"]
    assert main(["export", "--model", str(tmp_path / "plain.pt"), "--out", str(tmp_path / "auto.pt"),
                 "--tta", "auto", "--tta-below", "0.7"]) == 0
    assert main(["export", "--format", "onnx", "--model", str(tmp_path / "auto.pt"),
                 "--out", str(tmp_path / "auto.onnx")]) == 0
    for f in ("auto.pt", "auto.onnx"):
        pre = load_runtime(tmp_path / f).preprocess
        assert (pre.tta, pre.tta_below, pre.input_size) == ("auto", 0.7, 128), f
        assert Predictor(tmp_path / f).tta == ["auto"]
        assert Predictor(tmp_path / f, tta="off").tta == ["off"] and Predictor(tmp_path / f, tta=True).tta == ["on"]
    # an ensemble: each member its own setting
    assert Predictor([tmp_path / "plain.pt", tmp_path / "auto.pt"]).tta == ["off", "auto"]
    with pytest.raises(ValueError, match="tta='sometimes'"):
        Predictor(tmp_path / "auto.pt", tta="sometimes")
    assert main(["export", "--model", str(tmp_path / "plain.pt"), "--out", str(tmp_path / "x.pt"),
                 "--tta", "auto", "--tta-below", "1.5"]) == 2
    assert not (tmp_path / "x.pt").exists()
