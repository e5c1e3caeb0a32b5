"""Three task heads (mask 3, gender 2, age band 3) + an auxiliary age regression, and their 18-class product."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..labels import TASK_SIZES

AGE_MEAN, AGE_SCALE = 40.0, 20.0  # normalisation of the age regression target


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


def combine18(logits: dict[str, torch.Tensor], age_bias: torch.Tensor | None = None) -> torch.Tensor:
    """log p(class) for the 18 classes = log p(mask) + log p(gender) + log p(age band | gender).

    `age_bias` shifts the age-band logits before their softmax, one offset per band (3,) or per
    gender and band (2, 3). It moves age decisions only: mask and gender probabilities are unchanged.
    """
    lm, lg = F.log_softmax(logits["mask"].float(), 1), F.log_softmax(logits["gender"].float(), 1)
    age = logits["age"].float()[:, None, :].expand(-1, 2, -1)  # B x gender x age
    if age_bias is not None:
        age = age + age_bias.to(age).reshape(1, -1, 3)
    la = F.log_softmax(age, 2)
    return (lm[:, :, None, None] + lg[:, None, :, None] + la[:, None, :, :]).flatten(1)
