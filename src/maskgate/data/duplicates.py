"""The same photo under different person ids: difference hashes, near pairs, and the groups a split keeps together.

A person-level split is only leak-free if two ids that share a photo (one person filed twice, as 87
people of maskproxy train are) fall on the same side; `duplicate_groups` links them for data/splits.py,
by identical hashes and (`data.duplicate_near`) by several photos that differ by a bit or two.
"""
from __future__ import annotations

import os

import cv2
import numpy as np

_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], np.uint8)
_WEIGHTS = (1 << np.arange(63, -1, -1, dtype=np.uint64)).astype(np.uint64)


def dhash_image(img: np.ndarray, size: int = 8) -> np.uint64:
    """Difference hash of an image array (grey, BGR or RGB): a (size+1) x size grey thumbnail, 1 where a
    pixel is brighter than its right neighbour."""
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    small = cv2.resize(img, (size + 1, size), interpolation=cv2.INTER_AREA)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    if size == 8:
        return np.uint64((bits.astype(np.uint64) * _WEIGHTS).sum(dtype=np.uint64))
    return np.uint64(int("".join("1" if b else "0" for b in bits), 2))


def dhash(path: str | os.PathLike, size: int = 8) -> np.uint64:
    img = cv2.imread(str(path), cv2.IMREAD_REDUCED_GRAYSCALE_2)
    if img is None:
        raise ValueError(f"{path}: unreadable image")
    return dhash_image(img, size)


def near_pairs(hashes: np.ndarray, owner: np.ndarray, near: int, chunk: int = 1024) -> list[tuple[int, int, int]]:
    """(i, j, distance) for i < j of different owners with Hamming distance <= near."""
    b = hashes.astype(np.uint64).view(np.uint8).reshape(-1, 8)
    out = []
    for s in range(0, len(b), chunk):
        d = _POPCOUNT[b[s:s + chunk, None, :] ^ b[None, :, :]].sum(2, dtype=np.int32)
        ii, jj = np.nonzero(d <= near)
        ii = ii + s
        keep = (ii < jj) & (owner[ii] != owner[jj])
        out += [(int(i), int(j), int(d[i - s, j])) for i, j in zip(ii[keep], jj[keep])]
    return out


def duplicate_groups(person: np.ndarray, hashes: np.ndarray, usable: np.ndarray | None = None,
                     max_people: int = 4, near: int = 0, min_pairs: int = 2) -> dict[str, str]:
    """person -> the id its group is filed under (the smallest id of the group), for people linked by a
    shared photo, transitively. Only people in a group of two or more appear.

    Two people are linked by one identical photo hash (distance 0), or, with `near` > 0, by at least
    `min_pairs` photo pairs within `near` bits: a person filed twice shares all their photos, each maybe
    re-encoded a bit differently, while two strangers' photos come that close once by chance at most.
    `usable`: rows whose hash means something (not a flat or blank image). A hash shared by more than
    `max_people` people is taken for a degenerate picture (a blank frame, a placeholder), not a duplicate,
    and no group grows past `max_people` ids (links are taken identical hashes first, then by the number of matching photos).
    """
    person = np.array([str(p) for p in person], dtype=object)
    keep = np.ones(len(person), bool) if usable is None else np.asarray(usable, bool)
    person, hashes = person[keep], np.asarray(hashes, np.uint64)[keep]
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    size: dict[str, int] = {}

    def link(a: str, b: str) -> None:
        a, b = find(a), find(b)
        if a != b and size.get(a, 1) + size.get(b, 1) <= max_people:  # no chains of look-alikes
            parent[max(a, b)] = min(a, b)
            size[min(a, b)] = size.get(a, 1) + size.get(b, 1)

    by_hash: dict[int, set[str]] = {}
    for p, h in zip(person, hashes):
        by_hash.setdefault(int(h), set()).add(p)
    degenerate = {h for h, ids in by_hash.items() if len(ids) > max_people}
    for h, ids in by_hash.items():
        if h not in degenerate and len(ids) >= 2:
            ids = sorted(ids)
            for other in ids[1:]:
                link(ids[0], other)
    if near > 0:
        photos: dict[tuple[str, str], tuple[set, set]] = {}  # the distinct photos of each side that match
        for i, j, _ in near_pairs(hashes, person, near):
            if int(hashes[i]) in degenerate or int(hashes[j]) in degenerate:
                continue
            if person[i] > person[j]:
                i, j = j, i
            a, b = photos.setdefault((person[i], person[j]), (set(), set()))
            a.add(i)
            b.add(j)
        strength = {k: min(len(a), len(b)) for k, (a, b) in photos.items()}
        for (pa, pb), n in sorted(strength.items(), key=lambda kv: (-kv[1], kv[0])):  # strongest first
            if n >= min_pairs:
                link(pa, pb)
    return {str(p): str(find(p)) for p in parent} | {str(find(p)): str(find(p)) for p in parent}
