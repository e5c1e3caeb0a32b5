"""Group report: numbers checked against a hand-computed case; both ways of joining labels work."""
import json
import subprocess
import sys

import pandas as pd
import pytest

from maskgate.evaluate import evaluate_files
from maskgate.groups import gaps, group_scores
from maskgate.labels import encode


def test_group_scores_by_hand():
    # group a: 4 images; group b: 2 images
    t = [encode(0, 0, 0), encode(0, 0, 0), encode(2, 1, 1), encode(2, 1, 2), encode(0, 1, 0), encode(1, 0, 2)]
    p = [encode(0, 0, 0), encode(0, 1, 0), encode(2, 1, 1), encode(2, 1, 1), encode(0, 1, 0), encode(1, 0, 1)]
    g = ["a", "a", "a", "a", "b", "b"]
    table = group_scores(t, p, g).set_index("group")
    a, b = table.loc["a"], table.loc["b"]
    assert a["n"] == 4 and b["n"] == 2
    assert a["accuracy"] == pytest.approx(2 / 4) and b["accuracy"] == pytest.approx(1 / 2)
    assert a["mask_acc"] == 1.0 and a["gender_acc"] == pytest.approx(3 / 4) and a["age_acc"] == pytest.approx(3 / 4)
    assert b["gender_acc"] == 1.0 and b["age_acc"] == pytest.approx(1 / 2)
    # group a's true classes: 0 (2 images, 1 right, nothing else predicted as 0) -> F1 2*1/(2+1) = 2/3;
    # 13 (1 image, right, and 14 also predicted as 13) -> F1 2*1/(1+2) = 2/3; 14 (1 image, missed) -> 0
    assert a["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    # group b: class 3 right (F1 1), class 8 missed (F1 0)
    assert b["macro_f1"] == pytest.approx(0.5)
    gap = gaps(table.reset_index())
    assert gap["gender_acc"] == {"best": "b", "best_value": 1.0, "worst": "a", "worst_value": 0.75, "gap": 0.25}
    assert gap["macro_f1"]["worst"] == "a" and gap["macro_f1"]["gap"] == pytest.approx(0.5 - 4 / 9)


def test_eval_answers_with_a_group_column_and_a_separate_group_file(tmp_path):
    ids = [f"{i}.jpg" for i in range(4)]
    truth = pd.DataFrame({"ImageID": ids, "ans": [0, 3, 4, 16], "race": ["x", "x", "y", "y"]})
    truth.to_csv(tmp_path / "answers.csv", index=False)
    pd.DataFrame({"ImageID": ids, "ans": [0, 0, 4, 16]}).to_csv(tmp_path / "pred.csv", index=False)
    pd.DataFrame({"ImageID": ids[::-1], "camera": ["c1", "c2", "c2", "c1"]}).to_csv(tmp_path / "cams.csv", index=False)
    res = evaluate_files(tmp_path / "pred.csv", tmp_path / "answers.csv", tmp_path / "rep",
                         ["race", f"{tmp_path / 'cams.csv'}:camera", "gender"])
    race = {r["group"]: r for r in res["groups"]["race"]["table"]}
    assert race["x"]["accuracy"] == 0.5 and race["y"]["accuracy"] == 1.0
    assert race["x"]["gender_acc"] == 0.5  # class 3 (female) called 0 (male)
    cams = {r["group"]: r["accuracy"] for r in res["groups"]["camera"]["table"]}
    assert cams == {"c1": 1.0, "c2": 0.5}  # ImageID 1 is on camera c2
    genders = {r["group"]: r["n"] for r in res["groups"]["gender"]["table"]}
    assert genders == {"male": 1, "female": 3}  # from the true class: 3, 4 and 16 are women
    assert res["groups"]["race"]["gap"]["accuracy"]["gap"] == 0.5
    assert (tmp_path / "rep" / "groups_race.png").stat().st_size > 5000
    assert len(pd.read_csv(tmp_path / "rep" / "groups_camera.csv")) == 2
    with pytest.raises(ValueError, match="no column 'colour'"):
        evaluate_files(tmp_path / "pred.csv", tmp_path / "answers.csv", None, ["colour"])


def test_plain_prediction_csv_joined_to_labels_csv(tmp_path):
    """`maskgate predict` on a source's folder of photos + its labels.csv: the subject (face 0) of each file."""
    src = tmp_path / "src"
    (src / "img").mkdir(parents=True)
    labels = pd.DataFrame({"path": ["img/a.jpg", "img/b.jpg", "img/c.jpg"], "age": [25, 45, 70],
                           "gender": ["male", "female", "female"], "race": ["white", "black", "black"]})
    labels.to_csv(src / "labels.csv", index=False)
    # predictions name the files as predict does (as given on its command line), with a second face in a.jpg
    preds = pd.DataFrame({"path": [str(src / "img" / "a.jpg"), str(src / "img" / "a.jpg"),
                                   str(src / "img" / "b.jpg"), str(src / "img" / "c.jpg")],
                          "face": [0, 1, 0, 0],
                          "class": [encode(2, 0, 0), encode(0, 1, 1), encode(2, 1, 0), encode(2, 1, 2)]})
    preds.to_csv(tmp_path / "p.csv", index=False)
    r = subprocess.run([sys.executable, "-m", "maskgate", "evaluate", "--pred", tmp_path / "p.csv", "--truth",
                        src / "labels.csv", "--groups", "race"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["n"] == 3 and res["accuracy"] == pytest.approx(2 / 3, abs=1e-4)  # the CLI rounds to 4 places
    race = {row["group"]: row for row in res["groups"]["race"]["table"]}
    assert race["white"]["accuracy"] == 1.0 and race["black"]["age_acc"] == 0.5
    assert "gap 0.500" in r.stderr  # the plain-text table names the gap


def test_crossed_groups_and_a_minimum_size_for_the_gaps(tmp_path):
    """`race+gender`: one group per combination, scored on its own images; the gaps can leave out tiny groups."""
    ids = [f"{i}.jpg" for i in range(7)]
    # x/male: 0, 0 (both right); x/female: 3 (called 0: gender wrong); y/male: 1, 2, 2 (one age band wrong);
    # y/female: 16 (right)
    truth = pd.DataFrame({"ImageID": ids, "ans": [0, 0, 3, 1, 2, 2, 16], "race": list("xxxyyyy")})
    truth.to_csv(tmp_path / "answers.csv", index=False)
    pd.DataFrame({"ImageID": ids, "ans": [0, 0, 0, 1, 2, 1, 16]}).to_csv(tmp_path / "pred.csv", index=False)
    res = evaluate_files(tmp_path / "pred.csv", tmp_path / "answers.csv", tmp_path / "rep",
                         ["race+gender", "race+gender+age_band"])
    rep = res["groups"]["race+gender"]
    t = {r["group"]: r for r in rep["table"]}
    assert {g: r["n"] for g, r in t.items()} == {"x/male": 2, "x/female": 1, "y/male": 3, "y/female": 1}
    assert t["x/female"]["gender_acc"] == 0.0 and t["x/male"]["accuracy"] == 1.0
    assert t["y/male"]["age_acc"] == pytest.approx(2 / 3) and t["y/female"]["accuracy"] == 1.0
    assert rep["gap"]["accuracy"]["worst"] == "x/female" and rep["gap"]["accuracy"]["gap"] == 1.0
    three = {r["group"]: r["n"] for r in res["groups"]["race+gender+age_band"]["table"]}
    assert three == {"x/male/<30": 2, "x/female/<30": 1, "y/male/30-59": 1, "y/male/>=60": 2, "y/female/30-59": 1}
    assert (tmp_path / "rep" / "groups_race_gender_age_band.csv").is_file()
    # groups of one image are too small to call the worst: with min_group 2 the gap is between x/male and y/male
    small = evaluate_files(tmp_path / "pred.csv", tmp_path / "answers.csv", None, ["race+gender"], min_group=2)
    g = small["groups"]["race+gender"]["gap"]["accuracy"]
    assert (g["best"], g["worst"], g["gap"]) == ("x/male", "y/male", pytest.approx(1 / 3))
    assert len(small["groups"]["race+gender"]["table"]) == 4  # the table still lists every group


def test_many_groups_are_drawn_as_a_table_of_colours(tmp_path):
    from maskgate.groups import group_report

    rng = __import__("numpy").random.default_rng(0)
    t = rng.integers(0, 18, 400)
    p = __import__("numpy").where(rng.random(400) < 0.7, t, rng.integers(0, 18, 400))
    g = [f"g{i % 12}" for i in range(400)]
    group_report(t, p, g, "twelve", tmp_path)
    from PIL import Image

    w, h = Image.open(tmp_path / "groups_twelve.png").size
    assert h > w * 0.6 and w < 1200  # one row per group, not 60 bars side by side
