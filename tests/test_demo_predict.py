"""The shipped default model and the demo, as a new user runs them."""
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from maskgate.predict import Predictor, default_model_path


def test_default_model_is_shipped_and_small():
    for kind in ("torch", "onnx"):  # the TorchScript bundle and its ONNX twin (what a CPU predicts with)
        p = default_model_path(kind)
        assert p.is_file(), "the package must ship its default model"
        assert p.stat().st_size < 25 * 1024 * 1024
    assert Predictor(device="cpu").models[0].kind == "onnx"


@pytest.fixture(scope="module")
def predictor():
    return Predictor()


def test_predict_image_returns_a_result_per_face(predictor, astronaut):
    res = predictor.predict_image(astronaut)
    assert len(res) == 1 and res[0].face_found
    assert res[0].probs.shape == (18,) and abs(res[0].probs.sum() - 1) < 1e-4
    assert res[0].confidence == pytest.approx(res[0].probs.max())


def test_default_model_tells_mask_states_apart(predictor, astronaut, astronaut_face):
    from maskgate.demo import draw_mask

    worn = draw_mask(astronaut, astronaut_face.landmarks, worn=True)
    below = draw_mask(astronaut, astronaut_face.landmarks, worn=False)
    masks = [predictor.predict_image(im)[0].parts[0] for im in (astronaut, worn, below)]
    assert masks == [2, 0, 1], masks  # no mask / mask worn / mask pulled below the nose


def test_det_size_finds_a_small_face_in_a_big_frame_without_changing_crops(predictor, astronaut):
    import cv2

    # the astronaut at 160 px in a 1600x1200 frame, as a camera at an entrance sees a person
    frame = np.full((1200, 1600, 3), 200, np.uint8)
    frame[500:660, 700:860] = cv2.resize(astronaut, (160, 160), interpolation=cv2.INTER_AREA)
    near = Predictor(det_retry=0)  # only the model's 256 px copy, where the face is ~5 px
    assert not near.predict_image(frame)[0].face_found
    big = Predictor(det_size=1600, det_retry=0)
    found = big.predict_image(frame)
    assert found[0].face_found and 700 < found[0].box[0] < found[0].box[2] < 860
    # only where faces are looked for changes: the crop definition (size, margin, window) is the model's
    import dataclasses
    assert big.cropper.settings == dataclasses.replace(predictor.pre.crop, det_max_side=1600, det_retry_side=None)
    assert predictor.cropper.settings == predictor.pre.crop
    with pytest.raises(ValueError, match=r"det_max_side \(--det-size\) must be at least 32"):
        Predictor(det_size=8)
    # the doubtful second look and the confidence term of the subject rule: the shipped model's, or given
    assert (predictor.pre.crop.det_retry_below, predictor.pre.crop.subject_confidence) == (0.9, 3.0)
    plain = Predictor(det_retry_below=0, subject_confidence=0)
    assert (plain.cropper.settings.det_retry_below, plain.cropper.settings.subject_confidence) == (None, 0.0)
    assert plain.cropper.detector.retry_below is None


def test_shipped_model_looks_again_for_faces_it_misses_on_its_small_copy(predictor, astronaut):
    import cv2

    # the astronaut photo at 320 px in a 1600x1200 frame: her face (~60 px) is ~10 px on the 256 px copy
    frame = np.full((1200, 1600, 3), 200, np.uint8)
    frame[500:820, 700:1020] = cv2.resize(astronaut, (320, 320), interpolation=cv2.INTER_AREA)
    assert predictor.pre.crop.det_retry_side == 1280
    res = predictor.predict_image(frame)
    assert res[0].face_found and res[0].det_score >= 0.5 and 790 < res[0].box[0] < res[0].box[2] < 890
    assert not Predictor(det_retry=0).predict_image(frame)[0].face_found  # 0 = off: the centre-square fallback
    with pytest.raises(ValueError, match="det_retry"):
        Predictor(det_retry=16)


def test_grayscale_and_tiny_inputs(predictor):
    gray = np.full((40, 30, 3), 120, np.uint8)
    res = predictor.predict_image(gray)
    assert len(res) == 1 and not res[0].face_found


def test_demo_command(tmp_path):
    r = subprocess.run([sys.executable, "-m", "maskgate", "demo", "--out", str(tmp_path / "d")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = pd.read_csv(tmp_path / "d" / "predictions.csv")
    assert len(rows) >= 5 and rows["face_found"].all()
    assert (tmp_path / "d" / "demo.png").stat().st_size > 50_000
    assert len(list((tmp_path / "d" / "annotated").glob("*.jpg"))) == 5


def _variant(**crop):
    """The shipped model with other face-crop settings: a second, differently cutting ensemble member."""
    import dataclasses

    from maskgate.models.classifier import MaskClassifier

    m = MaskClassifier.load(default_model_path("torch"))
    m.preprocess = dataclasses.replace(m.preprocess, crop=dataclasses.replace(m.preprocess.crop, **crop))
    return m


def test_ensemble_is_the_normalised_geometric_mean_of_its_members(predictor, astronaut):
    from maskgate.demo import draw_mask
    from maskgate.faces.detect import create_detector

    wide = _variant(window=None, margin=0.15)  # cuts the face differently
    photos = [astronaut, draw_mask(astronaut, create_detector("retinaface").detect(astronaut)[0].landmarks, True)]
    ens = Predictor([default_model_path(), wide])
    single_wide = Predictor(wide)
    for im in photos:
        crops = ens.faces_of(im, all_faces=False)
        assert list(crops[0].others) == [wide.preprocess.crop.alignment()]  # cut once more, for `wide`
        a, b = predictor.predict_image(im)[0].probs, single_wide.predict_image(im)[0].probs
        assert not np.allclose(a, b, atol=1e-3)  # the two members really disagree somewhat
        g = np.sqrt(np.clip(a, 1e-8, None) * np.clip(b, 1e-8, None))
        np.testing.assert_allclose(ens.predict_image(im, all_faces=False)[0].probs, g / g.sum(), atol=1e-5)
    # an ensemble of one model twice is that model
    twice = Predictor([default_model_path(), default_model_path()])
    np.testing.assert_allclose(twice.predict_image(astronaut)[0].probs, predictor.predict_image(astronaut)[0].probs,
                               atol=1e-5)


def test_ensemble_members_must_find_faces_the_same_way():
    other = _variant(detector="yunet")
    with pytest.raises(ValueError, match="same way"):
        Predictor([default_model_path(), other])


def test_weak_score_at_predict_time(predictor, astronaut, astronaut_face):
    from conftest import small_face_frame

    frame = small_face_frame(astronaut, astronaut_face)  # RetinaFace scores this face ~0.44 (< min_score 0.5)
    assert predictor.pre.crop.weak_score == 0.2  # the shipped model was trained with face.weak_score
    res = predictor.predict_image(frame)
    assert res[0].face_found and 0.2 <= res[0].det_score < 0.5
    off = Predictor(weak_score=0)  # 0 = off: only faces at min_score count, else the centre-square fallback
    assert not off.predict_image(frame)[0].face_found
    assert off.cropper.settings.alignment() == predictor.pre.crop.alignment()  # same crop definition
    for bad in (1.5, -0.1):
        with pytest.raises(ValueError, match="weak_score"):
            Predictor(weak_score=bad)
    # ensemble members that differ only in weak_score: refused, unless the caller decides it for all
    other = _variant(weak_score=None)
    with pytest.raises(ValueError, match=r"same way.*give --weak-score \(face.weak_score: None vs 0.2\) to decide"):
        Predictor([default_model_path(), other])
    assert Predictor([default_model_path(), other], weak_score=0.3).cropper.settings.weak_score == 0.3
    assert Predictor([default_model_path(), other], weak_score=0).cropper.settings.weak_score is None


def test_annotation_label_fits_a_narrow_photo():
    """A tight crop narrower than its label gets the whole label, written smaller (the demo's tight crops
    used to show 'wear/female/30-5' cut at the edge)."""
    from maskgate.predict import FaceResult, annotate, fit_label

    text = "incorrect/female/>=60 0.97 (no face found)"
    scale, (tw, _), _ = fit_label(text, 150, 0.45, 1)
    assert tw + 6 <= 150 and scale < 0.45
    assert fit_label(text, 2000, 0.45, 1)[0] == 0.45  # room enough: unchanged
    probs = np.full(18, 0.01)
    probs[9] = 1 - 0.17
    res = FaceResult(cls=9, confidence=float(probs[9]), probs=probs, face_found=False, det_score=0.0,
                     box=np.zeros(4))
    img = annotate(np.zeros((200, 150, 3), np.uint8), [res])
    orange = np.all(img == (255, 150, 0), axis=-1)
    band = np.flatnonzero(orange.sum(1) > 100)  # the label's filled band, not the box's thin lines
    assert band.size
    white_cols = np.flatnonzero((img[band][..., 2] > 80).any(0))  # the white text on it (orange has no blue)
    assert white_cols.size and white_cols.max() < 150 - 2  # ends before the right edge: nothing cut off


def test_a_phone_photo_over_64_megapixels_is_classified_with_boxes_in_its_own_pixels(predictor, astronaut, tmp_path):
    """A 70 MP JPEG (over the 64 MP limit) is read at half size; its face's box comes back in the file's pixels,
    twice the box found on a half-size copy of the same photo, and --annotate draws it on the face."""
    import cv2

    from maskgate.cli import main

    canvas = np.full((6_880, 10_240, 3), 128, np.uint8)
    canvas[2_000:4_048, 4_000:6_048] = cv2.resize(astronaut, (2_048, 2_048), interpolation=cv2.INTER_CUBIC)
    big = tmp_path / "phone.jpg"
    cv2.imwrite(str(big), canvas[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 85])
    half = cv2.resize(canvas, (5_120, 3_440), interpolation=cv2.INTER_AREA)
    del canvas
    (p, res, err), = predictor.predict_files([big])
    assert err is None and res[0].face_found
    want = predictor.predict_image(half, all_faces=False)[0].box * 2
    assert np.abs(res[0].box - want).max() < 24  # 70 MP coordinates: 24 px is 0.2% of the width
    assert 4_000 < res[0].box[0] < res[0].box[2] < 6_048 and 2_000 < res[0].box[3] < 4_048
    out = tmp_path / "p.csv"
    assert main(["predict", str(big), "--out", str(out), "--annotate", str(tmp_path / "ann")]) == 0
    ann = cv2.imread(str(tmp_path / "ann" / "phone.jpg"))
    assert ann.shape[:2] == (3_440, 5_120)  # written at the size it was read
    x1, y1, x2, y2 = (want / 2).astype(int)  # the box is drawn where the face is in the annotated copy
    ring = ann[y1 - 1:y1 + 2, x1 + 10:x2 - 10].astype(int)
    assert np.abs(ring - 128).max() > 60
