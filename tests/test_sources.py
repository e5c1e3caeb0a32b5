"""Extra labelled sources: every bad row named in one error; group columns kept; config entries checked."""
import cv2
import numpy as np
import pandas as pd
import pytest

from maskgate.config import ConfigError, load_config
from maskgate.data.layout import LayoutError
from maskgate.data.sources import SourceSpec, read_labelled
from maskgate.labels import Mask


def write_source(root, rows, images=("a.jpg", "b.jpg", "c.png")):
    root.mkdir(parents=True, exist_ok=True)
    for name in images:
        cv2.imwrite(str(root / name), np.full((40, 40, 3), 120, np.uint8))
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    return root


def test_a_good_source_reads_with_its_group_columns(tmp_path):
    src = write_source(tmp_path / "s", [{"path": "a.jpg", "age": 24, "gender": "female", "race": "black"},
                                        {"path": "b.jpg", "age": 61.5, "gender": "M", "race": "white"}])
    t = read_labelled(src)
    assert t["gender"].tolist() == [1, 0] and t["age_band"].tolist() == [0, 2]
    assert (t["mask"] == Mask.NOT_WEAR).all() and t["race"].tolist() == ["black", "white"]
    assert t["person"].nunique() == 2 and all(p.startswith(str(src.resolve())) for p in t["path"])


def test_every_bad_row_is_named_in_one_error(tmp_path):
    rows = [{"path": "a.jpg", "age": 30, "gender": "female"},
            {"path": "missing.jpg", "age": 30, "gender": "male"},       # line 3: no such file
            {"path": "b.jpg", "age": 30, "gender": "robot"},            # line 4: unknown gender
            {"path": "c.png", "age": -4, "gender": "male"},             # line 5: negative age
            {"path": "a.jpg", "age": "forty", "gender": "male"},        # line 6: not a number, duplicate path
            {"path": "notes.txt", "age": 20, "gender": "male"}]         # line 7: not an image name
    src = write_source(tmp_path / "bad", rows)
    with pytest.raises(LayoutError) as e:
        read_labelled(src)
    text = str(e.value)
    for needed in ("labels.csv:3: image", "missing.jpg is missing", "labels.csv:4: unknown gender 'robot'",
                   "labels.csv:5: age '-4' is negative", "labels.csv:6: age 'forty' is not a number",
                   "duplicate path 'a.jpg' on lines [2, 6]", "labels.csv:7: 'notes.txt' is not an image"):
        assert needed in text, (needed, text)
    assert len(e.value.problems) == 6


def test_missing_file_and_columns(tmp_path):
    with pytest.raises(LayoutError, match="labels.csv: missing"):
        read_labelled(tmp_path)
    src = write_source(tmp_path / "c", [{"path": "a.jpg", "years": 3, "gender": "male"}])
    with pytest.raises(LayoutError, match=r"columns \['age'\] missing"):
        read_labelled(src)


def test_source_entries_in_the_config(tmp_path):
    cfg = load_config(overrides=["data.extra=[some/dir, {path: other, weight: 2, share: 0.3}]"])
    a, b = (SourceSpec.parse(e) for e in cfg["data"]["extra"])
    assert (a.path, a.weight, a.share, a.name) == ("some/dir", 1.0, None, "dir")
    assert (b.weight, b.share) == (2.0, 0.3)
    for bad, msg in (("data.extra=[{path: x, share: 1.5}]", "share must be in"),
                     ("data.extra=[{path: x, weight: 0}]", "weight must be > 0"),
                     ("data.extra=[{path: x, shares: 0.2}]", "unknown key"),
                     ("data.extra=[{path: x, share: 0.6}, {path: y, share: 0.5}]", "leave room"),
                     ("synth.states.wear=-1", "synth.states"),
                     ("face.subject_centre=9", "subject_centre")):
        with pytest.raises(ConfigError, match=msg):
            load_config(overrides=[bad])


def test_batches_follow_the_source_shares():
    from maskgate.train.samplers import SourceMixSampler, source_shares

    src = np.array([0] * 300 + [1] * 60 + [2] * 40)
    shares = source_shares([300, 60, 40], [1.0, 1.0, 3.0], [None, 0.25, None])
    assert shares[1] == pytest.approx(0.25)
    assert shares[2] / shares[0] == pytest.approx(40 * 3 / 300)  # the rest by size x weight
    s = SourceMixSampler(src, shares, batch_size=20, seed=1)
    order = np.array(list(s))
    assert len(order) == len(s) == 400
    per_batch = np.array([np.bincount(src[b], minlength=3) for b in order.reshape(-1, 20)])
    assert (per_batch[:, 1] == 5).all()  # a fixed share is exact in every batch
    assert abs(per_batch[:, 2].mean() - 20 * shares[2]) < 0.5
    # each source is walked in its own shuffled cycle: the small one repeats only after all of it was seen
    ones = order[src[order] == 1]
    assert len(set(ones[:60].tolist())) == 60
    s.set_epoch(1)
    assert list(s) != order.tolist()  # a new order each epoch, the same for the same epoch
    s.set_epoch(0)
    assert list(s) == order.tolist()
    s.set_shard(1, 2)  # DDP: rank 1 of 2 takes every other batch
    assert list(s) == order.reshape(-1, 20)[1::2].ravel().tolist()
