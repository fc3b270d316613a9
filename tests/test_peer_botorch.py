"""The BoTorch peer (``optimizer: {type: botorch}``) through the real loop: gp_logei finds a low-dimensional
optimum, TuRBO improves on its design in 20-D, budgets hold for any batch, runs are deterministic, numerical
failures fall back to Sobol points, bad configs name their key."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

pytest.importorskip("botorch")

import hil.optim.bayesopt  # noqa: E402,F401  (registers "botorch")
from hil.blackbox import BlackBox, BlackBoxSpec  # noqa: E402
from hil.errors import ConfigError, OptimizerError  # noqa: E402
from hil.objectives import Objective, TargetDistance  # noqa: E402
from hil.optim.loop import run_loop  # noqa: E402
from hil.optim.section import optimize, parse_optimizer  # noqa: E402
from hil.space import UnitCubeView  # noqa: E402


class TargetBox(BlackBox):
    """``batch x d`` in ``[-2, 2]^d`` -> the input itself (``batch x d``); every batch received is recorded."""

    def __init__(self, d: int) -> None:
        super().__init__(BlackBoxSpec("target_box", d, torch.full((d,), -2.0), torch.full((d,), 2.0), (d,)))
        self.received: list[torch.Tensor] = []

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        self.received.append(x.clone())
        return x.clone()


class NegDistance(Objective):
    """Minus the rms distance to ``target``: a maximisation objective (best 0)."""

    sense = "max"

    def __init__(self, target: torch.Tensor) -> None:
        self.inner = TargetDistance(target)

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        return -self.inner(y)


def _target(d: int, seed: int = 3) -> torch.Tensor:
    return (torch.rand(d, generator=torch.Generator().manual_seed(seed)) * 1.4 - 0.7).to(torch.float32)


def _run(d: int, objective: Objective | None = None, **optimizer):
    box = TargetBox(d)
    objective = objective or TargetDistance(_target(d))
    section = parse_optimizer({"type": "botorch", "iterations": 1000, "seed": 0, **optimizer})
    with box:
        trace = optimize(box, objective, section)
    return box, trace


def test_gp_logei_finds_the_optimum_in_2d():
    box, trace = _run(2, max_queries=20, method="gp_logei")
    design_best = trace.best_overall[0]  # round 0 is the Sobol design (2d + 1 = 5 points)
    assert trace.queries[0] == 5 and trace.queries[-1] == 20
    assert trace.best_overall[-1] < 0.06, trace.best_overall[-1]  # rms distance, in a box 4 wide
    assert trace.best_overall[-1] < 0.2 * design_best, (design_best, trace.best_overall[-1])


def test_gp_logei_maximises_when_the_objective_says_max():
    _, trace = _run(2, objective=NegDistance(_target(2)), max_queries=20, method="gp_logei")
    assert trace.best_overall[-1] > -0.1, trace.best_overall[-1]
    assert trace.best_overall[-1] > trace.best_overall[0] + 0.2, (trace.best_overall[0], trace.best_overall[-1])


def test_turbo_improves_clearly_over_its_design_in_20d():
    _, trace = _run(20, max_queries=130, method="turbo", batch=10, n_init=30)
    design_best, final = trace.best_overall[0], trace.best_overall[-1]
    assert trace.queries[0] == 30 and trace.queries[-1] == 130
    assert final < 0.75 * design_best, (design_best, final)


@pytest.mark.parametrize("optimizer, budget, sizes", [
    ({"method": "gp_logei", "batch": 3}, 13, [3, 3, 3, 3, 1]),  # n_init = min(2d + 1, budget // 4) = 3
    ({"method": "turbo", "batch": 4, "n_init": 5}, 23, [5, 4, 4, 4, 4, 2]),
    ({"method": "turbo", "batch": 4, "n_init": 10}, 7, [7]),  # the design itself is cut to the budget
])
def test_budget_holds_when_it_is_not_a_multiple_of_the_batch(optimizer, budget, sizes):
    box, trace = _run(2 if optimizer["method"] == "gp_logei" else 5, max_queries=budget, **optimizer)
    assert [len(x) for x in box.received] == sizes
    assert trace.queries[-1] == budget <= budget
    assert trace.queries == list(np.cumsum(sizes))


@pytest.mark.parametrize("d, optimizer", [
    (2, {"method": "gp_logei", "max_queries": 10, "batch": 2}),
    (5, {"method": "turbo", "max_queries": 22, "batch": 4, "n_init": 6}),
])
def test_same_seed_asks_the_same_points(d, optimizer):
    a, _ = _run(d, **optimizer)
    b, _ = _run(d, **optimizer)
    c, _ = _run(d, **{**optimizer, "max_queries": optimizer["n_init"] if "n_init" in optimizer else 2, "seed": 1})
    assert [len(x) for x in a.received] == [len(x) for x in b.received]
    assert torch.equal(torch.cat(a.received), torch.cat(b.received))  # bit for bit, not just within 1e-4
    assert not torch.allclose(a.received[0], c.received[0])  # another seed, another Sobol design


def test_auto_picks_gp_logei_in_low_and_turbo_in_high_dimension():
    for d, method in ((3, "gp_logei"), (21, "turbo")):
        view = UnitCubeView(TargetBox(d))
        section = parse_optimizer({"type": "botorch", "max_queries": 9600})
        opt = section.build(box=view, objective=TargetDistance(_target(d)))
        assert opt.method == method
    assert opt.batch == 64 and opt.n_init == 42  # turbo: ~150 rounds of a 9,600 budget; the tutorial's 2 d


class FlatWithHoles(Objective):
    """1 everywhere, NaN (an invalid measurement) where the first output is above 0: nothing ever improves."""

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        return torch.where(y[:, 0] > 0, torch.tensor(float("nan")), torch.tensor(1.0))


# a flat landscape and a collapsed trust region: the GP fit and the candidates' covariance are degenerate
@pytest.mark.filterwarnings("ignore::botorch.exceptions.warnings.OptimizationWarning")
@pytest.mark.filterwarnings("ignore::linear_operator.utils.warnings.NumericalWarning")
def test_turbo_restarts_from_a_new_design_when_the_trust_region_collapses():
    box = TargetBox(2)
    objective = FlatWithHoles()
    # batch 4 in 2-D: failure tolerance 1, so every round halves the length; 0.8 / 2**7 < 0.5**7 restarts
    section = parse_optimizer({"type": "botorch", "method": "turbo", "max_queries": 44, "batch": 4, "n_init": 4,
                               "fit_maxiter": 20})
    with box:
        view = UnitCubeView(box)
        opt = section.build(box=view, objective=objective)
        trace = run_loop(view, objective, opt, section.loop)
    assert trace.queries[-1] == 44
    summary = opt.state_summary()
    assert summary["restarts"] == 1 and summary["observed"] == 44
    # the second design is a fresh Sobol draw, not the first one again
    assert not torch.allclose(box.received[0], box.received[8])
    assert len(box.received) == 11 and summary["best_loss"] == 1.0


def test_a_failed_gp_fit_falls_back_to_sobol_points(monkeypatch):
    import botorch.fit
    from botorch.exceptions.errors import ModelFittingError

    def failing_fit(*args, **kwargs):
        raise ModelFittingError("All attempts to fit the model have failed.")

    monkeypatch.setattr(botorch.fit, "fit_gpytorch_mll", failing_fit)
    box = TargetBox(4)
    objective = TargetDistance(_target(4))
    section = parse_optimizer({"type": "botorch", "method": "turbo", "max_queries": 16, "batch": 4, "n_init": 8})
    with box:
        view = UnitCubeView(box)
        opt = section.build(box=view, objective=objective)
        trace = run_loop(view, objective, opt, section.loop)
    assert trace.queries[-1] == 16
    summary = opt.state_summary()
    assert summary["fallbacks"] == 2 and "ModelFittingError" in summary["last_fallback"]
    assert "Sobol" in summary["last_fallback"]


@pytest.mark.parametrize("key, value, says", [
    ("batch", 0, "must be >= 1, got 0"), ("n_init", 1, "must be >= 2, got 1"), ("num_restarts", 0, "must be >= 1"),
    ("raw_samples", 2, r"must be >= num_restarts \(10\), got 2"), ("n_candidates", 0, "must be >= 1"),
    ("max_train_points", 1, "must be >= 2, got 1"), ("fit_maxiter", 0, "must be >= 1"),
    ("method", "qei", "'qei' is not allowed"), ("noise", "loud", "'loud' is not allowed"),
    ("warm_start", "yes", "expected true/false"), ("batch", 2.5, "expected .*null, got 2.5"),
    ("n_init", float("inf"), "expected .*null, got inf"), ("raw_samples", -1, "must be >= 1, got -1"),
])
def test_bad_config_values_name_the_key(key, value, says):
    with pytest.raises(ConfigError, match=rf"^optimizer\.{key}: {says}"):
        parse_optimizer({"type": "botorch", key: value})


def test_every_number_of_the_config_is_ranged():
    from hil.config import undeclared_numbers
    from hil.optim.bayesopt import BayesOpt

    assert undeclared_numbers(BayesOpt.Config) == []
    options = parse_optimizer({"type": "botorch", "num_restarts": 4, "raw_samples": 4, "n_init": None}).options
    assert options.raw_samples == options.num_restarts == 4 and options.n_init is None


@pytest.mark.parametrize("seed", [-1, 2**64])
def test_a_seed_outside_the_generators_range_fails_on_load(seed):
    # regression: a seed past 64 bits failed with a traceback in the Sobol engine at build time; the loop's seed
    # range is numpy's (the other peers'), which takes no negative seed
    with pytest.raises(ConfigError, match=r"^optimizer\.seed: must be >= 0"):
        parse_optimizer({"type": "botorch", "seed": seed})


def test_unknown_key_is_rejected():
    says = r"^optimizer\.q: unknown key for type 'botorch'; allowed keys: .*raw_samples"
    with pytest.raises(ConfigError, match=says):
        parse_optimizer({"type": "botorch", "q": 4})


def test_missing_botorch_is_a_config_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "botorch", None)  # import botorch now raises ImportError
    section = parse_optimizer({"type": "botorch"})
    with pytest.raises(ConfigError, match=r"pip install 'hil\[peers\]'"):
        section.build(box=UnitCubeView(TargetBox(2)), objective=TargetDistance(_target(2)))


@pytest.mark.parametrize("optimizer", [{"method": "gp_logei", "batch": 2},
                                       {"method": "turbo", "batch": 4, "n_init": 6}])
def test_a_restored_checkpoint_asks_what_the_original_asks_next(optimizer):
    """checkpoint() mid-run, restore() into a fresh optimiser of the same config: both ask the same next batches
    (the GP's warm start, the trust region and the round counter travel with the state)."""
    d = 5
    objective = TargetDistance(_target(d))
    section = parse_optimizer({"type": "botorch", "max_queries": 40, "seed": 0, **optimizer})
    box = TargetBox(d)
    with box:
        view = UnitCubeView(box)
        original = section.build(box=view, objective=objective)
        for t in range(5):
            asked = original.ask(t, None)
            y = view.query(asked.u, purpose=asked.purpose[0])
            original.tell(asked, y, objective(y))
        state = original.checkpoint()
        restored = section.build(box=view, objective=objective)
        restored.restore(state)
        for t in range(5, 7):
            a, b = original.ask(t, None), restored.ask(t, None)
            assert torch.equal(a.u, b.u) and a.purpose == b.purpose
            y = view.query(a.u, purpose=a.purpose[0])
            original.tell(a, y, objective(y))
            restored.tell(b, y, objective(y))
    a, b = original.state_summary(), restored.state_summary()
    assert a["observed"] == b["observed"] > 0 and a["best_loss"] == b["best_loss"]
    other = parse_optimizer({"type": "botorch", "max_queries": 40, "seed": 1, **optimizer}).build(box=view,
                                                                                                 objective=objective)
    with pytest.raises(OptimizerError, match="cannot restore"):
        other.restore(state)
