"""Batch mixing (train/mixing.py): half-image CutMix, class-limited mixup, erasing; and the loss they train on."""
import numpy as np
import torch

from maskgate.train.mixing import create_mixer, make_batch_transform, random_erase


def _batch(n=12, c=4, h=6, w=8):
    g = torch.Generator().manual_seed(0)
    return {"x": torch.rand(n, c, h, w, generator=g), "mask": torch.arange(n) % 3, "gender": (torch.arange(n) // 3) % 2,
            "age_band": torch.tensor([0, 1, 2] * (n // 3)), "age": torch.full((n,), 40.0)}


def test_cutmix_half_takes_the_right_half_from_the_partner():
    b = _batch()
    x, pair, lam = create_mixer("cutmix_half", prob=1.0)(b, torch.Generator().manual_seed(1))
    moved = pair != torch.arange(12)
    assert moved.sum() >= 10 and lam == 0.5
    assert torch.equal(x[..., :4], b["x"][..., :4])  # every left half is the row's own
    assert torch.equal(x[moved][..., 4:], b["x"][pair[moved]][..., 4:])  # right halves from the partners
    assert torch.equal(x[~moved], b["x"][~moved])


def test_cutmix_same_class_pairs_only_within_a_class_and_keeps_labels():
    b = _batch(24)
    b["mask"], b["gender"], b["age_band"] = torch.zeros(24, dtype=torch.long), torch.zeros(24, dtype=torch.long), \
        torch.tensor([0, 2] * 12)
    mix = create_mixer("cutmix_half", prob=1.0, same_class=True)
    x, pair, lam = mix(b, torch.Generator().manual_seed(2))
    assert lam == 1.0 and torch.equal(pair, torch.arange(24))  # labels unchanged
    changed = (x != b["x"]).flatten(1).any(1)
    assert changed.sum() >= 20
    for i in torch.nonzero(changed).flatten().tolist():  # its right half equals some row of its own band
        src = [j for j in range(24) if torch.equal(x[i, ..., 4:], b["x"][j, ..., 4:])]
        assert src and all(int(b["age_band"][j]) == int(b["age_band"][i]) for j in src)


def test_mixup_only_mixes_the_chosen_age_bands():
    b = _batch(30)
    x, pair, lam = create_mixer("mixup", prob=1.0, age_bands=[2], alpha=0.4)(b, torch.Generator().manual_seed(3))
    assert 0.5 <= lam <= 1.0
    old = b["age_band"] == 2
    assert torch.equal(x[~old], b["x"][~old]) and torch.equal(pair[~old], torch.nonzero(~old).flatten())
    moved = pair != torch.arange(30)
    assert moved.any() and (b["age_band"][pair[moved]] == 2).all()
    assert torch.allclose(x[moved], lam * b["x"][moved] + (1 - lam) * b["x"][pair[moved]])


def test_random_erase_zeroes_a_rectangle_of_the_chosen_rows():
    x = torch.ones(50, 3, 10, 10)
    out = random_erase(x, 1.0, torch.Generator().manual_seed(4))
    zero = (out[:, 0] == 0).flatten(1).sum(1).float() / 100
    assert ((zero >= 0.01) & (zero <= 0.3)).all()
    assert (out == 0).any(1).sum((1, 2)).eq((out[:, 0] == 0).sum((1, 2))).all()  # the same area in every channel
    assert random_erase(x, 0.0, torch.Generator()) is x and x.min() == 1


def test_transform_gives_partner_labels_and_weight_for_the_loss():
    from maskgate.config import default_config
    from maskgate.models.heads import MultiHead
    from maskgate.train.losses import MultiTaskLoss

    cfg = {**default_config()["train"], "mix": "cutmix_half", "mix_prob": 1.0}
    tf = make_batch_transform(cfg)
    b = _batch()
    nb, partner, lam = tf(b, torch.Generator().manual_seed(5))
    assert lam == 0.5 and set(partner) == {"mask", "gender", "age_band", "age"}
    moved = (nb["x"] != b["x"]).flatten(1).any(1)
    assert moved.any()
    loss = MultiTaskLoss(cfg, {"age": np.array([4, 4, 4])})
    out = MultiHead(4 * 6 * 8)(nb["x"].flatten(1))
    mixed = lam * loss(out, nb)[0] + (1 - lam) * loss(out, partner)[0]
    assert torch.isfinite(mixed)
    assert make_batch_transform(default_config()["train"]) is None  # off by default
