"""One prediction job split over machines: `maskgate predict --shard K/N`, then `maskgate merge`.

A job over a million photos is run as N independent processes (a Slurm array, a Kubernetes indexed Job, N
cloud machines, N terminals): shard K takes photos K, K+N, K+2N, ... of the job's list (the same list every
shard builds: an eval layout's info.csv order, or the sorted files of folders), classifies them as an unsharded
run would (each shard its own journal, so each can be killed and `--resume`d), writes its own csv and beside it
`<csv>.shard.json`: the job, which shard it is, its photos, the photos it could not read, and a digest of the
whole list. `merge_shards` checks that the parts are one job, cut the same way, none missing or given twice,
and writes the output one unsharded run writes, byte for byte. Nothing here imports PyTorch.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import time
from pathlib import Path

from .batch import ROW_FIELDS, fill_class, write_csv

SHARD_SUFFIX = ".shard.json"
SAME_JOB = ("job", "of", "total", "digest")  # what the parts of one job share in their records


class ShardError(ValueError):
    """Parts that do not make one job (the message names the file and what is wrong)."""


def parse_shard(text: str) -> tuple[int, int]:
    """'K/N' -> (K, N), 0 <= K < N."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not m:
        raise ShardError(f"--shard {text!r}: expected K/N, e.g. 0/4 (shard K of N, counted from 0)")
    k, n = int(m[1]), int(m[2])
    if n < 1 or k >= n:
        raise ShardError(f"--shard {text!r}: K must be 0..N-1 and N >= 1")
    return k, n


def shard_from_env(env: dict | None = None) -> tuple[int, int, str]:
    """`--shard auto`: (K, N, launcher) from what the launcher tells each process: torchrun's RANK and
    WORLD_SIZE (also set by other launchers of PyTorch jobs), or a Slurm job array's task id and count."""
    env = os.environ if env is None else env
    if "RANK" in env and "WORLD_SIZE" in env:
        k, n, launcher = int(env["RANK"]), int(env["WORLD_SIZE"]), "torchrun"
    elif "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
        k = int(env["SLURM_ARRAY_TASK_ID"]) - int(env.get("SLURM_ARRAY_TASK_MIN", 0))
        n, launcher = int(env["SLURM_ARRAY_TASK_COUNT"]), "slurm"
    else:
        raise ShardError("--shard auto: no launcher told this process which shard it is (RANK and WORLD_SIZE "
                         "from torchrun, or SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT); give --shard K/N")
    if not 0 <= k < n:
        raise ShardError(f"--shard auto: shard {k} of {n} from the {launcher} environment is not 0..N-1")
    return k, n, launcher


def part_path(out: Path, k: int, n: int) -> Path:
    """Where `--shard auto` writes shard k of n of the job whose output is `out`: sub.csv -> sub.shard0of4.csv."""
    return out.with_name(f"{out.stem}.shard{k}of{n}{out.suffix}")


def wait_and_merge(out: Path, own_part: Path, n: int, timeout_s: float = 6 * 3600.0,
                   log=lambda m: None) -> dict:
    """Shard 0 of a torchrun job: wait until every other shard has finished its part (a record of the same job
    and photo list as `own_part`'s: a part left by an earlier, different job is waited past, not merged), then
    merge them into `out`. torchrun ends every process of the job when one fails, so the wait is bounded by
    the job; `timeout_s` bounds it otherwise."""
    ref = _read_record(own_part)
    parts = [part_path(out, k, n) for k in range(n)]
    deadline, said = time.monotonic() + timeout_s, -1
    while True:
        ready = []
        for p in parts:
            try:
                r = _read_record(p)
            except ShardError:
                continue
            if all(r[key] == ref[key] for key in SAME_JOB):
                ready.append(p)
        if len(ready) == n:
            return merge_shards(parts, out)
        if len(ready) != said:
            log(f"shard 0: {len(ready)} of {n} parts finished; waiting for the others to merge them into {out}")
            said = len(ready)
        if time.monotonic() > deadline:
            missing = [str(p) for p in parts if p not in ready]
            raise ShardError(f"{out}: gave up waiting after {timeout_s:g} s for {', '.join(missing)}")
        time.sleep(0.5)


def shard_indices(total: int, k: int, n: int) -> range:
    """The positions in the job's photo list that shard k of n classifies (round robin: every shard gets
    photos from the whole list, so a folder sorted by camera or date does not load one shard with the slow ones)."""
    return range(k, total, n)


def list_digest(paths: list) -> str:
    """What every shard must agree on: the whole job's photo list, in order."""
    h = hashlib.sha256()
    for p in paths:
        h.update(str(Path(p)).encode("utf-8", "surrogateescape") + b"\n")
    return h.hexdigest()


def record_path(out: Path) -> Path:
    return out.with_name(out.name + SHARD_SUFFIX)


def write_record(out: Path, job: dict, k: int, n: int, all_paths: list, paths: list, errors: list[str],
                 image_ids: list[str] | None = None, filled: list[str] | None = None) -> Path:
    """`<out>.shard.json`, written after the shard's csv (atomically): its presence says the part is whole.
    errors: the shard's unreadable photos; for an eval layout, image_ids (of `paths`) and filled: the photos
    whose answer is the fill-in class (unreadable, or no answer), which the merge decides over the whole job."""
    rec = {"job": job, "shard": k, "of": n, "total": len(all_paths), "digest": list_digest(all_paths),
           "paths": [str(Path(p)) for p in paths], "errors": list(errors)}
    if image_ids is not None:
        rec["image_ids"] = list(image_ids)
        rec["filled"] = list(filled or [])
    path = record_path(out)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(rec))
    os.replace(tmp, path)
    return path


def _read_record(part: Path) -> dict:
    path = record_path(part)
    if not part.is_file():
        raise ShardError(f"{part}: no such file")
    if not path.is_file():
        raise ShardError(f"{part}: no {path.name} beside it: not a finished `maskgate predict --shard` part "
                         f"(a shard still running or killed writes it when it ends; run it again with --resume)")
    try:
        rec = json.loads(path.read_text())
        for key in ("job", "shard", "of", "total", "digest", "paths", "errors"):
            rec[key]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ShardError(f"{path}: cannot read this shard's record ({e!r})") from e
    return rec


def _read_csv(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="") as f:
        r = csv.DictReader(f)
        return list(r.fieldnames or []), list(r)


def merge_shards(parts: list[str | os.PathLike], out: str | os.PathLike) -> dict:
    """The parts of one sharded job -> the output (and `<out>.errors.csv`) one unsharded run writes.

    Refused, naming the file: a part without its record, parts of different jobs (model, options or photo
    list), a shard missing or given twice, a part whose csv does not hold its photos."""
    out = Path(out)
    parts = [Path(p) for p in parts]
    if not parts:
        raise ShardError("merge: no parts given")
    recs = [_read_record(p) for p in parts]
    first, p0 = recs[0], parts[0]
    for p, r in zip(parts[1:], recs[1:]):
        for key in SAME_JOB:
            if r[key] != first[key]:
                what = {"job": "another job (model or options)", "of": "another shard count",
                        "total": "another photo list", "digest": "another photo list"}[key]
                diff = ""
                if key == "job":
                    keys = sorted(k for k in set(r["job"]) | set(first["job"]) if r["job"].get(k) != first["job"].get(k))
                    diff = ": " + "; ".join(f"{k}: {first['job'].get(k)!r} vs {r['job'].get(k)!r}" for k in keys)
                elif key == "of":
                    diff = f": {first['of']} vs {r['of']}"
                raise ShardError(f"{p}: a part of {what} than {p0}{diff}")
    n, total = first["of"], first["total"]
    by_k: dict[int, tuple[Path, dict]] = {}
    for p, r in zip(parts, recs):
        if r["shard"] in by_k:
            raise ShardError(f"{p}: shard {r['shard']}/{n} given twice (also {by_k[r['shard']][0]})")
        by_k[r["shard"]] = (p, r)
    missing = [k for k in range(n) if k not in by_k]
    if missing:
        raise ShardError(f"merge: shard(s) {', '.join(f'{k}/{n}' for k in missing)} missing (given: "
                         f"{', '.join(f'{k}/{n}' for k in sorted(by_k))})")
    order: list[str] = [""] * total  # the job's photos, in the order one run takes them
    for k, (p, r) in by_k.items():
        idx = shard_indices(total, k, n)
        if len(r["paths"]) != len(idx):
            raise ShardError(f"{p}: holds {len(r['paths'])} photos, shard {k}/{n} of {total} has {len(idx)}")
        for i, path in zip(idx, r["paths"]):
            order[i] = path
    if list_digest(order) != first["digest"]:
        raise ShardError(f"merge: the parts' photos do not make the list they were cut from ({p0})")

    errors = {path for r in recs for path in r["errors"]}
    filled = {path for r in recs for path in r.get("filled", [])}
    eval_mode = first["job"].get("output") == "eval"
    if eval_mode:
        answers: dict[str, str] = {}
        ids: dict[str, str] = {}
        for k, (p, r) in by_k.items():
            fields, rows = _read_csv(p)
            if fields != ["ImageID", "ans"] or len(rows) != len(r["paths"]) or "image_ids" not in r or "filled" not in r:
                raise ShardError(f"{p}: not the ImageID,ans csv of its {len(r['paths'])} photos")
            ids.update(zip(r["paths"], r["image_ids"]))
            answers.update((row["ImageID"], row["ans"]) for row in rows)
        # unreadable photos get the most frequent class of the whole job, as one run gives them
        fill = str(fill_class(int(answers[ids[path]]) for path in order if path not in filled))
        rows = [{"ImageID": ids[path], "ans": fill if path in filled else answers[ids[path]]} for path in order]
        write_csv(out, rows, ["ImageID", "ans"])
    else:
        grouped: dict[str, list[dict]] = {}
        for k, (p, r) in by_k.items():
            fields, rows = _read_csv(p)
            if fields != ROW_FIELDS:
                raise ShardError(f"{p}: not a `maskgate predict` csv of photos (columns {fields})")
            for row in rows:
                grouped.setdefault(row["path"], []).append(row)
            lost = [q for q in r["paths"] if q not in grouped and q not in errors]
            if lost:
                raise ShardError(f"{p}: has no rows for {len(lost)} of its photos, e.g. {lost[0]}")
        write_csv(out, [row for path in order for row in grouped.get(path, [])], ROW_FIELDS)
    err_out = out.with_suffix(".errors.csv")
    err_rows = []
    for k, (p, r) in sorted(by_k.items()):
        e = p.with_suffix(".errors.csv")
        if r["errors"]:
            if not e.is_file():
                raise ShardError(f"{p}: its record lists {len(r['errors'])} unreadable photo(s) but {e} is missing")
            err_rows += _read_csv(e)[1]
    if err_rows:
        pos = {path: i for i, path in enumerate(order)}
        write_csv(err_out, sorted(err_rows, key=lambda row: pos.get(row["path"], total)), ["path", "error"])
    elif err_out.exists():
        err_out.unlink()
    return {"out": str(out), "shards": n, "photos": total, "unreadable": len(errors)}
