"""`maskgate kfold` (every person-level fold, out-of-fold predictions, resumable) and hard-vote ensembles."""
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import TINY_OVERRIDES, make_labelled_source


def _cli(*args):
    r = subprocess.run([sys.executable, "-m", "maskgate", *map(str, args)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def test_kfold_trains_every_fold_writes_oof_and_resumes(tiny_data, tmp_path):
    train, ev = tiny_data
    out = tmp_path / "kf"
    r = _cli("kfold", "--data-dir", train, "--out", out, "--folds", "2", *TINY_OVERRIDES, "train.epochs=1")
    res = json.loads(r.stdout.strip().splitlines()[-1])
    kf = json.loads((out / "kfold.json").read_text())
    assert len(kf["folds"]) == 2 and res["mean_macro_f1"] == pytest.approx(np.mean([f["val_macro_f1"] for f in kf["folds"]]), abs=1e-4)
    oof = pd.read_csv(out / "oof.csv", dtype={"person": str})
    table = pd.read_csv(train / "train.csv", dtype=str)
    assert len(oof) == 7 * len(table) and oof["path"].is_unique  # every photo once, from the fold that held it out
    assert oof.groupby("person")["fold"].nunique().max() == 1  # a person's photos all in one fold
    assert (oof["person"].str.len() == 6).all()  # ids as written ("000001"), not read back as numbers
    assert np.allclose(oof[[f"p{k}" for k in range(18)]].sum(axis=1), 1, atol=1e-3)
    assert (oof["pred"] == oof[[f"p{k}" for k in range(18)]].to_numpy().argmax(1)).all()
    # a rerun skips the finished folds; a fold with only last.pt is resumed
    (out / "fold1" / "summary.json").unlink()
    r = _cli("kfold", "--data-dir", train, "--out", out, "--folds", "2", "--soup", *TINY_OVERRIDES, "train.epochs=1")
    assert "fold 1/2: done already" in r.stderr and "fold 2/2: resuming" in r.stderr
    from maskgate.models.classifier import MaskClassifier

    soup = MaskClassifier.load(out / "soup.pt")  # --soup: the folds averaged into one network, REPAIRed on train
    assert [m["path"] for m in soup.info["soup"]["members"]] == [str(out / f"fold{k}" / "best.pt") for k in (0, 1)]
    assert soup.info["soup"]["repair"]["folders"] == [str(train)]
    assert json.loads(r.stdout.strip().splitlines()[-1])["soup"] == str(out / "soup.pt")
    # the folds as an ensemble, hard vote; the k-fold folder stands for its folds
    sub, sub_dir = tmp_path / "sub.csv", tmp_path / "sub_dir.csv"
    _cli("predict", "--data-dir", ev, "--out", sub, "--model", out / "fold0", "--model", out / "fold1", "--vote", "hard")
    assert pd.read_csv(sub)["ans"].between(0, 17).all()
    _cli("predict", "--data-dir", ev, "--out", sub_dir, "--model", out, "--vote", "hard")
    assert pd.read_csv(sub_dir).equals(pd.read_csv(sub))
    from maskgate.models.runtime import expand_members

    assert expand_members([out, "x.onnx"]) == [out / "fold0", out / "fold1", "x.onnx"]
    (out / "fold1" / "summary.json").unlink()  # a fold still training is named, not left out
    with pytest.raises(ValueError, match="fold1 did not finish"):
        expand_members([out])


def test_kfold_with_an_extra_source_keeps_out_of_fold_rows_of_the_main_layout(tiny_data, tmp_path, astronaut):
    """An extra source validates the same people in every fold (and each photo once per drawn mask state),
    so its rows are in each fold's val_predictions.csv, named by a source column, but not in oof.csv."""
    train, _ = tiny_data
    src = make_labelled_source(tmp_path / "world", astronaut, 10, seed=3)
    out = tmp_path / "kf"
    _cli("kfold", "--data-dir", train, "--out", out, "--folds", "2", *TINY_OVERRIDES, "train.epochs=1",
         "data.extra=[{path: " + str(src) + ", name: world, share: 0.3}]")
    vp = pd.read_csv(out / "fold0" / "val_predictions.csv")
    assert set(vp["source"]) == {"main", "world"}
    world = vp[vp["source"] == "world"]
    assert len(world) == 3 * world["path"].nunique()  # worn, worn wrongly, bare
    assert sorted(world["true"] // 6) == sorted([0, 1, 2] * world["path"].nunique())
    oof = pd.read_csv(out / "oof.csv")
    table = pd.read_csv(train / "train.csv", dtype=str)
    assert "source" not in oof and len(oof) == 7 * len(table) and oof["path"].is_unique
    kf = json.loads((out / "kfold.json").read_text())
    assert all(set(f["val_by_source"]) == {"main", "world"} for f in kf["folds"])


class _Fixed:
    """A runtime giving set distributions (to check the vote rule alone), with the shipped model's preprocessing."""

    kind = "fixed"

    def __init__(self, probs, name):
        from maskgate.models.runtime import OnnxRuntime, default_model_path

        real = OnnxRuntime(default_model_path("onnx"))
        self.preprocess, self.info, self.name, self.q = real.preprocess, {}, name, np.asarray(probs, np.float32)

    def probs(self, images, tta=False):
        return np.repeat(self.q[None], len(images), 0)


def test_hard_vote_is_the_majority_and_soft_vote_the_mean(astronaut):
    from maskgate.predict import Predictor

    a = np.full(18, 0.01)
    a[3] = 1 - 0.17  # class 3, sure
    b = np.full(18, 0.02)
    b[5] = 0.66  # class 5, less sure
    b[3] = 0.02
    members = [_Fixed(a, "a"), _Fixed(b, "b"), _Fixed(b, "c")]
    hard = Predictor(members, vote="hard").predict_image(astronaut)[0]
    soft = Predictor(members, vote="soft").predict_image(astronaut)[0]
    assert hard.cls == 5  # two of three pick 5
    logp = np.log(np.stack([a, b, b])).mean(0)
    assert soft.cls == int(logp.argmax())
    tie = Predictor([_Fixed(a, "a"), _Fixed(b, "b")], vote="hard").predict_image(astronaut)[0]
    assert tie.cls == int(np.log(np.stack([a, b])).mean(0).argmax())  # 1-1: the soft vote decides
    with pytest.raises(ValueError, match="soft or hard"):
        Predictor(members, vote="most")


def test_seeds_trains_each_seed_soups_them_and_resumes(tiny_data, tmp_path):
    """`maskgate seeds`: one run per loop seed on one split, their REPAIRed weight average as OUT/soup.pt."""
    from maskgate.config import load_config
    from maskgate.models.classifier import MaskClassifier
    from maskgate.train.seeds import seed_list

    train, ev = tiny_data
    out = tmp_path / "sd"
    args = ("seeds", "--data-dir", train, "--out", out, "--seeds", "2", *TINY_OVERRIDES, "train.epochs=1")
    r = _cli(*args)
    res = json.loads(r.stdout.strip().splitlines()[-1])
    sd = json.loads((out / "seeds.json").read_text())
    assert [x["seed"] for x in sd["runs"]] == [42, 43]  # the config's seed and the next
    assert res["mean_macro_f1"] == pytest.approx(np.mean([x["val_macro_f1"] for x in sd["runs"]]), abs=1e-4)
    splits = [pd.read_csv(out / f"seed{s}" / "split.csv") for s in (42, 43)]
    assert splits[0].equals(splits[1])  # only the loop's seed differs: the same people validate
    assert yaml.safe_load((out / "seed43" / "config.yaml").read_text())["train"]["seed"] == 43
    soup = MaskClassifier.load(out / "soup.pt")
    assert [m["path"] for m in soup.info["soup"]["members"]] == [str(out / f"seed{s}" / "best.pt") for s in (42, 43)]
    assert soup.info["soup"]["repair"]["folders"] == [str(train)] and soup.info["soup"]["repair"]["images"] > 0
    # the soup and every member scored alike on the shared validation people's photos, which REPAIR never drew
    split = splits[0]
    val = split[split["split"] == "val"]
    vp = sd["validation_photos"]
    assert vp["photos"] == len(val) and vp["people"] == val["person"].nunique()
    assert soup.info["soup"]["repair"]["left_out"] == len(val)
    assert [r["model"] for r in vp["scores"]] == ["seed 42", "seed 43", "soup", "soup, mirror TTA on"]
    assert [r["tta"] for r in vp["scores"]] == ["own", "own", "own", "on"]
    assert all(r["n"] == len(val) for r in vp["scores"])
    from sklearn.metrics import f1_score

    from maskgate.predict import Predictor
    for name, model in (("seed 43", out / "seed43" / "best.pt"), ("soup", out / "soup.pt")):
        pred = [res[0].cls for _, res, _ in Predictor(str(model)).predict_files(val["path"])]
        want = f1_score(val["label"], pred, labels=np.unique(val["label"]), average="macro")
        got = next(row for row in vp["scores"] if row["model"] == name)["macro_f1"]
        assert got == pytest.approx(want, abs=1e-4), name
    assert "soup" in r.stderr and "validation photos" in r.stderr
    sub = tmp_path / "sub.csv"
    _cli("predict", "--data-dir", ev, "--out", sub, "--model", out / "soup.pt")
    assert pd.read_csv(sub)["ans"].between(0, 17).all()
    # a rerun skips finished runs and resumes one with only last.pt
    (out / "seed43" / "summary.json").unlink()
    r = _cli(*args)
    assert "seed 42 (1/2): done already" in r.stderr and "seed 43 (2/2): resuming" in r.stderr
    cfg = load_config()
    assert seed_list("42,2,3", cfg) == [42, 2, 3] and seed_list(3, cfg) == [42, 43, 44]
    for bad in ("1", "2,2", "x", "0"):
        with pytest.raises(ValueError, match="--seeds"):
            seed_list(bad, cfg)


def test_validation_photos_are_the_main_layouts_shared_ones(tmp_path):
    """What `maskgate seeds` scores its soup on: the competition layout's validation rows that every run shares;
    an extra source's rows (masks drawn in training, not on disk) are left out; runs that differ get none."""
    from maskgate.train.seeds import validation_photos

    rows = pd.DataFrame({"path": ["a/1.jpg", "a/2.jpg", "b/1.jpg", "w/t1.jpg", "w/t2.jpg"],
                         "person": ["000001", "000001", "000002", "t1", "t2"], "label": [3, 15, 4, 12, 0],
                         "split": ["val", "val", "train", "val", "train"],
                         "source": ["main", "main", "main", "faces-world", "faces-world"]})
    for k, table in enumerate((rows, rows, rows.assign(split=["val", "train", "val", "val", "train"]))):
        (tmp_path / f"r{k}").mkdir()
        table.to_csv(tmp_path / f"r{k}" / "split.csv", index=False)
    val = validation_photos([tmp_path / "r0", tmp_path / "r1"])
    assert val["path"].tolist() == ["a/1.jpg", "a/2.jpg"] and val["person"].tolist() == ["000001", "000001"]
    assert val["label"].tolist() == [3, 15]
    assert validation_photos([tmp_path / "r0", tmp_path / "r2"]) is None  # another split: nothing shared to score
    (tmp_path / "r3").mkdir()  # a run without extra sources has no source column
    rows.drop(columns="source").iloc[:3].to_csv(tmp_path / "r3" / "split.csv", index=False)
    assert validation_photos([tmp_path / "r3", tmp_path / "r3"])["path"].tolist() == ["a/1.jpg", "a/2.jpg"]
