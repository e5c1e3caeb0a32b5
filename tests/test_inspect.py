"""`maskgate inspect`: the data report, checked on a layout with a photo planted under two people."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd

from conftest import make_train_layout
from maskgate.data.duplicates import near_pairs


def test_near_pairs_hand_computed():
    h = np.array([0b0, 0b1011, 0b1, 0b0], np.uint64)  # distances: 0-1: 3, 0-2: 1, 0-3: 0, 1-2: 2 ...
    owner = np.array(["a", "b", "a", "c"])
    got = sorted(near_pairs(h, owner, near=1))
    assert got == [(0, 3, 0), (2, 3, 1)]  # 0-2 is within one person: not listed


def test_inspect_report_finds_a_photo_shared_by_two_people(tmp_path, astronaut, astronaut_face):
    train = make_train_layout(tmp_path, astronaut, astronaut_face, 6, seed=3)
    folders = sorted(p for p in (train / "images").iterdir())
    shutil.copy(folders[0] / "normal.jpg", folders[3] / "mask2.jpg")  # the same photo under two people
    out = tmp_path / "report"
    r = subprocess.run([sys.executable, "-m", "maskgate", "inspect", "--data-dir", train, "--out", out, "--near", "0"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["images"] == 42 and s["people"] == 6  # ages 20, 20, 25, 25, 28, 28
    assert s["boundary_people_27_29"] == 2 and s["boundary_people_57_59"] == 0
    dup = pd.read_csv(out / "duplicates.csv", dtype=str)
    planted = {str(folders[0] / "normal.jpg"), str(folders[3] / "mask2.jpg")}
    assert any({a, b} == planted for a, b in zip(dup["path_a"], dup["path_b"]))
    assert (dup["person_a"] != dup["person_b"]).all()
    page = (out / "index.html").read_text()
    for png in ("classes.png", "ages.png", "per_person.png", "sizes.png"):
        assert (out / png).is_file() and png in page
    assert "JPEG" in page and "near_duplicate_pairs" in page
    assert (out / "duplicates.png").is_file() and s["people_in_identical_photos"] >= 2
