"""L-GSO: the generative surrogate reproduces a known stochastic function, and its gradient is the expected
objective's, queried through the logged path."""

from __future__ import annotations

import math

import pytest
import torch

from hil.errors import ConfigError
from hil.generative import GenerativeSurrogate
from hil.lgso import LGSOConfig, LGSOEstimator
from hil.querylog import read_log
from hil.registry import ESTIMATORS
from hil.sections import parse_blackbox


def _known(c: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """``y ~ N(sin(2 c), (0.1 + 0.3 c^2)^2)`` for ``c`` in [-1, 1] (``n x 1``)."""
    return torch.sin(2 * c) + (0.1 + 0.3 * c**2) * torch.randn(c.shape, generator=gen)


def test_the_generative_surrogate_reproduces_mean_and_spread_of_a_known_function():
    gen = torch.Generator().manual_seed(0)
    c = torch.rand(4000, 1, generator=gen) * 2 - 1
    model = GenerativeSurrogate(1, 1, components=3, hidden=[32, 32], lr=3e-3, batch_size=256, seed=0)
    model.fit(c, _known(c, gen), epochs=150)
    grid = torch.linspace(-0.9, 0.9, 7).reshape(-1, 1)
    draws = model.sample(grid, 4000)[..., 0]  # 7 x 4000
    true_mean, true_std = torch.sin(2 * grid[:, 0]), 0.1 + 0.3 * grid[:, 0] ** 2
    # stated tolerance: the mean within 0.05 (a sixth of the largest spread), the spread within 20 %
    assert torch.allclose(draws.mean(dim=1), true_mean, atol=0.05)
    assert torch.allclose(draws.std(dim=1), true_std, rtol=0.2)
    assert torch.allclose(model.mean(grid)[:, 0], true_mean, atol=0.05)
    # the expectation of a function of y is differentiable in the condition and matches the samples'
    g = grid.clone().requires_grad_(True)
    e = model.expectation(g, lambda y: y[:, 0] ** 2, 4000)
    assert torch.allclose(e.detach(), (draws**2).mean(dim=1), atol=0.05)
    (grad,) = torch.autograd.grad(e.sum(), g)
    true_grad = 2 * true_mean * 2 * torch.cos(2 * grid[:, 0]) + 2 * true_std * 0.6 * grid[:, 0]  # d(m^2 + s^2)/dc
    assert float(torch.nn.functional.cosine_similarity(grad[:, 0], true_grad, dim=0)) > 0.9


def test_the_generative_surrogate_captures_two_modes():
    gen = torch.Generator().manual_seed(1)
    c = torch.rand(4000, 1, generator=gen) * 2 - 1
    branch = torch.rand(4000, 1, generator=gen) < 0.5
    y = torch.where(branch, 2 + c, -2 - c) + 0.1 * torch.randn(4000, 1, generator=gen)
    model = GenerativeSurrogate(1, 1, components=4, hidden=[32, 32], lr=3e-3, seed=0)
    model.fit(c, y, epochs=60)
    draws = model.sample(torch.zeros(1, 1), 4000)[0, :, 0]
    assert 0.4 < float((draws > 0).float().mean()) < 0.6  # both branches, equally often
    assert float((draws.abs() - 2).abs().median()) < 0.15  # around +-2, not at their mean 0


def test_lgso_gradient_points_down_the_expected_objective_and_is_logged(tmp_path):
    from hil.querylog import QueryLog
    from hil.space import UnitCubeView

    problem = parse_blackbox({"type": "rosenbrock", "seed": 0}).build()
    log_path = tmp_path / "q.h5"
    with QueryLog.create(log_path, input_dim=10, output_shape=(1,), run_id="r") as log:
        problem.attach_log(log)
        box = UnitCubeView(problem).connect()
        est = LGSOEstimator(LGSOConfig(samples=400, epsilon=0.02, epochs=60, gradient_samples=256)).bind(box)
        assert est.probes_per_point == 400
        u = box.space.to_unit(torch.full((1, 10), 2.0))
        g = est.objective_gradient(u, lambda y: y.reshape(y.shape[0], -1).mean(dim=1), iteration=0,
                                   start=torch.tensor([0]))
    psi = torch.full((1, 10), 2.0, requires_grad=True)
    (true,) = torch.autograd.grad(problem.expected_objective(psi).sum(), psi)
    true_u = true * 10  # d/du = d/dpsi * range
    assert float(torch.nn.functional.cosine_similarity(g, true_u.float(), dim=1)) > 0.8
    data = read_log(log_path)
    assert len(data) == 400 and set(data.purpose_labels()) == {"local_sample"} and set(data.iteration) == {0}
    assert bool((abs(data.x - 2.0) <= 0.2 + 1e-5).all())  # inside the box of half-width eps = 0.2 (0.02 of 10)


@pytest.mark.parametrize("key, value, message", [
    ("epsilon", 0.0, "must be > 0 and <= 0.5, got 0.0"), ("epsilon", 0.6, "must be > 0 and <= 0.5"),
    ("epsilon", math.inf, "expected a finite number, got inf"), ("epsilon", math.nan, "expected a finite number"),
    ("repeats", 0, "must be >= 1"), ("epochs", 0, "must be >= 1"), ("samples", -1, "must be >= 0"),
    ("lr", math.nan, "expected a finite number, got nan"), ("lr", math.inf, "expected a finite number, got inf"),
    ("lr", -1e-3, "must be > 0"), ("gradient_samples", 0, "must be >= 1"), ("components", 0, "must be >= 1"),
    ("batch_size", 0, "must be >= 1"), ("seed", 2**64, "must be >= 0 and <= "),
    ("model", "gan", "unknown generative model 'gan'; allowed: mdn"), ("device", "tpu", "must be one of auto"),
])
def test_bad_lgso_settings_name_the_key(key, value, message):
    from hil.config import parse_typed

    with pytest.raises(ConfigError) as info:
        parse_typed(ESTIMATORS, {"type": "lgso", key: value}, "estimator")
    assert str(info.value).startswith(f"estimator.{key}: ") and message in str(info.value), str(info.value)
    with pytest.raises(ConfigError, match=r"^estimator\.hidden\[0\]: must be >= 1"):
        parse_typed(ESTIMATORS, {"type": "lgso", "hidden": [0]}, "estimator")


def test_lgso_without_history_needs_two_draws_per_box():
    from hil.config import parse_typed

    with pytest.raises(ConfigError, match=r"^estimator\.samples: with history: false .* samples \* repeats >= 2"):
        parse_typed(ESTIMATORS, {"type": "lgso", "samples": 1, "history": False}, "estimator")
    parse_typed(ESTIMATORS, {"type": "lgso", "samples": 1, "repeats": 2, "history": False}, "estimator")
    # samples: 0 takes the input dimension, known only when bound: a 1-input box is refused there
    from hil.errors import EstimatorError

    one_input = parse_blackbox({"type": "cnon_twin", "dim": 1, "steps": 4}).build()
    with pytest.raises(EstimatorError, match="history: false .* samples \\* repeats >= 2"):
        LGSOEstimator(LGSOConfig(history=False)).bind(one_input)


def test_lgso_without_history_fits_each_start_on_its_own_draws():
    """Regression: with history: false every start's box was filtered to the *last* start's draws, so with two
    or more starts the first ones found fewer than 2 points and failed."""
    from hil.space import UnitCubeView

    problem = parse_blackbox({"type": "rosenbrock", "seed": 0}).build()
    box = UnitCubeView(problem).connect()
    est = LGSOEstimator(LGSOConfig(samples=12, epochs=2, history=False, gradient_samples=8, hidden=[8])).bind(box)
    u = torch.tensor([[0.1] * 10, [0.9] * 10])  # boxes far apart: no draw of one lies in the other's
    g = est.objective_gradient(u, lambda y: y.reshape(y.shape[0], -1).mean(dim=1), iteration=0,
                               start=torch.tensor([0, 1]))
    assert g.shape == (2, 10) and bool(torch.isfinite(g).all())
    assert est.last_box_points == 12  # the last start's model saw exactly its own draws
