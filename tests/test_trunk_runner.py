"""The frozen trunk run by onnxruntime (the CPU default for cached trunk outputs) computes what PyTorch does."""
import numpy as np
import pytest
import torch

from maskgate.config import default_config
from maskgate.models.classifier import MaskgateNet, Preprocess
from maskgate.train.features import cache_trunk_features
from maskgate.train.images import RowImages
from maskgate.train.trunk_runner import resolve_trunk_runtime, trunk_runner

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def trunk():
    return MaskgateNet("tf_efficientnet_lite0", "packaged", freeze_blocks=4).trunk


def test_onnxruntime_and_torch_trunks_agree(trunk):
    torch.manual_seed(0)
    x = torch.randn(5, 3, 96, 96)  # an odd batch: the graph's batch axis is dynamic
    run_t, used_t = trunk_runner(trunk, CPU, "torch", 96)
    run_o, used_o = trunk_runner(trunk, CPU, "onnxruntime", 96)
    assert (used_t, used_o) == ("torch", "onnxruntime")
    a, b = run_t(x), run_o(x)
    assert a.shape == b.shape == (5, 80, 6, 6) and a.dtype == b.dtype == np.float32
    assert np.abs(a - b).max() < 1e-3 * max(1.0, np.abs(a).max())  # float noise, under the cache's fp16
    assert np.abs(a).mean() > 0.05  # not a pair of zero maps
    # the torch runner leaves the module where it found it usable (frozen, eval), and a channels-last batch works
    b2 = run_o(x.contiguous(memory_format=torch.channels_last))
    assert np.array_equal(b, b2)


def test_cached_outputs_match_between_runtimes(trunk, tmp_path):
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 255, (6, 192, 192, 3), dtype=np.uint8)  # crop-cache size
    pre = Preprocess(input_size=64)
    aug = default_config()["augment"]
    caches = {}
    for rt in ("torch", "onnxruntime"):
        run, _ = trunk_runner(trunk, CPU, rt, 64)
        caches[rt] = np.asarray(cache_trunk_features(run, RowImages(crops), pre, aug, 2,
                                                     tmp_path / f"{rt}.npy", seed=3, batch_size=4))
    assert caches["torch"].shape == (6, 2, 80, 4, 4) and caches["torch"].dtype == np.float16
    diff = np.abs(caches["torch"].astype(np.float32) - caches["onnxruntime"].astype(np.float32))
    assert diff.max() < 2e-2 and diff.mean() < 1e-3  # fp16 rounding of equal floats, no more
    # making the next batch's images in a thread (the onnxruntime default) changes nothing
    run, _ = trunk_runner(trunk, CPU, "onnxruntime", 64)
    serial = cache_trunk_features(run, RowImages(crops), pre, aug, 2, tmp_path / "serial.npy", seed=3, batch_size=4,
                                  prefetch=False)
    assert np.array_equal(np.asarray(serial), caches["onnxruntime"])
    # a finished cache is read back without running anything
    again = cache_trunk_features(None, RowImages(crops), pre, aug, 2, tmp_path / "torch.npy", 3, 4)
    assert np.array_equal(np.asarray(again), caches["torch"])


def test_runtime_names_resolve_and_bad_ones_are_named():
    assert resolve_trunk_runtime("auto", CPU) == "onnxruntime"
    assert resolve_trunk_runtime(None, CPU) == "onnxruntime"
    assert resolve_trunk_runtime("torch", CPU) == "torch"
    assert resolve_trunk_runtime("auto", torch.device("cuda")) == "torch"
    with pytest.raises(ValueError, match="trunk_runtime='tensorrt'"):
        resolve_trunk_runtime("tensorrt", CPU)
    with pytest.raises(ValueError, match="runs on the CPU"):
        resolve_trunk_runtime("onnxruntime", torch.device("cuda"))


def test_a_trunk_that_will_not_export_falls_back_under_auto_only(trunk, monkeypatch):
    def broken_export(*a, **k):
        raise RuntimeError("unsupported operator")

    monkeypatch.setattr(torch.onnx, "export", broken_export)
    with pytest.warns(RuntimeWarning, match="did not export"):
        run, used = trunk_runner(trunk, CPU, "onnxruntime", 64, fallback=True)
    assert used == "torch" and run(torch.zeros(1, 3, 64, 64)).shape == (1, 80, 4, 4)
    with pytest.raises(RuntimeError, match="unsupported operator"):
        trunk_runner(trunk, CPU, "onnxruntime", 64, fallback=False)
