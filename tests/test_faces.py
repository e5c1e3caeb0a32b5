import numpy as np
import pytest

from maskgate.faces.crop import CropSettings, FaceCropper, align_crop, similarity, template_points
from maskgate.faces.detect import create_detector


def test_similarity_recovers_a_known_transform():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (5, 2))
    ang, s, t = 0.3, 1.7, np.array([12.0, -5.0])
    r = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    dst = (s * (r @ src.T)).T + t
    m = similarity(src, dst)
    assert np.allclose(m[:, :2], s * r, atol=1e-4) and np.allclose(m[:, 2], t, atol=1e-3)


@pytest.mark.parametrize("name", ["retinaface", "yunet"])
def test_detectors_find_the_astronaut(astronaut, name):
    faces = create_detector(name).detect(astronaut)
    assert len(faces) >= 1
    f = faces[0]
    assert f.score > 0.8
    x1, y1, x2, y2 = f.box
    assert 150 < (x1 + x2) / 2 < 280 and 60 < (y1 + y2) / 2 < 200  # her face, not the flag or the helmet
    le, re, nose, lm, rm = f.landmarks
    assert le[0] < re[0] and lm[0] < rm[0] and le[1] < nose[1] < lm[1]


def test_crop_puts_landmarks_on_the_template(astronaut, astronaut_face):
    s = CropSettings(crop_size=128, margin=0.1)
    crop = align_crop(astronaut, astronaut_face.landmarks, s.crop_size, s.margin)
    assert crop.shape == (128, 128, 3)
    # re-detecting on the crop finds the landmarks close to the template
    again = create_detector("retinaface", pad_retry=0.3).detect(crop)
    assert again, "face should still be found in its own crop"
    err = np.abs(again[0].landmarks - template_points(128, 0.1)).max()
    assert err < 10


def test_same_crop_at_train_and_predict_time(astronaut):
    c = FaceCropper(CropSettings())
    a, b = c.main_face(astronaut), c.all_faces(astronaut)[0]
    assert a.found and np.array_equal(a.image, b.image)


def test_fallback_when_no_face():
    flat = np.full((120, 200, 3), 90, np.uint8)
    crop = FaceCropper(CropSettings(crop_size=64)).main_face(flat)
    assert not crop.found and crop.score == 0 and crop.image.shape == (64, 64, 3)
    none = FaceCropper(CropSettings(detector="none", crop_size=64))
    assert not none.main_face(flat).found


def test_unknown_detector():
    with pytest.raises(ValueError, match="unknown face detector"):
        create_detector("nope")
