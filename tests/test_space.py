"""The declared parameter space: log-scale and integer inputs, the unit-cube view every optimiser searches,
and physical values at the device."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hil.testing.problems  # noqa: F401  (registers the test problems)
from hil.blackbox import BlackBoxSpec
from hil.objectives import TargetDistance
from hil.optim.section import optimize, parse_optimizer
from hil.space import ParameterSpace, UnitCubeView
from hil.testing.problems import MixedSpaceBox


def _space():
    return ParameterSpace(MixedSpaceBox().spec)


def test_log_inputs_are_log_uniform_and_integers_get_equal_shares():
    space = _space()
    u = torch.tensor([[0.0, 0.0, 0.0], [0.5, 0.26, 0.5], [1.0, 0.74, 1.0], [0.25, 0.999, 0.25]])
    x = space.to_physical(u)
    assert x[:, 0].tolist() == pytest.approx([1e-6, 1e-5, 1e-4, 10**-5.5], rel=1e-5)  # geometric steps
    assert x[:, 1].tolist() == [1.0, 2.0, 3.0, 4.0]  # [0, 1/4) -> 1, [1/4, 1/2) -> 2, ...
    assert x[:, 2].tolist() == pytest.approx([-1.0, 0.0, 1.0, -0.5])
    back = space.to_unit(x)
    assert back[:, 0].tolist() == pytest.approx(u[:, 0].tolist(), abs=1e-6)
    assert back[:, 1].tolist() == pytest.approx([0.125, 0.375, 0.625, 0.875])  # the centre of each share
    assert space.to_physical(back)[:, 1].tolist() == x[:, 1].tolist()


def test_physical_values_never_leave_the_bounds_under_float_rounding():
    spec = MixedSpaceBox().spec
    space = ParameterSpace(spec)
    u = torch.rand(20000, 3, generator=torch.Generator().manual_seed(0))
    u[:10] = 0.0
    u[10:20] = 1.0
    x = space.to_physical(u)
    assert bool((x >= spec.lower).all() and (x <= spec.upper).all())


def test_integer_inputs_pass_the_gradient_straight_through_and_log_inputs_by_the_chain_rule():
    space = _space()
    u = torch.tensor([[0.3, 0.6, 0.2]], requires_grad=True)
    space.to_physical(u).sum().backward()
    lo, hi = 1e-6, 1e-4
    expected0 = float(space.to_physical(u.detach())[0, 0]) * np.log(hi / lo)  # d/du lo (hi/lo)^u
    assert u.grad[0].tolist() == pytest.approx([expected0, 3.0, 2.0], rel=1e-4)


@pytest.mark.parametrize("spec_kw, says", [
    ({"lower": 0.0, "upper": 1.0, "scale": "log"}, "log scale, so its lower bound must be > 0"),
    ({"lower": 0.5, "upper": 3.0, "integer": True}, "integer input 0 needs a linear scale and whole-number bounds"),
    ({"lower": 1.0, "upper": 3.0, "scale": ("log",)}, "one entry per input"),
    ({"lower": 1.0, "upper": 3.0, "scale": "cubic"}, "scale must be 'linear' or 'log'"),
])
def test_bad_space_declarations_fail_naming_the_input(spec_kw, says):
    with pytest.raises(ValueError, match=says):
        BlackBoxSpec("box", 2, output_shape=(1,), **spec_kw)


@pytest.mark.parametrize("optimizer", [
    {"type": "random", "n_starts": 4, "per_start": 5},
    {"type": "gradient", "n_starts": 4, "local_samples": 2, "sigma": 0.2},
])
def test_every_optimiser_sends_physical_values_inside_the_bounds(optimizer):
    box = MixedSpaceBox()
    objective = TargetDistance(torch.tensor([3e-6, 3.0, 0.2]))
    section = parse_optimizer({**optimizer, "max_queries": 400, "iterations": 1000})
    estimator = None
    if section.uses_gradient:
        from hil.estimators import SurrogateEstimator
        from hil.surrogate import SurrogateConfig

        estimator = SurrogateEstimator(SurrogateConfig(loss="mse", hidden=[16], epochs=1))
    with box:
        trace = optimize(box, objective, section, estimator)
    x = torch.cat(box.received)
    spec = box.spec
    assert x.shape[0] == trace.queries[-1] <= 400
    assert bool((x >= spec.lower).all() and (x <= spec.upper).all())
    assert set(x[:, 1].tolist()) <= {1.0, 2.0, 3.0, 4.0}  # the device only ever sees whole numbers
    if optimizer["type"] == "random":  # uniform in the unit cube: log-uniform widths, each count a quarter
        assert float(x[:, 0].median()) == pytest.approx(1e-5, rel=0.3)
        counts = np.bincount(x[:, 1].long().numpy(), minlength=5)[1:]
        assert (np.abs(counts / counts.sum() - 0.25) < 0.07).all()
    assert trace.x_best is not None and bool((trace.x_best >= spec.lower).all())  # the trace is in physical units


def test_the_view_maps_queries_and_keeps_the_inner_log_purposes():
    box = MixedSpaceBox()
    view = UnitCubeView(box)
    with box:
        y = view.query(torch.tensor([[0.5, 0.9, 1.2]]), purpose="probe", iteration=3)  # 1.2 is clipped to the cube
    assert y[0].tolist() == pytest.approx([1e-5, 4.0, 1.0], rel=1e-5)
    assert box.stats.by_purpose == {"probe": 1} and view.stats.queries == 1


@pytest.mark.parametrize("optimizer", [{"type": "gradient", "n_starts": 2}, {"type": "cmaes", "n_starts": 2}])
def test_a_physical_starting_point_is_checked_finite_on_load_and_against_the_bounds_on_build(optimizer):
    from hil.errors import ConfigError

    if optimizer["type"] == "cmaes":
        pytest.importorskip("cma")
        import hil.optim.cmaes  # noqa: F401  (registers "cmaes")
    with pytest.raises(ConfigError, match=r"^optimizer\.x0\[2\]: expected a finite number, got nan"):
        parse_optimizer({**optimizer, "x0": [1e-5, 2, float("nan")]})
    box = MixedSpaceBox()
    objective = TargetDistance(torch.tensor([3e-6, 3.0, 0.2]))
    estimator = None
    if optimizer["type"] == "gradient":
        from hil.estimators import SurrogateEstimator
        from hil.surrogate import SurrogateConfig

        estimator = SurrogateEstimator(SurrogateConfig(loss="mse", hidden=[16], epochs=1))
    with box:
        view = UnitCubeView(box)
        inside = parse_optimizer({**optimizer, "x0": [1e-5, 2, 0.5]})
        inside.build(box=view, objective=objective, estimator=estimator)
        for x0, says in (([1e-5, 2, 1.5], r"x0\[2\] = 1.5 is outside input 2's bounds \[-1, 1\]"),
                         ([1e-5, 2], "x0: expected one number or a list of 3 numbers")):
            section = parse_optimizer({**optimizer, "x0": x0})  # the length and the bounds need the blackbox
            with pytest.raises(ConfigError, match=rf"^optimizer\.{says}"):
                section.build(box=view, objective=objective, estimator=estimator)
