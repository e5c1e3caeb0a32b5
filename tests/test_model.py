import numpy as np
import pytest
import torch

from maskgate.labels import encode
from maskgate.models.classifier import MaskClassifier, MaskgateNet, Preprocess
from maskgate.models.heads import MultiHead, combine18
from maskgate.train.calibrate import tune_age_bias
from maskgate.train.losses import MultiTaskLoss, create_loss, smooth_one_hot, soft_age_targets
from maskgate.config import default_config


def test_combine18_is_a_distribution_and_agrees_with_heads():
    torch.manual_seed(0)
    lg = {"mask": torch.randn(50, 3), "gender": torch.randn(50, 2), "age": torch.randn(50, 3)}
    log18 = combine18(lg)
    assert torch.allclose(log18.exp().sum(1), torch.ones(50), atol=1e-5)
    expect = encode(lg["mask"].argmax(1).numpy(), lg["gender"].argmax(1).numpy(), lg["age"].argmax(1).numpy())
    assert (log18.argmax(1).numpy() == expect).all()
    # an age offset moves age decisions only, and the result stays a distribution
    biased = combine18(lg, torch.tensor([[0.0, 2.0, -1.0], [0.0, -1.0, 3.0]])).exp().view(50, 3, 2, 3)
    assert torch.allclose(biased.sum((1, 2, 3)), torch.ones(50), atol=1e-5)
    plain = log18.exp().view(50, 3, 2, 3)
    assert torch.allclose(biased.sum((2, 3)), plain.sum((2, 3)), atol=1e-5)  # p(mask) unchanged
    assert torch.allclose(biased.sum((1, 3)), plain.sum((1, 3)), atol=1e-5)  # p(gender) unchanged


def test_multihead_shapes():
    out = MultiHead(32)(torch.randn(4, 32))
    assert out["mask"].shape == (4, 3) and out["gender"].shape == (4, 2) and out["age"].shape == (4, 3)
    assert out["age_years"].shape == (4,)


def test_packaged_weights_load_and_trunk_tail_equal_full_net():
    torch.manual_seed(0)
    net = MaskgateNet("tf_efficientnet_lite0", "packaged", freeze_blocks=4).eval()
    assert not any(p.requires_grad for p in net.trunk.parameters())
    assert all(p.requires_grad for p in net.tail.parameters())
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        a = net(x)["mask"]
        b = net.tail(net.trunk(x))["mask"]
    assert torch.allclose(a, b)
    # ImageNet weights, not random: first conv filters have the learned scale
    w = net.trunk.stem[0].weight
    assert 0.05 < w.abs().mean() < 1.0


def test_bundle_roundtrip(tmp_path):
    net = MaskgateNet("tf_efficientnet_lite0", "none", freeze_blocks=5).eval()
    pre = Preprocess(input_size=64)
    m = MaskClassifier(net, pre, {"backbone": "tf_efficientnet_lite0", "freeze_blocks": 5, "dropout": 0.2},
                       [0.0, 0.3, 0.9])
    m.save(tmp_path / "m.pt")
    back = MaskClassifier.load(tmp_path / "m.pt")
    assert back.preprocess == pre and back.age_bias.tolist() == [pytest.approx([0.0, 0.3, 0.9])] * 2
    x = torch.randn(2, 3, 64, 64)
    ref = m.eval().predict_logits(x)["log18"]
    assert torch.allclose(back.predict_logits(x)["log18"], ref, atol=2e-2)  # fp16 storage


def test_bundle_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model file"):
        MaskClassifier.load(tmp_path)
    bad = tmp_path / "bad.pt"
    bad.write_text("garbage")
    with pytest.raises(ValueError, match="bad.pt: not a readable maskgate model"):
        MaskClassifier.load(bad)


def test_soft_age_targets():
    p = soft_age_targets(torch.tensor([20.0, 29.0, 30.0, 45.0, 59.0, 80.0]), sigma=1.5, eps=0.0)
    assert torch.allclose(p.sum(1), torch.ones(6))
    assert p[0, 0] > 0.99 and p[3, 1] > 0.99 and p[5, 2] > 0.99
    assert 0.5 < p[1, 0] < 0.8 and 0.5 < p[2, 1] < 0.8 and 0.5 < p[4, 1] < 0.8  # near a boundary: shared
    hard = soft_age_targets(torch.tensor([29.0, 30.0, 60.0]), sigma=0, eps=0.0)
    assert hard.argmax(1).tolist() == [0, 1, 2]


@pytest.mark.parametrize("name", ["ce", "focal"])
def test_losses_decrease_when_logits_move_to_target(name):
    fn = create_loss(name)
    tgt = torch.tensor([[0.0, 1.0, 0.0]])
    assert fn(torch.tensor([[0.0, 3.0, 0.0]]), tgt) < fn(torch.tensor([[0.0, 0.0, 0.0]]), tgt)
    with pytest.raises(ValueError, match="unknown loss"):
        create_loss("nope")


def test_multitask_loss_runs_on_all_18_classes():
    cfg = default_config()["train"]
    loss = MultiTaskLoss(cfg, np.array([100, 50, 10]))
    out = MultiHead(8)(torch.randn(6, 8))
    batch = {"mask": torch.tensor([0, 1, 2, 0, 1, 2]), "gender": torch.tensor([0, 1, 0, 1, 0, 1]),
             "age_band": torch.tensor([0, 1, 2, 2, 1, 0]), "age": torch.tensor([20.0, 40, 70, 65, 33, 25])}
    total, parts = loss(out, batch)
    total.backward()
    assert set(parts) == {"mask", "gender", "age", "age_reg"} and torch.isfinite(total)


def test_age_bias_tuning_recovers_rare_band():
    rng = np.random.default_rng(0)
    n = 600
    band = rng.choice(3, n, p=[0.6, 0.3, 0.1])
    age_logits = np.eye(3)[band] * 1.0 + rng.normal(0, 0.6, (n, 3))
    age_logits[:, 2] -= 1.2  # a model that under-predicts the rare band
    lg = {"mask": np.eye(3)[band % 3] * 5, "gender": np.eye(2)[band % 2] * 5, "age": age_logits.astype(np.float32),
          "t_mask": band % 3, "t_gender": band % 2, "t_age_band": band}
    lg = {k: np.asarray(v, np.float32) if k in ("mask", "gender", "age") else v for k, v in lg.items()}
    bias, before, after = tune_age_bias(lg)
    assert after > before + 0.02 and bias[0, 2] > 0.5 and (bias[:, 0] == 0).all() and (bias[0] == bias[1]).all()


def test_init_from_a_graph_only_bundle_is_exact_and_keeps_batch_norms_frozen():
    """model.init from the shipped (graph-only) model: its folded convolutions unfold into the network
    exactly, whatever the frozen part, and its batch norms stay in eval mode in training."""
    from maskgate.models.transfer import init_from_model
    from maskgate.predict import default_model_path

    shipped = MaskClassifier.load(default_model_path("torch"))
    x = torch.randn(3, 3, 160, 160)
    with torch.no_grad():
        want = shipped.net(x)
    for k in (0, 4):
        net = MaskgateNet("tf_efficientnet_lite0", "none", freeze_blocks=k)
        init_from_model(net, default_model_path("torch"))
        with torch.no_grad():
            got = net.eval()(x)
        for key in ("mask", "gender", "age", "age_years"):
            assert torch.allclose(got[key], want[key], atol=1e-4), key
        net.train()
        net.tail.train()  # the loop trains the tail alone on the cached-feature path
        assert not any(m.training for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
        assert net.tail.heads.training  # everything else trains as usual
    with pytest.raises(ValueError, match="not the same backbone"):
        init_from_model(MaskgateNet("tf_efficientnet_lite1", "none"), default_model_path("torch"))


@pytest.mark.parametrize("name", ["ce", "focal", "soft_f1", "ldam", "ce+soft_f1"])
@pytest.mark.parametrize("n_classes", [2, 3, 5])
def test_every_loss_is_sized_by_its_head(name, n_classes):
    """Any head size: per-sample values, finite, with gradients (no hard-coded 3)."""
    counts = np.arange(1, n_classes + 1) * 10
    fn = create_loss(name, counts=counts)
    logits = torch.randn(7, n_classes, requires_grad=True)
    tgt = torch.nn.functional.one_hot(torch.arange(7) % n_classes, n_classes).float()
    val = fn(logits, tgt)
    assert val.shape == (7,) and torch.isfinite(val).all()
    val.mean().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_soft_f1_is_one_minus_macro_f1_on_confident_predictions():
    from sklearn.metrics import f1_score

    y_true = np.array([0, 0, 1, 1, 1, 2, 2, 0])
    y_pred = np.array([0, 1, 1, 1, 2, 2, 0, 0])
    logits = torch.nn.functional.one_hot(torch.tensor(y_pred), 3).float() * 50  # softmax = one-hot
    tgt = torch.nn.functional.one_hot(torch.tensor(y_true), 3).float()
    loss = create_loss("soft_f1")(logits, tgt)
    assert torch.allclose(loss, torch.full((8,), 1 - f1_score(y_true, y_pred, average="macro")), atol=1e-5)
    assert create_loss("ce+soft_f1")(logits, tgt)[0] == pytest.approx(
        float(create_loss("ce")(logits, tgt)[0] + loss[0]), abs=1e-5)


def test_ldam_margins_follow_class_counts():
    counts = np.array([1000, 100, 10])
    fn, ce = create_loss("ldam", counts=counts, max_margin=0.5), create_loss("ce")
    logits = torch.zeros(3, 3)
    tgt = torch.eye(3)
    extra = (fn(logits, tgt) - ce(logits, tgt)).numpy()  # what each class's margin adds to its loss
    assert extra[0] < extra[1] < extra[2]  # the rarest class needs the widest lead
    even = create_loss("ldam", counts=np.array([50, 50, 50]))(logits, tgt)
    assert torch.allclose(even, even[0].expand(3))
    with pytest.raises(ValueError, match="needs the head's training class counts"):
        create_loss("ldam")


def test_class_balance_weights_each_class_equally():
    cfg = {**default_config()["train"], "class_balance": {"mask": "inverse", "gender": "none"}, "age_regression": 0}
    counts = {"mask": np.array([30, 10, 10]), "gender": np.array([25, 25]), "age": np.array([50, 0, 0])}
    loss = MultiTaskLoss(cfg, counts)
    out = {"mask": torch.tensor([[2.0, 0, 0], [2.0, 0, 0], [2.0, 0, 0], [0, 0.5, 0], [0, 0, 0.1]]),
           "gender": torch.zeros(5, 2), "age": torch.zeros(5, 3), "age_years": torch.full((5,), 25.0)}
    batch = {"mask": torch.tensor([0, 0, 0, 1, 2]), "gender": torch.zeros(5, dtype=torch.long),
             "age_band": torch.zeros(5, dtype=torch.long), "age": torch.full((5,), 25.0)}
    _, parts = loss(out, batch)
    per = create_loss("ce")(out["mask"], smooth_one_hot(batch["mask"], 3, cfg["label_smoothing"]))
    by_class = [per[:3].mean(), per[3], per[4]]  # inverse weights: every class counts the same
    assert parts["mask"] == pytest.approx(float(sum(by_class) / 3), abs=1e-5)


def test_class_balance_is_validated():
    from maskgate.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="class_balance"):
        load_config(overrides=["train.class_balance={mask: lots}"])


def test_gender_by_age_weighs_the_gender_loss_of_older_rows():
    """train.gender_by_age [1, 1, 3]: a >=60 row's gender loss counts three times (hand-computed), the other
    heads are untouched; the config is checked, and the 18-way head refuses it."""
    from maskgate.config import ConfigError, load_config

    base = {**default_config()["train"], "age_regression": 0}
    out = {"mask": torch.zeros(3, 3), "gender": torch.tensor([[1.0, 0], [0, 1.0], [2.0, 0]]),
           "age": torch.zeros(3, 3), "age_years": torch.full((3,), 40.0)}
    batch = {"mask": torch.zeros(3, dtype=torch.long), "gender": torch.tensor([0, 0, 1]),
             "age_band": torch.tensor([0, 1, 2]), "age": torch.tensor([20.0, 40.0, 70.0])}
    counts = {"age": np.array([10, 10, 10])}
    _, plain = MultiTaskLoss(base, counts)(out, batch)
    _, heavy = MultiTaskLoss({**base, "gender_by_age": [1, 1, 3]}, counts)(out, batch)
    per = create_loss("ce")(out["gender"], smooth_one_hot(batch["gender"], 2, base["label_smoothing"]))
    assert plain["gender"] == pytest.approx(float(per.mean()), abs=1e-6)
    assert heavy["gender"] == pytest.approx(float((per[0] + per[1] + 3 * per[2]) / 5), abs=1e-6)
    assert heavy["mask"] == pytest.approx(plain["mask"]) and heavy["age"] == pytest.approx(plain["age"])
    with pytest.raises(ConfigError, match="gender_by_age"):
        load_config(overrides=["train.gender_by_age=[1, 2]"])
    with pytest.raises(ConfigError, match="gender_by_age"):
        load_config(overrides=["train.gender_by_age=[1, 1, 0]"])
    with pytest.raises(ValueError, match="three heads"):
        MultiTaskLoss({**base, "gender_by_age": [1, 1, 3]}, counts, head="class18")
