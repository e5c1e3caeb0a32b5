"""Read and check the competition layouts into sample tables.

train/ : train.csv (id,gender,race,age,path) + images/{id}_{gender}_{race}_{age}/{mask1..5,incorrect_mask,normal}.*
eval/  : info.csv (ImageID,ans) + images/<ImageID>

Every problem found is collected and reported in one `LayoutError` that names the files.
"""
from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from ..labels import MASK_FILE_STEMS, age_band, encode, parse_gender
from .images import IMAGE_SUFFIXES, ImageError, list_images, read_image

TRAIN_SUFFIXES = (".jpg", ".jpeg", ".png")
FOLDER_RE = re.compile(r"^(?P<id>[^_]+)_(?P<gender>[^_]+)_(?P<race>[^_]+)_(?P<age>-?[0-9]+)$")
MAX_LISTED = 50  # problems listed in full in one error message


class LayoutError(ValueError):
    """The data folder has problems; `.problems` lists each as 'path: what is wrong'."""

    def __init__(self, root: str | os.PathLike, problems: list[str]):
        self.problems = problems
        shown = "\n  - ".join(problems[:MAX_LISTED])
        more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        super().__init__(f"{root}: {len(problems)} problem(s) found:\n  - {shown}{more}")


def check_images(paths: list[Path], workers: int = 4) -> list[str]:
    """Decode every image fully (catches truncation); returns the problems found."""

    def one(p: Path) -> str | None:
        try:
            read_image(p)
        except ImageError as e:
            return str(e)
        return None

    with ThreadPoolExecutor(max_workers=workers) as ex:
        return [r for r in ex.map(one, paths) if r]


def _parse_age(value, where: str, problems: list[str]) -> float | None:
    try:
        age = float(value)
    except (TypeError, ValueError):
        problems.append(f"{where}: age {value!r} is not a number")
        return None
    if age != age or age < 0:
        problems.append(f"{where}: age {value!r} is negative or missing")
        return None
    if age > 130:
        problems.append(f"{where}: age {value!r} is not plausible")
        return None
    return age


def read_train(train_dir: str | os.PathLike, verify_images: bool = True) -> pd.DataFrame:
    """The train layout -> one row per image: path, person, gender, race, age, age_band, mask, label."""
    root = Path(train_dir)
    csv_path = root / "train.csv"
    images_dir = root / "images"
    problems: list[str] = []
    if not csv_path.is_file():
        raise LayoutError(root, [f"{csv_path}: missing (expected the competition's train.csv)"])
    if not images_dir.is_dir():
        raise LayoutError(root, [f"{images_dir}: missing folder of per-person image folders"])
    try:
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as e:
        raise LayoutError(root, [f"{csv_path}: cannot parse csv ({e})"]) from None
    needed = {"id", "gender", "age", "path"}
    if not needed <= set(table.columns):
        raise LayoutError(root, [f"{csv_path}: columns {sorted(needed - set(table.columns))} missing "
                                 f"(has {list(table.columns)})"])

    dup = table["id"][table["id"].duplicated(keep=False)]
    for pid in sorted(set(dup)):
        rows = (table.index[table["id"] == pid] + 2).tolist()
        problems.append(f"{csv_path}: duplicate id {pid!r} on lines {rows}")

    rows = []
    seen_folders = set()
    for i, r in table.iterrows():
        line = f"{csv_path}:{i + 2}"
        folder = images_dir / r["path"]
        seen_folders.add(r["path"])
        m = FOLDER_RE.match(r["path"])
        if not m:
            problems.append(f"{folder}: folder name does not parse as id_gender_race_age ({line})")
            continue
        try:
            gender = parse_gender(r["gender"])
        except ValueError as e:
            problems.append(f"{line}: {e}")
            continue
        age = _parse_age(r["age"], line, problems)
        if age is None:
            continue
        if m["id"] != r["id"] or m["gender"].lower() != r["gender"].strip().lower() or float(m["age"]) != age:
            problems.append(f"{folder}: folder name disagrees with {line} (id/gender/age)")
            continue
        if not folder.is_dir():
            problems.append(f"{folder}: folder missing for csv row {line}")
            continue
        found = {}
        for f in folder.iterdir():
            if f.name.startswith("."):
                continue
            if f.stem in MASK_FILE_STEMS and f.suffix.lower() in TRAIN_SUFFIXES:
                if f.stem in found:
                    problems.append(f"{f}: second file for {f.stem!r} (also {found[f.stem].name})")
                found[f.stem] = f
            else:
                problems.append(f"{f}: unexpected file (expected {', '.join(MASK_FILE_STEMS)} as .jpg/.jpeg/.png)")
        missing = [s for s in MASK_FILE_STEMS if s not in found]
        if missing:
            problems.append(f"{folder}: missing image(s) {missing}")
        band = age_band(age)
        for stem, f in sorted(found.items()):
            mask = int(MASK_FILE_STEMS[stem])
            rows.append({"path": str(f), "person": r["id"], "gender": int(gender), "race": r.get("race", ""),
                         "age": age, "age_band": band, "mask": mask,
                         "label": encode(mask, int(gender), band)})
    for d in sorted(images_dir.iterdir()):
        if d.is_dir() and not d.name.startswith(".") and d.name not in seen_folders:
            problems.append(f"{d}: folder has no row in {csv_path}")
    if not rows and not problems:
        problems.append(f"{csv_path}: no rows")
    if verify_images and rows:
        problems += check_images([Path(r["path"]) for r in rows])
    if problems:
        raise LayoutError(root, problems)
    return pd.DataFrame(rows)


def read_eval(eval_dir: str | os.PathLike, verify_images: bool = True) -> pd.DataFrame:
    """The eval layout -> table with ImageID, path (and ans if info.csv has it) in info.csv order."""
    root = Path(eval_dir)
    csv_path = root / "info.csv"
    images_dir = root / "images"
    if not csv_path.is_file():
        raise LayoutError(root, [f"{csv_path}: missing (expected the competition's info.csv)"])
    try:
        table = pd.read_csv(csv_path, dtype={"ImageID": str}, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as e:
        raise LayoutError(root, [f"{csv_path}: cannot parse csv ({e})"]) from None
    if "ImageID" not in table.columns:
        raise LayoutError(root, [f"{csv_path}: no ImageID column (has {list(table.columns)})"])
    problems = []
    dup = table["ImageID"][table["ImageID"].duplicated()]
    for d in sorted(set(dup)):
        problems.append(f"{csv_path}: duplicate ImageID {d!r}")
    paths = [images_dir / i for i in table["ImageID"]]
    for i, p in enumerate(paths):
        if not p.is_file():
            problems.append(f"{p}: image listed on {csv_path}:{i + 2} is missing")
    if verify_images and not problems:
        problems += check_images(paths)
    if problems:
        raise LayoutError(root, problems)
    out = table.copy()
    out["path"] = [str(p) for p in paths]
    return out


def looks_like_eval(folder: Path) -> bool:
    return (folder / "info.csv").is_file() and (folder / "images").is_dir()


def gather_inputs(inputs: list[str | os.PathLike]) -> list[Path]:
    """Image files and plain folders of images -> list of files (unknown suffixes refused)."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = list_images(p)
            if not found:
                raise FileNotFoundError(f"{p}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    return out
