"""The L-GSO paper's stochastic problems: declared bounds, starts and optima, and the noise as stated."""

from __future__ import annotations

import math

import pytest
import torch
from hil.sim_backends.lgso_problems import (
    Rosenbrock,
    SubmanifoldHump,
    SubmanifoldRosenbrock,
    ThreeHump,
    _best_hump,
    sigmoid_window,
)

from hil.sections import parse_blackbox

PROBLEMS = [(ThreeHump, 2), (Rosenbrock, 10), (SubmanifoldRosenbrock, 100), (SubmanifoldHump, 40)]


@pytest.mark.parametrize("cls, dim", PROBLEMS)
def test_declared_box_start_and_optimum(cls, dim):
    problem = parse_blackbox({"type": cls.name, "seed": 3}).build()
    assert problem.spec.input_dim == dim and problem.spec.output_shape == (1,) and problem.spec.stochastic
    assert bool((problem.spec.lower == -5).all() and (problem.spec.upper == 5).all())
    start = problem.initial_point()
    assert start.shape == (dim,) and bool((start.abs() <= 5).all())
    gen = torch.Generator().manual_seed(0)
    others = (torch.rand(512, dim, generator=gen) * 2 - 1) * 5
    values = problem.expected_objective(torch.cat([others, start[None]]))
    assert float(values.min()) >= problem.optimum_value - 1e-4  # nothing beats the declared optimum
    best = problem.optimum()
    if best is not None:
        assert float(problem.expected_objective(best[None].double())) == pytest.approx(problem.optimum_value, abs=2e-4)
        near = best[None] + 0.05 * torch.randn(64, dim, generator=gen)
        assert float(problem.expected_objective(near).min()) >= problem.optimum_value - 1e-4


def test_the_submanifold_hump_reaches_the_three_hump_optimum():
    _, value = _best_hump(SubmanifoldHump(), starts=16, steps=200)
    assert value == pytest.approx(SubmanifoldHump.optimum_value, abs=2e-3)


def test_rosenbrock_noise_is_the_papers():
    problem = Rosenbrock(Rosenbrock.Config(seed=1))
    with problem:
        y = problem.query(torch.ones(40000, 10)).double().reshape(-1)
    # y = g(psi) + x + e, x ~ N(mu, 1), mu ~ U[-10, 10], e ~ N(0, 1): mean g = 0, variance 100/3 + 2
    assert abs(float(y.mean())) < 0.1
    assert float(y.std()) == pytest.approx(math.sqrt(100 / 3 + 2), rel=0.02)
    psi = torch.randn(3, 10, dtype=torch.float64).requires_grad_(True)
    problem.forward_differentiable(psi).sum().backward()  # the exact gradient of E[R] = g
    assert torch.isfinite(psi.grad).all()


def test_hump_draws_match_their_expectation_and_are_seeded():
    problem = ThreeHump(ThreeHump.Config(seed=2))
    psi = torch.tensor([[0.7, 1.3]])
    with problem:
        y = problem.query(psi.repeat(40000, 1))
    r = sigmoid_window(y.double().reshape(-1))
    assert float(r.mean()) == pytest.approx(float(problem.expected_objective(psi)), abs=0.01)
    again = ThreeHump(ThreeHump.Config(seed=2))
    with again:
        assert torch.equal(again.query(psi.repeat(40000, 1)), y)


def test_the_submanifold_rosenbrock_ignores_the_90_directions_off_its_manifold():
    problem = SubmanifoldRosenbrock()
    q = problem.q
    psi = torch.randn(4, 100, dtype=torch.float64)
    off = torch.randn(4, 100, dtype=torch.float64)
    off = off - (off @ q) @ q.T  # orthogonal to the 10 directions the problem sees
    assert torch.allclose(problem.expected_objective(psi), problem.expected_objective(psi + off))


@pytest.mark.parametrize("cls, dim", PROBLEMS)
def test_bad_numbers_fail_on_parse_naming_the_key(cls, dim):
    from hil.config import undeclared_numbers
    from hil.errors import ConfigError

    assert undeclared_numbers(cls.Config) == []
    for options, message in [({"bound": float("inf")}, r"^blackbox.bound: expected a finite number, got inf"),
                             ({"bound": float("nan")}, r"^blackbox.bound: expected a finite number, got nan"),
                             ({"bound": 0.0}, r"^blackbox.bound: must be >= 1e-06 and <= (1000000|1e\+06), got 0.0"),
                             ({"bound": 1e-300}, r"^blackbox.bound: must be >= 1e-06"),  # float32: an empty box
                             ({"bound": 1e300}, r"^blackbox.bound: must be >= 1e-06 and <= (1000000|1e\+06)"),
                             ({"seed": -1}, r"^blackbox.seed: must be >= 0"),
                             ({"seed": 2**64}, r"^blackbox.seed: must be >= 0 and <= ")]:
        with pytest.raises(ConfigError, match=message):
            parse_blackbox({"type": cls.name, **options})


def test_the_largest_bound_still_gives_finite_answers():
    problem = parse_blackbox({"type": "three_hump", "bound": 1e6}).build()
    with problem:
        y = problem.query(torch.tensor([[1e6, -1e6], [-1e6, 1e6]]))
    assert torch.isfinite(y).all()
