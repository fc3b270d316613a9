"""The peer optimisers: CMA-ES (``cma``) and nevergrad (NGOpt) through the real ask/tell loop."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from hil.blackbox import BlackBox, BlackBoxSpec
from hil.errors import ConfigError
from hil.objectives import TargetDistance
from hil.optim.loop import run_loop
from hil.optim.section import optimize, parse_optimizer
from hil.space import UnitCubeView

SHIFT = (0.3, -0.2, 0.5)


class ShiftedSphere(BlackBox):
    """``y = x - shift`` on ``[-1, 1]^d``: the rms distance to 0 is minimal (0) at ``x = shift``."""

    def __init__(self, d: int = 3, flat: bool = False) -> None:
        super().__init__(BlackBoxSpec("sphere", d, torch.full((d,), -1.0), torch.ones(d), (d,)))
        self.shift = torch.tensor([SHIFT[i % len(SHIFT)] for i in range(d)])
        self.flat = flat
        self.received: list[torch.Tensor] = []

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        self.received.append(x.clone())
        return torch.zeros_like(x) if self.flat else x - self.shift


def run(options: dict, d: int = 3, flat: bool = False):
    """``(trace, optimiser, inputs sent)`` of one run on a fresh box."""
    section = parse_optimizer(options)
    with ShiftedSphere(d, flat) as box:
        view = UnitCubeView(box)
        objective = TargetDistance(torch.zeros(d))
        opt = section.build(box=view, objective=objective)
        trace = run_loop(view, objective, opt, section.loop)
        return trace, opt, torch.cat(box.received)


def resume_replays_everything(options: dict, tmp_path, rounds: tuple[int, int] = (4, 8), d: int = 3) -> None:
    """A run killed after ``rounds[0]`` rounds, resumed to ``rounds[1]`` by replaying its log through the same
    optimiser (as ``hil run --resume`` does): every logged query is asked for again, identically (ReplayBox
    checks each one), then the run goes on live."""
    from hil.optim.replay import ReplayBox
    from hil.querylog import QueryLog, read_log

    path = tmp_path / "run.h5"
    first, again = (parse_optimizer({**options, "iterations": n}) for n in rounds)
    objective = TargetDistance(torch.zeros(d))
    with QueryLog.create(path, input_dim=d, output_shape=(d,), run_id="a") as log, ShiftedSphere(d) as box:
        box.attach_log(log)
        view = UnitCubeView(box)
        run_loop(view, objective, first.build(box=view, objective=objective), first.loop)
    old = read_log(path)
    with QueryLog.open_append(path, run_id="b") as log, ShiftedSphere(d) as box:
        box.attach_log(log)
        replay = ReplayBox(box, old, path)
        view = UnitCubeView(replay)
        trace = run_loop(view, objective, again.build(box=view, objective=objective), again.loop)
    assert replay.replayed == old.x.shape[0] > 0
    assert trace.iterations == rounds[1] and len(box.received) > 0  # went on live after the replay


# -- CMA-ES ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cma_registered():
    pytest.importorskip("cma")
    import hil.optim.cmaes  # noqa: F401  (registers "cmaes")


def test_cmaes_finds_the_optimum_within_budget(cma_registered):
    with ShiftedSphere(3) as box:
        trace = optimize(box, TargetDistance(torch.zeros(3)),
                         parse_optimizer({"type": "cmaes", "max_queries": 600, "iterations": 10000, "seed": 0}))
    assert trace.best_overall[-1] < 1e-3
    assert trace.queries[-1] <= 600
    assert torch.allclose(trace.x_best[0], box.shift, atol=1e-2)
    assert trace.stopped.startswith("query budget: the next CMA-ES round needs 7 queries")


def test_cmaes_rows_are_whole_populations_per_start(cma_registered):
    trace, opt, sent = run({"type": "cmaes", "n_starts": 3, "iterations": 4, "seed": 1})
    assert opt.n_starts == 3 and trace.best_array().shape == (4, 3)
    assert opt.state_summary()["popsize"] == [7, 7, 7]  # cma's 4 + 3 ln 3
    assert sent.shape == (4 * 21, 3) and trace.queries[-1] == 84
    assert np.isfinite(trace.best_array()).all()


def test_cmaes_noise_handling_re_measures_members_after_each_generation(cma_registered, tmp_path):
    """UH-CMA: a generation of 7 members (measured nh.evaluations = 1 time each), then a round re-measuring
    2 + 7/20 -> 2 (or 3) of them at points within 1e-7 x sigma of the members; deterministic given the seed, and a
    resume replays it exactly."""
    trace, opt, sent = run({"type": "cmaes", "noise_handling": True, "iterations": 6, "seed": 2})
    sizes = np.diff([0, *trace.queries])
    assert sizes[0::2].tolist() == [7, 7, 7] and all(2 <= k <= 3 for k in sizes[1::2])
    first = sent[:7].double()
    again = sent[7: 7 + sizes[1]].double()
    assert all(torch.cdist(r[None], first).min() < 1e-4 for r in again)  # re-measured members, barely perturbed
    _, _, sent_again = run({"type": "cmaes", "noise_handling": True, "iterations": 6, "seed": 2})
    assert torch.equal(sent, sent_again)
    resume_replays_everything({"type": "cmaes", "noise_handling": True, "seed": 2}, tmp_path, rounds=(3, 8))


def test_cmaes_same_seed_same_run_other_seed_other(cma_registered):
    options = {"type": "cmaes", "max_queries": 200, "iterations": 1000, "n_starts": 2}
    a, _, xa = run({**options, "seed": 3})
    np.random.seed(0)
    np.random.rand(17)  # numpy's global generator is not the optimiser's
    b, _, xb = run({**options, "seed": 3})
    c, _, xc = run({**options, "seed": 4})
    assert torch.equal(xa, xb) and a.best_overall == b.best_overall
    assert xa.shape != xc.shape or not torch.equal(xa, xc)


def test_cmaes_resume_replays_the_log(cma_registered, tmp_path):
    resume_replays_everything({"type": "cmaes", "n_starts": 2, "restarts": "bipop", "seed": 5}, tmp_path)


def test_cmaes_leaves_numpy_global_generator_alone(cma_registered):
    np.random.seed(5)
    expected = np.random.rand(3)
    np.random.seed(5)
    run({"type": "cmaes", "max_queries": 100, "iterations": 100, "restarts": "bipop"})
    assert np.array_equal(np.random.rand(3), expected)


def test_cmaes_first_mean_is_the_random_search_start(cma_registered):
    _, opt, _ = run({"type": "cmaes", "iterations": 1, "seed": 7, "n_starts": 2})
    _, _, sent = run({"type": "random", "iterations": 1, "seed": 7, "n_starts": 2})
    first_u = ((sent[:2] + 1) / 2).numpy()  # the box's inputs span [-1, 1]
    x0 = np.stack([np.asarray(s.es.inputargs["x0"]) for s in opt.starts])
    assert np.allclose(x0, first_u, atol=1e-6)


def test_cmaes_ipop_restarts_with_doubled_population_when_cma_stops(cma_registered):
    trace, opt, _ = run({"type": "cmaes", "max_queries": 2000, "iterations": 10000}, d=2, flat=True)
    summary = opt.state_summary()
    restarts = summary["restarts"][0]
    assert restarts >= 4  # flat fitness stops every run at once
    assert summary["popsize"][0] == 6 * 2**restarts  # cma's 4 + 3 ln 2 = 6, doubled at each restart
    assert trace.stopped.startswith("query budget")


def test_cmaes_restart_limits(cma_registered):
    trace, opt, _ = run({"type": "cmaes", "restarts": "none", "iterations": 10000}, d=2, flat=True)
    assert opt.state_summary()["restarts"] == [0]
    assert trace.stopped.startswith("CMA-ES finished: start 0 stopped (tol")  # tolfun: flat fitness
    trace, opt, sent = run({"type": "cmaes", "max_restarts": 2, "iterations": 10000}, d=2, flat=True)
    assert opt.state_summary()["restarts"] == [2] and opt.state_summary()["popsize"] == [24]
    assert trace.stopped.endswith("after 2 restarts")


def test_cmaes_bipop_alternates_small_and_large_runs(cma_registered):
    _, opt, _ = run({"type": "cmaes", "restarts": "bipop", "max_queries": 3000, "iterations": 10000}, d=2, flat=True)
    start = opt.starts[0]
    assert start.small_runs >= 1 and start.runs - start.small_runs >= 2  # both kinds ran
    assert start.large_evals > 0 and start.small_evals > 0


def test_cmaes_auto_covariance_is_diagonal_in_high_dimension(cma_registered):
    from hil.optim.cmaes import AUTO_DIAGONAL_ABOVE

    _, high, _ = run({"type": "cmaes", "iterations": 1}, d=AUTO_DIAGONAL_ABOVE + 1)
    _, low, _ = run({"type": "cmaes", "iterations": 1}, d=AUTO_DIAGONAL_ABOVE)
    _, forced, _ = run({"type": "cmaes", "iterations": 1, "covariance": "diagonal"}, d=3)
    assert high.state_summary()["covariance"] == "diagonal" and high.starts[0].es.opts["CMA_diagonal"] is True
    assert low.state_summary()["covariance"] == "full" and low.starts[0].es.opts["CMA_diagonal"] is False
    assert forced.starts[0].es.opts["CMA_diagonal"] is True


@pytest.mark.parametrize(("key", "value", "says"), [
    ("sigma0", 0, "must be > 0 and <= 1, got 0"), ("sigma0", 2.0, "must be > 0 and <= 1, got 2.0"),
    ("sigma0", float("inf"), "expected a finite number"), ("sigma0", float("nan"), "expected a finite number"),
    ("popsize", 1, r"must be >= 2 and <= 1e\+06, got 1"), ("popsize", 10**9, r"must be >= 2 and <= 1e\+06"),
    ("n_starts", 0, "must be >= 1, got 0"), ("max_restarts", -1, "must be >= 0, got -1"),
    ("incpopsize", 0.5, "must be >= 1, got 0.5"), ("incpopsize", float("inf"), "expected a finite number"),
    ("covariance", "sparse", "'sparse' is not allowed"), ("restarts", "lpop", "'lpop' is not allowed"),
    ("x0", "corner", "expected .*, got 'corner'"), ("x0", float("nan"), "expected a finite number"),
    ("x0", [0.1, float("-inf")], r"\[1\]: expected a finite number"),
])
def test_cmaes_bad_config_names_the_key(cma_registered, key, value, says):
    sep = "" if says.startswith("\\") else ": "
    with pytest.raises(ConfigError, match=rf"^optimizer\.{key}{sep}{says}"):
        parse_optimizer({"type": "cmaes", key: value})


def test_cmaes_every_number_is_ranged_and_x0_may_be_a_point(cma_registered):
    from hil.config import undeclared_numbers
    from hil.optim.cmaes import CMAES

    assert undeclared_numbers(CMAES.Config) == []
    assert parse_optimizer({"type": "cmaes", "x0": [0.1, "0.2", 1]}).options.x0 == [0.1, 0.2, 1.0]
    assert parse_optimizer({"type": "cmaes", "x0": "centre"}).options.x0 == "centre"


@pytest.mark.parametrize("options", [{"max_restarts": 20}, {"incpopsize": 1e300}, {"max_restarts": 10**400},
                                     {"restarts": "bipop", "incpopsize": 10, "max_restarts": 7}])
def test_cmaes_population_growth_that_would_overflow_fails_on_load(cma_registered, options):
    # regression: incpopsize ** restarts overflowed (OverflowError) or asked cma for a population it cannot allocate
    with pytest.raises(ConfigError, match=r"^optimizer\.max_restarts: the last restart's population would be "
                                          r"incpopsize \*\* max_restarts .* over the limit of 1e\+06"):
        parse_optimizer({"type": "cmaes", **options})


@pytest.mark.parametrize("options", [{"max_restarts": 19}, {"incpopsize": 10, "max_restarts": 6},
                                     {"incpopsize": 1.0, "max_restarts": 10**400},
                                     {"restarts": "none", "incpopsize": 1e300, "max_restarts": 100}])
def test_cmaes_population_growth_within_the_limit_is_accepted(cma_registered, options):
    assert parse_optimizer({"type": "cmaes", **options}).options.max_restarts == options["max_restarts"]


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_cmaes_and_nevergrad_seeds_outside_numpy_range_fail_on_load(cma_registered, ng_registered, seed):
    # regression: numpy's SeedSequence (cmaes) and RandomState (nevergrad) raised ValueError at build time
    for kind in ("cmaes", "nevergrad"):
        with pytest.raises(ConfigError, match=r"^optimizer\.seed: must be >= 0 and <= "):
            parse_optimizer({"type": kind, "seed": seed})


def test_cmaes_without_the_cma_package(cma_registered, monkeypatch):
    monkeypatch.setitem(sys.modules, "cma", None)  # import cma -> ImportError
    section = parse_optimizer({"type": "cmaes"})
    with ShiftedSphere(2) as box, pytest.raises(ConfigError, match=r"the cma package: pip install 'hil\[peers\]'"):
        section.build(box=UnitCubeView(box), objective=TargetDistance(torch.zeros(2)))


# -- nevergrad ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ng_registered():
    pytest.importorskip("nevergrad")
    import hil.optim.ngopt  # noqa: F401  (registers "nevergrad")


def test_ngopt_finds_the_optimum_within_budget(ng_registered):
    trace, opt, _ = run({"type": "nevergrad", "max_queries": 200, "iterations": 10000, "seed": 0})
    assert trace.best_overall[-1] < 2e-2
    assert trace.queries[-1] == 200 and opt.state_summary()["budget"] == 200
    assert trace.stopped.startswith("query budget 200 reached")


def test_ngopt_same_seed_same_run_other_seed_other(ng_registered):
    # NGOpt picks MetaModel(CmaFmin2) here: cma in a background thread, which nevergrad leaves unseeded
    options = {"type": "nevergrad", "max_queries": 200, "iterations": 1000}
    a, opt, xa = run({**options, "seed": 2})
    assert "CmaFmin2" in opt.state_summary()["optimizer"]
    np.random.seed(0)
    b, _, xb = run({**options, "seed": 2})
    c, _, xc = run({**options, "seed": 3})
    assert torch.equal(xa, xb) and a.best_overall == b.best_overall
    assert not torch.equal(xa, xc)


def test_ngopt_resume_replays_the_log(ng_registered, tmp_path):
    resume_replays_everything({"type": "nevergrad", "max_queries": 200, "seed": 5}, tmp_path, rounds=(60, 90))


def test_ngopt_batch_and_budget(ng_registered):
    trace, opt, sent = run({"type": "nevergrad", "batch": 4, "budget": 30, "iterations": 100, "seed": 1}, d=2)
    assert trace.queries == [4, 8, 12, 16, 20, 24, 28, 30]  # the last round is a partial one
    assert trace.stopped == "nevergrad's budget of 30 candidates is spent"
    assert sent.shape == (30, 2)


def test_ngopt_leaves_numpy_global_generator_and_no_thread_behind(ng_registered):
    import cma
    from nevergrad.optimization import recaster

    from hil.optim.ngopt import _Guard

    seen: list = []
    close = _Guard.close

    def recording_close(guard):  # the loop closes the optimiser when it stops: keep the threads it ends
        seen.extend(guard.threads)
        close(guard)

    thread_cls, fmin = recaster._MessagingThread, cma.fmin
    np.random.seed(5)
    expected = np.random.rand(3)
    np.random.seed(5)
    mp = pytest.MonkeyPatch()
    mp.setattr(_Guard, "close", recording_close)
    try:
        run({"type": "nevergrad", "max_queries": 60, "iterations": 100})  # Cobyla, in a thread
    finally:
        mp.undo()
    assert np.array_equal(np.random.rand(3), expected)
    assert recaster._MessagingThread is thread_cls and cma.fmin is fmin  # the guard's patches are undone
    assert seen and all(t.daemon for t in seen)  # cannot keep the interpreter from exiting
    for t in seen:
        t.join(5)
    assert not any(t.is_alive() for t in seen)  # the loop's close() ended them


def test_ngopt_nan_measurements_rank_last(ng_registered):
    from hil.optim.ngopt import NevergradOptimizer

    with ShiftedSphere(2) as box:
        opt = NevergradOptimizer(NevergradOptimizer.Config(optimizer="OnePlusOne"), box=UnitCubeView(box), seed=0)
        assert opt._losses(torch.tensor([float("nan")])).item() == 0.0 + 1.0  # nothing seen yet
        opt._losses(torch.tensor([0.5, 2.0]))
        assert opt._losses(torch.tensor([float("nan"), 1.0])).tolist() == [3.5, 1.0]


def test_ngopt_without_the_nevergrad_package(ng_registered, monkeypatch):
    monkeypatch.setitem(sys.modules, "nevergrad", None)
    section = parse_optimizer({"type": "nevergrad"})
    needs = r"the nevergrad package: pip install 'hil\[peers\]'"
    with ShiftedSphere(2) as box, pytest.raises(ConfigError, match=needs):
        section.build(box=UnitCubeView(box), objective=TargetDistance(torch.zeros(2)))


@pytest.mark.parametrize(("options", "says"), [
    ({"batch": 0}, "batch: must be >= 1, got 0"), ({"budget": 0}, "budget: must be >= 1, got 0"),
    ({"budget": 1e3}, "budget: expected an integer"), ({"batch": float("nan")}, "batch: expected an integer"),
    ({"optimizer": " "}, "optimizer: must name a nevergrad optimiser, e.g. NGOpt, got ' '"),
    ({"optimizer": 3}, "optimizer: expected a string"),
])
def test_ngopt_bad_config_names_the_key(ng_registered, options, says):
    with pytest.raises(ConfigError, match=rf"^optimizer\.{says}"):
        parse_optimizer({"type": "nevergrad", **options})


def test_ngopt_every_number_is_ranged(ng_registered):
    from hil.config import undeclared_numbers
    from hil.optim.ngopt import NevergradOptimizer

    assert undeclared_numbers(NevergradOptimizer.Config) == []


def test_ngopt_unknown_optimizer_name(ng_registered):
    section = parse_optimizer({"type": "nevergrad", "optimizer": "ngopt39"})
    with ShiftedSphere(2) as box, pytest.raises(ConfigError, match=r"optimizer\.optimizer: 'ngopt39' is not .*NGOpt39"):
        section.build(box=UnitCubeView(box), objective=TargetDistance(torch.zeros(2)))
