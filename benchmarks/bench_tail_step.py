"""Time one training step of the CPU recipe's trained part, in the ways PyTorch can run it.

    python benchmarks/bench_tail_step.py [--freeze-blocks 4] [--input-size 160] [--batch 64] [--steps 20]

The CPU recipe trains the network's tail (the blocks after `model.freeze_blocks`, the head conv and the
heads) on cached trunk outputs (`train/features.py`), so a training step is the tail's forward, backward and
AdamW step on a batch of cached maps, and that step is ~85% of a run's time once the caches exist. Each
variant runs in its own process (torch.compile and thread pools keep state) on random maps of the trunk's
output shape, with a loss over every head:

- `eager`: NCHW maps, NCHW weights
- `cl_input`: channels-last maps (what the training loop feeds: `device.batch_to`)
- `cl_both`: channels-last maps and weights
- `compile`: `torch.compile` (inductor) of the tail, channels-last maps; its compile time is reported apart

Prints a table (ms per step, images per second, warm-up seconds).
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time

VARIANTS = ("eager", "cl_input", "cl_both", "compile")


def one(variant: str, freeze_blocks: int, input_size: int, batch: int, steps: int, backbone: str) -> dict:
    import torch

    from maskgate.models.classifier import MaskgateNet

    torch.manual_seed(0)
    net = MaskgateNet(backbone, "packaged", freeze_blocks=freeze_blocks)
    with torch.no_grad():
        shape = tuple(net.trunk(torch.zeros(1, 3, input_size, input_size)).shape[1:])
    tail = net.tail.train()
    x = torch.randn(batch, *shape)
    if variant != "eager":
        x = x.contiguous(memory_format=torch.channels_last)
    if variant == "cl_both":
        tail = tail.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW([p for p in tail.parameters() if p.requires_grad], lr=1e-3)
    fwd = torch.compile(tail) if variant == "compile" else tail

    def step() -> None:
        out = fwd(x)
        loss = sum(v.float().pow(2).mean() for v in out.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t0 = time.perf_counter()
    for _ in range(3):
        step()
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    ms = (time.perf_counter() - t0) / steps * 1000
    return {"variant": variant, "maps": "x".join(map(str, shape)), "ms_per_step": round(ms, 1),
            "images_per_s": round(batch / ms * 1000, 1), "warmup_s": round(warm, 1),
            "threads": torch.get_num_threads(), "torch": torch.__version__}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="tf_efficientnet_lite0")
    ap.add_argument("--freeze-blocks", type=int, default=4, help="model.freeze_blocks of the recipe (default 4)")
    ap.add_argument("--input-size", type=int, default=160)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one variant in this process
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.one, a.freeze_blocks, a.input_size, a.batch, a.steps, a.backbone)))
        return
    rows = []
    for v in a.variants.split(","):
        if v not in VARIANTS:
            sys.exit(f"unknown variant {v!r}: one of {', '.join(VARIANTS)}")
        r = subprocess.run([sys.executable, __file__, "--one", v, "--freeze-blocks", str(a.freeze_blocks),
                            "--input-size", str(a.input_size), "--batch", str(a.batch), "--steps", str(a.steps),
                            "--backbone", a.backbone], text=True, capture_output=True)
        if r.returncode:
            print(f"{v}: failed\n{r.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    print(f"\n{platform.processor() or platform.machine()}, {rows[0]['threads'] if rows else '?'} threads, "
          f"torch {rows[0]['torch'] if rows else '?'}; {a.backbone}, blocks after {a.freeze_blocks} trained, "
          f"batch {a.batch}, {a.steps} timed steps after 3 warm-up steps\n")
    print("| variant | trunk-output maps | ms / step | images / s | warm-up (3 steps) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['maps']} | {r['ms_per_step']} | {r['images_per_s']} | {r['warmup_s']} s |")


if __name__ == "__main__":
    main()
