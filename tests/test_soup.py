"""`maskgate soup`: the weight average of several models, saved as one graph-only network."""
import json

import pytest
import torch

from maskgate.models.classifier import MaskClassifier, MaskgateNet, Preprocess
from maskgate.models.soup import make_soup, save_soup
from maskgate.models.transfer import _graph_layers

ARCH = {"backbone": "tf_efficientnet_lite0", "freeze_blocks": 4, "dropout": 0.2}


def _bundle(path, seed: int, bias, size: int = 64, graph_only: bool = False):
    torch.manual_seed(seed)
    net = MaskgateNet("tf_efficientnet_lite0", "none", freeze_blocks=4).eval()
    with torch.no_grad():  # batch-norm statistics that are not the identity, so folding matters
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
    info = {"note": f"seed {seed}", "best_epoch": 3 + seed, "val_with_age_bias": {"macro_f1": 0.6 + seed / 10}}
    m = MaskClassifier(net, Preprocess(input_size=size), dict(ARCH), bias, info)
    m.save(path, script=graph_only, weights=not graph_only)
    return MaskClassifier.load(path, eager=not graph_only)


def test_soup_averages_folded_weights_and_age_offsets(tmp_path):
    a = _bundle(tmp_path / "a.pt", 0, [0.0, 0.2, 0.4])
    _bundle(tmp_path / "b.pt", 1, [0.0, -0.2, 1.0], graph_only=True)  # a graph-only member averages too
    soup = make_soup([tmp_path / "a.pt", tmp_path / "b.pt"])
    assert soup.age_bias.tolist() == [pytest.approx([0.0, 0.0, 0.7])] * 2
    assert [m["weight"] for m in soup.info["soup"]["members"]] == [0.5, 0.5]
    assert soup.info["note"] == "seed 0" and soup.preprocess == a.preprocess
    # a member's own validation score stays with that member: the soup was never validated as a whole
    assert "val_with_age_bias" not in soup.info and "best_epoch" not in soup.info
    assert [m["val_macro_f1"] for m in soup.info["soup"]["members"]] == [0.6, 0.7]
    save_soup(soup, tmp_path / "s.pt")
    blob = torch.load(tmp_path / "s.pt", weights_only=False)
    assert blob["state_dict"] is None and blob["torchscript"]  # graph only, as shipped

    from maskgate.models.classifier import script_net
    la = _graph_layers(script_net(a.net, 64))
    lb = _graph_layers(torch.load(tmp_path / "b.pt", weights_only=False)["torchscript"])
    ls = _graph_layers(blob["torchscript"])
    assert len(ls) == len(la) == len(lb)
    for (_, wa, ba), (_, wb, bb), (_, ws, bs) in zip(la, lb, ls):
        assert torch.allclose(ws, (wa + wb) / 2, atol=2e-3, rtol=2e-3)  # fp16 storage of the soup
        assert torch.allclose(bs, (ba + bb) / 2, atol=2e-3, rtol=2e-3)
    # and the two members differ, so the average is not trivially either of them
    assert not torch.allclose(la[5][1], lb[5][1], atol=1e-2)


def test_soup_of_one_model_with_itself_predicts_as_it_does(tmp_path):
    a = _bundle(tmp_path / "a.pt", 0, [0.0, 0.3, 0.9])
    _bundle(tmp_path / "b.pt", 1, [0.0, 0.0, 0.0])
    x = torch.randn(3, 3, 64, 64)
    want = a.predict_logits(x)["log18"]
    for paths, weights in (([tmp_path / "a.pt", tmp_path / "a.pt"], None),
                           ([tmp_path / "a.pt", tmp_path / "b.pt"], [1.0, 0.0])):
        save_soup(make_soup(paths, weights), tmp_path / "s.pt")
        got = MaskClassifier.load(tmp_path / "s.pt").predict_logits(x)["log18"]
        assert torch.allclose(got, want, atol=3e-2), (got - want).abs().max()
    # a real share of the second model moves the predictions
    save_soup(make_soup([tmp_path / "a.pt", tmp_path / "b.pt"]), tmp_path / "s.pt")
    got = MaskClassifier.load(tmp_path / "s.pt").predict_logits(x)["log18"]
    assert (got - want).abs().max() > 0.05


def test_soup_refuses_models_it_cannot_average(tmp_path):
    _bundle(tmp_path / "a.pt", 0, None)
    _bundle(tmp_path / "c.pt", 2, None, size=96)
    with pytest.raises(ValueError, match="c.pt has another preprocess"):
        make_soup([tmp_path / "a.pt", tmp_path / "c.pt"])
    with pytest.raises(ValueError, match="at least two"):
        make_soup([tmp_path / "a.pt"])
    with pytest.raises(ValueError, match="non-negative weights"):
        make_soup([tmp_path / "a.pt", tmp_path / "a.pt"], [1.0, -1.0])
    with pytest.raises(FileNotFoundError, match="missing.pt: no model file"):
        make_soup([tmp_path / "a.pt", tmp_path / "missing.pt"])
    (tmp_path / "bad.pt").write_text("garbage")
    with pytest.raises(ValueError, match="bad.pt: not a readable maskgate model"):
        make_soup([tmp_path / "a.pt", tmp_path / "bad.pt"])


def test_soup_command(tmp_path, capsys):
    from maskgate.cli import main

    _bundle(tmp_path / "a.pt", 0, [0.0, 0.0, 0.4])
    _bundle(tmp_path / "b.pt", 1, [0.0, 0.0, 0.0])
    out = tmp_path / "soup.pt"
    assert main(["soup", "--model", str(tmp_path / "a.pt"), "--model", str(tmp_path / "b.pt"),
                 "--weight", "3", "--weight", "1", "--out", str(out)]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [m["weight"] for m in res["members"]] == [0.75, 0.25] and res["age_bias"][0] == [0.0, 0.0, 0.3]
    assert MaskClassifier.load(out).info["soup"]["members"][1]["path"].endswith("b.pt")
    assert main(["soup", "--model", str(tmp_path / "a.pt"), "--model", str(tmp_path / "nope.pt"),
                 "--out", str(out)]) == 2  # a clear error, not a traceback


def test_repair_gives_the_soup_its_members_channel_statistics(tmp_path):
    from maskgate.models.soup import norm_stats, repair_soup

    _bundle(tmp_path / "a.pt", 0, None)
    _bundle(tmp_path / "b.pt", 1, None)
    torch.manual_seed(5)
    x = torch.randn(24, 3, 64, 64)
    soup = make_soup([tmp_path / "a.pt", tmp_path / "b.pt"], [3.0, 1.0])
    want = [(0.75 * ma + 0.25 * mb, 0.75 * sa + 0.25 * sb)
            for (ma, sa), (mb, sb) in zip(norm_stats(soup.members[0], x), norm_stats(soup.members[1], x))]
    before = norm_stats(soup.net, x)
    assert max(float((sb - sw).abs().max() / sw.mean()) for (_, sb), (_, sw) in zip(before, want)) > 0.05
    res = repair_soup(soup, x)
    assert res["norms"] == len(want) and res["largest_scale_change"] > 0.05
    after = norm_stats(soup.net, x)
    for (m, s), (mw, sw) in zip(after, want):  # every channel, every layer, not only the first
        assert torch.allclose(m, mw, atol=1e-3 * (1 + float(mw.abs().max())))
        live = s > 1e-5  # a channel constant on this batch (dead after a ReLU) can be shifted, not scaled
        assert live.float().mean() > 0.9 and torch.allclose(s[live], sw[live], rtol=5e-3, atol=1e-4)  # float32
    # saved as the shipped graph (batch norms folded), it predicts as the repaired network does
    save_soup(soup, tmp_path / "s.pt")
    got = MaskClassifier.load(tmp_path / "s.pt").predict_logits(x[:4])["log18"]
    ref = soup.predict_logits(x[:4])["log18"]
    assert torch.allclose(got, ref, atol=3e-2), (got - ref).abs().max()


def test_repair_of_a_model_with_itself_changes_nothing(tmp_path):
    from maskgate.models.soup import repair_soup

    _bundle(tmp_path / "a.pt", 0, None)
    x = torch.randn(16, 3, 64, 64)
    soup = make_soup([tmp_path / "a.pt", tmp_path / "a.pt"])
    want = soup.predict_logits(x)["log18"]
    assert repair_soup(soup, x)["largest_scale_change"] < 1e-3
    assert torch.allclose(soup.predict_logits(x)["log18"], want, atol=1e-4)


def test_soup_command_calibrates_on_photo_folders(tmp_path, capsys):
    from maskgate.cli import main
    from maskgate.demo import make_inputs

    _bundle(tmp_path / "a.pt", 0, None)
    _bundle(tmp_path / "b.pt", 1, None)
    make_inputs(tmp_path / "photos")  # 5 real photos with a face (bare, masks drawn), cut by the model's cropper
    (tmp_path / "photos" / "broken.jpg").write_bytes(b"not a jpeg")  # reported and skipped, not fatal
    out = tmp_path / "soup.pt"
    args = ["soup", "--model", str(tmp_path / "a.pt"), "--model", str(tmp_path / "b.pt"), "--out", str(out)]
    assert main(args + ["--calibrate", str(tmp_path / "photos"), "--calibrate-images", "6"]) == 0
    cap = capsys.readouterr()
    res = json.loads(cap.out.strip().splitlines()[-1])
    assert "skipped: " in cap.err and "broken.jpg" in cap.err
    assert res["repair"]["images"] == 5 and res["repair"]["largest_scale_change"] > 0
    assert MaskClassifier.load(out).info["soup"]["repair"]["folders"] == [str(tmp_path / "photos")]
    (tmp_path / "empty").mkdir()
    assert main(args + ["--calibrate", str(tmp_path / "empty")]) == 2
    assert "empty: no images" in capsys.readouterr().err


def test_calibration_never_draws_the_photos_it_is_told_to_skip(tmp_path):
    """`maskgate seeds` scores its soup on the validation people's photos: REPAIR must not have seen them."""
    import os

    from maskgate.data.images import list_images
    from maskgate.demo import make_inputs
    from maskgate.models.soup import calibration_batch

    make_inputs(tmp_path / "photos")
    photos = list_images(tmp_path / "photos")
    pre = Preprocess(input_size=64)
    x, _ = calibration_batch(pre, [tmp_path / "photos"], n=len(photos))
    assert x.shape[0] == len(photos)
    skip = photos[:2]  # given as they appear elsewhere: a relative path still names the same file
    rel = [os.path.relpath(p) for p in skip]
    y, _ = calibration_batch(pre, [tmp_path / "photos"], n=len(photos), skip=rel)
    assert y.shape[0] == len(photos) - 2
    # the batch is the crops of the other photos, in order: equal to a batch drawn from them alone
    (tmp_path / "rest").mkdir()
    for p in photos[2:]:
        (tmp_path / "rest" / p.name).write_bytes(p.read_bytes())
    z, _ = calibration_batch(pre, [tmp_path / "rest"], n=len(photos))
    assert torch.equal(y, z)
    with pytest.raises(ValueError, match="outside the validation photos"):
        calibration_batch(pre, [tmp_path / "photos"], n=4, skip=photos)
