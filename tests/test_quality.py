"""Quality floors on the shared data (../shared/data/maskproxy, faces-world); skipped where it is absent.

The two trainings run the default recipe for 3 epochs instead of 5 (each epoch of the trained tail is
~80 s on 2 cores; the whole suite must stay well inside CI's time), so their floors are for that.
1. Train the default recipe on a 500-person subset of maskproxy/train, score part of maskproxy/eval.
2. The shipped default model on the same part of maskproxy/eval, and on people of every other race
   (faces-world/eval with masks drawn by `maskgate synth`).
3. Train on a maskproxy subset with a faces-world subset as an extra source (`--extra`), score part of
   faces-world/eval with masks drawn by `maskgate synth`, and part of maskproxy/eval.
"""
import json
import subprocess
import sys

import pandas as pd
import pytest

from conftest import SHARED

WORLD = SHARED.parent / "faces-world"

pytestmark = pytest.mark.skipif(not (SHARED / "train" / "train.csv").is_file(),
                                reason=f"shared maskproxy data not found at {SHARED}")
EVAL_IMAGES = 1400  # part of the 3,395-image eval split, to keep CI short
EPOCHS = 3  # of the default 5 (module docstring)


def _eval_subset(tmp_path, n: int = EVAL_IMAGES):
    info = pd.read_csv(SHARED / "eval" / "info.csv").iloc[:n]
    answers = pd.read_csv(SHARED / "eval" / "answers.csv").set_index("ImageID").loc[info["ImageID"]].reset_index()
    ev = tmp_path / "eval"
    (ev / "images").mkdir(parents=True)
    for i in info["ImageID"]:
        (ev / "images" / i).symlink_to(SHARED / "eval" / "images" / i)
    info.to_csv(ev / "info.csv", index=False)
    answers.to_csv(ev / "answers.csv", index=False)
    return ev


def _train_subset(tmp_path, n_people):
    table = pd.read_csv(SHARED / "train" / "train.csv", dtype=str)
    table = table.sample(n=n_people, random_state=0).sort_values("id")
    tr = tmp_path / "train"
    (tr / "images").mkdir(parents=True)
    for folder in table["path"]:
        (tr / "images" / folder).symlink_to(SHARED / "train" / "images" / folder)
    table.to_csv(tr / "train.csv", index=False)
    return tr


def _run(*args):
    r = subprocess.run([sys.executable, "-m", "maskgate", *map(str, args)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def _score(model, ev, tmp_path, name):
    sub = tmp_path / f"{name}.csv"
    args = ["predict", "--data-dir", ev, "--out", sub] + (["--model", model] if model else [])
    _run(*args)
    return json.loads(_run("evaluate", "--pred", sub, "--truth", ev / "answers.csv").stdout)


@pytest.mark.slow
def test_training_on_a_maskproxy_subset_reaches_the_floor(tmp_path):
    tr, ev = _train_subset(tmp_path, 500), _eval_subset(tmp_path)
    _run("train", "--data-dir", tr, "--out", tmp_path / "run", "train.views=2", f"train.epochs={EPOCHS}")
    res = _score(tmp_path / "run", ev, tmp_path, "subset")
    print("subset-trained model on maskproxy eval part:", res)
    assert res["mask_acc"] > 0.97
    assert res["macro_f1"] > 0.50, res


@pytest.mark.slow
def test_shipped_default_model_on_maskproxy_eval(tmp_path):
    res = _score(None, _eval_subset(tmp_path), tmp_path, "default")
    print("shipped model on maskproxy eval part:", res)
    assert res["mask_acc"] > 0.98
    assert res["macro_f1"] > 0.66, res  # measured 0.676 on this part (0.682 on the whole eval split; soup5 before it 0.705)


def _world_subset(tmp_path, split, n_people):
    """The first n people of a faces-world split as a source folder (labels.csv + linked photos)."""
    table = pd.read_csv(WORLD / split / "labels.csv").iloc[:n_people]
    src = tmp_path / f"world_{split}"
    (src / "images").mkdir(parents=True)
    for p in table["path"]:
        (src / p).symlink_to(WORLD / split / p)
    table.to_csv(src / "labels.csv", index=False)
    return src


@pytest.mark.slow
@pytest.mark.skipif(not (WORLD / "train" / "labels.csv").is_file(), reason=f"faces-world data not found at {WORLD}")
def test_training_with_an_extra_source_reaches_the_floor_on_other_people(tmp_path):
    tr = _train_subset(tmp_path, 300)
    world = _world_subset(tmp_path, "train", 600)
    _run("train", "--data-dir", tr, "--out", tmp_path / "run", "--extra", world, "train.views=2",
         f"train.epochs={EPOCHS}")
    fw_eval = tmp_path / "fw_eval"
    _run("synth", "--src", _world_subset(tmp_path, "eval", 300), "--out", fw_eval, "--layout", "eval",
         "--per-person", "3")
    res = _score(tmp_path / "run", fw_eval, tmp_path, "world")
    print("maskproxy 300 + faces-world 600 people, on faces-world eval (drawn masks):", res)
    # measured 0.993 / 0.932 / 0.621 at 5 epochs (passes at 3; with 500 people at 3 epochs 0.992 / 0.901 / 0.608,
    # too near the floor, so 600 stay); the maskproxy-only model shipped before scores
    # gender 0.870 on such photos
    assert res["mask_acc"] > 0.97, res  # masks drawn in new looks, on people it never saw
    assert res["gender_acc"] > 0.89, res
    assert res["age_acc"] > 0.57, res
    mp = _score(tmp_path / "run", _eval_subset(tmp_path, 700), tmp_path, "mp")
    print("the same model on maskproxy eval part:", mp)
    assert mp["mask_acc"] > 0.98 and mp["macro_f1"] > 0.50, mp  # measured 0.998 / 0.577 at 5 epochs


@pytest.mark.slow
@pytest.mark.skipif(not (WORLD / "eval" / "labels.csv").is_file(), reason=f"faces-world data not found at {WORLD}")
def test_shipped_default_model_on_other_people(tmp_path):
    fw_eval = tmp_path / "fw_eval"
    _run("synth", "--src", _world_subset(tmp_path, "eval", 300), "--out", fw_eval, "--layout", "eval",
         "--per-person", "3")
    res = _score(None, fw_eval, tmp_path, "world_default")
    print("shipped model on faces-world eval part (drawn masks):", res)
    # measured 0.997 / 0.963 / 0.678 on these 897 photos (all 4,500: 0.998 / 0.943 / 0.702); the
    # maskproxy-only model shipped before issue 9 scores gender 0.870 on all 4,500
    assert res["mask_acc"] > 0.98, res
    assert res["gender_acc"] > 0.92, res
    assert res["age_acc"] > 0.65, res
