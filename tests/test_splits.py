import numpy as np
import pandas as pd
import pytest

from maskgate.data.splits import kfold_people, person_table, split_people


def _samples(n_people=300, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_people):
        g, a = int(rng.integers(2)), int(rng.choice(3, p=[0.55, 0.33, 0.12]))
        rows += [{"person": f"{p:06d}", "gender": g, "age_band": a, "mask": m} for m in range(7)]
    return pd.DataFrame(rows)


def test_split_by_person_no_overlap_and_covers_all():
    s = _samples()
    tr, va = split_people(s, 0.2, seed=1)
    assert not tr & va
    assert tr | va == set(s["person"])
    assert abs(len(va) - 60) <= 1


def test_split_keeps_strata_proportions():
    s = _samples()
    people = person_table(s).set_index("person")
    tr, va = split_people(s, 0.2, seed=3)
    full = people["stratum"].value_counts(normalize=True)
    val = people.loc[sorted(va), "stratum"].value_counts(normalize=True)
    for k in full.index:
        assert abs(full[k] - val.get(k, 0)) < 0.03


def test_split_is_seeded():
    s = _samples()
    assert split_people(s, 0.2, 7) == split_people(s, 0.2, 7)
    assert split_people(s, 0.2, 7) != split_people(s, 0.2, 8)


def test_kfold_each_person_validates_once():
    s = _samples(100)
    folds = kfold_people(s, 5, seed=0)
    assert len(folds) == 5
    val_all = [p for _, va in folds for p in va]
    assert sorted(val_all) == sorted(set(s["person"]))
    for tr, va in folds:
        assert not tr & va


def test_split_rejects_bad_fraction():
    with pytest.raises(ValueError):
        split_people(_samples(10), 1.5, 0)
