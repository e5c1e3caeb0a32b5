"""`maskgate noise`: the training labels that out-of-fold predictions disagree with most (confident learning).

Input: a k-fold run's `oof.csv` (every training photo predicted by the fold that did not train on it).
Gender and age are labels of a person, so they are judged per person, on the mean of the person's photo
probabilities; the mask state is a label of a photo. For each of the three, cleanlab's confident learning
(`find_label_issues`: the rows in the off-diagonal of the confident joint, whose per-class thresholds
are the mean out-of-fold probability of each class among the rows labelled with it) flags the likely label
errors, and its self-confidence score (the predicted probability of the given label) ranks them. Writes
OUT/index.html (thumbnails, given and predicted label side by side), OUT/people.csv and OUT/photos.csv.
"""
from __future__ import annotations

import base64
import html
import os
import re
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from .html_page import write_page
from .labels import AGE_NAMES, GENDER_NAMES, MASK_NAMES

PROB_COLS = [f"p{k}" for k in range(18)]


def read_oof(path: str | os.PathLike) -> pd.DataFrame:
    """A k-fold folder (its oof.csv) or the csv itself; every column the report needs, checked."""
    p = Path(path)
    if p.is_dir():
        p = p / "oof.csv"
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no out-of-fold predictions (run `maskgate kfold` first; it writes oof.csv)")
    t = pd.read_csv(p, dtype={"person": str})
    missing = [c for c in ["path", "person", "true", *PROB_COLS] if c not in t.columns]
    if missing:
        raise ValueError(f"{p}: not an oof.csv of maskgate kfold (missing columns {missing})")
    if t.empty:
        raise ValueError(f"{p}: no rows")
    return t


def _issues(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(flagged by confident learning, self-confidence quality score) per row."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    probs = np.clip(probs / probs.sum(1, keepdims=True), 1e-6, 1)
    probs = probs / probs.sum(1, keepdims=True)
    quality = get_label_quality_scores(labels, probs, method="self_confidence")
    if len(np.unique(labels)) < probs.shape[1]:  # a class with no rows: noise rates cannot be estimated
        return quality < 0.1, quality
    flagged = find_label_issues(labels, probs, filter_by="confident_learning", n_jobs=1)
    return flagged, quality


def find_noisy_labels(oof: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(people table, photos table), each ranked most suspicious first."""
    p18 = oof[PROB_COLS].to_numpy(np.float64).reshape(-1, 3, 2, 3)  # mask x gender x age band
    true = oof["true"].to_numpy()
    rows = oof.assign(t_mask=true // 6, t_gender=true // 3 % 2, t_age=true % 3)
    per = pd.DataFrame(p18.sum((1, 3)), columns=["g0", "g1"]).join(pd.DataFrame(p18.sum((1, 2)), columns=["a0", "a1", "a2"]))
    per["person"] = rows["person"].to_numpy()
    people = per.groupby("person", sort=False).mean()
    first = rows.groupby("person", sort=False).first()
    people = people.join(first[["t_gender", "t_age"]])
    # the person's unmasked photo as their thumbnail when there is one
    bare = rows[rows["t_mask"] == 2].groupby("person", sort=False)["path"].first()
    people["thumb"] = bare.reindex(people.index).fillna(first["path"])
    people["photos"] = rows.groupby("person", sort=False).size()
    g_probs, a_probs = people[["g0", "g1"]].to_numpy(), people[["a0", "a1", "a2"]].to_numpy()
    g_flag, g_q = _issues(people["t_gender"].to_numpy(), g_probs)
    a_flag, a_q = _issues(people["t_age"].to_numpy(), a_probs)
    out_people = pd.DataFrame({
        "person": people.index, "photos": people["photos"].to_numpy(), "thumb": people["thumb"].to_numpy(),
        "gender": [GENDER_NAMES[g] for g in people["t_gender"]], "gender_pred": [GENDER_NAMES[g] for g in g_probs.argmax(1)],
        "gender_quality": g_q.round(4), "gender_issue": g_flag,
        "age_band": [AGE_NAMES[a] for a in people["t_age"]], "age_pred": [AGE_NAMES[a] for a in a_probs.argmax(1)],
        "age_quality": a_q.round(4), "age_issue": a_flag})
    # the age in years where the folder says it (competition layout: {id}_{gender}_{race}_{age})
    out_people.insert(8, "age", [m.group(1) if (m := re.search(r"_(\d{1,3})$", Path(str(t)).parent.name)) else ""
                                 for t in out_people["thumb"]])
    out_people["quality"] = np.minimum(g_q, a_q).round(4)
    out_people = out_people.sort_values(["quality"], kind="stable").reset_index(drop=True)

    m_probs = p18.sum((2, 3))
    m_flag, m_q = _issues(rows["t_mask"].to_numpy(), m_probs)
    photos = pd.DataFrame({"path": rows["path"].to_numpy(), "person": rows["person"].to_numpy(),
                           "mask": [MASK_NAMES[m] for m in rows["t_mask"]],
                           "mask_pred": [MASK_NAMES[m] for m in m_probs.argmax(1)], "mask_quality": m_q.round(4),
                           "mask_issue": m_flag}).sort_values("mask_quality", kind="stable").reset_index(drop=True)
    return out_people, photos


def _thumb(path: str, side: int = 96) -> str:
    img = cv2.imread(str(path))
    if img is None:
        return "<i>unreadable</i>"
    h, w = img.shape[:2]
    s = side / max(h, w)
    ok, buf = cv2.imencode(".jpg", cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))),
                                              interpolation=cv2.INTER_AREA), [cv2.IMWRITE_JPEG_QUALITY, 80])
    return f'<img src="data:image/jpeg;base64,{base64.b64encode(buf.tobytes()).decode()}" alt="">' if ok else ""


def _table(rows: pd.DataFrame, thumb_col: str, cols: list[tuple[str, str]]) -> str:
    head = "<tr><th>photo</th>" + "".join(f"<th>{html.escape(t)}</th>" for _, t in cols) + "</tr>"
    body = []
    for r in rows.to_dict("records"):
        cells = "".join(f"<td>{html.escape(str(r[c]))}</td>" for c, _ in cols)
        body.append(f"<tr><td>{_thumb(r[thumb_col])}</td>{cells}</tr>")
    return f"<table>{head}{''.join(body)}</table>"


def noise_report(oof_path: str | os.PathLike, out: str | os.PathLike, top: int = 60) -> dict:
    """Write OUT/index.html, people.csv, photos.csv; returns the counts of flagged labels."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    people, photos = find_noisy_labels(read_oof(oof_path))
    people.to_csv(out / "people.csv", index=False)
    photos.to_csv(out / "photos.csv", index=False)
    flagged = people[people["gender_issue"] | people["age_issue"]]
    summary = {"people": len(people), "photos": len(photos), "gender_issues": int(people["gender_issue"].sum()),
               "age_issues": int(people["age_issue"].sum()), "mask_issues": int(photos["mask_issue"].sum())}
    cols_p = [("person", "person"), ("gender", "gender given"), ("gender_pred", "predicted"),
              ("gender_quality", "p(given)"), ("age", "age"), ("age_band", "age band given"), ("age_pred", "predicted"),
              ("age_quality", "p(given)")]
    cols_m = [("person", "person"), ("mask", "mask given"), ("mask_pred", "predicted"), ("mask_quality", "p(given)")]
    parts = [f"<h1>maskgate noise: {html.escape(str(oof_path))}</h1>",
             "<p>Out-of-fold predictions against the given labels; flagged by confident learning (cleanlab), "
             "ranked by the predicted probability of the given label (lowest first). Gender and age are "
             "judged per person (mean over their photos), the mask state per photo.</p>",
             "<table>" + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in summary.items()) + "</table>",
             f"<h2>People whose gender or age band look mislabelled ({len(flagged)} flagged; first {top})</h2>",
             _table(flagged.head(top), "thumb", cols_p) if len(flagged) else "<p>none</p>",
             f"<h2>Photos whose mask state looks mislabelled ({summary['mask_issues']} flagged; first {top})</h2>"]
    mask_flagged = photos[photos["mask_issue"]]
    parts.append(_table(mask_flagged.head(top), "path", cols_m) if len(mask_flagged) else "<p>none</p>")
    write_page(out / "index.html", "maskgate noise", parts)
    return summary
