"""benchmarks/bench_offsets.py re-decides classes from saved 18-class probabilities with new age-band offsets;
that must equal what the model's own combination (`combine18`) gives with those offsets added to its logits."""
import importlib.util
from pathlib import Path

import numpy as np
import torch

from maskgate.models.heads import combine18

_spec = importlib.util.spec_from_file_location(
    "bench_offsets", Path(__file__).resolve().parents[1] / "benchmarks" / "bench_offsets.py")
bench_offsets = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_offsets)


def test_redecide_equals_combine18_with_the_offsets_added():
    g = torch.Generator().manual_seed(0)
    logits = {"mask": torch.randn(400, 3, generator=g), "gender": torch.randn(400, 2, generator=g),
              "age": 2 * torch.randn(400, 3, generator=g)}
    own = torch.tensor([0.0, -0.17, 0.1])  # the model's offsets, already in the saved probabilities
    p = combine18(logits, own).exp().numpy()
    changed = 0
    for b1, b2 in [(0.0, 0.0), (0.3, -0.7), (-1.0, 1.0), (0.9, 0.9)]:
        ref = combine18(logits, own + torch.tensor([0.0, b1, b2])).argmax(1).numpy()
        got = bench_offsets.redecide(p, b1, b2)
        np.testing.assert_array_equal(got, ref)
        changed += int((got != p.argmax(1)).sum())
    assert changed > 0  # the offsets tried do move some decisions, so the comparison means something
