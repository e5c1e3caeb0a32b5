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


def test_people_sharing_a_photo_stay_on_one_side():
    """groups (person -> representative) move whole groups; without groups the split is the plain one."""
    s = _samples()
    groups = {"000001": "000001", "000150": "000001", "000299": "000001", "000010": "000010", "000011": "000010"}
    for seed in range(5):
        tr, va = split_people(s, 0.3, seed, groups)
        assert not tr & va and tr | va == set(s["person"])
        for members in (["000001", "000150", "000299"], ["000010", "000011"]):
            assert len({m in va for m in members}) == 1
        for tr_k, va_k in kfold_people(s, 4, seed, groups):
            for members in (["000001", "000150", "000299"], ["000010", "000011"]):
                assert len({m in va_k for m in members}) == 1
    # everyone validates once in k-fold, with groups too
    folds = kfold_people(s, 4, 0, groups)
    assert sorted(p for _, va in folds for p in va) == sorted(set(s["person"]))
    assert split_people(s, 0.2, 7, None) == split_people(s, 0.2, 7, {})


def test_duplicate_groups_link_ids_by_identical_hashes_transitively():
    from maskgate.data.duplicates import duplicate_groups

    person = np.array(["a", "a", "b", "c", "c", "d", "e", "f", "g", "h", "i", "j"])
    hashes = np.array([1, 2, 1, 2, 3, 3, 9, 7, 7, 7, 7, 7], np.uint64)  # a-b by 1, a-c by 2, c-d by 3
    usable = np.ones(len(person), bool)
    g = duplicate_groups(person, hashes, usable, max_people=4)
    assert g == {"a": "a", "b": "a", "c": "a", "d": "a"}  # 7 is shared by 5 people (> 4): a blank, not a duplicate
    usable[[0, 2]] = False  # hash 1 unusable: b no longer linked
    assert "b" not in duplicate_groups(person, hashes, usable, max_people=4)
    assert len(duplicate_groups(person, hashes, max_people=3)) == 3  # a group never grows past max_people


def test_duplicate_groups_near_needs_two_matching_photos_on_each_side():
    from maskgate.data.duplicates import duplicate_groups

    flip = lambda h, *bits: np.uint64(int(h) ^ sum(1 << b for b in bits))  # noqa: E731
    a1, a2, a3 = np.uint64(0x0F0F_3C3C_5A5A_9999), np.uint64(0x1234_5678_9ABC_DEF0), np.uint64(0xFFFF_0000_AAAA_5555)
    person = np.array(["a", "a", "a", "b", "b", "c", "c", "d", "d"])
    hashes = np.array([a1, a2, a3,
                       flip(a1, 3), flip(a2, 7, 40),      # b: two of a's photos re-encoded (1 and 2 bits off)
                       flip(a1, 5, 9), np.uint64(77),     # c: one photo 2 bits from a's, one unrelated
                       flip(a3, 1, 2, 3), np.uint64(0xABCD_0000_0000_0000)], np.uint64)  # d: 3 bits off, too far at near=2
    assert duplicate_groups(person, hashes) == {}          # near=0: no identical hash
    assert duplicate_groups(person, hashes, near=2) == {"a": "a", "b": "a"}
    # one photo of c matching two of a's is still one photo of c: not linked
    hashes2 = hashes.copy()
    hashes2[1] = flip(a1, 5)  # now c's first photo is within 2 bits of two of a's
    assert "c" not in duplicate_groups(person, hashes2, near=2)
    assert duplicate_groups(person, hashes, near=2, min_pairs=1) == {"a": "a", "b": "a", "c": "a"}


def test_duplicate_groups_never_chain_past_max_people():
    from maskgate.data.duplicates import duplicate_groups

    # 6 people whose photos are each 1 bit from the next person's: a chain of look-alikes, not one person
    base = [np.uint64(0x0F0F_3C3C_5A5A_9999), np.uint64(0x1234_5678_9ABC_DEF0)]
    person, hashes = [], []
    for k in range(6):
        for h in base:
            person.append(f"p{k}")
            hashes.append(np.uint64(int(h) ^ ((1 << k) - 1)))  # k low bits flipped: 1 bit from p(k-1)
    g = duplicate_groups(np.array(person), np.array(hashes, np.uint64), near=1, max_people=3)
    sizes = pd.Series(list(g.values())).value_counts()
    assert sizes.max() <= 3 and len(g) >= 4
