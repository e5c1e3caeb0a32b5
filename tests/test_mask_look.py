"""Mask-look augmentation: pasted-mask outlines are found where (and only where) they exist, and the
redraw changes the mask alone."""
import cv2
import numpy as np
import pytest

from maskgate.config import load_config
from maskgate.data.layout import read_train
from maskgate.faces.cache import CropCache
from maskgate.faces.crop import CropSettings, align_crop
from maskgate.labels import Mask
from maskgate.models.classifier import Preprocess
from maskgate.train.augment import TrainTransform
from maskgate.train.mask_look import ALPHA_SIDE, outline, pasted_mask_alphas, restyle
from test_augment import OFF


@pytest.fixture(scope="module")
def tiny_crops(tiny_data, tmp_path_factory):
    settings = CropSettings(crop_size=112)
    samples = read_train(tiny_data[0])
    crops, found, landmarks, _, problems = CropCache(tmp_path_factory.mktemp("c"), settings).crop_all(
        samples["path"].tolist())
    assert not problems and found.all()
    return samples, crops, landmarks, settings


@pytest.fixture(scope="module")
def outlined(tiny_crops):
    """The tiny data's outlines, and the index of the first image that has one."""
    alphas = pasted_mask_alphas(*tiny_crops)
    return alphas, int(np.flatnonzero(alphas.any((1, 2)))[0])


def test_outline_of_a_pasted_mask(astronaut, astronaut_face):
    from maskgate.demo import draw_mask

    plain = align_crop(astronaut, astronaut_face.landmarks, 192, 0.0)
    masked = align_crop(draw_mask(astronaut, astronaut_face.landmarks, worn=True), astronaut_face.landmarks, 192, 0.0)
    drawn = np.abs(masked.astype(int) - plain.astype(int)).max(2) > 0
    alpha, rest = outline(masked, plain, soft=False)
    inside = alpha > 0.5
    iou = (inside & drawn).sum() / (inside | drawn).sum()
    assert iou > 0.9 and rest < 1.0, (iou, rest)
    # part of the print as light as the skin under it leaves no hole in the outline
    ys, xs = np.nonzero(drawn)
    cy, cx = int(ys.mean()), int(xs.mean())
    spotted = masked.copy()
    spotted[cy - 6:cy + 6, cx - 6:cx + 6] = plain[cy - 6:cy + 6, cx - 6:cx + 6]
    assert outline(spotted, plain, soft=False)[0][cy - 6:cy + 6, cx - 6:cx + 6].all()
    # two different photos: everything differs, nothing to call a mask
    assert outline(masked, np.roll(plain, 15, axis=1))[1] > 3


def test_outlines_found_in_pasted_data_only(tiny_crops, outlined):
    samples, crops, landmarks, settings = tiny_crops
    alphas = outlined[0]
    assert alphas.shape == (len(samples), ALPHA_SIDE, ALPHA_SIDE) and alphas.dtype == np.uint8
    has = alphas.any((1, 2))
    masked = (samples["mask"] != Mask.NOT_WEAR).to_numpy()
    assert not has[~masked].any()  # unmasked images have no outline
    assert has[masked].mean() > 0.9, has[masked].mean()
    # worn masks cover more of the face than masks pulled down below the nose
    area, mask = alphas.mean((1, 2)), samples["mask"].to_numpy()
    assert area[(mask == Mask.WEAR) & has].mean() > area[(mask == Mask.INCORRECT) & has].mean()
    # photos of a person that are not one photo (real data): the next person's `normal` stands in
    swapped = samples.copy()
    normal = swapped["mask"] == Mask.NOT_WEAR
    swapped.loc[normal, "path"] = np.roll(swapped.loc[normal, "path"].to_numpy(), 1)
    assert not pasted_mask_alphas(swapped, crops, landmarks, settings).any()


def test_restyle_changes_the_mask_only(tiny_crops, outlined):
    crops = tiny_crops[1]
    alphas, i = outlined
    crop, alpha = crops[i], alphas[i]
    big = cv2.resize(alpha, crop.shape[:2][::-1]) / 255
    a, b = restyle(crop, alpha, np.random.default_rng(1)), restyle(crop, alpha, np.random.default_rng(2))
    diff = np.abs(a.astype(int) - crop.astype(int)).max(2)
    assert (diff[big < 0.01] <= 1).mean() > 0.98  # outside the mask (and its 2 px soft edge): unchanged
    assert diff[big > 0.99].mean() > 10  # inside: a new look
    assert not np.array_equal(a, b)  # seeded, and different seeds give different looks


def test_mask_look_in_the_train_transform(tiny_crops, outlined):
    crops = tiny_crops[1]
    alphas, i = outlined
    pre = Preprocess(input_size=112)
    base = TrainTransform(pre, OFF)(crops[i], np.random.default_rng(5))
    # off, no outline, or an empty one: no random draw, the same image as before the key existed
    for aug, alpha in (({**OFF, "mask_look": 0.0}, alphas[i]), ({**OFF, "mask_look": 1.0}, None),
                       ({**OFF, "mask_look": 1.0}, np.zeros_like(alphas[i]))):
        assert np.array_equal(TrainTransform(pre, aug)(crops[i], np.random.default_rng(5), alpha), base)
    on = TrainTransform(pre, {**OFF, "mask_look": 1.0})(crops[i], np.random.default_rng(5), alphas[i])
    assert np.array_equal(on, restyle(crops[i], alphas[i], _after_one_draw(5)))
    assert load_config()["augment"]["mask_look"] > 0  # on by default


def _after_one_draw(seed: int) -> np.random.Generator:
    rng = np.random.default_rng(seed)
    rng.random()  # the draw that decides whether to redraw the mask
    return rng


def test_on_the_fly_dataset_redraws_masks(tiny_crops, outlined):
    """The GPU path (`train.cache_features: false`) augments in the dataset and passes outlines along."""
    from maskgate.train.features import ImageDataset, targets_from

    samples, crops = tiny_crops[:2]
    alphas, i = outlined
    pre, aug = Preprocess(input_size=112), {**OFF, "mask_look": 1.0}
    with_look = ImageDataset(crops, targets_from(samples), pre, aug, seed=3, mask_alphas=alphas)[i]
    without = ImageDataset(crops, targets_from(samples), pre, aug, seed=3)[i]
    expected = pre.to_tensor(TrainTransform(pre, aug)(crops[i], np.random.default_rng((3, 0, i)), alphas[i])[None])[0]
    assert with_look["x"].shape == without["x"].shape == (3, 112, 112)
    assert np.allclose(with_look["x"].numpy(), expected.numpy()) and not np.allclose(with_look["x"], without["x"])
    assert int(with_look["mask"]) == int(samples["mask"].iloc[i])
