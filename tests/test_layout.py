"""The readers check everything up front and report every problem, naming the files."""
import shutil

import pandas as pd
import pytest

from maskgate.data.layout import LayoutError, read_eval, read_train


@pytest.fixture()
def train_copy(tiny_data, tmp_path):
    train, _ = tiny_data
    dst = tmp_path / "train"
    shutil.copytree(train, dst)
    return dst


def test_reads_valid_layout(tiny_data):
    train, _ = tiny_data
    s = read_train(train)
    assert len(s) == 16 * 7 and s["person"].nunique() == 16
    assert set(s["mask"]) == {0, 1, 2}
    assert ((s["label"] == s["mask"] * 6 + s["gender"] * 3 + s["age_band"])).all()
    assert (s.groupby("person")["mask"].apply(lambda m: sorted(m.tolist())) == [[0] * 5 + [1, 2]] * 16).all()


def _problems(root):
    with pytest.raises(LayoutError) as e:
        read_train(root)
    return e.value.problems, str(e.value)


def test_every_problem_reported_at_once(train_copy):
    csv = pd.read_csv(train_copy / "train.csv", dtype=str)
    folders = csv["path"].tolist()
    # 1 truncated image, 2 unreadable image, 3 folder name that does not parse, 4 csv row without folder,
    # 5 duplicate id, 6 unknown gender, 7 negative age
    img = train_copy / "images" / folders[0] / "mask1.jpg"
    img.write_bytes(img.read_bytes()[:300])
    (train_copy / "images" / folders[1] / "normal.jpg").write_text("not a jpeg")
    (train_copy / "images" / folders[2]).rename(train_copy / "images" / "badname")
    csv.loc[2, "path"] = "badname"
    shutil.rmtree(train_copy / "images" / folders[3])
    csv.loc[5, "id"] = csv.loc[4, "id"]
    csv.loc[6, "gender"] = "unknown"
    csv.loc[7, "age"] = "-3"
    csv.to_csv(train_copy / "train.csv", index=False)
    problems, msg = _problems(train_copy)
    text = "\n".join(problems)
    assert "mask1.jpg: truncated" in text
    assert "normal.jpg: not an image" in text
    assert "badname: folder name does not parse" in text
    assert f"{folders[3]}: folder missing for csv row" in text
    assert "duplicate id" in text
    assert "unknown gender 'unknown'" in text
    assert "age '-3' is negative" in text
    assert str(train_copy) in msg and "problem(s) found" in msg


def test_missing_image_and_unexpected_file(train_copy):
    folder = next((train_copy / "images").iterdir())
    (folder / "mask3.jpg").unlink()
    (folder / "extra.txt").write_text("x")
    problems, _ = _problems(train_copy)
    assert any("missing image(s) ['mask3']" in p for p in problems)
    assert any("extra.txt: unexpected file" in p for p in problems)


def test_png_and_jpeg_suffixes_accepted(train_copy):
    folder = next((train_copy / "images").iterdir())
    (folder / "mask1.jpg").rename(folder / "mask1.jpeg")
    import cv2
    img = cv2.imread(str(folder / "normal.jpg"))
    (folder / "normal.jpg").unlink()
    cv2.imwrite(str(folder / "normal.png"), img)
    s = read_train(train_copy)
    assert len(s) == 16 * 7


def test_missing_csv_and_columns(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(LayoutError, match="train.csv: missing"):
        read_train(tmp_path)
    (tmp_path / "train.csv").write_text("a,b\n1,2\n")
    with pytest.raises(LayoutError, match="columns"):
        read_train(tmp_path)


def test_eval_layout(tiny_data, tmp_path):
    _, ev = tiny_data
    t = read_eval(ev)
    assert len(t) == 4 * 7 and t["path"].map(lambda p: p.endswith(".jpg")).all()
    dst = tmp_path / "eval"
    shutil.copytree(ev, dst)
    (dst / "images" / t["ImageID"][0]).unlink()
    with pytest.raises(LayoutError, match="is missing"):
        read_eval(dst)
