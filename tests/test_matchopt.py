"""MATCH-OPT's loss: monotonic trajectories, a path integral that is the gradient theorem's, zero for the truth."""

from __future__ import annotations

import torch
from torch import nn

from hil.matchopt import matchopt_loss, path_integral, percentile_bins, sample_trajectory


def test_trajectories_take_one_point_per_bin_in_increasing_score():
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(1000, generator=gen)
    bins = percentile_bins(scores, 128)
    assert len(bins) == 128 and sum(len(b) for b in bins) == 1000
    for _ in range(20):
        t = sample_trajectory(bins, scores, gen)
        assert len(t) == 128 and bool((scores[t][1:] >= scores[t][:-1]).all())
    assert len(percentile_bins(scores[:10], 128)) == 10  # fewer points than bins: no empty bins


def test_the_loss_is_zero_for_the_true_function():
    gen = torch.Generator().manual_seed(1)
    a, b = torch.randn(4, 3, generator=gen), torch.randn(3, generator=gen)

    def affine(x: torch.Tensor) -> torch.Tensor:
        return x @ a + b

    x = torch.randn(300, 4, generator=gen)
    y = affine(x)
    bins = percentile_bins(y[:, 0], 32)
    t = sample_trajectory(bins, y[:, 0], gen)
    assert float(matchopt_loss(affine, x, y, t)) < 1e-10  # the Riemann sum is exact for an affine map

    def smooth(x: torch.Tensor) -> torch.Tensor:
        return torch.sin(x).sum(dim=1, keepdim=True)

    ys = smooth(x)
    t = sample_trajectory(percentile_bins(ys[:, 0], 32), ys[:, 0], gen)
    coarse = float(matchopt_loss(smooth, x, ys, t, steps=5, value_weight=0.0))
    fine = float(matchopt_loss(smooth, x, ys, t, steps=200, value_weight=0.0))
    assert fine < coarse / 100  # the left Riemann sum converges to the gradient theorem's integral


def test_the_loss_trains_a_surrogate_towards_the_truth():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(512, 2, generator=gen) * 2 - 1
    y = (x**2).sum(dim=1, keepdim=True)
    model = nn.Sequential(nn.Linear(2, 64), nn.GELU(), nn.Linear(64, 1))
    bins = percentile_bins(y[:, 0], 64)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = float(matchopt_loss(model, x, y, sample_trajectory(bins, y[:, 0], gen)).detach())
    for _ in range(300):
        loss = matchopt_loss(model, x, y, sample_trajectory(bins, y[:, 0], gen))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss) < first / 10
    grid = (torch.rand(64, 2, generator=gen) * 1.6 - 0.8).requires_grad_(True)
    model(grid).sum().backward()
    cosine = torch.nn.functional.cosine_similarity(grid.grad, 2 * grid.detach(), dim=1)
    assert float(cosine.median()) > 0.9  # its gradient points where the truth's does
    assert path_integral(model, x[:3], x[3:6]).shape == (3, 1)
