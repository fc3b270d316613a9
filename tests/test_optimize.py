"""The gradient optimisers through the one loop: rank selection, online Algorithm 1 on the CNON twin, budgets,
stopping, offline A1, random search."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import small_run_config

from hil.blackbox import BlackBox, BlackBoxSpec
from hil.config import parse_typed
from hil.errors import ConfigError
from hil.estimators import GradientEstimator, SurrogateEstimator
from hil.optim.gradient import select_best
from hil.optim.loop import run_loop
from hil.optim.section import optimize, parse_optimizer
from hil.querylog import QueryLog, read_log
from hil.registry import BLACKBOXES, ESTIMATORS, OBJECTIVES
from hil.run import execute, load_run_config
from hil.space import UnitCubeView
from hil.surrogate import Surrogate

DIM = 6
SMALL_SURROGATE = {"type": "surrogate", "loss": "gradpie", "hidden": [32, 32], "epochs": 2}


def _twin(**options):
    return parse_typed(BLACKBOXES, {"type": "cnon_twin", "dim": DIM, "horizon": 2.0, "steps": 10, **options},
                       "blackbox").build()


def _objective(bb):
    return parse_typed(OBJECTIVES, {"type": "target_distance"}, "objective").build(output_shape=bb.spec.output_shape)


def _estimator(spec):
    return parse_typed(ESTIMATORS, dict(spec), "estimator").build()


def _section(**cfg):
    return parse_optimizer({"type": "gradient", **cfg})


def _run(estimator=None, progress=None, twin=None, **cfg):
    """A run on a fresh twin (``type: gradient`` unless ``cfg`` says otherwise); returns (trace, twin, estimator)."""
    bb = _twin(**(twin or {}))
    section = _section(**cfg)
    est = _estimator(estimator or {"type": "exact"}) if section.uses_gradient else None
    with bb:
        trace = optimize(bb, _objective(bb), section, est, progress)
    return trace, bb, est


class _Built:
    """An optimiser built on a box's unit-cube view, and its loop."""

    def __init__(self, box, objective, estimator, **cfg):
        self.view = UnitCubeView(box)
        self.objective = objective
        self.section = _section(**cfg)
        self.opt = self.section.build(box=self.view, objective=objective, estimator=estimator)
        self.trace = None

    def run(self, progress=None):
        self.view.connect()
        self.trace = run_loop(self.view, self.objective, self.opt, self.section.loop, progress)
        return self.trace


# -- rank selection ----------------------------------------------------------------------------


def _rows():
    x = torch.arange(7, dtype=torch.float32).unsqueeze(1).repeat(1, 2)  # row i holds the value i
    y = x * 10
    start = torch.tensor([0, 1, 0, 1, 0, 2, 1])
    return x, y, start


def test_select_best_min_and_max():
    x, y, start = _rows()
    obj = torch.tensor([3.0, 5.0, 1.0, 4.0, 2.0, 7.0, 6.0])
    xs, ys, os_ = select_best(x, y, obj, start, 3, "min")
    assert xs[:, 0].tolist() == [2, 3, 5] and ys[:, 0].tolist() == [20, 30, 50] and os_.tolist() == [1, 4, 7]
    xs, ys, os_ = select_best(x, y, obj, start, 3, "max")
    assert xs[:, 0].tolist() == [0, 6, 5] and os_.tolist() == [3, 6, 7]


def test_select_best_prefers_the_first_on_ties():
    x, y, start = _rows()
    obj = torch.tensor([1.0, 2.0, 1.0, 2.0, 1.0, 0.0, 2.0])
    for sense in ("min", "max"):  # every start's rows tie: the first row of each start wins
        xs, _, _ = select_best(x, y, obj, start, 3, sense)
        assert xs[:, 0].tolist() == [0, 1, 5]


def test_select_best_ignores_nan():
    x, y, start = _rows()
    nan = float("nan")
    obj = torch.tensor([nan, 5.0, 9.0, nan, nan, 7.0, 6.0])
    xs, _, os_ = select_best(x, y, obj, start, 3, "min")
    assert xs[:, 0].tolist() == [2, 1, 5] and os_.tolist() == [9, 5, 7]
    xs, _, os_ = select_best(x, y, obj, start, 3, "max")
    assert xs[:, 0].tolist() == [2, 6, 5] and os_.tolist() == [9, 6, 7]
    obj = torch.tensor([-np.inf, 5.0, 9.0, np.inf, nan, 7.0, 6.0])  # +-inf are not "best" either
    xs, _, _ = select_best(x, y, obj, start, 3, "min")
    assert xs[:, 0].tolist() == [2, 1, 5]


def test_select_best_missing_start_raises():
    x, y, start = _rows()
    with pytest.raises(Exception, match="no measurement for start 3"):
        select_best(x, y, torch.zeros(7), start, 4, "min")


# -- the online loop -----------------------------------------------------------------------------


def test_online_exact_lowers_the_objective_and_best_is_monotone():
    p, iterations, m = 4, 30, 1
    trace, bb, _ = _run(n_starts=p, iterations=iterations, local_samples=m, sigma=0.02)
    best, objective = trace.best_array(), np.stack(trace.objective)
    assert best.shape == (iterations, p) and trace.stopped == "iterations done"
    assert best[-1].mean() < 0.3 * best[0].mean()
    assert (np.diff(best, axis=0) <= 0).all()  # best-so-far never gets worse, per start
    np.testing.assert_allclose(best, np.minimum.accumulate(objective, axis=0))
    assert trace.queries == [p * (1 + m) * (t + 1) for t in range(iterations)]
    assert bb.stats.queries == trace.queries[-1]
    assert bb.stats.by_purpose == {"step": p * iterations, "local_sample": p * m * iterations}
    assert len(trace.wall_s) == len(trace.busy_s) == iterations and (np.diff(trace.wall_s) >= 0).all()
    # the best point is a measured one: re-measuring it (a deterministic twin) gives the recorded best
    with bb:
        again = _objective(bb)(bb.query(trace.x_best)).numpy()
    np.testing.assert_allclose(again, best[-1], rtol=1e-5)


def test_random_search_starts_where_the_others_start_then_samples_uniformly():
    p, iterations = 3, 12
    trace, _, _ = _run(type="random", n_starts=p, iterations=iterations)
    ref, _, _ = _run(n_starts=p, iterations=iterations)  # exact gradient from the same seed
    np.testing.assert_allclose(trace.objective[0], ref.objective[0])  # the same starting points
    assert trace.queries == [p * (t + 1) for t in range(iterations)]
    assert (np.diff(trace.best_array(), axis=0) <= 0).all()
    # afterwards each start jumps around the box instead of taking small steps
    jumps = np.abs(np.diff(np.stack(trace.objective), axis=0)).mean()
    steps = np.abs(np.diff(np.stack(ref.objective), axis=0)).mean()
    assert jumps > 3 * steps


def test_random_search_needs_no_gradient_of_the_box():
    from conftest import CountingBox

    box = CountingBox(3)  # no forward_differentiable: the exact estimator could not bind to it
    objective = OBJECTIVES.get("target_distance").from_config(
        OBJECTIVES.get("target_distance").Config(target=[0.0, 1.0]), output_shape=(2,))
    with box:
        trace = optimize(box, objective, parse_optimizer({"type": "random", "n_starts": 2, "iterations": 4,
                                                         "per_start": 2}))
    assert trace.iterations == 4 and sum(len(b) for b in box.received) == 2 * 2 * 4


def test_finite_difference_probes_2d_per_point_per_iteration():
    p, iterations, m = 2, 3, 1
    trace, bb, est = _run({"type": "finite_difference", "step": 1e-3}, n_starts=p, iterations=iterations,
                          local_samples=m)
    assert est.probes_per_point == 2 * DIM
    probes = 2 * DIM * p * iterations
    assert bb.stats.by_purpose == {"step": p * iterations, "local_sample": p * m * iterations, "probe": probes}
    assert trace.iterations == iterations


def test_trace_queries_include_the_probes_of_their_iteration():
    p, iterations, m = 2, 3, 1
    trace, bb, _ = _run({"type": "finite_difference", "step": 1e-3}, n_starts=p, iterations=iterations,
                        local_samples=m)
    assert trace.queries == [p * (1 + m + 2 * DIM) * (t + 1) for t in range(iterations)]
    assert trace.queries[-1] == bb.stats.queries


def test_query_budget_stops_the_loop():
    p, m, budget = 3, 1, 50  # 6 queries per iteration: 8 iterations fit (48), a 9th would not (54)
    trace, bb, _ = _run(n_starts=p, local_samples=m, iterations=100, max_queries=budget)
    assert bb.stats.queries <= budget
    assert trace.iterations == budget // (p * (1 + m)) == 8
    assert trace.queries[-1] == bb.stats.queries == 48
    assert trace.stopped == f"query budget {budget} reached"


def test_query_budget_counts_probes():
    p, budget = 2, 100  # finite differences: 2 * (1 + 12) = 26 queries per iteration -> 3 iterations
    trace, bb, _ = _run({"type": "finite_difference"}, n_starts=p, iterations=50, max_queries=budget)
    assert bb.stats.queries == 78 <= budget
    assert bb.stats.by_purpose == {"step": 6, "probe": 72}
    assert trace.iterations == 3 and trace.stopped == f"query budget {budget} reached"


def test_budget_smaller_than_one_iteration_makes_no_query():
    trace, bb, _ = _run(n_starts=3, iterations=10, max_queries=2)
    assert bb.stats.queries == 0 and trace.iterations == 0 and "query budget 2" in trace.stopped


def test_convergence_stops_early():
    tol, patience, iterations = 1e-3, 3, 300
    trace, _, _ = _run(n_starts=3, iterations=iterations, lr=0.05, tol=tol, patience=patience)
    n = trace.iterations
    assert patience < n < iterations
    assert trace.stopped == f"converged: improvement < tol over {patience} iterations"
    mean_best = trace.best_array().mean(axis=1)
    assert mean_best[-1 - patience] - mean_best[-1] < tol  # the stopping rule held at the end...
    if n - 1 > patience:  # ...and not one iteration earlier
        assert mean_best[-2 - patience] - mean_best[-2] >= tol


def test_no_convergence_stop_without_tol():
    trace, _, _ = _run(n_starts=2, iterations=12, lr=0.05, patience=1)  # tol = 0: never converged
    assert trace.iterations == 12 and trace.stopped == "iterations done"


def _starts(seed, init="uniform"):
    bb = _twin()
    built = _Built(bb, _objective(bb), _estimator({"type": "exact"}), n_starts=4, iterations=5, seed=seed, init=init)
    return built.opt.u.detach().clone()


@pytest.mark.parametrize("init", ["uniform", "lhs"])
def test_seed_determines_the_starting_points(init):
    a, b, c = _starts(0, init), _starts(0, init), _starts(1, init)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert ((a >= 0) & (a <= 1)).all()
    if init == "lhs":  # one point per stratum in each coordinate
        assert sorted((a * 4).floor()[:, 0].tolist()) == [0, 1, 2, 3]


def test_seed_determines_the_trace():
    cfg = dict(n_starts=3, iterations=8, local_samples=2, sigma=0.05)
    t1, bb1, _ = _run(seed=3, **cfg)
    t2, bb2, _ = _run(seed=3, **cfg)
    t3, _, _ = _run(seed=4, **cfg)
    np.testing.assert_array_equal(np.stack(t1.objective), np.stack(t2.objective))
    np.testing.assert_array_equal(t1.best_array(), t2.best_array())
    assert torch.equal(t1.x_best, t2.x_best) and t1.queries == t2.queries
    assert not np.allclose(np.stack(t1.objective)[0], np.stack(t3.objective)[0])


def test_local_samples_stay_in_bounds_and_are_logged_per_start(tmp_path):
    p, m, iterations, sigma = 3, 1, 6, 0.5  # a wide spread: many samples land on a bound and are clipped
    bb = _twin(out_of_bounds="reject")  # any out-of-bounds row would raise instead of being clipped
    log = QueryLog.create(tmp_path / "log.h5", input_dim=DIM, output_shape=(DIM,), run_id="t")
    with log, bb:
        bb.attach_log(log)
        optimize(bb, _objective(bb), _section(n_starts=p, iterations=iterations, local_samples=m, sigma=sigma),
                 _estimator(SMALL_SURROGATE))
    data = read_log(tmp_path / "log.h5")
    assert set(data.purpose_labels()) == {"step", "local_sample"}
    local, steps = data.mask("local_sample"), data.mask("step")
    assert int(local.sum()) == p * m * iterations
    lo, hi = bb.spec.lower.numpy(), bb.spec.upper.numpy()
    assert ((data.x >= lo) & (data.x <= hi)).all()
    assert ((data.x[local] == lo) | (data.x[local] == hi)).any()  # the clipping was exercised
    for t in range(iterations):
        for s in range(p):
            rows = local & (data.iteration == t) & (data.start == s)
            assert int(rows.sum()) == m
            centre = data.x[steps & (data.iteration == t) & (data.start == s)]
            assert centre.shape == (1, DIM)
            # a sample is drawn around its own start's point: within 5 sigma of the range, per coordinate
            assert (np.abs(data.x[rows] - centre) <= 5 * sigma * (hi - lo)).all()
            # and logged right after that point, in the same iteration
            assert np.flatnonzero(rows)[0] > np.flatnonzero(steps & (data.iteration == t))[-1]


def test_local_samples_narrow_spread_are_near_their_start(tmp_path):
    p, sigma = 4, 0.01
    bb = _twin()
    log = QueryLog.create(tmp_path / "log.h5", input_dim=DIM, output_shape=(DIM,), run_id="t")
    with log, bb:
        bb.attach_log(log)
        optimize(bb, _objective(bb), _section(n_starts=p, iterations=1, local_samples=1, sigma=sigma),
                 _estimator({"type": "exact"}))
    data = read_log(tmp_path / "log.h5")
    xs, xl = data.x[data.mask("step")], data.x[data.mask("local_sample")]
    dist = np.abs(xl[:, None, :] - xs[None, :, :]).max(axis=2)  # local sample x step point
    nearest = dist.argmin(axis=1)
    np.testing.assert_array_equal(data.start[data.mask("step")][nearest], data.start[data.mask("local_sample")])
    assert (dist.min(axis=1) <= 5 * sigma * 2).all()


# -- offline -----------------------------------------------------------------------------------


class _SurrogateSpy:
    """Captures every Surrogate built, so the state of the one used by a run can be watched."""

    def __init__(self, monkeypatch):
        self.instances: list[Surrogate] = []
        init = Surrogate.__init__

        def spy(surrogate, *args, **kwargs):
            init(surrogate, *args, **kwargs)
            self.instances.append(surrogate)

        monkeypatch.setattr(Surrogate, "__init__", spy)


def test_optimize_offline_fits_once_then_keeps_the_dataset():
    p, iterations, size, epochs = 3, 5, 64, 4
    bb = _twin()
    est = _estimator(SMALL_SURROGATE)
    states = []

    def progress(t, trace):
        states.append((len(est.surrogate), est.surrogate.steps_trained))

    with bb:
        trace = optimize(bb, _objective(bb), _section(type="offline", n_starts=p, iterations=iterations,
                                                      dataset_size=size, fit_epochs=epochs), est, progress)
    assert isinstance(est, SurrogateEstimator) and est.frozen
    assert bb.stats.by_purpose == {"initial": size, "step": p * iterations}
    assert [n for n, _ in states] == [size] * iterations  # no data added while the loop runs
    assert len({steps for _, steps in states}) == 1  # and no training either
    assert states[0][1] >= epochs
    assert trace.iterations == iterations


def test_optimize_offline_trains_exactly_fit_epochs():
    bb = _twin()
    est = _estimator(SMALL_SURROGATE)  # batch_size 256 > dataset_size: one optimiser step per epoch
    with bb:
        optimize(bb, _objective(bb), _section(type="offline", n_starts=2, iterations=3, dataset_size=64,
                                              fit_epochs=4), est)
    assert est.surrogate.steps_trained == 4


def test_optimize_offline_rejects_other_estimators():
    bb = _twin()
    with bb, pytest.raises(ConfigError, match="optimizer type 'offline' needs estimator type 'surrogate'"):
        optimize(bb, _objective(bb), _section(type="offline"), _estimator({"type": "exact"}))


def test_offline_via_execute_lhs_then_log_dataset(tmp_path, monkeypatch):
    p, iterations, size = 3, 4, 40
    spy = _SurrogateSpy(monkeypatch)
    sizes: list[int] = []
    trained: list[int] = []

    def progress(t, trace):
        sizes.append(len(spy.instances[-1]))
        trained.append(spy.instances[-1].steps_trained)

    data = small_run_config(tmp_path / "runs", type="offline", dataset="lhs", dataset_size=size, fit_epochs=3,
                            iterations=iterations)
    first = execute(load_run_config(data), log_path=tmp_path / "lhs.h5", progress=progress)
    assert sizes == [size] * iterations
    assert trained[0] >= 3 and len(set(trained)) == 1  # fitted before the loop, frozen during it
    log1 = read_log(first.log_path)
    assert int(log1.mask("initial").sum()) == size and int(log1.mask("step").sum()) == p * iterations
    assert len(log1) == size + p * iterations and (log1.iteration[log1.mask("initial")] == -1).all()
    assert first.report_path is not None and first.report_path.is_file()

    # dataset: log -> the earlier run's whole log is the dataset; nothing is queried to build one
    data = small_run_config(tmp_path / "runs", type="offline", dataset="log", dataset_log=str(first.log_path),
                            fit_epochs=3, iterations=iterations)
    sizes.clear()
    trained.clear()
    second = execute(load_run_config(data), log_path=tmp_path / "from_log.h5", progress=progress)
    assert sizes == [len(log1)] * iterations
    assert trained[0] >= 3 and len(set(trained)) == 1
    log2 = read_log(second.log_path)
    assert int(log2.mask("initial").sum()) == 0 and len(log2) == p * iterations
    surrogate = spy.instances[-1]
    # the surrogate learns in the unit cube of the box's parameter space: the logged (physical) inputs, mapped
    from hil.space import ParameterSpace

    unit = ParameterSpace(_twin().spec).to_unit(torch.from_numpy(log1.x))
    np.testing.assert_allclose(surrogate.x, surrogate.normalise(unit), atol=1e-6)


def test_offline_log_dataset_needs_a_path(tmp_path):
    data = small_run_config(tmp_path, type="offline", dataset="log")
    with pytest.raises(ConfigError, match="optimizer.dataset_log"):
        load_run_config(data)


def test_adam_betas_reach_the_step_on_x():
    bb = _twin()
    built = _Built(bb, _objective(bb), _estimator({"type": "exact"}), n_starts=2, iterations=2, adam_beta1=0.0,
                   adam_beta2=0.9)
    assert built.opt.adam.param_groups[0]["betas"] == (0.0, 0.9)
    # Adam's bias-corrected first step is lr * sign(g) whatever the betas; momentum shows from the second on
    xs = {}
    for beta1 in (0.0, 0.9):
        trace, _, _ = _run(n_starts=2, iterations=4, lr=0.05, adam_beta1=beta1)
        xs[beta1] = np.stack([o for o in trace.objective])
    np.testing.assert_allclose(xs[0.0][:2], xs[0.9][:2], rtol=1e-5)
    assert np.abs(xs[0.0][2:] - xs[0.9][2:]).max() > 1e-4


@pytest.mark.parametrize("key, value", [("adam_beta1", 1.0), ("adam_beta1", -0.1), ("adam_beta2", 1.0)])
def test_adam_betas_out_of_range_fail_on_load(tmp_path, key, value):
    data = small_run_config(tmp_path)
    data["optimizer"][key] = value
    with pytest.raises(ConfigError, match=rf"optimizer\.{key}: must be >= 0 and < 1, got {value}"):
        load_run_config(data)


class _HalfInvalidBox(BlackBox):
    """``batch x 2`` in [0, 1] -> ``batch x 2``; a row whose first input is below 0.5 is invalid (NaN), as an
    NGspice design that never converges."""

    def __init__(self) -> None:
        super().__init__(BlackBoxSpec("half_invalid", 2, torch.zeros(2), torch.ones(2), (2,)))
        self.received: list[torch.Tensor] = []

    def _query(self, x):
        self.received.append(x.clone())
        y = x * 2
        y[x[:, 0] < 0.5] = float("nan")
        return y


def test_a_start_without_a_valid_measurement_stays_put_and_the_rest_go_on():
    from hil.objectives import TargetDistance

    box = _HalfInvalidBox()
    objective = TargetDistance(torch.tensor([2.0, 2.0]))
    with box:
        built = _Built(box, objective, _estimator({"type": "surrogate", "loss": "mse", "hidden": [8]}),
                       n_starts=6, iterations=5, lr=0.05, seed=3)
        opt = built.opt
        u0 = opt.u.detach().clone()
        trace = built.run()
    invalid = u0[:, 0] < 0.5
    assert bool(invalid.any()) and bool((~invalid).any())  # seed 3 gives both kinds of start
    assert trace.iterations == 5
    assert all(torch.isfinite(x).all() for x in box.received)  # nothing non-finite reached the box
    torch.testing.assert_close(opt.u.detach()[invalid], u0[invalid])  # no gradient, no step
    assert bool((opt.u.detach()[~invalid] != u0[~invalid]).any(dim=1).all())


class _NaNEstimator(GradientEstimator):
    def vjp(self, x, y, grad_y, *, iteration=-1, start=None):
        g = torch.zeros_like(x)
        if iteration >= 2:
            g[1, 0] = float("nan")
        return g


def test_a_non_finite_gradient_stops_the_loop_before_it_reaches_the_blackbox():
    from conftest import CountingBox

    from hil.errors import EstimatorError
    from hil.objectives import TargetDistance

    box = CountingBox()
    with box:
        built = _Built(box, TargetDistance(torch.zeros(2)), _NaNEstimator(), n_starts=3, iterations=10)
        with pytest.raises(EstimatorError, match=r"iteration 2: .*_NaNEstimator returned a non-finite gradient "
                                                 r"for starting point\(s\) \[1\].*logged\.$"):
            built.run()  # no hint about a surrogate's learning rate: this estimator has none
    assert len(box.received) == 3  # iterations 0, 1, 2 were measured; no query after the bad gradient


class _DivergedSurrogate(SurrogateEstimator):
    def vjp(self, x, y, grad_y, *, iteration=-1, start=None):
        return torch.full_like(x, float("nan"))


def test_a_diverged_surrogate_is_told_to_train_with_a_lower_lr():
    from conftest import CountingBox

    from hil.errors import EstimatorError
    from hil.objectives import TargetDistance
    from hil.surrogate import SurrogateConfig

    with CountingBox() as box:
        built = _Built(box, TargetDistance(torch.zeros(2)), _DivergedSurrogate(SurrogateConfig(hidden=[4], steps=1)),
                       n_starts=2, iterations=3)
        with pytest.raises(EstimatorError, match=r"iteration 0: .*_DivergedSurrogate .* trains with a lower "
                                                 r"estimator.lr"):
            built.run()


# -- config validation: every number is ranged at its field, errors name the key -----------------------------


def _rejects(options, says):
    """``parse_optimizer(options)`` fails with a message matching ``says`` (a regex)."""
    with pytest.raises(ConfigError, match=says):
        parse_optimizer(options)


def test_every_optimizer_config_declares_the_range_of_every_number():
    from hil.config import undeclared_numbers
    from hil.optim.loop import LoopConfig
    from hil.registry import OPTIMIZERS

    assert undeclared_numbers(LoopConfig) == []
    for name in OPTIMIZERS.names():
        assert undeclared_numbers(OPTIMIZERS.get(name).Config) == [], name


@pytest.mark.parametrize("kind", ["gradient", "gradient_tr", "offline", "guided_es"])
@pytest.mark.parametrize("key", ["lr", "sigma"])
@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan"), "inf", "nan"])
def test_non_finite_learning_rates_and_sigmas_are_rejected(kind, key, value):
    # regression: .inf and NaN learning rates and sigmas used to be accepted
    _rejects({"type": kind, key: value}, rf"^optimizer\.{key}: expected a finite number, got")


@pytest.mark.parametrize("kind", ["gradient", "gradient_tr", "offline", "guided_es"])
@pytest.mark.parametrize("key, value", [("lr", 0), ("lr", -0.01), ("lr", 1.5), ("n_starts", 0),
                                        ("adam_beta2", -0.5), ("adam_beta1", 1.0)])
def test_gradient_family_ranges_name_the_key(kind, key, value):
    _rejects({"type": kind, key: value}, rf"^optimizer\.{key}: must be .*, got {value}")


def test_a_huge_learning_rate_is_rejected_before_it_overflows_adam():
    # regression: lr: 1e300 passed validation and Adam's float32 update raised "value cannot be converted"
    _rejects({"type": "gradient", "lr": 1e300}, r"^optimizer\.lr: must be > 0 and <= 1, got 1e\+300")
    _rejects({"type": "guided_es", "lr": 1e300}, r"^optimizer\.lr: must be > 0 and <= 1")
    assert parse_optimizer({"type": "gradient", "lr": 1.0, "sigma": 1.0}).options.lr == 1.0  # the whole range


@pytest.mark.parametrize("key, value, says", [
    ("local_samples", -1, ": must be >= 0"), ("init_samples", -2, ": must be >= 0"), ("sigma", 0, ": must be > 0"),
    ("sigma", 2.0, ": must be > 0 and <= 1"), ("x0", float("nan"), ": expected a finite number"),
    ("x0", [1.0, float("inf")], r"\[1\]: expected a finite number"), ("x0", [1.0, True], r"\[1\]: expected a number"),
])
def test_gradient_config_errors_name_the_key(key, value, says):
    _rejects({"type": "gradient", key: value}, rf"^optimizer\.{key}{says}")


def test_gradient_x0_is_one_number_or_a_list_of_numbers():
    assert parse_optimizer({"type": "gradient", "x0": 2}).options.x0 == 2.0
    assert parse_optimizer({"type": "gradient", "x0": [1, "2.5"]}).options.x0 == [1.0, 2.5]


@pytest.mark.parametrize("key, value, says", [
    ("iterations", 0, "must be >= 1, got 0"), ("max_queries", 0, "must be >= 1, got 0"),
    ("max_wall_s", 0, "must be > 0, got 0"), ("max_wall_s", float("nan"), "expected a finite number"),
    ("max_wall_s", float("inf"), "expected a finite number"), ("tol", -0.1, "must be >= 0"),
    ("tol", float("inf"), "expected a finite number"), ("patience", 0, "must be >= 1"),
    ("seed", -1, "must be >= 0"), ("seed", 2**32, "must be >= 0 and <= "), ("seed", 1.5, "expected an integer"),
])
def test_loop_keys_are_ranged_for_every_type(key, value, says):
    for kind in ("gradient", "random"):
        _rejects({"type": kind, key: value}, rf"^optimizer\.{key}: {says}")


def test_loop_limits_that_are_accepted():
    loop = parse_optimizer({"type": "random", "max_wall_s": 1.5, "max_queries": None, "seed": 2**32 - 1}).loop
    assert loop.max_wall_s == 1.5 and loop.max_queries is None and loop.seed == 2**32 - 1
    assert parse_optimizer({"type": "random", "max_wall_s": None}).loop.max_wall_s is None  # no wall-time limit


def test_unknown_key_names_the_key_and_the_type():
    _rejects({"type": "random", "lr": 0.1},
             r"^optimizer\.lr: unknown key for type 'random'; allowed keys: .*per_start")


@pytest.mark.parametrize("key, value, says", [
    ("sigma", 0.5, "must be >= 1e-06 and < 0.5, got 0.5"), ("alpha", 0, "must be > 0 and <= 1"),
    ("alpha", 1.5, "must be > 0 and <= 1"), ("beta", 0, "must be > 0"), ("beta", float("inf"), "expected a finite"),
    ("pairs", 0, "must be >= 1"), ("subspace", 0, "must be >= 1"),
])
def test_guided_es_config_errors_name_the_key(key, value, says):
    _rejects({"type": "guided_es", key: value}, rf"^optimizer\.{key}: {says}")


def test_guided_es_sigma_too_small_to_square_is_rejected():
    # regression: a sigma whose square underflows to 0.0 divided by zero in the ES gradient at the first tell
    _rejects({"type": "guided_es", "sigma": 1e-200}, r"^optimizer\.sigma: must be >= 1e-06")


@pytest.mark.parametrize("options, says", [
    ({"length_min": 0}, r"length_min: must be > 0 and <= 1"),
    ({"length_max": float("inf")}, r"length_max: expected a finite number"),
    ({"length_init": 1.5}, r"length_init: must be > 0 and <= 1"),
    ({"length_min": 0.05}, r"length_init: must be >= length_min \(0.05\), got 0.02"),
    ({"length_max": 0.01}, r"length_init: must be <= length_max \(0.01\), got 0.02"),
    ({"success_tolerance": 0}, r"success_tolerance: must be >= 1"),
    ({"failure_tolerance": -1}, r"failure_tolerance: must be >= 1"),
])
def test_trust_region_config_errors_name_the_key(options, says):
    _rejects({"type": "gradient_tr", **options}, rf"^optimizer\.{says}")


@pytest.mark.parametrize("options, says", [
    ({"dataset_size": 1}, r"dataset_size: must be >= 2, got 1"),
    ({"fit_epochs": -1}, r"fit_epochs: must be >= 0"),
    ({"dataset": "log"}, r"dataset_log: give the path of a query log"),
    ({"dataset": "log", "dataset_log": " "}, r"dataset_log: give the path of a query log"),
    ({"start": "top", "n_starts": 20, "dataset_size": 10}, r"n_starts: start: top .* <= dataset_size \(10\), got 20"),
])
def test_offline_config_errors_name_the_key(options, says):
    _rejects({"type": "offline", **options}, rf"^optimizer\.{says}")


def test_offline_top_starts_fit_in_a_log_dataset_or_a_large_enough_design():
    assert parse_optimizer({"type": "offline", "start": "top", "n_starts": 10, "dataset_size": 10}).options
    # the size of a log dataset is known only when it is read
    assert parse_optimizer({"type": "offline", "start": "top", "n_starts": 20, "dataset_size": 10,
                            "dataset": "log", "dataset_log": "x.h5"}).options


@pytest.mark.parametrize("key", ["n_starts", "per_start"])
def test_random_search_counts_are_positive(key):
    _rejects({"type": "random", key: 0}, rf"^optimizer\.{key}: must be >= 1, got 0")
    _rejects({"type": "random", key: 1.0}, rf"^optimizer\.{key}: expected an integer")


def test_loop_config_errors_name_the_path_the_user_wrote(tmp_path):
    data = small_run_config(tmp_path)
    data["optimizer"]["lr"] = float("nan")
    with pytest.raises(ConfigError, match=r"^optimizer\.lr: expected a finite number, got nan"):
        load_run_config(data)
