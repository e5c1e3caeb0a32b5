"""`maskgate synth`: a labelled source of unmasked faces -> the competition layout with masks drawn on.

train layout: images/{id}_{gender}_{race}_{age}/{mask1..mask5,incorrect_mask,normal}.jpg + train.csv,
              as the competition's (5 worn, 1 worn incorrectly, 1 none per person)
eval layout:  images/<ImageID>.jpg + info.csv (ImageID,ans=0) + answers.csv (ImageID,ans + the
              source's group columns, gender, age, the drawn state and shape), for `maskgate evaluate`

Both also get `synth.csv`: every image written, its source photo, state and mask shape, and
`synth_problems.csv` for photos skipped (unreadable, or no face to draw on). Each person's masks come
from a generator seeded by (seed, row), so the same command writes the same images.

A person's line goes to `synth.partial.jsonl` (the job's options first) once their images are written;
the csvs are made from that journal at the end, which is then removed. A killed job (Ctrl-C, a machine
taken back) is finished by the same command with `--resume`: the people in the journal are kept, the rest
drawn, and the folder ends byte for byte as one uninterrupted run's.
"""
from __future__ import annotations

import csv
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from ..data.images import ImageError, read_image
from ..data.sources import read_labelled
from ..faces.crop import CropSettings, FaceCropper
from ..labels import GENDER_NAMES, MASK_FILE_STEMS, Gender, Mask, encode
from .masks import draw_mask, pick_state, random_style

# what each image of a person shows, in the competition's file names
PLANS = {
    7: list(MASK_FILE_STEMS),  # mask1..mask5, incorrect_mask, normal
    3: ["mask1", "incorrect_mask", "normal"],
}


def _token(text: str, fallback: str) -> str:
    """A folder-name part: no underscores or separators (the layout splits names on '_')."""
    t = re.sub(r"[^A-Za-z0-9-]+", "-", str(text)).strip("-")
    return t or fallback


JOURNAL = "synth.partial.jsonl"


def _plain(o):
    """json.dumps' fallback: numpy scalars as Python ones."""
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"{type(o).__name__} is not JSON serializable")


def _read_journal(path: Path, job: dict) -> dict[int, dict]:
    """The people an interrupted run finished, by row. Refuses another job's journal, naming what differs; a
    last line torn by the kill is cut off (that person is drawn again)."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    try:
        head = json.loads(lines[0])["job"]
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"{path}: not a synth journal (its first line is not the job's options)") from None
    diff = [f"{k}={head.get(k)!r} there, {v!r} now" for k, v in json.loads(json.dumps(job)).items()
            if head.get(k) != v]
    if diff:
        raise ValueError(f"{path}: another synth job's journal ({'; '.join(diff)}); resume it with its own "
                         f"options, or choose a new folder")
    keep = len(lines[0]) + 1
    done = {}
    for n, line in enumerate(lines[1:], start=2):
        if not line:
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            if n < len(lines) - 1 or data.endswith(b"\n"):  # only the very last line can be torn
                raise ValueError(f"{path}: line {n} is damaged, not only the last one; start in a new folder") from None
            break
        done[int(rec["i"])] = rec
        keep += len(line) + 1
    if keep < len(data):
        with open(path, "r+b") as f:
            f.truncate(keep)
    return done


def _write_person(out: Path, layout: str, quality: int, r, i: int, images, err: str | None,
                  groups: list[str]) -> dict:
    """Save one person's images; their journal record (the rows of train.csv and synth.csv, or the problem)."""
    if err:
        return {"i": i, "path": r["path"], "problem": err}
    gender = GENDER_NAMES[Gender(int(r["gender"]))]
    pid = f"{i + 1:06d}"
    race = _token(r.get("race", "") or "unknown", "unknown")
    folder = f"{pid}_{gender}_{race}_{int(round(float(r['age'])))}"
    written = []
    for stem, state, shape, img in images:
        rel = Path(folder) / f"{stem}.jpg" if layout == "train" else Path(f"{pid}_{stem}.jpg")
        dest = out / "images" / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(dest), np.ascontiguousarray(img[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
        mask = int(MASK_FILE_STEMS[stem])
        written.append({"image": str(rel), "source": r["path"], "person": pid, "state": state, "shape": shape,
                        "ans": encode(mask, int(r["gender"]), int(r["age_band"])), "gender": gender,
                        "age": r["age"], **{g: r[g] for g in groups}})
    return {"i": i, "row": {"id": pid, "gender": gender, "race": race, "age": int(round(float(r["age"]))),
                            "path": folder}, "written": written}


def synthesize(source_dir: str | os.PathLike, out_dir: str | os.PathLike, layout: str = "train",
               per_person: int = 7, seed: int = 0, workers: int = 2, limit: int = 0,
               incorrect_kinds: dict[str, float] | None = None, quality: int = 95,
               crop: CropSettings | None = None, resume: bool = False) -> dict:
    """Write the set; returns counts {people, images, skipped}. Refuses a non-empty `out_dir`, except with
    `resume` the unfinished journal of the same job there (see the module's docstring)."""
    if layout not in ("train", "eval"):
        raise ValueError(f"layout must be train or eval, got {layout!r}")
    if per_person not in PLANS:
        raise ValueError(f"per_person must be one of {sorted(PLANS)}, got {per_person}")
    out = Path(out_dir)
    job = {"src": str(Path(source_dir).resolve()), "layout": layout, "per_person": per_person, "seed": seed,
           "limit": limit, "incorrect_kinds": incorrect_kinds, "quality": quality,
           "crop": asdict(crop) if crop else None}
    journal = out / JOURNAL
    done: dict[int, dict] = {}
    if resume and journal.exists():
        done = _read_journal(journal, job)
    elif journal.exists():
        raise FileExistsError(f"{out}: an unfinished synth job is there ({JOURNAL}); run the same command with "
                              f"--resume to finish it, or choose a new folder")
    elif out.exists() and any(out.iterdir()):
        if resume and (out / "synth.csv").exists():
            raise FileExistsError(f"{out}: this set is finished (synth.csv is there); nothing to resume")
        raise FileExistsError(f"{out}: not empty; choose a new folder for the synthesized set")
    table = read_labelled(source_dir)
    if limit:
        table = table.iloc[:limit]
    groups = [c for c in table.columns if c not in ("path", "person", "gender", "age", "age_band", "mask", "label")]
    (out / "images").mkdir(parents=True, exist_ok=True)
    cropper = FaceCropper(crop or CropSettings(weak_score=0.2, det_retry_side=640), threads=1)
    plan = PLANS[per_person]

    def one(i: int):
        r = table.iloc[i]
        try:
            rgb = read_image(r["path"])
        except ImageError as e:
            return i, None, str(e)
        face = cropper.faces(rgb, all_faces=False)[0]
        if face is None:
            return i, None, f"{r['path']}: no face found to draw a mask on"
        rng = np.random.default_rng((seed, i))
        images = []
        for stem in plan:
            state = pick_state(MASK_FILE_STEMS[stem], rng, incorrect_kinds)
            style = random_style(rng)
            img = rgb if state == "none" else draw_mask(rgb, face.landmarks, state, rng, style)[0]
            images.append((stem, state, "" if state == "none" else style.shape, img))
        return i, images, None

    if not done:
        with open(journal, "w") as f:
            f.write(json.dumps({"job": job}) + "\n")
    todo = [i for i in range(len(table)) if i not in done]
    ex = ThreadPoolExecutor(max_workers=max(1, workers))
    try:
        with open(journal, "a") as jf:
            for i, images, err in tqdm(ex.map(one, todo), total=len(table), initial=len(table) - len(todo),
                                       desc="synth", unit="person", mininterval=2):
                line = json.dumps(_write_person(out, layout, quality, table.iloc[i], i, images, err, groups),
                                  default=_plain)
                done[i] = json.loads(line)  # as a resumed run reads it: the csvs come out the same either way
                jf.write(line + "\n")
                jf.flush()  # the person's images are on disk before their line: a line means done
    finally:  # Ctrl-C: drop the people not started instead of drawing them all first
        ex.shutdown(wait=True, cancel_futures=True)
    rows, written, problems = [], [], []
    for i in sorted(done):
        rec = done[i]
        if "problem" in rec:
            problems.append({"path": rec["path"], "problem": rec["problem"]})
        else:
            rows.append(rec["row"])
            written.extend(rec["written"])
    written_df = pd.DataFrame(written)
    if layout == "train":
        pd.DataFrame(rows, columns=["id", "gender", "race", "age", "path"]).to_csv(out / "train.csv", index=False)
    else:
        ans = written_df.rename(columns={"image": "ImageID"}).drop(columns=["source", "person"])
        ans[["ImageID"]].assign(ans=0).to_csv(out / "info.csv", index=False)
        ans[["ImageID", "ans"] + [c for c in ans.columns if c not in ("ImageID", "ans")]].to_csv(
            out / "answers.csv", index=False)
    written_df.to_csv(out / "synth.csv", index=False)
    with open(out / "synth_problems.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "problem"])
        w.writeheader()
        w.writerows(problems)
    journal.unlink()  # last: a job killed while writing the csvs is finished again by --resume
    return {"people": len(rows), "images": len(written), "skipped": len(problems),
            "not_masked": int((written_df["state"] == "none").sum()) if len(written_df) else 0,
            "masks": {k: int(v) for k, v in written_df["state"].value_counts().items()} if len(written_df) else {},
            "mask_classes": {int(Mask(m)): int(n) for m, n in
                             pd.Series([MASK_FILE_STEMS[s] for s in plan] * len(rows)).value_counts().items()}}
