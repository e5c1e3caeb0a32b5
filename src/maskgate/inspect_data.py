"""`maskgate inspect`: the data report the competition write-ups made by hand, as one HTML page with plots.

For a train layout: the 18 classes, mask / gender / age-band counts, the age histogram with the band
edges, photos per person, image sizes and formats (read from each file's header), and photos that are
the same or nearly the same across different people (a 64-bit difference hash of each photo; pairs at
Hamming distance <= `near`, 2 by default): leaked or mislabelled people, which a person-level split cannot catch.
"""
from __future__ import annotations

import html
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image

from .data.duplicates import dhash, near_pairs  # noqa: F401 - near_pairs: the report's pairs
from .data.layout import read_train
from .html_page import write_page
from .labels import AGE_BOUNDS, NUM_CLASSES, class_name

def _pairs_picture(pairs: pd.DataFrame, side: int = 112) -> np.ndarray:
    """Each pair side by side (BGR), one row per pair, labelled with the two people and the distance."""
    rows = []
    for a, pa, b, pb, d in pairs[["path_a", "person_a", "path_b", "person_b", "distance"]].itertuples(index=False):
        tiles = [cv2.resize(cv2.imread(str(x)), (side, side), interpolation=cv2.INTER_AREA) for x in (a, b)]
        row = np.concatenate(tiles + [np.full((side, 220, 3), 255, np.uint8)], 1)
        cv2.putText(row, f"{pa} / {pb}", (2 * side + 6, side // 2 - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1,
                    cv2.LINE_AA)
        cv2.putText(row, f"distance {d}", (2 * side + 6, side // 2 + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    (0, 0, 200), 1, cv2.LINE_AA)
        rows.append(row)
    return np.concatenate(rows, 0)


def _header(path: str) -> tuple[int, int, str]:
    with Image.open(path) as im:
        return im.size[0], im.size[1], str(im.format)


def _plot(fig_fn, path: Path) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.4))
    fig_fn(ax)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path.name


def inspect_layout(data_dir: str | os.PathLike, out: str | os.PathLike, near: int = 2, workers: int = 2) -> dict:
    """Write OUT/index.html (+ PNGs, duplicates.csv); returns the summary numbers."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t = read_train(data_dir, verify_images=False)
    paths = t["path"].tolist()
    with ThreadPoolExecutor(max(1, workers)) as ex:
        heads = list(ex.map(_header, paths))
        hashes = np.array(list(ex.map(dhash, paths)), np.uint64)
    t = t.assign(width=[h[0] for h in heads], height=[h[1] for h in heads], format=[h[2] for h in heads],
                 suffix=[Path(p).suffix.lower() for p in paths])
    people = t.drop_duplicates("person")
    pairs = near_pairs(hashes, t["person"].astype(str).to_numpy(), near)
    dup = pd.DataFrame([{"path_a": paths[i], "person_a": t["person"].iloc[i], "path_b": paths[j],
                         "person_b": t["person"].iloc[j], "distance": d} for i, j, d in pairs],
                       columns=["path_a", "person_a", "path_b", "person_b", "distance"])
    dup.sort_values("distance").to_csv(out / "duplicates.csv", index=False)

    cls_counts = np.bincount(t["label"], minlength=NUM_CLASSES)
    per_person = t.groupby("person").size()
    figs = {
        "classes": _plot(lambda ax: (ax.bar(range(NUM_CLASSES), cls_counts),
                                     ax.set_xticks(range(NUM_CLASSES), [class_name(c) for c in range(NUM_CLASSES)],
                                                   rotation=90, fontsize=6),
                                     ax.set_title("images per class")), out / "classes.png"),
        "ages": _plot(lambda ax: (ax.hist(people["age"], bins=range(int(people["age"].min()), int(people["age"].max()) + 2)),
                                  [ax.axvline(b, color="r", ls="--") for b in AGE_BOUNDS],
                                  ax.set_title("people by age (red: band edges 30, 60)")), out / "ages.png"),
        "per_person": _plot(lambda ax: (ax.hist(per_person, bins=range(1, int(per_person.max()) + 2)),
                                        ax.set_title("photos per person")), out / "per_person.png"),
        "sizes": _plot(lambda ax: (ax.scatter(t["width"], t["height"], s=4, alpha=0.3),
                                   ax.set_xlabel("width"), ax.set_ylabel("height"),
                                   ax.set_title("image sizes (px)")), out / "sizes.png"),
    }
    tables = {
        "mask": t["mask"].map({0: "wear", 1: "incorrect", 2: "not_wear"}).value_counts(),
        "gender (people)": people["gender"].map({0: "male", 1: "female"}).value_counts(),
        "age band (people)": people["age_band"].map({0: "<30", 1: "30-59", 2: ">=60"}).value_counts(),
        "format": t["format"].value_counts(), "suffix": t["suffix"].value_counts(),
    }
    exact = dup[dup["distance"] == 0]
    summary = {"images": len(t), "people": int(t["person"].nunique()), "near_duplicate_pairs": len(dup),
               "pairs_by_distance": {int(k): int(v) for k, v in dup["distance"].value_counts().sort_index().items()},
               "people_in_near_duplicates": int(len(set(dup["person_a"]) | set(dup["person_b"]))),
               "people_in_identical_photos": int(len(set(exact["person_a"]) | set(exact["person_b"]))),
               "sizes": f"{t['width'].min()}-{t['width'].max()} x {t['height'].min()}-{t['height'].max()}",
               "ages": f"{int(people['age'].min())}-{int(people['age'].max())}",
               "boundary_people_57_59": int(people["age"].between(57, 59).sum()),
               "boundary_people_27_29": int(people["age"].between(27, 29).sum())}
    parts = [f"<h1>maskgate inspect: {html.escape(str(data_dir))}</h1>",
             "<table>" + "".join(f"<tr><th>{k}</th><td>{html.escape(str(v))}</td></tr>" for k, v in summary.items())
             + "</table>"]
    parts += [f"<h2>{k}</h2>{v.to_frame('count').to_html()}" for k, v in tables.items()]
    parts += [f'<h2>{k.replace("_", " ")}</h2><img src="{v}" alt="{k}">' for k, v in figs.items()]
    parts.append(f"<h2>Same or nearly the same photo for different people (Hamming distance &lt;= {near} of 64)</h2>")
    if len(dup):
        top = dup.sort_values("distance", kind="stable").head(12)
        cv2.imwrite(str(out / "duplicates.png"), _pairs_picture(top))
        parts.append('<img src="duplicates.png" alt="closest pairs"><p>the closest pairs, side by side</p>')
        parts.append(dup.sort_values("distance", kind="stable").head(50).to_html(index=False))
    else:
        parts.append("<p>none</p>")
    write_page(out / "index.html", "maskgate inspect", parts)
    return summary
