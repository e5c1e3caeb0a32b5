"""`maskgate adapt`: age-band offsets re-fitted on labelled people, checked on held-out people, written into a
model that then decides exactly as the offsets say."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from maskgate import adapt
from maskgate.cli import main
from maskgate.labels import encode
from maskgate.models.heads import combine18

WORLD = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces-world"


def _logits(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return {"mask": 3 * torch.randn(n, 3, generator=g), "gender": 3 * torch.randn(n, 2, generator=g),
            "age": 1.5 * torch.randn(n, 3, generator=g)}


def _calibrated_people(n: int, seed: int, model_bias: tuple[float, float]):
    """Truth drawn from the heads' own distributions (so the clean model is calibrated), and the probabilities
    of a model whose age logits lean by (0, *model_bias)."""
    lg = _logits(n, seed)
    rng = np.random.default_rng(seed)
    draw = lambda logit: np.array([rng.choice(len(q), p=q) for q in torch.softmax(logit, 1).numpy()])  # noqa: E731
    y = encode(draw(lg["mask"]), draw(lg["gender"]), draw(lg["age"]))
    probs = combine18(lg, torch.tensor([0.0, *model_bias])).exp().numpy()
    return probs, y


def test_apply_offsets_equals_combine18_with_the_offsets_added():
    logits = _logits(400, 0)
    logits["age"] *= 4 / 3
    own = torch.tensor([0.0, -0.17, 0.1])  # the model's offsets, already in its probabilities
    p = combine18(logits, own).exp().numpy()
    changed = 0
    for b1, b2 in [(0.0, 0.0), (0.3, -0.7), (-1.0, 1.0), (0.9, 0.9)]:
        ref = combine18(logits, own + torch.tensor([0.0, b1, b2])).argmax(1).numpy()
        got = adapt.apply_offsets(p, b1, b2)
        np.testing.assert_array_equal(got, ref)
        changed += int((got != p.argmax(1)).sum())
    assert changed > 0  # the offsets tried do move some decisions, so the comparison means something


def test_adapt_undoes_a_lean_toward_older_bands_and_gains_on_held_out_people():
    probs, y = _calibrated_people(4000, 1, model_bias=(1.0, 1.0))
    ad = adapt.adapt_offsets(probs, y, np.arange(len(y)), objective="age_acc")
    assert ad.kept  # most of the lean undone (the penalty and a flat optimum keep it from all of it)
    assert ad.offsets[0] == pytest.approx(-0.8, abs=0.3) and ad.offsets[1] == pytest.approx(-0.8, abs=0.3)
    assert ad.held_out["age_acc"] > ad.as_is["age_acc"] + 0.02
    assert ad.held_out["mask_acc"] == ad.as_is["mask_acc"] and ad.held_out["gender_acc"] == ad.as_is["gender_acc"]
    assert len(ad.fold_offsets) == 5


def test_adapt_keeps_a_calibrated_model_as_it_is():
    probs, y = _calibrated_people(4000, 2, model_bias=(0.0, 0.0))
    ad = adapt.adapt_offsets(probs, y, np.arange(len(y)), objective="age_acc")
    assert ad.offsets == (0.0, 0.0)
    assert not ad.kept or ad.held_out["age_acc"] > ad.as_is["age_acc"]


def test_person_folds_never_split_a_person_and_need_enough_people():
    persons = np.repeat(np.arange(30), 3).astype(str)
    fold = adapt.person_folds(persons, 5)
    for p in np.unique(persons):
        assert len(set(fold[persons == p])) == 1
    assert sorted(set(fold.tolist())) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="at least 10 people"):
        adapt.person_folds(np.arange(9).astype(str), 5)


def test_persons_of_a_synthesized_set_come_from_its_image_names(tmp_path):
    (tmp_path / "images").mkdir()
    pd.DataFrame({"ImageID": ["000001_mask1.jpg", "000001_normal.jpg", "000002_mask1.jpg"],
                  "ans": [0, 12, 3]}).to_csv(tmp_path / "answers.csv", index=False)
    data = adapt.read_labelled_photos([tmp_path])
    assert data.persons[0] == data.persons[1] != data.persons[2]
    assert data.paths[0] == str(tmp_path / "images" / "000001_mask1.jpg")
    np.testing.assert_array_equal(data.classes, [0, 12, 3])


def test_bad_inputs_are_named_in_the_error(tmp_path, capsys):
    assert main(["adapt", "--data", str(tmp_path), "--out", str(tmp_path / "m.pt")]) == 2
    assert f"{tmp_path}: no answers.csv" in capsys.readouterr().err
    (tmp_path / "labels.csv").write_text("path,age,gender\na.jpg,-3,female\n")
    assert main(["adapt", "--data", str(tmp_path), "--out", str(tmp_path / "m.pt")]) == 2
    assert "labels.csv:2" in capsys.readouterr().err
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a model")
    assert main(["adapt", "--data", str(tmp_path), "--model", str(broken), "--out", str(tmp_path / "m.pt")]) == 2
    assert f"{broken}: not a readable maskgate model" in capsys.readouterr().err
    (tmp_path / "site.csv").write_text("path,age,gender\na.jpg,33,female\n")
    assert main(["adapt", "--data", str(tmp_path / "site.csv"), "--draw-masks", "3", "--out", str(tmp_path / "m.pt")]) == 2
    assert "site.csv: masks are drawn on a labelled source, a folder with labels.csv" in capsys.readouterr().err
    assert main(["adapt", "--data", str(tmp_path), "--out", str(tmp_path / "m.txt")]) == 2
    assert "m.txt: the adapted model is written as a .pt bundle or an .onnx file" in capsys.readouterr().err


@pytest.mark.skipif(not (WORLD / "eval" / "labels.csv").is_file(), reason=f"faces-world data not found at {WORLD}")
def test_adapt_command_writes_a_model_that_decides_with_the_new_offsets(tmp_path, capsys):
    """On 45 real people under 30 with masks drawn (a young site: the shipped model, fitted on an older mix,
    calls some of them 30-59), adapt keeps offsets toward <30; the written bundle's offsets are the model's plus
    those, and its classes equal the shipped model's probabilities re-decided with them; a broken photo is
    skipped and reported, the rest still count; the ONNX twin decides the same."""
    from maskgate.models.classifier import read_bundle
    from maskgate.models.runtime import default_model_path
    from maskgate.predict import Predictor

    src = tmp_path / "site"
    src.mkdir()
    table = pd.read_csv(WORLD / "eval" / "labels.csv")
    table = table[table["age"] < 30].iloc[:45]
    table.assign(path=[str(WORLD / "eval" / p) for p in table["path"]]).to_csv(src / "labels.csv", index=False)
    out = tmp_path / "adapted.pt"
    assert main(["adapt", "--data", str(src), "--draw-masks", "3", "--out", str(out), "--folds", "4"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["people"] == 45 and res["photos"] == 135 and res["skipped"] == 0
    assert res["kept"] and res["held_out"]["age_acc"] > res["as_is"]["age_acc"]
    b1, b2 = res["offsets"]
    assert b1 < 0 and b2 <= 0  # toward <30

    own, _ = read_bundle(default_model_path("torch"))
    new, _ = read_bundle(out)
    np.testing.assert_allclose(np.array(new["age_bias"]), np.array(own["age_bias"]) + [0.0, b1, b2], atol=1e-6)
    assert new["info"]["adapted"]["offsets"] == [b1, b2] and new["torchscript"] == own["torchscript"]

    answers = pd.read_csv(next((tmp_path / "adapted_photos").iterdir()) / "answers.csv")
    paths = [str(next((tmp_path / "adapted_photos").iterdir()) / "images" / i) for i in answers["ImageID"]]
    # without the mirror image: with "auto" (the shipped model's own) which faces get it depends on the offsets
    before, _ = adapt.model_probs(default_model_path("torch"), paths, tta="off")
    after, _ = adapt.model_probs(out, paths, tta="off")
    np.testing.assert_array_equal(after.argmax(1), adapt.apply_offsets(before, b1, b2))

    onnx = tmp_path / "adapted.onnx"
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "images").mkdir()
    (broken / "images" / "bad.jpg").write_bytes(b"not a jpeg")
    pd.DataFrame({"ImageID": ["bad.jpg"], "ans": [0]}).to_csv(broken / "answers.csv", index=False)
    drawn = next((tmp_path / "adapted_photos").iterdir())
    assert main(["adapt", "--data", str(drawn), "--data", str(broken), "--out", str(onnx), "--folds", "4"]) == 0
    captured = capsys.readouterr()
    res2 = json.loads(captured.out)
    assert res2["skipped"] == 1 and res2["photos"] == 135 and "bad.jpg" in captured.err
    assert res2["offsets"] == res["offsets"]  # the broken photo cost nothing but itself
    ob1, ob2 = res2["offsets"]
    before_onnx, _ = adapt.model_probs(default_model_path("onnx"), paths, tta="off")
    got = np.array([r[0].probs.argmax() for _, r, _ in Predictor(onnx, tta="off").predict_files(paths)])
    assert Predictor(onnx).tta == ["auto"]  # the adapted twin keeps the model's mirror-image setting
    np.testing.assert_array_equal(got, adapt.apply_offsets(before_onnx, ob1, ob2))
