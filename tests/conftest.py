"""Fixtures: a tiny dataset in the competition layout, generated from scikit-image's astronaut photo."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "maskproxy"
STEMS = ["mask1", "mask2", "mask3", "mask4", "mask5", "incorrect_mask", "normal"]


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    os.environ["MASKGATE_CACHE"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def astronaut():
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[..., :3])


@pytest.fixture(scope="session")
def astronaut_face(astronaut):
    from maskgate.faces.detect import create_detector

    return create_detector("retinaface").detect(astronaut)[0]


def person_images(photo, face, rng) -> dict[str, np.ndarray]:
    """7 images of one synthetic 'person': a jittered, tinted face crop with masks drawn on 6 of them."""
    from maskgate.demo import draw_mask

    x1, y1, x2, y2 = face.box
    s = (x2 - x1) * rng.uniform(1.3, 1.7)
    cx, cy = (x1 + x2) / 2 + rng.uniform(-8, 8), (y1 + y2) / 2 + rng.uniform(-8, 8)
    m = np.float32([[160 / s, 0, 80 - cx * 160 / s], [0, 160 / s, 80 - cy * 160 / s]])
    tint = rng.uniform(0.75, 1.25, 3)
    base = np.clip(photo * tint, 0, 255).astype(np.uint8)
    lm = face.landmarks
    out = {}
    for stem in STEMS:
        colour = tuple(int(c) for c in rng.integers(40, 230, 3))
        if stem == "normal":
            img = base
        else:
            img = draw_mask(base, lm, worn=stem != "incorrect_mask", colour=colour)
        out[stem] = cv2.warpAffine(img, m, (160, 160), borderMode=cv2.BORDER_REPLICATE)
    return out


def make_train_layout(root: Path, photo, face, n_people: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    train = root / "train"
    (train / "images").mkdir(parents=True)
    rows = []
    ages = [20, 25, 28, 35, 45, 58, 62, 70]
    for i in range(n_people):
        pid = f"{i + 1:06d}"
        gender = ["male", "female"][i % 2]
        age = ages[(i // 2) % len(ages)]
        folder = f"{pid}_{gender}_Asian_{age}"
        d = train / "images" / folder
        d.mkdir()
        for stem, img in person_images(photo, face, rng).items():
            cv2.imwrite(str(d / f"{stem}.jpg"), img[..., ::-1])
        rows.append({"id": pid, "gender": gender, "race": "Asian", "age": age, "path": folder})
    pd.DataFrame(rows).to_csv(train / "train.csv", index=False)
    return train


def make_eval_layout(root: Path, photo, face, n_people: int, seed: int = 1) -> Path:
    from maskgate.labels import MASK_FILE_STEMS, age_band, encode

    rng = np.random.default_rng(seed)
    ev = root / "eval"
    (ev / "images").mkdir(parents=True)
    rows = []
    for i in range(n_people):
        g, age = i % 2, [22, 40, 65][i % 3]
        for stem, img in person_images(photo, face, rng).items():
            name = f"{i:03d}{stem}.jpg"
            cv2.imwrite(str(ev / "images" / name), img[..., ::-1])
            rows.append({"ImageID": name, "ans": encode(int(MASK_FILE_STEMS[stem]), g, age_band(age))})
    answers = pd.DataFrame(rows)
    answers.to_csv(ev / "answers.csv", index=False)
    answers.assign(ans=0).to_csv(ev / "info.csv", index=False)
    return ev


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory, astronaut, astronaut_face):
    root = tmp_path_factory.mktemp("tiny")
    return make_train_layout(root, astronaut, astronaut_face, 16), make_eval_layout(root, astronaut, astronaut_face, 4)


# The tiny people are tinted copies of one photo, which data.group_duplicates rightly links (a difference hash
# ignores a tint); the tests that are not about that keep every id on its own (test_end_to_end tests the grouping).
TINY_OVERRIDES = ["model.input_size=96", "face.crop_size=112", "train.epochs=3", "train.views=2",
                  "train.batch_size=16", "data.val_fraction=0.25", "train.lr=0.003", "data.group_duplicates=false"]


def small_face_frame(astronaut, astronaut_face, side=40):
    """The astronaut's face at `side` px in a plain 256 px frame: RetinaFace scores it about 0.44."""
    x1, y1, x2, y2 = astronaut_face.box.astype(int)
    face = astronaut[max(0, y1 - 40):y2 + 30, max(0, x1 - 30):x2 + 30]
    frame = np.full((256, 256, 3), 200, np.uint8)
    frame[100:100 + side, 120:120 + side] = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
    return frame


def make_labelled_source(root: Path, photo, n: int, seed: int = 0, extra_columns: bool = True) -> Path:
    """An extra source (labels.csv: path,age,gender,race[,camera]) of `n` unmasked, tinted copies of a photo."""
    (root / "photos").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        img = np.clip(photo * rng.uniform(0.7, 1.2, 3), 0, 255).astype(np.uint8)
        cv2.imwrite(str(root / "photos" / f"p{i}.jpg"), img[..., ::-1])
        row = {"path": f"photos/p{i}.jpg", "age": [23, 41, 67][i % 3], "gender": ["female", "male"][i % 2],
               "race": ["white", "black", "indian"][i % 3]}
        if extra_columns:
            row["camera"] = f"cam{i % 2}"
        rows.append(row)
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    return root
