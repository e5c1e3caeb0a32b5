"""maskgate noise: confident learning on out-of-fold predictions finds the labels that were flipped."""
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from maskgate.label_noise import find_noisy_labels, noise_report
from maskgate.labels import encode


def _oof(tmp_path, people=60, flip_gender=(3, 17, 40), flip_mask=(5, 77)):
    """Out-of-fold rows whose probabilities follow the true labels; some given labels then flipped."""
    g = np.random.default_rng(0)
    rows = []
    for i in range(people):
        gender, age = i % 2, (i // 2) % 3
        given_g = 1 - gender if i in flip_gender else gender
        for m in range(3):
            img = tmp_path / f"p{i}_{m}.jpg"
            Image.fromarray(g.integers(0, 255, (20, 16, 3), dtype=np.uint8)).save(img)
            p = g.uniform(0, 0.04, (3, 2, 3))
            # most rows moderately sure (0.6-0.75 on their class); the mislabelled ones confidently the other way,
            # which is what confident learning looks for (a disagreement above the class's mean confidence)
            confident = i in flip_gender or 3 * i + m in flip_mask
            p[m, gender, age] = 3.0 if confident else g.uniform(0.5, 0.9)
            p = p.ravel()
            p /= p.sum()
            rows.append({"path": str(img), "person": f"id{i}", "true": encode(m, given_g, age), "fold": i % 3,
                         **{f"p{k}": p[k] for k in range(18)}})
    t = pd.DataFrame(rows)
    for r in flip_mask:  # photo r: its mask state mislabelled
        m = t.loc[r, "true"] // 6
        t.loc[r, "true"] = t.loc[r, "true"] + 6 * ((m + 1) % 3 - m)
    return t


def test_flipped_labels_are_flagged_and_ranked_first(tmp_path):
    t = _oof(tmp_path)
    people, photos = find_noisy_labels(t)
    assert set(people.loc[people["gender_issue"], "person"]) == {"id3", "id17", "id40"}
    assert set(people["person"].head(3)) == {"id3", "id17", "id40"} and not people["age_issue"].any()
    flipped = people.set_index("person").loc["id3"]  # a woman labelled male
    assert flipped["gender"] == "male" and flipped["gender_pred"] == "female" and flipped["gender_quality"] < 0.1
    assert set(photos.loc[photos["mask_issue"], "path"]) == {t.loc[5, "path"], t.loc[77, "path"]}
    assert set(photos["path"].head(2)) == {t.loc[5, "path"], t.loc[77, "path"]}


def test_report_page_and_cli(tmp_path):
    from maskgate.cli import main

    t = _oof(tmp_path)
    t.to_csv(tmp_path / "oof.csv", index=False)
    summary = noise_report(tmp_path, tmp_path / "report")
    assert summary == {"people": 60, "photos": 180, "gender_issues": 3, "age_issues": 0, "mask_issues": 2}
    page = (tmp_path / "report" / "index.html").read_text()
    assert page.count("data:image/jpeg;base64") == 5 and "id17" in page
    assert len(pd.read_csv(tmp_path / "report" / "people.csv")) == 60
    assert main(["noise", "--oof", str(tmp_path / "oof.csv"), "--out", str(tmp_path / "r2")]) == 0
    assert main(["noise", "--oof", str(tmp_path / "missing"), "--out", str(tmp_path / "r3")]) == 2
    t.drop(columns=["p3"]).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match=r"bad.csv: not an oof.csv .*p3"):
        noise_report(tmp_path / "bad.csv", tmp_path / "r4")
