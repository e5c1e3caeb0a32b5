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


def test_balance_by_a_group_column_evens_out_its_groups():
    import pandas as pd

    from maskgate.train.samplers import balance_classes

    rows = pd.DataFrame({"race": ["white"] * 800 + ["black"] * 150 + [None] * 50, "path": ["p"] * 1000})
    t = {"age_band": np.zeros(1000, int)}
    by = balance_classes("group:race", t, np.zeros(1000, int), rows)
    assert set(by) == {"white", "black", ""}  # a missing value is a group of its own
    d = _draws(create_sampler("balanced", classes=by, power=1.0, seed=0), epochs=5)
    share = pd.Series(by[d]).value_counts(normalize=True)
    assert np.allclose(share.to_numpy(), 1 / 3, atol=0.03), share
    assert (balance_classes("age_band", t, np.ones(1000, int), rows) == 0).all()  # a task's labels, not class18
    with pytest.raises(ValueError, match="no column 'camera'.*race"):
        balance_classes("group:camera", t, np.zeros(1000, int), rows)


def test_source_shares_hold_and_rows_are_balanced_inside_each_source():
    """Balanced sampling with extra sources: the batch shares stay the sources', the classes even out within."""
    from maskgate.train.samplers import balance_weights

    src = np.array([0] * 600 + [1] * 400)
    cls = np.array([0] * 540 + [1] * 60 + [0] * 200 + [1] * 200)  # source 0 is 9:1, source 1 already 1:1
    w = np.concatenate([balance_weights(cls[src == k], power=1.0) for k in (0, 1)])
    s = create_sampler("sources", source_of_row=src, shares=np.array([0.5, 0.5]), batch_size=20, seed=3, weights=w)
    d = _draws(s, epochs=4)
    assert len(d) == 4 * 1000 and (src[d] == 0).mean() == pytest.approx(0.5, abs=1e-9)  # 10 + 10 in every batch
    for k in (0, 1):
        mine = d[src[d] == k]
        assert (cls[mine] == 1).mean() == pytest.approx(0.5, abs=0.04)
    s.set_epoch(1)
    a = list(s)
    s.set_epoch(1)
    assert a == list(s)  # deterministic per epoch (resume)
    with pytest.raises(ValueError, match="positive weight per row"):
        create_sampler("sources", source_of_row=src, shares=np.array([0.5, 0.5]), batch_size=20, weights=w[:10])
