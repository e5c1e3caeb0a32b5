"""Person-level splits. The 7 photos of one person never fall on both sides of a split, nor do two person
ids that share a photo (`groups`, from data/duplicates.py): they are split as one, filed under one id."""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit


def person_table(samples: pd.DataFrame) -> pd.DataFrame:
    """One row per person with the stratum used for splitting (gender x age band)."""
    people = samples.groupby("person", sort=True).first()[["gender", "age_band"]].reset_index()
    people["stratum"] = people["gender"].astype(int) * 3 + people["age_band"].astype(int)
    return people


def _safe_strata(people: pd.DataFrame, n_splits: int) -> np.ndarray:
    """Strata with too few people for stratification fall back to a gender-only stratum."""
    strata = people["stratum"].to_numpy().copy()
    counts = pd.Series(strata).value_counts()
    small = counts[counts < n_splits].index
    if len(small):
        mask = np.isin(strata, small)
        strata[mask] = 100 + people["gender"].to_numpy()[mask]
        counts = pd.Series(strata).value_counts()
        if (counts < n_splits).any():
            return np.zeros(len(strata), dtype=int)
    return strata


def _units(people: pd.DataFrame, groups: dict | None) -> tuple[pd.DataFrame, np.ndarray]:
    """The people that are split (each group's representative; everyone when there are no groups) and,
    for every person, the representative whose side they take."""
    ids = people["person"].astype(str).to_numpy()
    rep = np.array([str((groups or {}).get(p, p)) for p in ids])
    return people[ids == rep].reset_index(drop=True), rep


def _expand(people: pd.DataFrame, rep: np.ndarray, chosen: set) -> set:
    return set(people["person"].to_numpy()[np.isin(rep, [str(c) for c in chosen])])


def split_people(samples: pd.DataFrame, val_fraction: float, seed: int,
                 groups: dict | None = None) -> tuple[set, set]:
    """Stratified, seeded train/val split of people. Returns (train_ids, val_ids).

    groups: person -> the id their group is split under (people sharing a photo); the others alone."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if groups:
        everyone = person_table(samples)
        units, rep = _units(everyone, groups)
        tr, va = split_people(samples[samples["person"].astype(str).isin(set(units["person"].astype(str)))],
                              val_fraction, seed)
        return _expand(everyone, rep, tr), _expand(everyone, rep, va)
    people = person_table(samples)
    if len(people) < 2:
        raise ValueError(f"need at least 2 people to split, found {len(people)}")
    n_val = max(1, int(round(len(people) * val_fraction)))
    n_val = min(n_val, len(people) - 1)
    strata = _safe_strata(people, 2)
    try:
        sss = StratifiedShuffleSplit(n_splits=1, test_size=n_val, random_state=seed)
        tr, va = next(sss.split(people, strata))
    except ValueError:  # too few people per stratum for the requested size
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(people))
        va, tr = order[:n_val], order[n_val:]
    ids = people["person"].to_numpy()
    return set(ids[tr]), set(ids[va])


def kfold_people(samples: pd.DataFrame, k: int, seed: int, groups: dict | None = None) -> list[tuple[set, set]]:
    """Stratified person-level k-fold: k (train_ids, val_ids) pairs; each person validates once.
    groups: as split_people's."""
    if k < 2:
        raise ValueError(f"k-fold needs k >= 2, got {k}")
    if groups:
        everyone = person_table(samples)
        units, rep = _units(everyone, groups)
        folds = kfold_people(samples[samples["person"].astype(str).isin(set(units["person"].astype(str)))], k, seed)
        return [(_expand(everyone, rep, tr), _expand(everyone, rep, va)) for tr, va in folds]
    people = person_table(samples)
    if len(people) < k:
        raise ValueError(f"k={k} folds need at least {k} people, found {len(people)}")
    skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    ids = people["person"].to_numpy()
    return [(set(ids[tr]), set(ids[va])) for tr, va in skf.split(people, _safe_strata(people, k))]
