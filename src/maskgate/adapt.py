"""`maskgate adapt`: re-fit a trained model's age-band offsets on a site's own labelled people.

Why: a model decides the age band from its age logits plus offsets fitted on its training population's
validation people (`train/calibrate.py`). Where the people differ (another mix of ages or races, another
camera), its age decisions lean one way: on faces-world's people the shipped model, fitted on maskproxy's,
calls too many people older than they are. Offsets fitted on a few hundred of the site's own labelled people
move the decision back without training: the network, its mask and gender probabilities and its speed are
unchanged; only the two numbers added to the 30-59 and >=60 logits move.

Honest by construction: the gain is first measured on people the offsets were not fitted on (person-level
folds: fitted on the other folds, scored on the held-out one), and the new offsets are kept only when that
gain is sure (positive in at least 95% of bootstrap resamples of the people); otherwise the model keeps its own
and the report says so. A plain "gain > 0" kept offsets that lost on new people about half the time where the
site's people were like the model's own (benchmarks/bench_adapt.py).
"""
from __future__ import annotations

import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .evaluate import present_macro_f1, read_table
from .groups import group_scores

GRID = np.round(np.arange(-1.0, 1.01, 0.1), 2)  # as train/calibrate.py: a small grid, a few hundred people
PENALTY = 0.002  # per unit of offset, as train/calibrate.py: offsets that win by less do not carry over
SURE = 0.95  # share of bootstrap resamples of the people in which the held-out gain must be positive
BOOTSTRAP = 400
OBJECTIVES = ("macro_f1", "age_acc", "accuracy")
_SYNTH_ID = re.compile(r"^(\d{6})_")  # `maskgate synth --layout eval` names images <person>_<state>.jpg


def apply_offsets(probs: np.ndarray, b1: float, b2: float) -> np.ndarray:
    """Classes after multiplying p(age band | gender) by exp(0, b1, b2) and renormalising it: the same
    decisions as adding (0, b1, b2) to the model's age logits (`models/heads.combine18`)."""
    return _decide(_parts(probs), b1, b2)


def _parts(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """p(mask), p(gender), p(age band | gender) of 18-class probabilities (computed once for a whole grid)."""
    j = probs.reshape(-1, 3, 2, 3)  # mask x gender x age
    pm, pg = j.sum((2, 3)), j.sum((1, 3))
    return pm, pg, j.sum(1) / np.clip(pg[:, :, None], 1e-12, None)


def _decide(parts: tuple[np.ndarray, np.ndarray, np.ndarray], b1: float, b2: float) -> np.ndarray:
    pm, pg, pa = parts
    pa = pa * np.exp([0.0, b1, b2])
    pa /= pa.sum(2, keepdims=True)
    return (pm[:, :, None, None] * pg[:, None, :, None] * pa[:, None]).reshape(-1, 18).argmax(1)


def score(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """n, 18-class accuracy, macro F1 over the classes present, the accuracy of each part: the scores of
    `groups.group_scores` for one group."""
    row = group_scores(y_true, y_pred, np.zeros(len(y_true), int)).iloc[0]
    return {k: int(row[k]) if k == "n" else float(row[k])
            for k in ("n", "macro_f1", "accuracy", "mask_acc", "gender_acc", "age_acc")}


def _objective(y: np.ndarray, pred: np.ndarray, objective: str) -> float:
    if objective == "macro_f1":
        return present_macro_f1(y, pred)
    if objective == "age_acc":
        return float((y % 3 == pred % 3).mean())
    return float((y == pred).mean())


def fit_offsets(decisions: np.ndarray, y: np.ndarray, objective: str = "accuracy",
                grid: np.ndarray = GRID, penalty: float = PENALTY) -> tuple[float, float]:
    """The grid point (b1, b2) with the best objective minus `penalty` x (|b1| + |b2|); `decisions[k]` are
    the classes at grid point k (`_all_decisions`). Ties and near-ties keep the smaller offsets."""
    best, best_v = (0.0, 0.0), _objective(y, decisions[_index(grid, 0.0, 0.0)], objective)
    for k, (b1, b2) in enumerate(_points(grid)):
        v = _objective(y, decisions[k], objective) - penalty * (abs(b1) + abs(b2))
        if v > best_v + 1e-9:
            best, best_v = (float(b1), float(b2)), v
    return best


def _points(grid: np.ndarray) -> list[tuple[float, float]]:
    return [(float(a), float(b)) for a in grid for b in grid]


def _index(grid: np.ndarray, b1: float, b2: float) -> int:
    return int(np.argmin(np.abs(grid - b1))) * len(grid) + int(np.argmin(np.abs(grid - b2)))


def _all_decisions(probs: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """grid points x photos: the classes at every (b1, b2), computed once for all folds."""
    parts = _parts(probs)
    return np.stack([_decide(parts, b1, b2).astype(np.int8) for b1, b2 in _points(grid)])


def person_folds(persons: np.ndarray, folds: int, seed: int = 0) -> np.ndarray:
    """A fold number per photo; every photo of one person in the same fold."""
    uniq = np.unique(persons)
    if len(uniq) < 2 * folds:
        raise ValueError(f"adapt needs at least {2 * folds} people to measure offsets on held-out people "
                         f"({folds} folds), got {len(uniq)}")
    order = np.random.default_rng(seed).permutation(len(uniq))
    fold_of = dict(zip(uniq[order].tolist(), (np.arange(len(uniq)) % folds).tolist()))
    return np.array([fold_of[p] for p in persons.tolist()])


@dataclass
class Adaptation:
    """What `adapt_offsets` found: the offsets to add, the scores behind the choice."""

    offsets: tuple[float, float]  # added to the model's own (30-59, >=60) offsets; (0, 0) = kept as it was
    fitted: tuple[float, float]  # what the grid search picked on all the people
    objective: str
    people: int
    photos: int
    as_is: dict = field(default_factory=dict)  # the model's own decisions
    held_out: dict = field(default_factory=dict)  # fitted on the other folds, scored on each fold in turn
    fold_offsets: list = field(default_factory=list)
    sure: float = 0.0  # share of bootstrap resamples of the people with a positive held-out gain
    need: float = SURE  # the share asked for
    kept: bool = True  # False: no sure gain on held-out people, the model's own offsets stay

    def as_dict(self) -> dict:
        return {"offsets": list(self.offsets), "fitted_on_all": list(self.fitted), "objective": self.objective,
                "people": self.people, "photos": self.photos, "kept": self.kept, "sure": self.sure, "need": self.need,
                "as_is": self.as_is, "held_out": self.held_out, "fold_offsets": self.fold_offsets}


def gain_sureness(y: np.ndarray, new: np.ndarray, old: np.ndarray, persons: np.ndarray, objective: str,
                  n: int = BOOTSTRAP, seed: int = 0) -> float:
    """Share of bootstrap resamples of the people (with replacement, all photos of a drawn person) in which
    `new` decisions score higher than `old` ones on the objective."""
    _, inv = np.unique(persons, return_inverse=True)
    order = np.argsort(inv, kind="stable")
    starts = np.searchsorted(inv[order], np.arange(inv.max() + 2))
    photos = [order[starts[k]:starts[k + 1]] for k in range(len(starts) - 1)]
    rng = np.random.default_rng(seed)
    wins = 0
    for _ in range(n):
        idx = np.concatenate([photos[k] for k in rng.integers(0, len(photos), len(photos))])
        wins += _objective(y[idx], new[idx], objective) > _objective(y[idx], old[idx], objective) + 1e-12
    return wins / n


def adapt_offsets(probs: np.ndarray, y: np.ndarray, persons: np.ndarray, objective: str = "accuracy",
                  folds: int = 5, grid: np.ndarray = GRID, penalty: float = PENALTY, seed: int = 0,
                  need: float = SURE) -> Adaptation:
    """Fit (b1, b2) on the labelled photos; keep them only if the held-out objective gains in at least a
    share `need` of bootstrap resamples of the people (0: whenever the fit moved them)."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    y, persons = np.asarray(y, int), np.asarray(persons).astype(str)
    fold = person_folds(persons, folds, seed)
    dec = _all_decisions(probs, grid)
    held = np.empty(len(y), int)
    fold_offsets = []
    for f in range(folds):
        train, test = fold != f, fold == f
        b = fit_offsets(dec[:, train], y[train], objective, grid, penalty)
        fold_offsets.append(list(b))
        held[test] = dec[_index(grid, *b), test]
    as_is = dec[_index(grid, 0.0, 0.0)]
    fitted = fit_offsets(dec, y, objective, grid, penalty)
    sure = gain_sureness(y, held, as_is, persons, objective, seed=seed)
    kept = sure >= need and fitted != (0.0, 0.0)
    return Adaptation(offsets=fitted if kept else (0.0, 0.0), fitted=fitted, objective=objective,
                      people=len(np.unique(persons)), photos=len(y), as_is=score(y, as_is),
                      held_out=score(y, held), fold_offsets=fold_offsets, sure=sure, need=need, kept=kept)


# --- labelled photos -------------------------------------------------------------------------------------
@dataclass
class Labelled:
    """Photos with their true class and the person each shows (folds never split a person)."""

    paths: list[str]
    classes: np.ndarray
    persons: np.ndarray


def _persons(table, keys: list[str], tag: str) -> list[str]:
    if "person" in table.columns:
        return [f"{tag}:{v}" for v in table["person"].astype(str)]
    ids = [Path(k).name for k in keys]
    if ids and all(_SYNTH_ID.match(i) for i in ids):
        return [f"{tag}:{_SYNTH_ID.match(i).group(1)}" for i in ids]
    return [f"{tag}:{k}" for k in keys]  # one photo per person


def read_labelled_photos(sources: Sequence[str | os.PathLike], draw_masks: int = 0, work: Path | None = None,
                         seed: int = 0, log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)
                         ) -> Labelled:
    """Each source: an eval layout (a folder with answers.csv and images/, or the answers.csv itself) or a
    labelled source (a folder with labels.csv, or the labels.csv). With `draw_masks` (3 or 7), a labels.csv
    source's unmasked people get masks drawn by `maskgate synth` (into `work`), so all three mask states count.
    Persons: a `person` column, else `maskgate synth`'s <person>_ prefix, else one person per photo."""
    from .synth.writer import synthesize

    paths, classes, persons = [], [], []
    for i, src in enumerate(sources):
        src = Path(src)
        csv = src if src.is_file() else next((src / n for n in ("answers.csv", "labels.csv") if (src / n).is_file()),
                                              None)
        if csv is None:
            raise FileNotFoundError(f"{src}: no answers.csv (eval layout) or labels.csv (labelled source) found")
        if draw_masks and csv.name == "answers.csv":
            log(f"{csv}: an eval layout, used as it is (masks are drawn only on a labels.csv source's people)")
        elif draw_masks:
            if csv.name != "labels.csv":
                raise ValueError(f"{csv}: masks are drawn on a labelled source, a folder with labels.csv; "
                                 "put this file in one under that name")
            if work is None:
                raise ValueError("draw_masks needs a work folder for the drawn photos")
            drawn = work / f"{i}_{csv.parent.name}_masks{draw_masks}_s{seed}"
            if not (drawn / "answers.csv").is_file():
                if drawn.exists():  # our own folder, left half-written by a killed run: draw it again
                    shutil.rmtree(drawn)
                log(f"drawing masks on the people of {csv} -> {drawn}")
                synthesize(csv.parent, drawn, layout="eval", per_person=draw_masks, seed=seed)
            csv = drawn / "answers.csv"
        table = read_table(csv, "labels")
        if "ImageID" in table.columns or table.index.name == "ImageID":
            keys = [str(csv.parent / "images" / k) for k in table.index]
        else:
            keys = [str(k) for k in table.index]
        paths += keys
        classes += table["ans"].astype(int).tolist()
        persons += _persons(table.reset_index(), keys, str(i))
    return Labelled(paths, np.array(classes, int), np.array(persons))


def model_probs(model, paths: Sequence[str], tta: bool | str | None = None,
                log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> tuple[np.ndarray, np.ndarray]:
    """The model's 18-class probabilities of each photo's subject, and which photos gave them (an unreadable
    photo is reported and left out, the others still count)."""
    from .predict import Predictor

    pred = Predictor(model, tta=tta)
    out, ok = [], np.zeros(len(paths), bool)
    for k, (p, res, err) in enumerate(pred.predict_files(paths, all_faces=False)):
        if err:
            log(f"skipped {p}: {err}")
            continue
        out.append(res[0].probs)
        ok[k] = True
        if (k + 1) % 500 == 0:
            log(f"  {k + 1}/{len(paths)} photos")
    if not out:
        raise ValueError("no photo could be classified")
    return np.array(out), ok


def write_adapted(model, out: str | os.PathLike, ad: Adaptation, sources: Sequence[str],
                  tta: bool | str | None = None) -> Path:
    """The model with (0, b1, b2) added to its age-band offsets (both genders), its provenance in
    `info["adapted"]`. A .pt bundle keeps everything else as it was (weights, TorchScript graph, crop);
    `.onnx`: the ONNX twin for onnxruntime, as `maskgate export --format onnx` writes it."""
    import torch

    from .models.classifier import MaskClassifier, atomic_torch_save, read_bundle
    from .models.runtime import default_model_path

    from .models.preprocess import tta_mode

    src = Path(model) if model else default_model_path("torch")
    out = Path(out)

    def record(own_tta: str) -> dict:  # own_tta: the model's saved setting, which the probabilities followed
        return {**ad.as_dict(), "from": str(src), "data": [str(s) for s in sources],
                "fitted_with_tta": tta_mode(tta, own_tta)}

    if out.suffix == ".onnx":  # as `maskgate export --format onnx`, checked against PyTorch on real face crops
        from .models.onnx_export import export_checked

        m = MaskClassifier.load(src)
        m.age_bias += torch.tensor([0.0, *ad.offsets])
        m.info = {**m.info, "adapted": record(m.preprocess.tta)}
        export_checked(m, out)
        return out
    blob, _ = read_bundle(src)
    bias = np.asarray(blob["age_bias"], np.float32).reshape(-1, 3) * np.ones((2, 1), np.float32)
    blob["age_bias"] = (bias + np.array([0.0, *ad.offsets], np.float32)).tolist()
    blob["info"] = {**blob.get("info", {}), "adapted": record(blob["preprocess"].get("tta", "off"))}
    atomic_torch_save(blob, out)
    return out


def format_adaptation(ad: Adaptation) -> str:
    """A small table for people: as is, held out, and what was done."""
    cols = ("accuracy", "macro_f1", "mask_acc", "gender_acc", "age_acc")
    lines = [f"{ad.people} people, {ad.photos} photos; objective {ad.objective}; offsets on the grid "
             f"{GRID[0]:+.1f}..{GRID[-1]:+.1f}",
             f"{'':34s}" + "".join(f"{c:>12s}" for c in cols),
             f"{'model as it is':34s}" + "".join(f"{ad.as_is[c]:12.4f}" for c in cols),
             f"{'adapted, on held-out people':34s}" + "".join(f"{ad.held_out[c]:12.4f}" for c in cols)]
    sure = f"held-out gain positive in {ad.sure:.0%} of bootstrap resamples of the people"
    if ad.kept:
        lines.append(f"kept ({sure}): (30-59, >=60) offsets {ad.offsets[0]:+.1f}, {ad.offsets[1]:+.1f} added to the "
                     "model's own")
    else:
        lines.append(f"not kept ({sure}, {ad.need:.0%} needed): the offsets fitted on all ({ad.fitted[0]:+.1f}, "
                     f"{ad.fitted[1]:+.1f}) are not a sure gain on held-out people; the model's own offsets stay")
    return "\n".join(lines)


def run_adapt(model, sources: Sequence[str], out: str | os.PathLike, objective: str = "accuracy",
              draw_masks: int = 0, folds: int = 5, tta: bool | str | None = None, seed: int = 0, need: float = SURE,
              log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> dict:
    """Read the labelled photos, classify them once, fit and check the offsets, write the adapted model."""
    if not sources:
        raise ValueError("adapt needs labelled photos (--data)")
    if folds < 2:
        raise ValueError(f"--folds must be 2 or more, got {folds}")
    if not 0.0 <= need <= 1.0:
        raise ValueError(f"--sure must be a share between 0 and 1, got {need}")
    out = Path(out)
    if out.suffix not in (".pt", ".onnx"):
        raise ValueError(f"{out}: the adapted model is written as a .pt bundle or an .onnx file")
    if model and Path(model).suffix == ".onnx":
        raise ValueError(f"{model}: adapt starts from a .pt bundle or run folder (an ONNX file's offsets are inside "
                         "its graph); give the bundle it was exported from, and --out x.onnx for its ONNX twin")
    if model:
        from .models.classifier import read_bundle

        read_bundle(model, "adapt --model")  # a bad model file fails now, not after classifying every photo
    work = out.parent / f"{out.stem}_photos"
    data = read_labelled_photos(sources, draw_masks, work, seed, log)
    log(f"classifying {len(data.paths)} labelled photos")
    probs, ok = model_probs(model, data.paths, tta, log)
    ad = adapt_offsets(probs, data.classes[ok], data.persons[ok], objective, folds, seed=seed, need=need)
    log(format_adaptation(ad))
    write_adapted(model, out, ad, [str(s) for s in sources], tta)
    log(f"wrote {out}")
    return {"out": str(out), "skipped": int((~ok).sum()), **ad.as_dict()}
