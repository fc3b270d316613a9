"""Black-box optimisation with gradient estimators (paper 000, Algorithm 1 and A1).

Online (:func:`optimize_online`), per iteration ``t`` for a population of ``P`` starting points:

1. query the BlackBox at the current points ``x_t`` (``purpose="step"``);
2. query ``M`` local samples ``x ~ N(x_t, (sigma * range)^2)`` per point, clipped to the
   bounds (``purpose="local_sample"``); rank selection keeps, per start, the best measured
   of ``x_t`` and its samples;
3. every measured pair goes to the estimator (a surrogate trains ``E`` epochs on all data);
4. the loss is computed on the *measured* output of the selected points, ``dloss/dy`` is
   exact, ``dloss/dx = J^T dloss/dy`` comes from the estimator; Adam takes one step;
5. stop at ``iterations``, at the query budget, or when the best objective improved by
   less than ``tol`` over ``patience`` iterations.

Adam works in unit-box coordinates (``lr`` and ``sigma`` are fractions of each
input's range; ``adam_beta1`` and ``adam_beta2`` are its moment decay rates).
Offline (:func:`optimize_offline`): fit the surrogate once on a dataset (Latin
hypercube samples or a log), then optimise with BlackBox forward and
frozen-surrogate backward.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from hil.blackbox import BlackBox
from hil.config import require
from hil.errors import ConfigError, EstimatorError, LogError
from hil.estimators import GradientEstimator, SurrogateEstimator
from hil.objectives import Objective
from hil.sampling import latin_hypercube, to_bounds


@dataclass
class OptimizerConfig:
    mode: Literal["online", "offline", "random"] = "online"
    n_starts: int = 16
    iterations: int = 200
    lr: float = 0.02
    #: Adam's moment decay rates for the step on x. Momentum (beta1) keeps successive steps parallel, so a
    #: surrogate trained on the path sees its Jacobian along few directions (README, CNON benchmark)
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    local_samples: int = 0
    sigma: float = 0.05
    max_queries: int | None = None
    tol: float = 0.0
    patience: int = 25
    init: Literal["uniform", "lhs"] = "uniform"
    init_samples: int = 0
    seed: int = 0
    # offline only
    dataset: Literal["lhs", "log"] = "lhs"
    dataset_size: int = 1000
    dataset_log: str | None = None
    fit_epochs: int = 200

    def __post_init__(self) -> None:
        require(self.n_starts >= 1, f"optimizer.n_starts must be >= 1, got {self.n_starts}")
        require(self.iterations >= 1, f"optimizer.iterations must be >= 1, got {self.iterations}")
        require(self.lr > 0, f"optimizer.lr must be > 0, got {self.lr}")
        require(0 <= self.adam_beta1 < 1, f"optimizer.adam_beta1 must be in [0, 1), got {self.adam_beta1}")
        require(0 <= self.adam_beta2 < 1, f"optimizer.adam_beta2 must be in [0, 1), got {self.adam_beta2}")
        require(self.local_samples >= 0, f"optimizer.local_samples must be >= 0, got {self.local_samples}")
        require(self.sigma > 0, f"optimizer.sigma must be > 0, got {self.sigma}")
        require(self.max_queries is None or self.max_queries >= 1, "optimizer.max_queries must be >= 1 or null")
        require(self.tol >= 0, "optimizer.tol must be >= 0")
        require(self.patience >= 1, "optimizer.patience must be >= 1")
        require(self.init_samples >= 0, "optimizer.init_samples must be >= 0")
        require(self.dataset_size >= 2, "optimizer.dataset_size must be >= 2")
        if self.mode == "offline" and self.dataset == "log" and not self.dataset_log:
            raise ConfigError("optimizer.dataset_log: give the path of a query log when dataset: log")


@dataclass
class Trace:
    """Per-iteration record of a run. Arrays are ``iterations x n_starts`` unless noted."""

    sense: str
    objective: list[np.ndarray] = field(default_factory=list)  # objective of the selected point
    best: list[np.ndarray] = field(default_factory=list)  # best measured so far, per start
    queries: list[int] = field(default_factory=list)  # cumulative BlackBox queries (all starts, all purposes)
    wall_s: list[float] = field(default_factory=list)  # cumulative wall time of the loop
    busy_s: list[float] = field(default_factory=list)  # cumulative time inside the BlackBox
    stopped: str = ""
    x_best: torch.Tensor | None = None  # n_starts x d_in
    y_best: torch.Tensor | None = None

    @property
    def iterations(self) -> int:
        return len(self.objective)

    def best_array(self) -> np.ndarray:
        return np.stack(self.best) if self.best else np.empty((0, 0))


def select_best(
    x: torch.Tensor, y: torch.Tensor, obj: torch.Tensor, start: torch.Tensor, n_starts: int, sense: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rank selection: per start index, the row with the best objective (the first on ties).

    ``x``: ``n x d``, ``y``: ``n x ...``, ``obj``/``start``: ``n``. Returns ``n_starts`` rows of each.
    """
    score = obj if sense == "min" else -obj
    score = torch.where(torch.isfinite(score), score, torch.full_like(score, float("inf")))
    chosen = torch.empty(n_starts, dtype=torch.long)
    for s in range(n_starts):
        rows = (start == s).nonzero().flatten()
        if rows.numel() == 0:
            raise EstimatorError(f"no measurement for start {s}")
        chosen[s] = rows[torch.argmin(score[rows])]
    return x[chosen], y[chosen], obj[chosen]


@dataclass
class Observation:
    """Measurements of one iteration supplied from a log instead of the BlackBox (resume)."""

    x: torch.Tensor
    y: torch.Tensor
    start: torch.Tensor


class OnlineOptimizer:
    """The online loop. ``run`` may be called once; ``progress(t, trace)`` is called after each iteration."""

    def __init__(self, blackbox: BlackBox, objective: Objective, estimator: GradientEstimator,
                 config: OptimizerConfig) -> None:
        self.bb = blackbox
        self.objective = objective
        self.estimator = estimator if getattr(estimator, "blackbox", None) is blackbox else estimator.bind(blackbox)
        self.cfg = config
        spec = blackbox.spec
        self.lower, self.upper = spec.lower, spec.upper
        self.span = self.upper - self.lower
        self.gen = torch.Generator().manual_seed(config.seed)
        p, d = config.n_starts, spec.input_dim
        u0 = latin_hypercube(p, d, self.gen) if config.init == "lhs" else torch.rand(p, d, generator=self.gen)
        self.u = u0.clone().requires_grad_(True)
        self.adam = torch.optim.Adam([self.u], lr=config.lr, betas=(config.adam_beta1, config.adam_beta2))
        self.trace = Trace(sense=objective.sense)
        self.start_ids = torch.arange(p)
        self._t0_wall = 0.0
        self._busy0 = 0.0
        self._queries_offset = 0
        self._q0 = blackbox.stats.queries  # queries counted from here (an offline dataset counts too)

    # -- pieces ----------------------------------------------------------------------
    def _queries(self) -> int:
        return self._queries_offset + self.bb.stats.queries - self._q0

    def _per_iteration_queries(self) -> int:
        return self.cfg.n_starts * (1 + self.cfg.local_samples + self.estimator.probes_per_point)

    def initial_samples(self) -> None:
        n = self.cfg.init_samples
        if n == 0:
            return
        x = to_bounds(latin_hypercube(n, self.bb.spec.input_dim, self.gen), self.lower, self.upper)
        y = self.bb.query(x, purpose="initial", iteration=-1)
        self.estimator.observe(x, y.to(torch.float32))

    def measure(self, t: int) -> Observation:
        """Steps 1-2: query the current points and their local samples."""
        x = to_bounds(self.u.detach().clamp(0, 1), self.lower, self.upper)
        y = self.bb.query(x, purpose="step", iteration=t, start=self.start_ids).to(torch.float32)
        obs = Observation(x, y, self.start_ids)
        return self._add_local_samples(obs, x, t) if self.cfg.local_samples > 0 else obs

    def _add_local_samples(self, obs: Observation, centres: torch.Tensor, t: int) -> Observation:
        """Query ``M`` samples around each of the ``P x d`` centres and append them to ``obs``."""
        p, m, d = self.cfg.n_starts, self.cfg.local_samples, self.bb.spec.input_dim
        noise = torch.randn(p, m, d, generator=self.gen) * (self.cfg.sigma * self.span)
        xl = torch.maximum(torch.minimum(centres.unsqueeze(1) + noise, self.upper), self.lower).reshape(p * m, d)
        sl = self.start_ids.repeat_interleave(m)
        yl = self.bb.query(xl, purpose="local_sample", iteration=t, start=sl).to(torch.float32)
        return Observation(torch.cat([obs.x, xl]), torch.cat([obs.y, yl]), torch.cat([obs.start, sl]))

    def replay(self, x: np.ndarray, y: np.ndarray, iteration: np.ndarray, start: np.ndarray,
               purpose: np.ndarray) -> tuple[int, Observation]:
        """Feed a killed run's queries back (columns of its log; ``purpose`` as names).

        Every measured pair goes to the estimator and the history to the trace. Returns
        the iteration to continue from and its measurements, which were answered before
        the kill and are not queried again (local samples missing from it are). Adam's
        moments are not in the log and restart; a surrogate is re-fitted on all the data.
        """
        p = self.cfg.n_starts
        usable = torch.from_numpy(np.isin(purpose, ("initial", "step", "local_sample")))
        it = torch.from_numpy(np.asarray(iteration, dtype=np.int64))
        st = torch.from_numpy(np.asarray(start, dtype=np.int64))
        xt, yt = torch.from_numpy(np.asarray(x)), torch.from_numpy(np.asarray(y)).to(torch.float32)
        steps = torch.from_numpy(np.asarray(purpose) == "step")
        complete = [int(t) for t in torch.unique(it[steps]) if int((steps & (it == t)).sum()) == p]
        if not complete:
            raise LogError(f"no iteration has a measurement of all {p} starting points; start afresh")
        last = max(complete)
        before = usable & (it < last)
        if bool(before.any()):
            self.estimator.observe(xt[before], yt[before])
        for t in range(last):
            rows = usable & (it == t) & (st >= 0)
            if bool(rows.any()):
                obj = self.objective(yt[rows]).detach()
                sel = select_best(xt[rows], yt[rows], obj, st[rows], p, self.objective.sense)
                self._queries_offset = int((it <= t).sum())
                self._record(sel[2], sel[0], sel[1])
        if isinstance(self.estimator, SurrogateEstimator) and len(self.estimator.surrogate) > 0:
            self.estimator.fit_now(self.estimator.config.epochs * min(last, 50))  # catch up on lost training
        self._queries_offset = len(it)
        self._q0 = self.bb.stats.queries  # what this session queries from here on counts on top
        self.gen.manual_seed(self.cfg.seed + 1000 + last)
        rows = usable & (it == last) & (st >= 0)
        obs = Observation(xt[rows], yt[rows], st[rows])
        has_local = bool((torch.from_numpy(np.asarray(purpose) == "local_sample") & (it == last)).any())
        if self.cfg.local_samples > 0 and not has_local:  # killed between the step batch and its samples
            step_rows = rows & steps
            centres = xt[step_rows][torch.argsort(st[step_rows])]
            obs = self._add_local_samples(obs, centres, last)
        return last, obs

    def step(self, t: int, obs: Observation) -> None:
        """Steps 3-4 (and the bookkeeping): observe, select, estimate the gradient, take an Adam step."""
        self.estimator.observe(obs.x, obs.y)
        obj = self.objective(obs.y).detach()
        x_sel, y_sel, obj_sel = select_best(obs.x, obs.y, obj, obs.start, self.cfg.n_starts, self.objective.sense)
        y_leaf = y_sel.clone().requires_grad_(True)
        loss = self.objective.loss(y_leaf).sum()
        (grad_y,) = torch.autograd.grad(loss, y_leaf)
        # a start with no valid measurement this iteration (e.g. every design invalid) has no gradient: it stays
        measured = torch.isfinite(obj_sel).reshape(-1, *([1] * (grad_y.ndim - 1)))
        grad_y = torch.where(measured, torch.nan_to_num(grad_y, nan=0.0, posinf=0.0, neginf=0.0), 0.0)
        grad_x = self.estimator.vjp(x_sel, y_sel, grad_y, iteration=t, start=self.start_ids)
        self._record(obj_sel, x_sel, y_sel)  # after the VJP, so this iteration's probes are counted
        bad = ~torch.isfinite(grad_x).all(dim=1)
        if bool(bad.any()):
            raise EstimatorError(
                f"iteration {t}: the gradient estimator {type(self.estimator).__name__} returned a non-finite "
                f"gradient for starting point(s) {bad.nonzero().flatten().tolist()}; no step was taken and every "
                f"answered query is logged. A surrogate that diverged trains with a lower estimator.lr"
            )
        with torch.no_grad():
            self.u.copy_((x_sel - self.lower) / self.span)
        self.adam.zero_grad(set_to_none=True)
        self.u.grad = (grad_x * self.span).to(self.u.dtype)
        self.adam.step()
        with torch.no_grad():
            self.u.clamp_(0, 1)

    def _record(self, obj_sel: torch.Tensor, x_sel: torch.Tensor, y_sel: torch.Tensor) -> None:
        tr = self.trace
        obj_np = obj_sel.numpy().astype(np.float64)
        if tr.best:
            prev = tr.best[-1]
            better = obj_np < prev if tr.sense == "min" else obj_np > prev
            better &= np.isfinite(obj_np)
            best = np.where(better, obj_np, prev)
        else:
            better = np.isfinite(obj_np)
            best = obj_np.copy()
        if tr.x_best is None:
            tr.x_best, tr.y_best = x_sel.clone(), y_sel.clone()
        else:
            mask = torch.from_numpy(better)
            tr.x_best[mask], tr.y_best[mask] = x_sel[mask], y_sel[mask]
        tr.objective.append(obj_np)
        tr.best.append(best)
        tr.queries.append(self._queries())
        tr.wall_s.append(time.perf_counter() - self._t0_wall)
        tr.busy_s.append(self.bb.stats.busy_s - self._busy0)

    def _converged(self) -> bool:
        cfg, tr = self.cfg, self.trace
        if cfg.tol <= 0 or tr.iterations <= cfg.patience:
            return False
        now, then = np.nanmean(tr.best[-1]), np.nanmean(tr.best[-1 - cfg.patience])
        gain = then - now if tr.sense == "min" else now - then
        return bool(gain < cfg.tol)

    # -- the loop ----------------------------------------------------------------------
    def run(self, progress: Callable[[int, Trace], None] | None = None, *, first_iteration: int = 0,
            replay: Observation | None = None) -> Trace:
        """Run iterations ``first_iteration .. iterations-1``; ``replay`` supplies the first one's measurements."""
        self._t0_wall = time.perf_counter()
        self._busy0 = self.bb.stats.busy_s
        if first_iteration == 0 and replay is None:
            self.initial_samples()
        for t in range(first_iteration, self.cfg.iterations):
            budget = self.cfg.max_queries
            if replay is None and budget is not None and self._queries() + self._per_iteration_queries() > budget:
                self.trace.stopped = f"query budget {budget} reached"
                break
            obs = replay if replay is not None else self.measure(t)
            replay = None
            self.step(t, obs)
            if progress is not None:
                progress(t, self.trace)
            if self._converged():
                self.trace.stopped = f"converged: improvement < tol over {self.cfg.patience} iterations"
                break
        else:
            self.trace.stopped = self.trace.stopped or "iterations done"
        return self.trace


class RandomSearch(OnlineOptimizer):
    """The gradient-free reference: from the same starting points, each start then draws ``1 + local_samples``
    uniform random points per iteration and keeps its best (``optimizer.mode: random``; no estimator used)."""

    def __init__(self, blackbox: BlackBox, objective: Objective, estimator: GradientEstimator,
                 config: OptimizerConfig) -> None:
        # gradient-free: the configured estimator is neither bound nor fed (it may not even apply to this box)
        super().__init__(blackbox, objective, GradientEstimator(), config)

    def measure(self, t: int) -> Observation:
        if t > 0:
            with torch.no_grad():
                self.u.copy_(torch.rand(self.u.shape, generator=self.gen))
        return super().measure(t)

    def _add_local_samples(self, obs: Observation, centres: torch.Tensor, t: int) -> Observation:
        p, m, d = self.cfg.n_starts, self.cfg.local_samples, self.bb.spec.input_dim
        xl = to_bounds(torch.rand(p * m, d, generator=self.gen), self.lower, self.upper)
        sl = self.start_ids.repeat_interleave(m)
        yl = self.bb.query(xl, purpose="local_sample", iteration=t, start=sl).to(torch.float32)
        return Observation(torch.cat([obs.x, xl]), torch.cat([obs.y, yl]), torch.cat([obs.start, sl]))

    def step(self, t: int, obs: Observation) -> None:
        obj = self.objective(obs.y).detach()
        x_sel, y_sel, obj_sel = select_best(obs.x, obs.y, obj, obs.start, self.cfg.n_starts, self.objective.sense)
        self._record(obj_sel, x_sel, y_sel)


def make_optimizer(blackbox: BlackBox, objective: Objective, estimator: GradientEstimator,
                   config: OptimizerConfig) -> OnlineOptimizer:
    """The loop for ``config.mode`` ``online`` or ``random`` (offline runs go through :func:`optimize_offline`)."""
    cls = RandomSearch if config.mode == "random" else OnlineOptimizer
    return cls(blackbox, objective, estimator, config)


def optimize_online(blackbox: BlackBox, objective: Objective, estimator: GradientEstimator,
                    config: OptimizerConfig, progress: Callable[[int, Trace], None] | None = None) -> Trace:
    """Algorithm 1 from a fresh start; see :class:`OnlineOptimizer`."""
    return OnlineOptimizer(blackbox, objective, estimator, config).run(progress)


def optimize_offline(blackbox: BlackBox, objective: Objective, estimator: SurrogateEstimator,
                     config: OptimizerConfig, dataset: tuple[torch.Tensor, torch.Tensor] | None = None,
                     progress: Callable[[int, Trace], None] | None = None) -> Trace:
    """Algorithm A1: fit the surrogate once on ``dataset`` (``n x d_in``, ``n x ...``) - or on
    ``dataset_size`` Latin hypercube queries when ``None`` - then optimise with the surrogate frozen."""
    if not isinstance(estimator, SurrogateEstimator):
        raise ConfigError("offline mode needs estimator type 'surrogate'")
    opt = OnlineOptimizer(blackbox, objective, estimator, config)
    if dataset is None:
        u = latin_hypercube(config.dataset_size, blackbox.spec.input_dim, opt.gen)
        x = to_bounds(u, opt.lower, opt.upper)
        y = blackbox.query(x, purpose="initial", iteration=-1).to(torch.float32)
    else:
        x, y = dataset
    if x.shape[1] != blackbox.spec.input_dim or tuple(y.shape[1:]) != tuple(blackbox.spec.output_shape):
        raise ConfigError(
            f"offline dataset has inputs of {x.shape[1]} and outputs of shape {tuple(y.shape[1:])}; the blackbox "
            f"takes {blackbox.spec.input_dim} inputs and answers {tuple(blackbox.spec.output_shape)}"
        )
    estimator.observe(x, y)
    estimator.fit_now(config.fit_epochs)
    estimator.frozen = True
    return opt.run(progress)
