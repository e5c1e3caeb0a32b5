"""Transform presets: eval is exactly predict's resize; train augmentations do what their keys say."""
import numpy as np
import pytest

from maskgate.config import load_config
from maskgate.models.classifier import Preprocess
from maskgate.train.augment import EvalTransform, TrainTransform

OFF = {"hflip": 0.0, "scale": [1.0, 1.0], "shift": 0.0, "rotate": 0.0, "brightness": 0.0, "contrast": 0.0,
       "saturation": 0.0, "grayscale": 0.0, "blur": 0.0}


@pytest.fixture()
def crop(astronaut, astronaut_face):
    from maskgate.faces.crop import align_crop

    return align_crop(astronaut, astronaut_face.landmarks, 192, 0.0)


def test_eval_transform_is_predicts_resize(crop):
    pre = Preprocess()
    assert np.array_equal(EvalTransform(pre)(crop), pre.resize(crop[None])[0])


def test_train_transform_is_seeded_and_flips(crop):
    pre = Preprocess(input_size=192)  # same size as the crop: the identity warp when everything is off
    aug = load_config()["augment"]
    a = TrainTransform(pre, aug)(crop, np.random.default_rng(3))
    b = TrainTransform(pre, aug)(crop, np.random.default_rng(3))
    assert a.shape == (192, 192, 3) and a.dtype == np.uint8 and np.array_equal(a, b)
    assert np.array_equal(TrainTransform(pre, OFF)(crop, np.random.default_rng(0)), crop)
    flipped = TrainTransform(pre, {**OFF, "hflip": 1.0})(crop, np.random.default_rng(0))
    assert np.array_equal(flipped, crop[:, ::-1])


def test_noise_and_jpeg_augmentations(crop):
    pre = Preprocess(input_size=192)
    base = TrainTransform(pre, OFF)(crop, np.random.default_rng(5))
    # off (0 or absent, as in configs saved before the keys existed): no random draw, the same image
    assert np.array_equal(TrainTransform(pre, {**OFF, "noise": 0.0, "jpeg": 0.0})(crop, np.random.default_rng(5)),
                          base)
    noisy = TrainTransform(pre, {**OFF, "noise": 1.0})(crop, np.random.default_rng(5)).astype(np.float32)
    sd = (noisy - base).std()
    assert 1.5 < sd < 10.5, sd  # sigma 2-10 grey levels, a little less where clipped at 0 / 255
    squeezed = TrainTransform(pre, {**OFF, "jpeg": 1.0})(crop, np.random.default_rng(5))
    err = np.abs(squeezed.astype(np.float32) - base).mean()
    assert squeezed.dtype == np.uint8 and squeezed.flags.c_contiguous and 0.3 < err < 12, err
    # colours survive the round trip (RGB stays RGB through OpenCV's BGR codec)
    assert np.abs(squeezed.reshape(-1, 3).mean(0) - base.reshape(-1, 3).mean(0)).max() < 3


def test_low_res_augmentation(crop):
    """`augment.low_res`: the crop of a far-away face, i.e. only coarse detail left, at the input size."""
    import cv2

    pre = Preprocess(input_size=192)
    base = TrainTransform(pre, OFF)(crop, np.random.default_rng(7))
    assert np.array_equal(TrainTransform(pre, {**OFF, "low_res": 0.0})(crop, np.random.default_rng(7)), base)
    small = TrainTransform(pre, {**OFF, "low_res": 1.0})(crop, np.random.default_rng(7))
    assert small.shape == base.shape and small.dtype == np.uint8

    def detail(img):  # fine detail: variance of the Laplacian
        return cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var()

    assert detail(small) < 0.25 * detail(base), (detail(small), detail(base))
    # the picture is the same face, only coarser: its 24 px thumbnails agree
    t = [cv2.resize(x, (24, 24), interpolation=cv2.INTER_AREA).astype(np.float32) for x in (small, base)]
    assert np.abs(t[0] - t[1]).mean() < 6
