"""Mask synthesis: each state drawn where it belongs relative to the landmarks, in every shape and pose,
deterministic with a seed, never failing at an angle or at the border; `maskgate synth` on disk."""
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import make_labelled_source

from maskgate.faces.crop import TEMPLATE
from maskgate.synth.masks import SHAPES, STATES, MaskStyle, draw_mask, face_frame, pick_state, random_style
from maskgate.labels import Mask


def face_landmarks(cx=200.0, cy=180.0, iod=80.0, roll=0.0, yaw_shift=0.0):
    """ArcFace-template landmarks of a face `iod` px between the eyes, rotated by `roll` degrees, the nose
    moved sideways by `yaw_shift` eye distances (a turned head)."""
    t = (TEMPLATE - TEMPLATE[:2].mean(0)) / (TEMPLATE[1, 0] - TEMPLATE[0, 0])  # eye midpoint 0, eye distance 1
    t[2, 0] += yaw_shift
    t[[0, 3], 0] *= 1 - 0.3 * max(yaw_shift, 0)  # the far side looks narrower
    t[[1, 4], 0] *= 1 - 0.3 * max(-yaw_shift, 0)
    a = np.deg2rad(roll)
    r = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return (t @ r.T * iod + [cx, cy]).astype(np.float32)


def covered(alpha, p):
    x, y = int(round(p[0])), int(round(p[1]))
    return alpha[y, x] > 0.5


def chin_point(lm):
    eyes, mouth = lm[:2].mean(0), lm[3:].mean(0)
    return mouth + (mouth - eyes) * 0.55


def check_state(alpha, lm, state):
    nose, mouth = lm[2], lm[3:].mean(0)
    if state == "worn":
        assert covered(alpha, nose) and covered(alpha, mouth) and covered(alpha, lm[3]) and covered(alpha, lm[4])
        assert not covered(alpha, lm[0]) and not covered(alpha, lm[1])  # the eyes stay free
    elif state == "below_nose":
        assert not covered(alpha, nose) and covered(alpha, mouth)
    elif state == "on_chin":
        assert not covered(alpha, nose) and not covered(alpha, mouth) and covered(alpha, chin_point(lm))
    elif state == "mouth_exposed":
        assert covered(alpha, nose) and not covered(alpha, mouth)
    else:
        assert not alpha.any()


@pytest.mark.parametrize("state", sorted(STATES))
def test_each_state_covers_what_it_should_in_every_shape_and_pose(state):
    img = np.full((400, 400, 3), 150, np.uint8)
    rng = np.random.default_rng(0)
    for shape in SHAPES:
        for roll in (-35, 0, 20):
            for yaw in (-0.35, 0.0, 0.3):
                lm = face_landmarks(roll=roll, yaw_shift=yaw)
                for _ in range(3):
                    style = random_style(rng)
                    style.shape = shape
                    out, alpha = draw_mask(img, lm, state, rng, style)
                    try:
                        check_state(alpha, lm, state)
                    except AssertionError:
                        raise AssertionError(f"{state} {shape} roll {roll} yaw {yaw}: mask in the wrong place")
                    changed = np.abs(out.astype(int) - img).max(2) > 0
                    assert changed.any() == (state != "none")


def test_state_meaning_holds_over_many_random_styles():
    """The outline jitter (width, top, bottom) never moves a mask across the line its state is about."""
    img = np.zeros((300, 300, 3), np.uint8)
    lm = face_landmarks(150, 120, 60)
    for seed in range(60):
        rng = np.random.default_rng(seed)
        for state in ("worn", "below_nose", "on_chin", "mouth_exposed"):
            _, alpha = draw_mask(img, lm, state, rng)
            check_state(alpha, lm, state)


def test_deterministic_with_a_seed(astronaut, astronaut_face):
    a, alpha_a = draw_mask(astronaut, astronaut_face.landmarks, "worn", np.random.default_rng(7))
    b, alpha_b = draw_mask(astronaut, astronaut_face.landmarks, "worn", np.random.default_rng(7))
    c, _ = draw_mask(astronaut, astronaut_face.landmarks, "worn", np.random.default_rng(8))
    assert np.array_equal(a, b) and np.array_equal(alpha_a, alpha_b)
    assert not np.array_equal(a, c)  # another seed, another look
    # only the mask region (and its thin ear loops and contact shadow) changes
    changed = np.abs(a.astype(int) - astronaut).max(2) > 2
    x1, y1, x2, y2 = astronaut_face.box
    assert changed[:int(y1)].sum() == 0 and changed[int(y2) + 40:].sum() == 0


def test_never_fails_at_the_border_at_angles_or_on_bad_landmarks():
    rng = np.random.default_rng(3)
    img = np.full((120, 160, 3), 90, np.uint8)
    cases = [face_landmarks(5, 10, 70, roll=r) for r in (-80, 45, 179)]  # mostly outside, sideways, upside down
    cases += [face_landmarks(150, 110, 60, yaw_shift=0.9), face_landmarks(-300, -300, 50),  # profile; outside
              face_landmarks(80, 60, 0.1), np.full((5, 2), np.nan, np.float32),  # no size; not finite
              np.array([[50, 50]] * 5, np.float32)]  # all five on one pixel
    for lm in cases:
        for state in STATES:
            out, alpha = draw_mask(img, lm, state, rng)
            assert out.shape == img.shape and out.dtype == np.uint8 and alpha.shape == img.shape[:2]
            assert np.isfinite(alpha).all() and alpha.min() >= 0 and alpha.max() <= 1
    # a face cut by the image's edge still gets the part of its mask that is inside
    lm = face_landmarks(30, 40, 60)
    _, alpha = draw_mask(img, lm, "worn", rng)
    assert alpha.any()
    upside = face_landmarks(200, 200, 80, roll=180)
    _, alpha = draw_mask(np.zeros((400, 400, 3), np.uint8), upside, "worn", rng)
    check_state(alpha, upside, "worn")  # "down" follows the mouth, whatever the roll


def test_yaw_read_from_the_nose_and_state_choice():
    assert abs(face_frame(face_landmarks()).yaw) < 0.01  # the template itself is a hair off symmetric
    assert face_frame(face_landmarks(yaw_shift=0.3)).yaw > 0.3 > 0 > face_frame(face_landmarks(yaw_shift=-0.3)).yaw
    assert face_frame(np.zeros((5, 2))) is None
    rng = np.random.default_rng(0)
    assert pick_state(Mask.WEAR, rng) == "worn" and pick_state(Mask.NOT_WEAR, rng) == "none"
    kinds = [pick_state(Mask.INCORRECT, rng) for _ in range(300)]
    assert set(kinds) == {"below_nose", "on_chin", "mouth_exposed"} and kinds.count("below_nose") > 100
    assert pick_state(Mask.INCORRECT, rng, {"on_chin": 1.0}) == "on_chin"
    with pytest.raises(ValueError):
        pick_state(Mask.INCORRECT, rng, {"on_nose": 1.0})
    with pytest.raises(ValueError):
        draw_mask(np.zeros((50, 50, 3), np.uint8), face_landmarks(25, 20, 10), "half_worn")
    with pytest.raises(ValueError):
        draw_mask(np.zeros((50, 50, 3), np.uint8), face_landmarks(25, 20, 10), "worn", style=MaskStyle(shape="visor"))


@pytest.fixture(scope="module")
def labelled_source(tmp_path_factory, astronaut):
    """A labelled source (labels.csv) of 6 unmasked portraits made from the astronaut."""
    return make_labelled_source(tmp_path_factory.mktemp("source"), astronaut, 6)


def synth_cli(*args):
    return subprocess.run([sys.executable, "-m", "maskgate", "synth", *map(str, args)], capture_output=True, text=True)


def test_synth_writes_a_train_layout_that_trains_reads_back(labelled_source, tmp_path):
    from maskgate.data.layout import read_train

    out = tmp_path / "syn"
    r = synth_cli("--src", labelled_source, "--out", out, "--seed", "3")
    assert r.returncode == 0, r.stderr
    samples = read_train(out)  # the competition layout, checked by the same reader as real data
    assert len(samples) == 42 and samples["person"].nunique() == 6
    assert samples["mask"].value_counts().to_dict() == {0: 30, 1: 6, 2: 6}
    assert set(samples["race"]) == {"white", "black", "indian"}
    log = pd.read_csv(out / "synth.csv")
    assert set(log.loc[log["state"] != "none", "shape"]) <= set(SHAPES)
    assert set(log["state"]) <= set(STATES) and (log["image"].str.endswith("normal.jpg") == (log["state"] == "none")).all()
    # the same command writes the same images; the normal photo is the source photo
    again = tmp_path / "again"
    assert synth_cli("--src", labelled_source, "--out", again, "--seed", "3").returncode == 0
    first = sorted((out / "images").rglob("*.jpg"))
    assert [p.read_bytes() for p in first] == [(again / p.relative_to(out)).read_bytes() for p in first]
    # a non-empty output folder is refused, not overwritten
    r = synth_cli("--src", labelled_source, "--out", out)
    assert r.returncode == 2 and "not empty" in r.stderr


def test_synth_eval_layout_has_answers_with_groups(labelled_source, tmp_path):
    from maskgate.data.layout import read_eval

    out = tmp_path / "ev"
    r = synth_cli("--src", labelled_source, "--out", out, "--layout", "eval", "--per-person", "3")
    assert r.returncode == 0, r.stderr
    table = read_eval(out)
    answers = pd.read_csv(out / "answers.csv")
    assert len(table) == 18 and list(answers.columns[:2]) == ["ImageID", "ans"]
    assert {"race", "camera", "state", "shape", "gender", "age"} <= set(answers.columns)
    from maskgate.labels import decode

    masks = decode(answers["ans"].to_numpy())[0]
    assert sorted(np.bincount(masks).tolist()) == [6, 6, 6]
    assert (answers.loc[masks == 2, "state"] == "none").all()


def test_validation_masks_are_drawn_once_and_give_the_same_images(monkeypatch):
    """The on-the-fly path draws the masks of evaluation rows once (in worker processes), not at every
    epoch's validation; the prepared images are exactly the ones drawn on demand."""
    import maskgate.train.images as row_images
    from maskgate.faces.crop import CropSettings
    from maskgate.models.preprocess import Preprocess
    from maskgate.train.features import ImageDataset
    from maskgate.train.images import NO_DRAW, RowImages

    settings = CropSettings()
    s = settings.crop_size
    crops = np.stack([np.full((s, s, 3), 90 + 40 * k, np.uint8) for k in range(3)])
    lms = np.stack([face_landmarks(cx=s / 2, cy=s * 0.45, iod=s * 0.3, roll=r) for r in (-20, 0, 15)])
    # rows: 3 crops x (as is, worn, incorrect, bare); only worn and incorrect rows have a mask drawn
    crop_of_row = np.repeat(np.arange(3), 4)
    draw = np.tile([NO_DRAW, Mask.WEAR, Mask.INCORRECT, Mask.NOT_WEAR], 3)
    images = RowImages(crops, crop_of_row, draw, lms, settings)
    n = len(crop_of_row)
    targets = {"mask": np.zeros(n, np.int64), "gender": np.zeros(n, np.int64),
               "age_band": np.zeros(n, np.int64), "age": np.full(n, 30.0, np.float32)}
    pre = Preprocess(input_size=96)
    on_demand = ImageDataset(images, targets, pre, None, seed=5)
    expected = [on_demand[i]["x"].numpy() for i in range(n)]
    assert not np.allclose(expected[1], expected[0])  # a worn row does show a mask

    ds = ImageDataset(images, targets, pre, None, seed=5)
    assert ds.prepare_drawn(workers=2) == 6  # the worn and incorrect rows, drawn in two processes
    assert sorted(ds.ready) == [i for i in range(n) if images.drawn(i)]

    def no_more_drawing(*a, **k):
        raise AssertionError("a mask was drawn again after prepare_drawn")

    monkeypatch.setattr(row_images, "draw_mask", no_more_drawing)
    for _ in range(2):  # two epochs of validation
        for i in range(n):
            assert np.array_equal(ds[i]["x"].numpy(), expected[i])
    assert ds.prepare_drawn() == 0  # nothing left to make
    with pytest.raises(ValueError, match="evaluation rows"):
        ImageDataset(images, targets, pre, {"hflip": 0.5}, seed=5).prepare_drawn()


def test_a_killed_synth_job_resumes_to_the_same_set(labelled_source, tmp_path, monkeypatch):
    """Ctrl-C after 3 of 6 people, the journal's last line torn as a kill leaves it: `--resume` draws only
    the people not in the journal and the folder ends byte for byte as one uninterrupted run's. Without
    `--resume` the unfinished folder is refused; another job's options are refused naming the difference."""
    import maskgate.synth.writer as writer

    whole = tmp_path / "whole"
    assert writer.synthesize(labelled_source, whole, seed=5, workers=1)["people"] == 6
    part = tmp_path / "part"
    drawn, real_one_face = [], writer.FaceCropper.faces

    def faces(self, rgb, all_faces=True):  # one call per person drawn; Ctrl-C at the 4th
        drawn.append(1)
        if len(drawn) == 4:
            raise KeyboardInterrupt
        return real_one_face(self, rgb, all_faces)

    monkeypatch.setattr(writer.FaceCropper, "faces", faces)
    with pytest.raises(KeyboardInterrupt):
        writer.synthesize(labelled_source, part, seed=5, workers=1)
    journal = part / writer.JOURNAL
    lines = journal.read_text().splitlines()
    assert len(lines) == 1 + 3 and not (part / "synth.csv").exists()
    with open(journal, "a") as f:  # the 4th person's line half written when the process died
        f.write('{"i": 3, "row": {"id": "0000')
    r = synth_cli("--src", labelled_source, "--out", part, "--seed", "5")
    assert r.returncode == 2 and "--resume" in r.stderr
    r = synth_cli("--src", labelled_source, "--out", part, "--seed", "6", "--resume")
    assert r.returncode == 2 and "seed=5 there, 6 now" in r.stderr, r.stderr
    drawn.clear()
    assert writer.synthesize(labelled_source, part, seed=5, workers=2, resume=True)["people"] == 6
    assert len(drawn) == 3  # only the people not done
    assert not journal.exists()
    files = sorted(p.relative_to(whole) for p in whole.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(part) for p in part.rglob("*") if p.is_file())
    assert all((whole / f).read_bytes() == (part / f).read_bytes() for f in files)
    r = synth_cli("--src", labelled_source, "--out", part, "--seed", "5", "--resume")
    assert r.returncode == 2 and "finished" in r.stderr
