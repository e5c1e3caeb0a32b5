"""Training-label rules for age and the balanced sampler (issue 11's imbalance and age techniques)."""
import numpy as np
import pytest

from maskgate.train.age_rules import kept_by_age, shift_old_age
from maskgate.train.samplers import create_sampler


def test_kept_by_age_drops_inclusive_ranges():
    ages = np.array([26, 27, 29, 30, 56, 57, 59, 60])
    assert kept_by_age(ages, [[27, 29], [57, 59]]).tolist() == [True, False, False, True, True, False, False, True]
    assert kept_by_age(ages, []).all()


def test_shift_old_age_moves_only_the_chosen_years():
    t = {"age": np.array([57.0, 58.0, 59.0, 60.0, 70.0, 20.0], np.float32),
         "age_band": np.array([1, 1, 1, 2, 2, 0]), "mask": np.zeros(6, int), "gender": np.zeros(6, int)}
    out = shift_old_age(t, 58)
    assert out["age_band"].tolist() == [1, 2, 2, 2, 2, 0]
    assert out["age"].tolist() == [57.0, 60.0, 60.0, 60.0, 70.0, 20.0]
    assert t["age_band"].tolist() == [1, 1, 1, 2, 2, 0]  # the input is not changed
    assert shift_old_age(t, 60) is t


def _draws(sampler, epochs=1):
    out = []
    for e in range(epochs):
        sampler.set_epoch(e)
        out += list(sampler)
    return np.array(out)


def test_balanced_sampler_evens_out_classes():
    classes = np.array([0] * 900 + [1] * 90 + [2] * 10)
    even = _draws(create_sampler("balanced", classes=classes, power=1.0, seed=0), epochs=5)
    share = np.bincount(classes[even], minlength=3) / len(even)
    assert np.allclose(share, 1 / 3, atol=0.03), share
    plain = _draws(create_sampler("balanced", classes=classes, power=0.0, seed=0), epochs=5)
    assert np.allclose(np.bincount(classes[plain], minlength=3) / len(plain), [0.9, 0.09, 0.01], atol=0.02)


def test_balanced_sampler_oversamples_the_old_band_deterministically():
    band = np.array([0] * 500 + [2] * 500)
    s = create_sampler("balanced", classes=band, power=0.0, age_band=band, oversample_old=3.0, seed=1)
    d = _draws(s, epochs=4)
    assert (band[d] == 2).mean() == pytest.approx(0.75, abs=0.03)
    s.set_epoch(2)
    a = list(s)
    s.set_epoch(2)
    assert a == list(s)  # the same epoch draws the same rows (a resumed run repeats them)
    shards = []
    for rank in range(2):
        s.set_shard(rank, 2)
        shards.append(list(s))
    s.set_shard(0, 1)
    assert sorted(shards[0] + shards[1]) == sorted(a) and len(s) == 1000
