"""Heads (multi / deep / class18), the optimiser and schedule factories, early stopping."""
import numpy as np
import pytest
import torch

from maskgate.labels import encode, marginals
from maskgate.models.heads import combine18, create_head
from maskgate.train.losses import MultiTaskLoss
from maskgate.train.optim import Schedule, create_optimizer
from maskgate.config import ConfigError, default_config, load_config


def _batch(n=24, seed=0):
    g = np.random.default_rng(seed)
    age = torch.tensor(g.integers(18, 80, n), dtype=torch.float32)
    band = torch.bucketize(age, torch.tensor([30.0, 60.0]), right=True)
    return {"mask": torch.tensor(g.integers(0, 3, n)), "gender": torch.tensor(g.integers(0, 2, n)),
            "age_band": band, "age": age}


@pytest.mark.parametrize("kind", ["multi", "deep", "class18"])
def test_every_head_gives_an_18_class_distribution(kind):
    torch.manual_seed(0)
    head = create_head(kind, 32).eval()
    with torch.no_grad():
        out = head(torch.randn(5, 32))
    log18 = combine18(out)
    assert log18.shape == (5, 18)
    assert torch.allclose(log18.exp().sum(1), torch.ones(5), atol=1e-5)
    if kind == "class18":  # its mask / gender / age outputs are the marginals of its own 18-way softmax
        p = torch.softmax(out["class18"], 1).numpy()
        for i in range(5):
            m, g, a = marginals(p[i])
            assert np.allclose(torch.softmax(out["mask"][i], 0).numpy(), m, atol=1e-5)
            assert np.allclose(torch.softmax(out["gender"][i], 0).numpy(), g, atol=1e-5)
            assert np.allclose(torch.softmax(out["age"][i], 0).numpy(), a, atol=1e-5)
        # age offsets move only the age part of the 18 logits: +big on band 2 makes every argmax a >=60 class
        bias = torch.tensor([[0.0, 0.0, 50.0], [0.0, 0.0, 50.0]])
        assert set((combine18(out, bias).argmax(1) % 3).tolist()) == {2}


def test_unknown_head_is_refused():
    with pytest.raises(ValueError, match="unknown head 'wide'"):
        create_head("wide", 8)
    with pytest.raises(ConfigError, match="model.head"):
        load_config(overrides=["model.head=wide"])


def test_class18_loss_is_cross_entropy_on_the_product_of_the_task_targets():
    cfg = dict(default_config()["train"], label_smoothing=0.0, age_sigma=0.0, age_regression=0.0)
    counts = {"class18": np.ones(18)}
    loss = MultiTaskLoss(cfg, counts, head="class18")
    b = _batch()
    logits = torch.randn(len(b["age"]), 18)
    y = torch.as_tensor(encode(b["mask"].numpy(), b["gender"].numpy(), b["age_band"].numpy()))
    total, parts = loss({"class18": logits, "age_years": b["age"]}, b)
    # age-band weights (sqrt) still weight the rows: recompute by hand
    w = loss.age_w[b["age_band"]]
    expect = (torch.nn.functional.cross_entropy(logits, y, reduction="none") * w).sum() / w.sum()
    assert torch.allclose(total, expect, atol=1e-5) and set(parts) == {"class18"}
    # and it trains: a few steps on the batch make the right classes most likely
    logits.requires_grad_(True)
    opt = torch.optim.SGD([logits], lr=5.0)
    for _ in range(50):
        opt.zero_grad()
        loss({"class18": logits, "age_years": b["age"]}, b)[0].backward()
        opt.step()
    assert (logits.argmax(1) == y).all()


def test_optimisers_come_from_timm_by_name_without_decay_on_biases():
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    sgd = create_optimizer(net, "sgd", 0.1, 0.01)
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["nesterov"] is True
    assert [g["weight_decay"] for g in sgd.param_groups] == [0.01, 0.0]
    assert [len(g["params"]) for g in sgd.param_groups] == [1, 3]  # the weight; bias, BN weight and BN bias
    assert type(create_optimizer(net, "adamw", 0.1, 0.01)).__name__ == "AdamW"
    with pytest.raises(ValueError, match="train.optimizer='adamx'"):
        create_optimizer(net, "adamx", 0.1, 0.0)


def _lrs(name, epochs=4, steps=5, metrics=None, **kw):
    p = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([p], lr=1.0)
    s = Schedule(opt, name, 1.0, epochs, steps, 0.25, **kw)
    out = []
    for e in range(epochs):
        for _ in range(steps):
            out.append(s.last_lr())
            opt.step()
            s.batch()
        s.epoch(e + 1, None if metrics is None else metrics[e])
    return out, s, opt


def test_schedules_warm_up_decay_and_step_as_named():
    cos, _, _ = _lrs("cosine")
    assert cos[0] < cos[4] and max(cos) == pytest.approx(cos[5], rel=0.05)  # warm-up over the first epoch
    assert cos[-1] < 0.1 and all(a >= b - 1e-9 for a, b in zip(cos[5:], cos[6:]))  # then only down
    step, _, _ = _lrs("step", step_epochs=2, decay_rate=0.5)
    assert step[12] == pytest.approx(step[7] * 0.5, rel=1e-6)  # epochs 3-4 at half the lr of epochs 1-2
    plateau, _, _ = _lrs("plateau", metrics=[0.5, 0.6, 0.6, 0.6], step_epochs=1, decay_rate=0.1)
    assert plateau[:15] == [1.0] * 15 and plateau[15] == pytest.approx(0.1)  # one epoch without a better F1
    none, _, _ = _lrs("none")
    assert set(none) == {1.0}
    one, _, _ = _lrs("onecycle")
    assert one[0] == pytest.approx(1 / 20) and max(one) == pytest.approx(1.0, rel=0.02)


@pytest.mark.parametrize("name", ["onecycle", "cosine", "plateau"])
def test_schedule_state_resumes_where_it_stopped(name):
    whole, _, _ = _lrs(name, metrics=[0.1, 0.1, 0.1, 0.1])
    _, s, opt = _lrs(name, epochs=4, metrics=[0.1, 0.1, 0.1, 0.1])
    # a fresh schedule loaded with the state after 2 of 4 epochs continues with the same learning rates
    p = torch.nn.Parameter(torch.zeros(2))
    opt2 = torch.optim.SGD([p], lr=1.0)
    first = Schedule(opt2, name, 1.0, 4, 5, 0.25)
    for e in range(2):
        for _ in range(5):
            opt2.step()
            first.batch()
        first.epoch(e + 1, 0.1)
    state, opt_state = first.state_dict(), opt2.state_dict()
    opt3 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=1.0)
    resumed = Schedule(opt3, name, 1.0, 4, 5, 0.25)
    opt3.load_state_dict(opt_state)
    resumed.load_state_dict(state)
    rest = []
    for e in range(2, 4):
        for _ in range(5):
            rest.append(resumed.last_lr())
            opt3.step()
            resumed.batch()
        resumed.epoch(e + 1, 0.1)
    assert rest == pytest.approx(whole[10:], rel=1e-6)


def test_training_config_keys_are_checked():
    for bad, msg in [("train.scheduler=linear", "train.scheduler"), ("train.early_stop=-1", "train.early_stop"),
                     ("train.decay_rate=0", "train.decay_rate"), ("train.step_epochs=0", "train.step_epochs"),
                     ("train.swa_epochs=-1", "train.swa_epochs"), ("train.swa_lr=0", "train.swa_lr"),
                     ("train.swa_bn_batches=0", "train.swa_bn_batches")]:
        with pytest.raises(ConfigError, match=msg):
            load_config(overrides=[bad])
