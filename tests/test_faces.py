import cv2
import numpy as np
import pytest

from maskgate.faces.crop import CropSettings, FaceCropper, align_crop, similarity, template_points, window_box
from maskgate.faces.detect import create_detector

from conftest import small_face_frame


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


@pytest.mark.parametrize("margin", [0.0, 0.25])
def test_window_crop_ignores_everything_outside_the_window(astronaut, astronaut_face, margin):
    """A tight photo and a wide portrait of one face must give the same crop: only the window counts."""
    window = (0.2, 0.08, 0.92, 1.0)
    size = 96
    full = align_crop(astronaut, astronaut_face.landmarks, size, margin)  # no window: hair, helmet, flag
    cut = align_crop(astronaut, astronaut_face.landmarks, size, margin, window)
    t, l, r, b = window_box(size, margin, window)
    assert 0 < t < size // 3 and 0 < l < r < size and b == (size if margin == 0 else round(size * 0.9))
    assert np.array_equal(cut[t:b, l:r], full[t:b, l:r])
    assert (cut[:t] == cut[t]).all() and (cut[:, :l] == cut[:, l:l + 1]).all()  # edge pixels repeated
    # wipe everything outside the window (as a tighter photo would): the windowed crop does not change
    tpl = template_points(size, margin)
    other = full.copy()
    other[:t] = 0
    other[:, :l] = 255
    other[:, r:] = 7
    again = align_crop(other, tpl, size, margin, window)  # the template maps onto itself: identity warp
    assert np.abs(again.astype(int) - cut.astype(int)).max() <= 2  # up to interpolation rounding
    assert np.abs(align_crop(other, tpl, size, margin).astype(int) - full.astype(int)).max() > 100


def test_window_settings_are_checked_and_keyed():
    with pytest.raises(ValueError, match="face.window"):
        CropSettings(window=(0.5, 0.1, 0.9, 0.4))
    a, b = CropSettings(), CropSettings(window=[0.2, 0.08, 0.92, 1.0])
    assert b.window == (0.2, 0.08, 0.92, 1.0) and a.key() != b.key()
    assert a.key() == "retinaface-256-0.5-192-0.0"  # crops cached before the window keep their key


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


def test_weak_score_takes_the_best_weak_face_only_when_there_is_no_strong_one(astronaut, astronaut_face):
    frame = small_face_frame(astronaut, astronaut_face)
    strict = create_detector("retinaface", max_side=256, min_score=0.5)
    weak = create_detector("retinaface", max_side=256, min_score=0.5, weak_score=0.1)
    assert strict.detect(frame) == []  # the fallback crop would be used
    faces = weak.detect(frame)
    assert len(faces) == 1 and 0.1 <= faces[0].score < 0.5
    x1, y1, x2, y2 = faces[0].box
    assert 115 <= x1 < x2 <= 165 and 95 <= y1 < y2 <= 145  # on the face, not somewhere in the frame
    # with a confident face present nothing changes: the same faces, no weak extras
    a, b = strict.detect(astronaut), weak.detect(astronaut)
    assert len(a) == len(b) == 1 and np.allclose(a[0].box, b[0].box) and b[0].score >= 0.5
    with pytest.raises(ValueError, match="weak_score"):
        create_detector("retinaface", min_score=0.5, weak_score=0.7)


def test_weak_score_is_part_of_the_crop_definition():
    old = CropSettings(window=(0.2, 0.08, 0.92, 1.0))
    assert old.key().endswith("-w0.2_0.08_0.92_1")  # bundles and caches from before keep their key
    new = CropSettings(window=(0.2, 0.08, 0.92, 1.0), weak_score=0.1)
    assert new.key() == old.key() + "-k0.1" and new.detection() != old.detection()


def _far_frame(astronaut, side=320):
    """The astronaut photo at `side` px in a 1600x1200 frame: her face is ~60 px, ~10 px on a 256 px copy."""
    frame = np.full((1200, 1600, 3), 200, np.uint8)
    frame[500:500 + side, 700:700 + side] = cv2.resize(astronaut, (side, side), interpolation=cv2.INTER_AREA)
    return frame


def test_det_retry_looks_again_on_a_larger_copy_only_when_nothing_is_found(astronaut):
    frame = _far_frame(astronaut)
    plain = create_detector("retinaface", max_side=256, min_score=0.5, weak_score=0.2)
    retry = create_detector("retinaface", max_side=256, min_score=0.5, weak_score=0.2, retry_side=640)
    assert plain.detect(frame) == []  # the fallback crop would be used
    faces = retry.detect(frame)
    assert len(faces) == 1 and faces[0].score >= 0.5
    x1, y1, x2, y2 = faces[0].box  # in the full frame's pixels: her face sits at ~(805-875, 535-610)
    assert 790 < x1 < x2 < 890 and 520 < y1 < y2 < 625
    le, re, nose, lm, rm = faces[0].landmarks
    assert x1 < le[0] < re[0] < x2 and y1 < le[1] < nose[1] < lm[1] < y2
    # a face found on the small copy: nothing changes (same faces, no second pass)
    for img in (astronaut, cv2.resize(astronaut, (1024, 1024))):
        a, b = plain.detect(img), retry.detect(img)
        assert len(a) == len(b) == 1 and np.array_equal(a[0].box, b[0].box)
    with pytest.raises(ValueError, match="det_retry_side"):
        create_detector("retinaface", retry_side=8)


def test_a_doubtful_first_look_is_checked_on_a_larger_copy(astronaut):
    """face.det_retry_below: a first look whose only face is at one side (or weak, or one of several) looks
    again closer; the small face in the middle it missed is found. A clear central face is looked at once."""
    frame = np.full((960, 1280, 3), 200, np.uint8)
    frame[380:580, 540:740] = cv2.resize(astronaut, (200, 200), interpolation=cv2.INTER_AREA)  # face ~40 px
    frame[0:600, 0:600] = cv2.resize(astronaut, (600, 600), interpolation=cv2.INTER_AREA)  # a bystander, left
    calls = []

    def counted(det):
        inner = det._detect_scaled
        det._detect_scaled = lambda rgb, thr: calls.append(rgb.shape[:2]) or inner(rgb, thr)
        return det

    kw = dict(max_side=256, min_score=0.5, weak_score=0.2, retry_side=1280)
    before = counted(create_detector("retinaface", retry_below=None, **kw)).detect(frame)
    assert len(before) == 1 and before[0].box[2] < 500 and len(calls) == 1  # the bystander only, one look
    calls.clear()
    faces = counted(create_detector("retinaface", retry_below=0.9, **kw)).detect(frame)
    assert calls == [(192, 256), (960, 1280)]  # the small copy, then the photo itself (capped at retry_side)
    assert len(faces) == 2 and all(f.score >= 0.9 for f in faces)
    middle = [f for f in faces if 560 < f.box[0] < f.box[2] < 720 and 390 < f.box[1] < f.box[3] < 580]
    assert len(middle) == 1  # the face the first look missed, in full-frame pixels
    calls.clear()
    centred = cv2.resize(astronaut, (1024, 1024), interpolation=cv2.INTER_LINEAR)  # a portrait, face ~280 px
    one = counted(create_detector("retinaface", retry_below=0.9, **kw)).detect(centred)
    assert len(one) == 1 and one[0].score >= 0.9 and len(calls) == 1  # clear and central: no second look
    with pytest.raises(ValueError, match="det_retry_below"):
        create_detector("retinaface", retry_below=1.5)


def test_subject_rule_weighs_detection_confidence():
    """face.subject_confidence: a large, doubtful detection (a pattern, a pet) does not outrank a clear face."""
    from maskgate.faces.crop import subject_order
    from maskgate.faces.detect import Face

    def face(x1, y1, x2, y2, score):
        return Face(np.array([x1, y1, x2, y2], np.float32), score, np.zeros((5, 2), np.float32))

    clear = face(300, 200, 380, 290, 0.99)       # the real face, near the centre
    blob = face(100, 150, 400, 450, 0.62)        # a detection 3.7x its width on the background
    assert subject_order([clear, blob], 480, 640, 0.5, 0.0)[0] is blob  # size alone
    assert subject_order([clear, blob], 480, 640, 0.5, 3.0)[0] is clear
    # faces that are both clear: confidence changes nothing, the rule is size and centre as before
    big = face(100, 150, 400, 450, 0.97)
    assert subject_order([clear, big], 480, 640, 0.5, 3.0)[0] is big
    assert CropSettings(subject_centre=0.5).key().endswith("-c0.5-q3")
    assert CropSettings(subject_centre=0.5, subject_confidence=0).key().endswith("-c0.5")


def test_det_retry_is_keyed_and_overridable():
    old = CropSettings(window=(0.2, 0.08, 0.92, 1.0), weak_score=0.2)
    new = CropSettings(window=(0.2, 0.08, 0.92, 1.0), weak_score=0.2, det_retry_side=640)
    assert new.key() == old.key() + "-z640-r0.9" and new.detection()["det_retry_side"] == 640
    assert CropSettings(det_retry_side=640, det_retry_below=None).key().endswith("-z640")  # bundles saved before
    assert old.with_detection(det_retry=640) == new and new.with_detection(det_retry=0) == old
    assert new.with_detection() is new and new.with_detection(det_size=448).alignment() == new.alignment()
    for bad in ({"det_retry": 16}, {"det_size": 8}, {"weak_score": 1.5}, {"det_retry_below": 2},
                {"subject_confidence": -1}):
        with pytest.raises(ValueError):
            new.with_detection(**bad)
    # the doubtful look and the confidence term: predict / export options too, never the crop
    off = new.with_detection(det_retry_below=0, subject_confidence=0)
    assert off.det_retry_below is None and off.subject_confidence == 0 and off.alignment() == new.alignment()
    assert new.with_detection(det_retry_below=0.7, subject_confidence=1.5).detection()["det_retry_below"] == 0.7


def _two_faces(astronaut, astronaut_face, centre_side, edge_side, edge_at=(20, 20)):
    """A 640x480 frame: the astronaut's face at `centre_side` px in the middle, and at `edge_side` px near a
    corner (a bystander)."""
    x1, y1, x2, y2 = astronaut_face.box.astype(int)
    face = astronaut[max(0, y1 - 30):y2 + 30, max(0, x1 - 30):x2 + 30]
    frame = np.full((480, 640, 3), 190, np.uint8)
    c = cv2.resize(face, (centre_side, centre_side), interpolation=cv2.INTER_AREA)
    frame[240 - centre_side // 2:240 - centre_side // 2 + centre_side, 320 - centre_side // 2:320 - centre_side // 2
          + centre_side] = c
    e = cv2.resize(face, (edge_side, edge_side), interpolation=cv2.INTER_AREA)
    ey, ex = edge_at
    frame[ey:ey + edge_side, ex:ex + edge_side] = e
    return frame


def test_subject_is_the_largest_and_most_central_face(astronaut, astronaut_face):
    """The rule (faces/crop.py subject_order, face.subject_centre): a bystander at the edge as large as the
    person in the middle, or a little larger, is not the subject; one twice the size is; 0 = the largest."""
    def subject(frame, centre):
        cropper = FaceCropper(CropSettings(det_max_side=640, subject_centre=centre))
        faces = cropper.faces(frame, all_faces=True)
        assert len(faces) == 2, "both faces must be found for this test to mean anything"
        x1, y1, x2, y2 = faces[0].box
        return "centre" if abs((x1 + x2) / 2 - 320) < 60 else "edge"

    bigger_edge = _two_faces(astronaut, astronaut_face, 150, 170)
    assert subject(bigger_edge, 0.5) == "centre"
    assert subject(bigger_edge, 0.0) == "edge"  # the old rule: the largest face
    assert subject(_two_faces(astronaut, astronaut_face, 110, 220, (10, 10)), 0.5) == "edge"  # twice the size
    # main_face, as used for the eval layout's one answer per photo, follows the same rule
    crop = FaceCropper(CropSettings(det_max_side=640, subject_centre=0.5)).main_face(bigger_edge)
    assert abs((crop.box[0] + crop.box[2]) / 2 - 320) < 60
    assert CropSettings(subject_centre=0.5).key() != CropSettings().key()
    assert CropSettings().with_detection(subject_centre=0).subject_centre is None
    with pytest.raises(ValueError):
        CropSettings().with_detection(subject_centre=-1)


def test_detection_options_are_one_table_for_every_command():
    """predict, export, serve and watch take the same where-to-look flags, made from DETECTION_OPTIONS, and
    each lands in the CropSettings field it names (0 = off where the option says so)."""
    from maskgate.cli import _detection_args, build_parser
    from maskgate.faces.options import DETECTION_OPTIONS

    argv = {"det_size": "448", "weak_score": "0.3", "det_retry": "0", "det_retry_below": "0.7",
            "subject_centre": "0", "subject_confidence": "1.5"}
    assert set(argv) == {o.name for o in DETECTION_OPTIONS}
    flags = [x for name, v in argv.items() for x in ("--" + name.replace("_", "-"), v)]
    parser = build_parser()
    for head in (["predict", "x.jpg", "--out", "p.csv"], ["export", "--model", "m", "--out", "o.pt"], ["serve"], ["watch", "--source", "0"]):
        assert _detection_args(parser.parse_args(head + flags)) == {
            "det_size": 448, "weak_score": 0.3, "det_retry": 0, "det_retry_below": 0.7, "subject_centre": 0.0,
            "subject_confidence": 1.5}
        assert set(_detection_args(parser.parse_args(head)).values()) == {None}  # nothing given: the model's own
    base = CropSettings(weak_score=0.2, det_retry_side=1280, subject_centre=0.5)
    new = base.with_detection(**_detection_args(parser.parse_args(["predict", "x.jpg", "--out", "p.csv"] + flags)))
    assert (new.det_max_side, new.weak_score, new.det_retry_side, new.det_retry_below, new.subject_centre,
            new.subject_confidence) == (448, 0.3, None, 0.7, None, 1.5)
    assert new.alignment() == base.alignment()
    with pytest.raises(TypeError, match="not a detection option: crop_size"):
        base.with_detection(crop_size=64)  # how a face is cut never changes after training
    with pytest.raises(ValueError, match=r"face.weak_score \(--weak-score\)"):
        base.with_detection(weak_score=0.6)  # above the model's min_score 0.5: no longer silently clipped
