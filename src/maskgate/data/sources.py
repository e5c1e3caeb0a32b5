"""Labelled face sources beside the competition layout: a folder with `labels.csv` and photos.

    SOURCE/labels.csv     path,age,gender[,any group columns: race, camera, ...]
    SOURCE/<path>         the photo (path relative to SOURCE); one person per row, unmasked

Such a source gives people (gender, age) but no mask states: training draws the masks on them
(`synth/`), and `maskgate synth` writes them out in the competition layout. Every bad row is named in
one `LayoutError` (missing file, unknown gender, negative or non-numeric age, duplicate path).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..labels import Mask, age_band, encode, parse_gender
from .images import IMAGE_SUFFIXES
from .layout import LayoutError, _parse_age

LABELS_FILE = "labels.csv"
NEEDED = ("path", "age", "gender")


@dataclass
class SourceSpec:
    """One extra source as the config names it: `data.extra: [DIR, {path: DIR, weight: 2, share: 0.3}]`."""

    path: str
    name: str = ""
    weight: float = 1.0  # sampling weight of each of its images, relative to the main layout's (1.0)
    share: float | None = None  # fixed share of every training batch (None: by size x weight)

    def __post_init__(self):
        self.name = self.name or Path(self.path).resolve().name or "extra"
        if not float(self.weight) > 0:
            raise ValueError(f"data.extra {self.path}: weight must be > 0, got {self.weight}")
        if self.share is not None and not 0 < float(self.share) < 1:
            raise ValueError(f"data.extra {self.path}: share must be in (0, 1) or null, got {self.share}")

    @classmethod
    def parse(cls, item) -> "SourceSpec":
        if isinstance(item, (str, os.PathLike)):
            return cls(path=str(item))
        if isinstance(item, dict) and "path" in item:
            unknown = set(item) - {"path", "name", "weight", "share"}
            if unknown:
                raise ValueError(f"data.extra entry {item!r}: unknown key(s) {sorted(unknown)} "
                                 "(known: path, name, weight, share)")
            return cls(path=str(item["path"]), name=str(item.get("name") or ""),
                       weight=float(item.get("weight", 1.0)),
                       share=None if item.get("share") is None else float(item["share"]))
        raise ValueError(f"data.extra entry {item!r}: expected a folder path or {{path: DIR, weight: W, share: S}}")


def read_labelled(source_dir: str | os.PathLike, check_files: bool = True) -> pd.DataFrame:
    """labels.csv of a source -> one row per photo: path (absolute), person, gender, age, age_band,
    plus every other column of labels.csv (kept as group columns). Mask is NOT_WEAR (the photos as given)."""
    root = Path(source_dir)
    csv_path = root / LABELS_FILE
    if not csv_path.is_file():
        raise LayoutError(root, [f"{csv_path}: missing (an extra source is a folder with labels.csv: "
                                 f"{','.join(NEEDED)}[,group columns])"])
    try:
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as e:
        raise LayoutError(root, [f"{csv_path}: cannot parse csv ({e})"]) from None
    missing_cols = [c for c in NEEDED if c not in table.columns]
    if missing_cols:
        raise LayoutError(root, [f"{csv_path}: columns {missing_cols} missing (has {list(table.columns)})"])
    problems: list[str] = []
    dup = table["path"][table["path"].duplicated(keep=False)]
    for p in sorted(set(dup)):
        lines = (table.index[table["path"] == p] + 2).tolist()
        problems.append(f"{csv_path}: duplicate path {p!r} on lines {lines}")
    rows = []
    extra_cols = [c for c in table.columns if c not in NEEDED]
    for i, r in table.iterrows():
        line = f"{csv_path}:{i + 2}"
        ok = True
        try:
            gender = parse_gender(r["gender"])
        except ValueError as e:
            problems.append(f"{line}: {e}")
            ok = False
        age = _parse_age(r["age"], line, problems)
        f = root / r["path"]
        if not r["path"].strip():
            problems.append(f"{line}: empty path")
            ok = False
        elif f.suffix.lower() not in IMAGE_SUFFIXES:
            problems.append(f"{line}: {r['path']!r} is not an image file name ({', '.join(IMAGE_SUFFIXES)})")
            ok = False
        elif check_files and not f.is_file():
            problems.append(f"{line}: image {f} is missing")
            ok = False
        if not ok or age is None:
            continue
        band = age_band(age)
        rows.append({"path": str(f.resolve()), "person": f"{root.name}/{r['path']}", "gender": int(gender),
                     "age": age, "age_band": band, "mask": int(Mask.NOT_WEAR),
                     "label": encode(int(Mask.NOT_WEAR), int(gender), band), **{c: r[c] for c in extra_cols}})
    if not rows and not problems:
        problems.append(f"{csv_path}: no rows")
    if problems:
        raise LayoutError(root, problems)
    return pd.DataFrame(rows)
