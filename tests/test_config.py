from pathlib import Path

import pytest

from maskgate.config import ConfigError, default_config, load_config, parse_override


def test_defaults_load_and_have_every_section():
    cfg = default_config()
    assert {"data", "face", "model", "train", "augment"} <= set(cfg)


def test_overrides_are_typed_not_strings():
    cfg = load_config(overrides=["train.cache_features=false", "train.epochs=3", "augment.scale=[0.8,1.2]"])
    assert cfg["train"]["cache_features"] is False  # the classic argparse type=bool bug cannot happen
    assert cfg["train"]["epochs"] == 3 and cfg["augment"]["scale"] == [0.8, 1.2]
    assert parse_override("a.b=0.5") == {"a": {"b": 0.5}}


def test_unknown_keys_and_bad_values_rejected(tmp_path):
    with pytest.raises(ConfigError, match="unknown config key 'train.epoch'"):
        load_config(overrides=["train.epoch=3"])
    with pytest.raises(ConfigError, match="train.epochs"):
        load_config(overrides=["train.epochs=0"])
    with pytest.raises(ConfigError, match="not key=value"):
        load_config(overrides=["epochs"])
    with pytest.raises(ConfigError, match="train.trunk_runtime must be auto, torch or onnxruntime"):
        load_config(overrides=["train.trunk_runtime=tensorrt"])
    f = tmp_path / "c.yaml"
    f.write_text("model:\n  input_size: 128\n")
    assert load_config(f)["model"]["input_size"] == 128


def test_packaged_config_by_name_and_file_first(tmp_path, monkeypatch):
    # `--config gpu` is the packaged GPU recipe merged over the defaults: whole-network fine-tune on images
    cfg = load_config("gpu")
    assert cfg["model"]["freeze_blocks"] == 0 and cfg["train"]["cache_features"] is False
    assert cfg["face"] == default_config()["face"]  # the crop is the default one: the same predict path
    best = load_config("best")  # the measured best CPU recipe: the default with feature erasing on
    assert best["train"]["erase"] > 0 and best["train"]["cache_features"] is True
    assert {k: v for k, v in best["train"].items() if k != "erase"} == {
        k: v for k, v in default_config()["train"].items() if k != "erase"}
    world = load_config("best_world")  # best + faces-world as an extra source at 0.4 of every batch
    assert world["train"] == best["train"] and world["model"] == best["model"]
    assert [(e["name"], e["share"]) for e in world["data"]["extra"]] == [("faces-world", 0.4)]
    assert Path(world["data"]["extra"][0]["path"]).parts[-2:] == ("faces-world", "train")
    fast = load_config("best_fast")  # the 60-minute recipe: best_world in 3 epochs (run by `maskgate seeds`)
    assert fast["data"] == world["data"] and fast["model"] == world["model"]
    assert {k: v for k, v in fast["train"].items() if k != "epochs"} == {
        k: v for k, v in world["train"].items() if k != "epochs"} and fast["train"]["epochs"] == 3
    assert {k: v for k, v in fast["augment"].items() if k != "low_res"} == {
        k: v for k, v in world["augment"].items() if k != "low_res"} and fast["augment"]["low_res"] == 0.25
    large = load_config("gpu_large")  # the GPU recipe on a larger network and crop
    assert large["model"]["backbone"] == "tf_efficientnet_lite2" and large["model"]["freeze_blocks"] == 0
    assert large["model"]["input_size"] <= large["face"]["crop_size"]  # the input is never an upsampled crop
    assert {k: v for k, v in large["train"].items()} == cfg["train"]
    with pytest.raises(ConfigError, match="not a packaged config name.*gpu"):
        load_config("gpu_typo")
    # a file of that name in the working folder wins over the packaged one
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gpu").write_text("train:\n  epochs: 2\n")
    assert load_config("gpu")["train"]["epochs"] == 2
    assert load_config("gpu")["model"]["freeze_blocks"] == default_config()["model"]["freeze_blocks"]


def test_saved_config_of_an_older_version_resumes_as_it_was_trained():
    """A run saved before data.duplicate_near existed linked only identical hashes: resumed, it still does."""
    from maskgate.config import complete_saved, default_config

    old = default_config()
    del old["data"]["duplicate_near"]
    del old["train"]["trunk_runtime"]
    old["train"]["epochs"] = 3
    cfg = complete_saved(old)
    assert cfg["data"]["duplicate_near"] == 0          # the behaviour of the version that saved it
    assert cfg["train"]["epochs"] == 3                 # what was saved is kept
    assert cfg["train"]["trunk_runtime"] == "torch"    # its cached trunk outputs came from PyTorch: same cache file
    saved_now = default_config()
    saved_now["data"]["duplicate_near"] = 4
    assert complete_saved(saved_now)["data"]["duplicate_near"] == 4
    del old["train"]["label_smoothing"]                # a key with no recorded legacy value: today's default
    assert complete_saved(old)["train"]["label_smoothing"] == default_config()["train"]["label_smoothing"]
    old["train"]["no_such_key"] = 1
    with pytest.raises(ConfigError, match="no_such_key"):
        complete_saved(old)


def test_face_settings_are_checked_in_one_place_naming_key_and_flag():
    """The face section is checked by CropSettings itself (config, bundles and CLI flags alike): every bad
    value is named at once, by its config key and the flag that sets it."""
    with pytest.raises(ConfigError, match=r"face.weak_score \(--weak-score\) must be in \(0, min_score 0.5\]"):
        load_config(overrides=["face.weak_score=0.7"])
    with pytest.raises(ConfigError) as e:
        load_config(overrides=["face.det_retry_side=16", "face.det_retry_below=1.5", "face.subject_centre=-1",
                               "face.subject_confidence=11", "face.crop_size=8"])
    for key in ("det_retry_side (--det-retry)", "det_retry_below (--det-retry-below)",
                "subject_centre (--subject-centre)", "subject_confidence (--subject-confidence)", "crop_size"):
        assert "face." + key in str(e.value)
    with pytest.raises(ConfigError, match="face.det_max_side must be a number, got 'big'"):
        load_config(overrides=["face.det_max_side=big"])
    from maskgate.train.recipe import build_preprocess

    for ok in ("face.weak_score=null", "face.det_retry_side=null", "face.det_retry_below=null",
               "face.subject_centre=0", "face.subject_confidence=0"):
        load_config(overrides=[ok])  # off is always allowed
    off = build_preprocess(load_config(overrides=["face.weak_score=0", "face.det_retry_side=0",
                                                  "face.det_retry_below=0", "face.subject_centre=0"])).crop
    assert (off.weak_score, off.det_retry_side, off.det_retry_below, off.subject_centre) == (None,) * 4  # 0 = null


def test_the_mirror_image_setting_of_a_trained_model_comes_from_the_config():
    """model.tta / model.tta_below go into the run's preprocessing (saved with the model); YAML's bare off / on
    (booleans) mean the modes; a bad value fails when the config loads, not when training ends."""
    from maskgate.train.recipe import build_preprocess

    assert build_preprocess(load_config()).tta == "off"
    for value, mode in (("auto", "auto"), ("off", "off"), ("on", "on"), ("false", "off")):
        pre = build_preprocess(load_config(overrides=[f"model.tta={value}", "model.tta_below=0.7"]))
        assert (pre.tta, pre.tta_below) == (mode, 0.7), value
    assert "tta" not in repr(pre)  # not part of the training caches' key
    with pytest.raises(ConfigError, match="model.tta must be off, on or auto"):
        load_config(overrides=["model.tta=maybe"])
    with pytest.raises(ConfigError, match="model.tta_below"):
        load_config(overrides=["model.tta_below=1.5"])
