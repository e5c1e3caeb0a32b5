"""Weight averaging within a run (train/swa.py): the running mean, its resume, the norm statistics, the lr."""
import pytest
import torch
import torch.nn as nn
from torch.utils.data import Dataset

from maskgate.train.swa import WeightAverage, refresh_norms, swa_lr_factor


def _net(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3))


def test_running_mean_of_three_states_and_its_resume():
    nets = [_net(s) for s in range(3)]
    avg = WeightAverage()
    avg.add(nets[0])
    resumed = WeightAverage()
    resumed.load_state_dict({k: v for k, v in avg.state_dict().items()})
    for a in (avg, resumed):
        a.add(nets[1])
        a.add(nets[2])
    w = torch.stack([n[0].weight.detach() for n in nets]).mean(0)
    for a in (avg, resumed):
        m = a.model(nets[0])
        assert a.n == 3 and torch.allclose(m[0].weight, w, atol=1e-6)
        assert m[1].num_batches_tracked.dtype == torch.long
    assert not torch.allclose(nets[0][0].weight, w)  # the module itself is left as it was


class _Rows(Dataset):
    def __init__(self, x):
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i]}


def test_refresh_norms_measures_the_statistics_of_the_batches_it_reads():
    torch.manual_seed(0)
    x = torch.randn(32, 2, 4, 4) * 3 + 1
    net = nn.Sequential(nn.Identity(), nn.BatchNorm2d(2))
    net[1].running_mean.fill_(7.0)
    net.eval()
    state = torch.get_rng_state()
    used = refresh_norms(net, _Rows(x), batch_size=8, device=torch.device("cpu"), batches=100, seed=1)
    assert used == 4 and not net.training  # every batch read; the mode restored
    assert torch.equal(torch.get_rng_state(), state)  # the run's own random numbers are untouched
    # the cumulative mean of 4 equal-sized batch means is the mean over all rows
    assert torch.allclose(net[1].running_mean, x.mean((0, 2, 3)), atol=1e-5)
    assert net[1].momentum == 0.1
    assert refresh_norms(nn.Linear(2, 2), _Rows(x), 8, torch.device("cpu"), 3, 0) == 0  # nothing to measure


def test_each_swa_epoch_anneals_from_swa_lr_to_a_two_hundredth():
    assert swa_lr_factor(0, 10, 0.25) == pytest.approx(0.25)
    assert swa_lr_factor(9, 10, 0.25) == pytest.approx(1 / 200)
    f = [swa_lr_factor(s, 10, 0.25) for s in range(10)]
    assert all(a > b for a, b in zip(f, f[1:]))


def test_the_loop_and_the_norm_refresh_feed_the_network_the_same_layout():
    """One helper (device.py) moves batches for training, validation and refresh_norms: images channels-last,
    cached rows and targets only moved, values unchanged."""
    from maskgate.device import batch_to, images_to

    cpu = torch.device("cpu")
    x = torch.randn(2, 3, 5, 4)
    b = batch_to({"x": x, "mask": torch.tensor([0, 2])}, cpu)
    assert b["x"].is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(b["x"], x) and torch.equal(b["mask"], torch.tensor([0, 2]))
    rows = torch.randn(4, 7)
    assert torch.equal(images_to(rows, cpu), rows) and images_to(rows, cpu).is_contiguous()
