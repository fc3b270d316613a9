"""MATCH-OPT's loss: monotonic trajectories, a path integral that is the gradient theorem's, zero for the truth."""

from __future__ import annotations

import pytest
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


def test_the_surrogate_trains_with_matchopt_on_scored_data_only():
    import pytest

    from hil.errors import EstimatorError
    from hil.estimators import SurrogateEstimator
    from hil.surrogate import Surrogate, SurrogateConfig

    gen = torch.Generator().manual_seed(3)
    x = torch.rand(1024, 3, generator=gen)
    y = ((x - 0.3) ** 2).sum(dim=1, keepdim=True)
    cfg = SurrogateConfig(loss="matchopt", hidden=[64, 64], bins=32, batch_size=256, lr=3e-3, seed=0)
    assert cfg.value_weight == 1.0  # the paper's regression term by default
    s = Surrogate(cfg, torch.zeros(3), torch.ones(3), (1,))
    s.add(x, y, scores=y[:, 0])
    s.fit(epochs=150)
    probe = torch.rand(128, 3, generator=gen) * 0.8 + 0.1
    g = s.vjp(probe, torch.ones(128, 1))
    cosine = torch.nn.functional.cosine_similarity(g, 2 * (probe - 0.3), dim=1)
    assert float(cosine.median()) > 0.9
    est = SurrogateEstimator(cfg)
    est.surrogate = s
    with pytest.raises(EstimatorError, match="matchopt"):
        est.observe(x, y)  # no scores: nothing to sort the trajectories by


def test_offline_start_top_begins_at_the_datasets_best_points(tmp_path):
    from hil.querylog import read_log
    from hil.run import execute, load_run_config

    cfg = load_run_config({
        "name": "matchopt-top",
        "blackbox": {"type": "cnon_twin", "dim": 4, "horizon": 1.0, "steps": 10},
        "objective": {"type": "target_distance", "target_seed": 2},
        "optimizer": {"type": "offline", "n_starts": 3, "dataset_size": 60, "fit_epochs": 20, "start": "top",
                      "search": "surrogate", "iterations": 3, "lr": 0.02},
        "estimator": {"type": "surrogate", "loss": "matchopt", "hidden": [32], "bins": 8},
        "log": {"report": False},
    })
    res = execute(cfg, log_path=tmp_path / "m.h5")
    data = read_log(tmp_path / "m.h5")
    labels = data.purpose_labels()
    initial = [i for i, p in enumerate(labels) if p == "initial"]
    steps = [i for i, p in enumerate(labels) if p == "step"]
    assert len(initial) == 60 and len(steps) == 9 and res.trace.iterations == 3
    objective = cfg.objective.build(output_shape=(4,))
    values = objective(torch.from_numpy(data.y[initial]).float())
    top = torch.argsort(values)[:3]
    first = torch.from_numpy(data.x[steps[:3]])
    assert torch.allclose(first, torch.from_numpy(data.x[initial][top.numpy()]), atol=1e-5)


@pytest.mark.parametrize("key, value, message", [("bins", 1, "must be >= 2"), ("bins", 2**70, "<= "),
                                                 ("path_steps", 0, "must be >= 1, got 0"),
                                                 ("value_weight", float("inf"), "expected a finite number")])
def test_matchopt_settings_are_checked_naming_the_path(key, value, message):
    from hil.config import parse
    from hil.errors import ConfigError
    from hil.surrogate import SurrogateConfig

    with pytest.raises(ConfigError) as info:
        parse(SurrogateConfig, {"loss": "matchopt", key: value}, "estimator")
    assert str(info.value).startswith(f"estimator.{key}: ") and message in str(info.value), str(info.value)
