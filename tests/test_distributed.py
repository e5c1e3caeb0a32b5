"""The same training loop under torchrun: 2 CPU processes, gloo backend, DistributedDataParallel."""
import subprocess
import sys

import pandas as pd

from conftest import TINY_OVERRIDES


def test_torchrun_two_processes(tiny_data, tmp_path):
    train, _ = tiny_data
    run = tmp_path / "ddp"
    overrides = [o for o in TINY_OVERRIDES if not o.startswith("train.epochs")] + ["train.epochs=2", "device=cpu"]
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        "-m", "maskgate", "train", "--data-dir", str(train), "--out", str(run), *overrides],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    assert pd.read_csv(run / "metrics.csv")["epoch"].tolist() == [1, 2]
    assert (run / "best.pt").is_file()
    log = (run / "train.log").read_text()
    assert log.count("epoch 1/2:") == 1  # only rank 0 logs and writes
