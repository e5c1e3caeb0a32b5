"""Task heads on the pooled backbone features, and their 18-class product.

Three kinds (`model.head`, saved in the bundle's arch), one registry:
- `multi` (default): three shallow heads (mask 3, gender 2, age band 3) + an auxiliary age regression;
  the 18 classes are the product p(mask) p(gender) p(age band | gender offsets).
- `deep`: the same three heads, each a branch of its own (Linear - SiLU - Dropout - Linear).
- `class18`: one 18-way head (the competition's plain classifier); its mask / gender / age outputs are
  the marginals of the 18-way softmax, so everything that reads per-task logits keeps working.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..labels import NUM_CLASSES, TASK_SIZES
from ..registry import Registry

AGE_MEAN, AGE_SCALE = 40.0, 20.0  # normalisation of the age regression target
HEADS = Registry("head")


@HEADS.register("multi")
class MultiHead(nn.Module):
    def __init__(self, in_features: int, dropout: float = 0.2):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.heads = nn.ModuleDict({t: nn.Linear(in_features, n) for t, n in TASK_SIZES.items()})
        self.age_reg = nn.Linear(in_features, 1)

    def forward(self, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.drop(feats)
        out = {t: h(x) for t, h in self.heads.items()}
        out["age_years"] = self.age_reg(x).squeeze(1) * AGE_SCALE + AGE_MEAN
        return out


@HEADS.register("deep")
class DeepHeads(MultiHead):
    """A hidden layer per task: the tasks stop sharing the last linear map of the features."""

    def __init__(self, in_features: int, dropout: float = 0.2, hidden: int = 256):
        super().__init__(in_features, dropout)
        self.heads = nn.ModuleDict({t: nn.Sequential(nn.Linear(in_features, hidden), nn.SiLU(), nn.Dropout(dropout),
                                                     nn.Linear(hidden, n)) for t, n in TASK_SIZES.items()})


@HEADS.register("class18")
class Class18Head(nn.Module):
    """One linear map to the 18 classes (+ age regression). Outputs `class18` and its marginals."""

    def __init__(self, in_features: int, dropout: float = 0.2):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(in_features, NUM_CLASSES)
        self.age_reg = nn.Linear(in_features, 1)

    def forward(self, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.drop(feats)
        logits = self.fc(x)
        joint = F.log_softmax(logits.float(), 1).reshape(-1, 3, 2, 3)  # mask x gender x age band
        return {"mask": joint.logsumexp((2, 3)), "gender": joint.logsumexp((1, 3)), "age": joint.logsumexp((1, 2)),
                "age_years": self.age_reg(x).squeeze(1) * AGE_SCALE + AGE_MEAN, "class18": logits}


def create_head(kind: str, in_features: int, dropout: float = 0.2) -> nn.Module:
    return HEADS.create(kind, in_features=in_features, dropout=dropout)


def combine18(logits: dict[str, torch.Tensor], age_bias: torch.Tensor | None = None) -> torch.Tensor:
    """log p(class) for the 18 classes.

    Three heads: log p(mask) + log p(gender) + log p(age band | gender); an 18-way head: its own softmax.
    `age_bias` shifts the age-band logits, one offset per band (3,) or per gender and band (2, 3). With
    three heads it moves age decisions only (mask and gender probabilities are unchanged).
    """
    if "class18" in logits:
        joint = logits["class18"].float().reshape(-1, 3, 2, 3)
        if age_bias is not None:
            joint = joint + age_bias.to(joint).reshape(1, 1, -1, 3)
        return F.log_softmax(joint.flatten(1), 1)
    lm, lg = F.log_softmax(logits["mask"].float(), 1), F.log_softmax(logits["gender"].float(), 1)
    age = logits["age"].float()[:, None, :].expand(-1, 2, -1)  # B x gender x age
    if age_bias is not None:
        age = age + age_bias.to(age).reshape(1, -1, 3)
    la = F.log_softmax(age, 2)
    return (lm[:, :, None, None] + lg[:, None, :, None] + la[:, None, :, :]).flatten(1)
