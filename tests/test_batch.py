"""A prediction job that is killed loses nothing: `maskgate predict --resume` (maskgate.batch)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from conftest import make_eval_layout
from maskgate.cli import main
from maskgate.predict import Predictor


@pytest.fixture(scope="module")
def photos(tmp_path_factory, astronaut):
    """24 different photos of one face (shifted, scaled, flipped, tinted) and one broken file."""
    d = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i in range(24):
        s = int(rng.integers(300, 460))
        x, y = (int(v) for v in rng.integers(0, 512 - s, 2))
        im = cv2.resize(np.ascontiguousarray(astronaut[y:y + s, x:x + s]), (224, 224))
        im = im[:, ::-1] if i % 2 else im
        im = np.clip(im * rng.uniform(0.7, 1.2, 3), 0, 255).astype(np.uint8)
        cv2.imwrite(str(d / f"p{i:02d}.jpg"), np.ascontiguousarray(im[..., ::-1]))
    (d / "p07b.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut off")
    return d


def _interrupt_after(monkeypatch, k: int) -> list[int]:
    """Predictor.predict_files stops with Ctrl-C when asked for photo k+1; returns a list that counts photos."""
    real, seen = Predictor.predict_files, []

    def files(self, paths, all_faces=False):
        for n, item in enumerate(real(self, paths, all_faces)):
            if n == k:
                raise KeyboardInterrupt
            seen.append(1)
            yield item
    monkeypatch.setattr(Predictor, "predict_files", files)
    return seen


def _counting(monkeypatch) -> list[int]:
    return _interrupt_after(monkeypatch, 10**9)


def test_an_interrupted_folder_job_resumes_to_the_same_output(photos, tmp_path, monkeypatch, capsys):
    ref, out = tmp_path / "ref.csv", tmp_path / "out.csv"
    assert main(["predict", str(photos), "--out", str(ref)]) == 0
    assert not (tmp_path / "ref.partial.csv").exists()  # a finished job leaves no journal

    _interrupt_after(monkeypatch, 10)
    assert main(["predict", str(photos), "--out", str(out)]) == 130
    assert "--resume" in capsys.readouterr().err
    journal = tmp_path / "out.partial.csv"
    assert not out.exists() and len(pd.read_csv(journal)["path"].unique()) == 10  # written as they came
    monkeypatch.undo()

    # the same command without --resume would throw that work away: refused, the journal kept
    assert main(["predict", str(photos), "--out", str(out)]) == 2
    assert str(journal) in capsys.readouterr().err and journal.exists()
    # another job (the mirror image too) cannot finish this one
    assert main(["predict", str(photos), "--out", str(out), "--resume", "--tta", "on"]) == 2
    assert "tta" in capsys.readouterr().err and journal.exists()

    with open(journal, "a") as f:  # a kill in the middle of a write: half a row
        f.write(f"{photos / 'p10.jpg'},0,4,wear,fe")
    seen = _counting(monkeypatch)
    assert main(["predict", str(photos), "--out", str(out), "--resume"]) == 0
    err = capsys.readouterr().err
    # the last whole photo in the journal is done again too (it may have been cut off); the rest is kept
    assert "resuming: 9 of 25 image(s)" in err and len(seen) == 25 - 9
    assert out.read_bytes() == ref.read_bytes()
    assert (tmp_path / "out.errors.csv").read_text() == (tmp_path / "ref.errors.csv").read_text()
    assert "p07b.jpg" in (tmp_path / "out.errors.csv").read_text()
    assert not journal.exists() and not (tmp_path / "out.partial.json").exists()


def test_an_interrupted_eval_layout_job_resumes_to_the_same_submission(astronaut, astronaut_face, tmp_path,
                                                                        monkeypatch):
    ev = make_eval_layout(tmp_path, astronaut, astronaut_face, 2)  # 14 photos
    ref, out = tmp_path / "ref.csv", tmp_path / "sub.csv"
    assert main(["predict", "--data-dir", str(ev), "--out", str(ref)]) == 0
    _interrupt_after(monkeypatch, 5)
    assert main(["predict", "--data-dir", str(ev), "--out", str(out)]) == 130
    monkeypatch.undo()
    seen = _counting(monkeypatch)
    assert main(["predict", "--data-dir", str(ev), "--out", str(out), "--resume"]) == 0
    assert len(seen) == 14 - 4
    sub = pd.read_csv(out)
    assert list(sub.columns) == ["ImageID", "ans"] and len(sub) == 14
    assert out.read_bytes() == ref.read_bytes()


def test_a_killed_process_resumes(photos, tmp_path):
    """SIGKILL, not a polite Ctrl-C: whatever the journal held when the process died is kept."""
    many = tmp_path / "many"
    many.mkdir()
    for k in range(8):  # 192 photos, one by one: long enough to kill in the middle
        for p in sorted(photos.glob("p??.jpg")):
            os.symlink(p, many / f"{k}_{p.name}")
    out = tmp_path / "out.csv"
    journal = tmp_path / "out.partial.csv"
    cmd = [sys.executable, "-m", "maskgate", "predict", str(many), "--out", str(out), "--batch-size", "1",
           "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if journal.exists() and journal.read_text().count("\n") > 20:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the job ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists() and journal.exists()
    kept = len(pd.read_csv(journal)["path"].unique())
    r = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"resuming: {kept - 1} of 192 image(s)" in r.stderr
    got = pd.read_csv(out)
    got = got[got["face"] == 0]
    assert got["path"].tolist() == [str(p) for p in sorted(many.iterdir())]  # every photo once, in order
    # the same answers as one uninterrupted pass
    ref = {str(p): res[0].cls for p, res, _ in Predictor().predict_files(sorted(many.iterdir()))}
    assert dict(zip(got["path"], got["class"])) == ref
    assert not journal.exists()


def test_an_output_that_cannot_be_written_is_said_before_the_work(photos, tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    seen = _counting(monkeypatch)
    assert main(["predict", str(photos), "--out", str(blocker / "out.csv")]) == 2
    assert "cannot write the job's journal" in capsys.readouterr().err and seen == []


# --- one job over several processes or machines: `predict --shard K/N` and `maskgate merge` (maskgate.shards)

def test_shards_merge_to_the_output_of_one_run(photos, tmp_path, monkeypatch, capsys):
    ref = tmp_path / "ref.csv"
    assert main(["predict", str(photos), "--out", str(ref)]) == 0
    parts = [tmp_path / f"part{k}.csv" for k in range(3)]
    seen = _counting(monkeypatch)
    for k, part in enumerate(parts):
        assert main(["predict", str(photos), "--out", str(part), "--shard", f"{k}/3"]) == 0
    assert len(seen) == 25  # each photo classified by exactly one shard
    monkeypatch.undo()
    assert "p07b.jpg" in (tmp_path / "part2.errors.csv").read_text()  # sorted, p07b.jpg is photo 8: shard 2
    out = tmp_path / "all.csv"
    assert main(["merge", str(parts[2]), str(parts[0]), str(parts[1]), "--out", str(out)]) == 0  # any order
    assert out.read_bytes() == ref.read_bytes()
    assert (tmp_path / "all.errors.csv").read_text() == (tmp_path / "ref.errors.csv").read_text()

    # what cannot be one job is refused, naming the part
    capsys.readouterr()
    assert main(["merge", str(parts[0]), str(parts[2]), "--out", str(out)]) == 2
    assert "1/3 missing" in capsys.readouterr().err
    assert main(["merge", str(parts[0]), str(parts[0]), str(parts[1]), str(parts[2]), "--out", str(out)]) == 2
    assert "given twice" in capsys.readouterr().err
    other = tmp_path / "other.csv"  # shard 1 again with the mirror image: another job
    assert main(["predict", str(photos), "--out", str(other), "--shard", "1/3", "--tta", "on"]) == 0
    assert main(["merge", str(parts[0]), str(other), str(parts[2]), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{other}: a part of another job" in err and "tta: None vs 'on'" in err
    cut = tmp_path / "cut.csv"  # shard 1 of another cut of the photos
    assert main(["predict", str(photos), "--out", str(cut), "--shard", "1/4"]) == 0
    assert main(["merge", str(parts[0]), str(cut), str(parts[2]), "--out", str(out)]) == 2
    assert "another shard count" in capsys.readouterr().err
    assert main(["merge", str(ref), "--out", str(out)]) == 2  # an unsharded output
    assert "not a finished `maskgate predict --shard` part" in capsys.readouterr().err
    for bad in ("3/3", "1", "2/0", "a/b"):
        assert main(["predict", str(photos), "--out", str(tmp_path / "x.csv"), "--shard", bad]) == 2
        assert f"--shard '{bad}'" in capsys.readouterr().err


def test_eval_layout_shards_merge_to_the_submission_and_a_shard_resumes(astronaut, astronaut_face, tmp_path,
                                                                          monkeypatch):
    ev = make_eval_layout(tmp_path, astronaut, astronaut_face, 2)  # 14 photos, one of them then broken
    info = pd.read_csv(ev / "info.csv")
    broken = info["ImageID"][6]  # 000normal.jpg: in shard 6 of 7 with 001normal.jpg, both unmasked
    (ev / "images" / broken).write_bytes(b"\xff\xd8\xff\xe0 cut off")
    ref = tmp_path / "ref.csv"
    assert main(["predict", "--data-dir", str(ev), "--out", str(ref)]) == 0
    parts = [tmp_path / f"s{k}.csv" for k in range(7)]
    for k in range(6):
        assert main(["predict", "--data-dir", str(ev), "--out", str(parts[k]), "--shard", f"{k}/7"]) == 0
    _interrupt_after(monkeypatch, 1)  # shard 6 is killed after its first photo, and resumed
    assert main(["predict", "--data-dir", str(ev), "--out", str(parts[6]), "--shard", "6/7"]) == 130
    monkeypatch.undo()
    assert not (tmp_path / "s6.csv.shard.json").exists()  # not finished: no record, so no merge
    assert main(["merge", *map(str, parts), "--out", str(tmp_path / "x.csv")]) == 2
    # resuming needs the same shard: another one is another job
    assert main(["predict", "--data-dir", str(ev), "--out", str(parts[6]), "--shard", "5/7", "--resume"]) == 2
    seen = _counting(monkeypatch)
    assert main(["predict", "--data-dir", str(ev), "--out", str(parts[6]), "--shard", "6/7", "--resume"]) == 0
    assert len(seen) == 2  # the journal's one (last) photo is redone
    out = tmp_path / "sub.csv"
    assert main(["merge", *map(str, parts), "--out", str(out)]) == 0
    assert out.read_bytes() == ref.read_bytes()
    assert (tmp_path / "sub.errors.csv").read_text() == (tmp_path / "ref.errors.csv").read_text()
    # the broken photo gets the class most frequent over all 14 (masked), not its shard's (the other unmasked photo)
    own = pd.read_csv(parts[6]).set_index("ImageID")["ans"][broken]
    merged = pd.read_csv(out).set_index("ImageID")["ans"]
    assert merged[broken] == merged.value_counts().idxmax() != own


def test_torchrun_shards_a_job_and_shard_0_merges_it(photos, tmp_path):
    """`torchrun --nproc-per-node 2 -m maskgate predict ... --shard auto`: each process takes the shard its
    RANK / WORLD_SIZE name, writes OUT.shardKofN.csv, and shard 0 merges them into OUT once all are done."""
    ref = tmp_path / "ref.csv"
    assert main(["predict", str(photos), "--out", str(ref)]) == 0
    out = tmp_path / "all.csv"
    torchrun = Path(sys.executable).with_name("torchrun")
    r = subprocess.run([str(torchrun), "--nproc-per-node", "2", "-m", "maskgate", "predict", str(photos), "--out",
                        str(out), "--shard", "auto"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert out.read_bytes() == ref.read_bytes()
    assert (tmp_path / "all.errors.csv").read_text() == (tmp_path / "ref.errors.csv").read_text()
    for k in range(2):
        assert (tmp_path / f"all.shard{k}of2.csv.shard.json").exists()
    assert "merged 2 shards" in r.stderr


def test_shard_auto_reads_the_launcher(photos, tmp_path, monkeypatch, capsys):
    from maskgate.shards import ShardError, part_path, shard_from_env

    assert shard_from_env({"RANK": "3", "WORLD_SIZE": "4"}) == (3, 4, "torchrun")
    # a Slurm array --array=1-8 numbers its tasks from 1: shard = id - min
    assert shard_from_env({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "8",
                           "SLURM_ARRAY_TASK_MIN": "1"}) == (0, 8, "slurm")
    with pytest.raises(ShardError, match="give --shard K/N"):
        shard_from_env({})
    with pytest.raises(ShardError, match="not 0..N-1"):
        shard_from_env({"RANK": "4", "WORLD_SIZE": "4"})
    assert part_path(Path("runs/sub.csv"), 2, 4) == Path("runs/sub.shard2of4.csv")
    for k in ("RANK", "WORLD_SIZE", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT"):
        monkeypatch.delenv(k, raising=False)
    assert main(["predict", str(photos), "--out", str(tmp_path / "y.csv"), "--shard", "auto"]) == 2
    assert "no launcher told this process" in capsys.readouterr().err
