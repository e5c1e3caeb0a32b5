"""A prediction job over many photos that survives being killed.

`maskgate predict` streams each photo's rows, as soon as it is classified, to a journal beside its output
(`<out>.partial.csv`, what the job is in `<out>.partial.json`); the output itself is written, atomically, only
when every photo is done, and the journal is then removed. A job that is killed (Ctrl-C, out of memory, a
machine taken back) leaves the journal; the same command with `--resume` keeps the photos it holds and
classifies only the rest, so the output is the one an uninterrupted run writes. Nothing here imports PyTorch:
the slim install runs it.
"""
from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROW_FIELDS = ["path", "face", "class", "mask", "gender", "age", "confidence", "face_found", "det_score", "box"]
JOURNAL_FIELDS = ROW_FIELDS + ["error"]  # an unreadable photo: one row with only its path and the error


class JournalError(ValueError):
    """A journal that cannot be resumed (or would be overwritten); the message says which file and why."""


def journal_paths(out: Path) -> tuple[Path, Path]:
    """The journal of an output csv: its rows and its job description."""
    stem = out.name[: -len(out.suffix)] if out.suffix else out.name
    return out.with_name(f"{stem}.partial.csv"), out.with_name(f"{stem}.partial.json")


@dataclass
class Journal:
    """The rows of one prediction job, on disk as they come (one write and flush per photo)."""

    out: Path
    job: dict  # what decides the answers (models, tta, vote, detection options, faces per photo)
    done: dict[str, list[dict]] = field(default_factory=dict)  # photo -> its journal rows, in order

    @property
    def rows_path(self) -> Path:
        return journal_paths(self.out)[0]

    @property
    def job_path(self) -> Path:
        return journal_paths(self.out)[1]

    @classmethod
    def open(cls, out: Path, job: dict, resume: bool) -> Journal:
        """Start a job's journal, or with `resume` take up the one an interrupted run of the same job left.

        Without `resume` an existing journal is refused rather than overwritten (it is work a killed run
        would lose); with it, a journal of another job (other model or options) is refused, naming the
        difference. The last photo of a journal may have been cut off mid-write: it is done again."""
        j = cls(out, job)
        rows_path, job_path = j.rows_path, j.job_path
        if rows_path.exists() and not resume:
            raise JournalError(f"{rows_path}: an interrupted run of this prediction left its work here; run the "
                               f"same command with --resume to go on from it, or delete it to start over")
        try:
            j._start(resume)
        except OSError as e:  # a folder that cannot be written: said now, not after the whole job
            raise JournalError(f"{rows_path}: cannot write the job's journal here ({e.strerror or e})") from e
        return j

    def _start(self, resume: bool) -> None:
        rows_path, job_path, job, out = self.rows_path, self.job_path, self.job, self.out
        out.parent.mkdir(parents=True, exist_ok=True)
        if resume and rows_path.exists():
            try:
                old = json.loads(job_path.read_text())
            except (OSError, ValueError) as e:
                raise JournalError(f"{job_path}: cannot read what the interrupted job was ({e}); delete "
                                   f"{rows_path} to start over") from e
            diff = [k for k in sorted(set(old) | set(job)) if old.get(k) != job.get(k)]
            if diff:
                said = "; ".join(f"{k}: {old.get(k)!r} then, {job.get(k)!r} now" for k in diff)
                raise JournalError(f"{rows_path}: was written by another job ({said}); run it as it was, or "
                                   f"delete {rows_path} to start over")
            self.done = _read_rows(rows_path)
        else:
            job_path.write_text(json.dumps(job, indent=1))
        # the header and what was read back (whole photos only), so new rows follow a full line
        write_csv(rows_path, [r for rows in self.done.values() for r in rows], JOURNAL_FIELDS)

    def todo(self, paths: Iterable[Path]) -> list[Path]:
        """The photos still to classify, in their order."""
        return [p for p in paths if str(Path(p)) not in self.done]

    def record(self, results: Iterable[tuple[Path, list | None, str | None]]
               ) -> Iterator[tuple[Path, list | None, str | None]]:
        """Passes `Predictor.predict_files`' (path, face results, error) through, each photo's rows written and
        flushed to the journal before it is passed on."""
        with open(self.rows_path, "a", newline="") as f:
            for p, res, err in results:
                lines = ([{"path": str(p), "error": err}] if err else
                         [{"path": str(p), "face": i, **r.as_row()} for i, r in enumerate(res)])
                buf = io.StringIO()
                csv.DictWriter(buf, JOURNAL_FIELDS).writerows(lines)
                f.write(buf.getvalue())
                f.flush()
                self.done[str(p)] = lines
                yield p, res, err

    def finish(self, paths: list[Path], eval_table=None) -> tuple[int, int]:
        """Writes the output from the journal (the photos of `paths`, in their order), and `<out>.errors.csv`
        when some photos could not be read (a stale one is removed), then deletes the journal. `eval_table`
        (an eval layout's info rows with their `path`): `ImageID,ans`, one answer per photo, its subject;
        unreadable photos get the most frequent class. Returns (photos classified, photos unreadable)."""
        rows, errors = [], []
        for p in paths:
            for r in self.done.get(str(Path(p)), []):
                (errors if r.get("error") else rows).append(r)
        if eval_table is not None:
            ans = {r["path"]: int(r["class"]) for r in rows if int(r["face"]) == 0}
            fill = fill_class(ans.values())
            table = eval_table.assign(ans=[ans.get(str(Path(p)), fill) for p in eval_table["path"]])
            write_csv(self.out, table[["ImageID", "ans"]].to_dict("records"), ["ImageID", "ans"])
        else:
            write_csv(self.out, rows, ROW_FIELDS)
        err_out = self.out.with_suffix(".errors.csv")
        if errors:
            write_csv(err_out, [{"path": r["path"], "error": r["error"]} for r in errors], ["path", "error"])
        elif err_out.exists():
            err_out.unlink()
        self.rows_path.unlink(missing_ok=True)
        self.job_path.unlink(missing_ok=True)
        return len({r["path"] for r in rows}), len(errors)


def fill_class(classes: Iterable[int]) -> int:
    """The answer of an eval-layout photo that has none (unreadable): the most frequent class of the job's
    answers (the smallest on a tie; 0 for none). `merge` of sharded parts uses it over the whole job."""
    return int(np.bincount(list(classes) or [0]).argmax())


def write_csv(path: Path, rows: list[dict], fields: list[str]) -> None:
    """A csv written whole or not at all (a temporary file renamed over it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def _read_rows(path: Path) -> dict[str, list[dict]]:
    """A journal's rows by photo, without its last photo (it may have been cut off by the kill)."""
    with open(path, newline="") as f:
        text = f.read()
    text = text[: text.rfind("\n") + 1]  # a torn last line
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if reader.fieldnames != JOURNAL_FIELDS:
        raise JournalError(f"{path}: not a prediction journal (columns {reader.fieldnames}); delete it to start over")
    done: dict[str, list[dict]] = {}
    for r in reader:
        done.setdefault(r["path"], []).append({k: v for k, v in r.items() if k != "error" or v})
    if done:
        done.pop(next(reversed(done)))
    return done
