"""CMA-ES through the ``cma`` package's ask/tell interface (``optimizer: {type: cmaes}``).

Each of ``n_starts`` independent ``cma.CMAEvolutionStrategy`` instances asks its whole population in every
round (rows labelled with the instance's start index, purpose ``population``); the loop measures them and
``tell`` hands each instance its own population's losses. The settings follow cma's own documentation:

* ``bounds: [0, 1]`` (cma's ``BoundTransform``, the default boundary handler): candidates always lie in the
  unit cube the loop works in.
* ``sigma0 = 0.25``: "``sigma0`` should be about 1/4th of the search domain width" (``cma.fmin2``); the
  domain is ``[0, 1]``, so a quarter of it.
* ``x0: uniform``: a uniform point per start (the first one is the point :mod:`hil.optim.random_search` and
  the gradient optimiser start from with the same seed); each restart draws a new one, as ``cma.fmin2``
  recommends ("to restart from different points (recommended), pass ``x0`` as a callable"). ``centre``
  starts (and restarts) every instance at ``0.5``.
* ``popsize: null``: cma's default ``4 + 3 ln d`` (``CMAOptions['popsize']``).
* ``covariance: auto``: full covariance up to ``d = 100`` (:data:`AUTO_DIAGONAL_ABOVE`), diagonal
  (``CMA_diagonal: True``, sep-CMA: linear time and memory per sample) above: cma's documented domain of
  application is "search space dimension between, say, 5 and (a few) 100" (the package description), and
  full covariance learning needs on the order of ``d^2`` evaluations to pay off, more than a device budget
  allows beyond that.
* ``restarts: ipop``: when ``es.stop()`` fires, restart with the population times ``incpopsize = 2``, up to
  ``max_restarts = 9`` restarts, as ``cma.fmin2(..., restarts=9, incpopsize=2)`` does (its docs recommend
  ``restarts <= 9``); ``bipop`` alternates such large runs with small, local ones (random smaller population,
  ``sigma0 * 0.01**U``, at most half the large runs' evaluations), exactly as ``cma.fmin2(..., bipop=True)``;
  small runs do not count as restarts, as there. ``none``: a start that stops is finished.
* ``verbose: -9, verb_log: 0, verb_disp: 0``: no printing and no ``outcmaes/`` files.
* ``noise_handling: false``; ``true`` for a noisy objective: cma's UH-CMA ``NoiseHandler``, used as ``cma.fmin``'s
  ``noise_handler`` and the handler's own ask/tell recipe do (``maxevals=[1, 1, 30]``): each member is measured
  ``nh.evaluations`` times and ranked by the median; after each generation a second round re-measures
  ``2 + popsize / 20`` members (the first half, then the best of the rest), each at a point perturbed by
  ``epsilon`` (``es.ask(1, x, 1e-7)``); the rank changes between the two measurements say whether noise
  dominates, and if so sigma and the evaluations per member grow. The handler's random choice of how many to
  re-measure is drawn from the start's own generator (cma draws it from numpy's global one), so a resume replays
  it exactly.

Determinism: cma's ``seed`` option seeds numpy's *global* generator, so instead every instance samples
from its own ``numpy.random.Generator`` (cma's ``randn`` option), seeded from the run's seed, and ``seed`` is
set to NaN ("do nothing"). The same seed therefore asks for the same points in any process, whatever else
uses numpy's global generator, which a resume (replaying the log through ``tell``) relies on.

With a finite query budget, a round is all or nothing: if the full populations of the running starts do not
fit in what is left, ``ask`` returns ``None`` (a partial population would leave CMA-ES without a ranking).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from hil.blackbox import BlackBox
from hil.errors import ConfigError, OptimizerError
from hil.objectives import Objective
from hil.optim.base import Ask, Optimizer, given_start, make_ask, minimisation_values
from hil.optim.configs import MAX_POPSIZE_GROWTH, CMAESConfig  # noqa: F401  (re-exported)
from hil.registry import OPTIMIZERS

#: ``covariance: auto`` uses a diagonal covariance matrix (sep-CMA) when ``d`` exceeds this (see module doc)
AUTO_DIAGONAL_ABOVE = 100

#: BIPOP: small runs go on while their evaluations stay below this times the large runs' (cma: ``bipop=True``)
_BIPOP_RATIO = 1.0


def _import_cma() -> Any:
    try:
        import cma
    except ImportError as exc:
        raise ConfigError("optimizer type 'cmaes' needs the cma package: pip install 'hil[peers]'") from exc
    return cma


def _randn(gen: np.random.Generator) -> Callable[..., np.ndarray]:
    """cma's ``randn`` option: ``randn(lam, N)`` standard normals, drawn from ``gen`` only."""

    def randn(*shape: int) -> np.ndarray:
        return gen.standard_normal(shape)

    return randn


@dataclass
class _Start:
    """One start's current CMA-ES instance and its restart bookkeeping (``cma.fmin2``'s restart loop)."""

    es: Any
    gen: np.random.Generator
    popsize0: int = 0  # the first run's population (IPOP/BIPOP multiply it)
    maxiter0: float = math.inf  # the first run's iteration limit (BIPOP's large runs keep it)
    runs: int = 1  # runs started, the first included
    small_runs: int = 0  # BIPOP small runs started (they do not count as restarts)
    small_evals: int = 0  # evaluations spent in small runs (the first run counts as small, as in cma)
    large_evals: int = 0
    small: bool = True  # whether the current run is a small one
    finished: str = ""  # why this start is done; "" while it runs
    pending: list[np.ndarray] = field(default_factory=list)  # the population asked and not told yet
    nh: Any = None  # cma.NoiseHandler (noise_handling: true), one per run
    evals: int = 1  # measurements per member in the pending population
    fit: list[float] = field(default_factory=list)  # noise handling: the told generation's values
    reeval_idx: list[int] = field(default_factory=list)  # noise handling: the members being re-measured
    reeval_rows: list[np.ndarray] = field(default_factory=list)  # their perturbed points (evals each), to ask

    @property
    def restarts(self) -> int:
        return self.runs - 1


@OPTIMIZERS.register("cmaes")
class CMAES(Optimizer):
    """``n_starts`` independent (restarting) CMA-ES instances in the unit cube; see the module docstring."""

    Config = CMAESConfig

    def __init__(self, config: Config, *, box: BlackBox, objective: Objective | None = None, seed: int = 0) -> None:
        self.cma = _import_cma()
        self.cfg = config
        self.n_starts = config.n_starts
        self.d = box.spec.input_dim
        self.sense = getattr(objective, "sense", "min")
        self.diagonal = config.covariance == "diagonal" or (config.covariance == "auto"
                                                             and self.d > AUTO_DIAGONAL_ABOVE)
        self.stop_reason = ""
        gens = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(config.n_starts)]
        x0 = self._first_x0(seed) if isinstance(config.x0, str) else \
            given_start(config.x0, box).to(torch.float64).numpy()[None].repeat(config.n_starts, 0)
        self.starts: list[_Start] = []
        for i, gen in enumerate(gens):
            start = _Start(es=None, gen=gen)
            start.es = self._new_es(start, x0[i], config.sigma0, config.popsize)
            start.popsize0, start.maxiter0 = int(start.es.popsize), float(start.es.opts["maxiter"])
            self.starts.append(start)

    @classmethod
    def from_config(cls, config: Config, *, box: BlackBox, objective: Objective | None = None, estimator: Any = None,
                    seed: int = 0, budget: int | None = None) -> CMAES:
        _import_cma()
        return cls(config, box=box, objective=objective, seed=seed)

    # -- instances ---------------------------------------------------------------------------
    def _first_x0(self, seed: int) -> np.ndarray:
        """``n_starts x d`` first means: the random/gradient optimisers' uniform starts for this seed, or 0.5."""
        if self.cfg.x0 == "centre":
            return np.full((self.n_starts, self.d), 0.5)
        gen = torch.Generator().manual_seed(seed)
        return torch.rand(self.n_starts, self.d, generator=gen).to(torch.float64).numpy()

    def recommend(self) -> torch.Tensor:
        """Each start's current mean (``n_starts x d``): cma's recommendation for a noisy objective."""
        return torch.tensor(np.stack([np.clip(s.es.mean, 0, 1) for s in self.starts]), dtype=torch.float32)

    def _restart_x0(self, start: _Start) -> np.ndarray:
        return np.full(self.d, 0.5) if self.cfg.x0 == "centre" else start.gen.uniform(size=self.d)

    def _new_es(self, start: _Start, x0: np.ndarray, sigma0: float, popsize: int | None,
                maxiter: float | None = None) -> Any:
        if self.cfg.noise_handling:  # a new handler for every run, as cma.fmin makes for each restart
            start.nh = self.cma.NoiseHandler(self.d, maxevals=[1, 1, 30])
        opts: dict[str, Any] = {
            "bounds": [0.0, 1.0], "CMA_diagonal": self.diagonal,
            "seed": np.nan, "randn": _randn(start.gen),  # a private stream, never numpy's global one
            "verbose": -9, "verb_log": 0, "verb_disp": 0,
        }
        if popsize is not None:
            opts["popsize"] = int(popsize)
        if maxiter is not None:
            opts["maxiter"] = maxiter
        return self.cma.CMAEvolutionStrategy(np.asarray(x0, dtype=np.float64), sigma0, opts)

    def _after_stop(self, index: int) -> None:
        """``es.stop()`` fired for start ``index``: restart it (IPOP/BIPOP) or mark it finished."""
        cfg, start = self.cfg, self.starts[index]
        why = ", ".join(f"{k}={v}" for k, v in dict(start.es.stop()).items())
        evals = int(start.es.countevals)
        if start.small:
            start.small_evals += evals
        else:
            start.large_evals += evals
        if cfg.restarts == "none" or start.runs - start.small_runs > cfg.max_restarts:
            limit = "" if cfg.restarts == "none" else f" after {start.restarts} restarts"
            start.finished = f"start {index} stopped ({why}){limit}"
            return
        sigma, popsize, maxiter = self._next_run(start)
        start.es = self._new_es(start, self._restart_x0(start), sigma, popsize, maxiter)
        start.runs += 1

    def _next_run(self, start: _Start) -> tuple[float, int, float | None]:
        """``(sigma0, popsize, maxiter)`` of the next run, as ``cma.fmin2``'s restart loop picks them."""
        cfg = self.cfg
        if cfg.restarts == "bipop" and start.small_evals < _BIPOP_RATIO * max(1, start.large_evals):
            start.small, start.small_runs = True, start.small_runs + 1
            grow = cfg.incpopsize ** (start.runs - start.small_runs)
            sigma_factor = 0.01 ** start.gen.uniform()
            popsize = max(2, int(start.popsize0 * grow ** (start.gen.uniform() ** 2)))
            maxiter = max(1.0, min(start.maxiter0, 0.5 * start.large_evals / popsize))
            return cfg.sigma0 * sigma_factor, popsize, maxiter
        start.small = False
        popsize = int(round(start.popsize0 * cfg.incpopsize ** (start.runs - start.small_runs)))
        return cfg.sigma0, popsize, (start.maxiter0 if cfg.restarts == "bipop" else None)

    # -- ask / tell --------------------------------------------------------------------------
    def ask(self, iteration: int, max_queries: int | None) -> Ask | None:
        """Every running start's full population (``sum popsize x d`` in ``[0, 1]``), or ``None`` when every
        start has finished or the populations do not fit in ``max_queries``."""
        running = [i for i, s in enumerate(self.starts) if not s.finished]
        if not running:
            self.stop_reason = "CMA-ES finished: " + "; ".join(s.finished for s in self.starts)
            return None
        need = sum(self._rows_needed(self.starts[i]) for i in running)
        if max_queries is not None and need > max_queries:
            self.stop_reason = (f"query budget: the next CMA-ES round needs {need} queries (the full populations of "
                                f"{len(running)} start(s)) and only {max_queries} are left")
            return None
        rows, starts = [], []
        for i in running:
            start = self.starts[i]
            if start.reeval_rows:  # noise handling: the generation's re-measurements
                batch = start.reeval_rows
            else:
                start.pending = [np.asarray(x, dtype=np.float64) for x in start.es.ask()]
                start.evals = max(1, int(start.nh.evaluations)) if start.nh is not None else 1
                batch = [x for x in start.pending for _ in range(start.evals)]
            rows.extend(batch)
            starts.extend([i] * len(batch))
        return make_ask(torch.from_numpy(np.stack(rows)), "population", starts)

    @staticmethod
    def _rows_needed(start: _Start) -> int:
        if start.reeval_rows:
            return len(start.reeval_rows)
        evals = max(1, int(start.nh.evaluations)) if start.nh is not None else 1
        return int(start.es.popsize) * evals

    def tell(self, asked: Ask, y: torch.Tensor, value: torch.Tensor) -> None:
        """Rank each start's population by its loss (NaN ranked last) and update its instance."""
        for i, start in enumerate(self.starts):
            rows = (asked.start == i).nonzero().reshape(-1)
            if rows.numel() == 0:
                continue
            loss = minimisation_values(value[rows], self.sense).to(torch.float64).numpy()
            if start.reeval_rows:
                self._tell_reevaluations(i, start, loss)
                continue
            if not start.pending or rows.numel() != len(start.pending) * start.evals:
                raise OptimizerError(f"CMAES: start {i} asked for {len(start.pending) * start.evals} points and "
                                     f"was told {rows.numel()}")
            # each member's measurements are consecutive rows: rank by their median (cma's ask_and_eval)
            fit = np.median(loss.reshape(len(start.pending), start.evals), axis=1).tolist()
            start.es.tell(start.pending, fit)
            if start.nh is not None and self._prepare_reevaluations(start, fit):
                continue  # the stop test waits for the noise measurement, as in cma.fmin's loop
            start.pending = []
            if start.es.stop():
                self._after_stop(i)

    def _prepare_reevaluations(self, start: _Start, fit: list[float]) -> bool:
        """Noise handling: choose the members to re-measure (``NoiseHandler.indices`` with the start's own
        generator) and their perturbed points; ``False`` when there are none."""
        nh = start.nh
        lam = nh.lam_reeval if nh.lam_reeval else 2 + len(fit) / 20
        lam = int(lam) + int((lam % 1) > start.gen.random())
        n_first = lam - lam // 2
        rest = (np.argsort(np.asarray(fit)[n_first:]) + n_first)[: lam - n_first]
        idx = [*range(min(n_first, len(fit))), *(int(j) for j in rest)]
        if not idx or not nh.maxevals:
            return False
        evals = int(nh.evaluations)
        start.fit, start.reeval_idx, start.evals = list(fit), idx, evals
        start.reeval_rows = [np.asarray(start.es.ask(1, start.pending[j], nh.epsilon)[0], dtype=np.float64)
                             for j in idx for _ in range(evals)]
        return True

    def _tell_reevaluations(self, i: int, start: _Start, loss: np.ndarray) -> None:
        """Noise handling: the re-measured values against the first ones give the noise measure; sigma (and the
        evaluations per member) grow when noise dominates, then the stop test."""
        if loss.size != len(start.reeval_rows):
            raise OptimizerError(f"CMAES: start {i} asked for {len(start.reeval_rows)} re-measurements and was told "
                                 f"{loss.size}")
        nh = start.nh
        again = np.median(loss.reshape(len(start.reeval_idx), start.evals), axis=1)
        nh.fit, nh.fitre, nh.idx = list(start.fit), list(start.fit), np.asarray(start.reeval_idx)
        for j, v in zip(start.reeval_idx, again, strict=True):
            nh.fitre[j] = float(v)
        nh.evaluations_just_done = loss.size
        nh.update_measure()
        start.es.sigma *= nh.treat()
        start.es.countevals += loss.size
        start.pending, start.reeval_rows, start.reeval_idx, start.fit = [], [], [], []
        if start.es.stop():
            self._after_stop(i)

    def state_summary(self) -> dict[str, Any]:
        """Per start: the current step size (unit-cube widths), population size and restarts so far."""
        return {
            "sigma": [float(s.es.sigma) for s in self.starts],
            "popsize": [int(s.es.popsize) for s in self.starts],
            "restarts": [s.restarts for s in self.starts],
            "covariance": "diagonal" if self.diagonal else "full",
        }
