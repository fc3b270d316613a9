"""Bayesian optimisation with BoTorch (``optimizer: {type: botorch}``), a peer hil measures itself against.

Two methods, both in the unit cube ``[0, 1]^d`` of the BlackBox's declared parameter space, both configured
as BoTorch's documentation and tutorials do (``method: auto`` picks ``gp_logei`` for ``d <= 20``, ``turbo``
above):

``gp_logei``: a global ``SingleTaskGP`` with BoTorch's default model (RBF kernel with the dimension-scaled
log-normal lengthscale prior and the log-normal noise prior of Hvarfner et al. 2024), a ``Standardize``
outcome transform, ``fit_gpytorch_mll``, and ``qLogExpectedImprovement`` (best observed value as
``best_f``) maximised with ``optimize_acqf`` (``num_restarts = 10``, ``raw_samples = 512``, the tutorials'
values) for ``batch`` candidates per round, after a scrambled Sobol design of ``n_init = 2 d + 1`` points.

``turbo``: TuRBO-1 as in BoTorch's tutorial "BO with TuRBO-1 and TS/qEI" (``tutorials/turbo_1``):
``TurboState`` with length 0.8, ``length_min = 0.5**7``, ``length_max = 1.6``, success tolerance 10,
failure tolerance ``ceil(max(4 / batch, d / batch))``; the tutorial's GP (``ScaleKernel(MaternKernel(nu=2.5,
ARD, lengthscale in [0.005, 4]))``, noise in ``[1e-8, 1e-3]``, always Cholesky); a trust region centred at
the best point of the current TuRBO instance with sides ``length * w`` (``w``: the lengthscales over their
geometric mean); Thompson sampling with ``MaxPosteriorSampling(replacement=False)`` over Sobol candidates in
the trust region of which each coordinate replaces the centre's with probability ``min(20 / d, 1)``. When the
length falls below ``length_min`` the instance restarts from a fresh Sobol design and, as in the tutorial,
discards the previous instance's points.

What is changed from the tutorials, and why (all of it deterministic, so resume-by-replay holds):

* Scale. The tutorial runs 20-D Ackley with batch 4, a few hundred points and every point in the GP. On
  the 100- to 3600-D problems hil benchmarks with ~10,000 queries on 2 CPU cores that does not fit, so:

  - ``max_train_points`` caps the GP's training set at the incumbent plus the most recent points of the
    current TuRBO instance (of the run, for ``gp_logei``). Recent points were sampled in the current trust
    region around the current centre, which is where Thompson sampling picks the next batch, and they
    include the recent failures that tell the GP where not to go; the best points only would bias the GP
    to a flat, overconfident "everything is good" and the oldest ones describe regions TuRBO has left.
    Exact GP cost grows as ``n^2 d`` per likelihood evaluation (measured at ``d = 144``: 37 ms at
    ``n = 300`` against 550 ms at ``n = 1000`` per L-BFGS iteration), so the default is 300 for ``turbo``
    (500 for ``gp_logei``, whose problems are at most 20-D).
  - ``n_candidates`` (the tutorial's ``min(5000, max(2000, 200 d))``) is capped at 2000 for ``d <= 1000``
    and 1000 above: Thompson sampling draws one joint sample over all candidates (a Cholesky of an
    ``n_candidates``-square matrix, and ``n_candidates^2 d`` for the kernel), measured 8.8 s at 5000 and
    1.0 s at 2000 candidates (``d = 144``), 2.1 s at 2000 and 0.9 s at 1000 (``d = 3600``).
  - ``batch`` defaults to ``max(4, min(100, ceil((budget - n_init) / 150)))`` for ``turbo`` (the
    tutorial's 4, raised so that a 9,600-query budget runs in ~150 rounds of 62-64 points; the TuRBO paper's
    high-dimensional benchmarks use batches of 50-100), and to ``min(4, ceil((budget - n_init) / 50))`` for
    ``gp_logei`` (q = 1, sequential, on small budgets, where each query counts most); 4 without a budget.
  - ``n_init`` (``2 d + 1`` for ``gp_logei``, the tutorial's ``2 d`` for ``turbo``) is capped at
    ``max_train_points`` (a GP never sees more) and at a quarter of the budget: ``2 d = 7200`` Sobol points at
    ``d = 3600`` would be 75 % of a 9,600-query run.
  - The GP's hyperparameters are warm-started from the previous round's fit (``warm_start``; Ax's
    ``BoTorchModel`` does the same by default, ``warm_start_refit=True``), and L-BFGS-B stops after
    ``fit_maxiter`` iterations (200 for ``d <= 20``, 50 up to ``d = 1000``, 25 above; a deterministic cap,
    unlike a wall-clock timeout): a cold fit took ~230 iterations (8 s) at ``d = 144`` with 300 points, and
    one L-BFGS-B iteration costs ~0.13 s at ``d = 3600``. A warm-started fit that fails is retried cold.
* ``noise: auto`` is ``learned`` for ``gp_logei`` (``SingleTaskGP``'s default likelihood and prior) and
  ``small`` for ``turbo`` (the TuRBO tutorial's noise in ``[1e-8, 1e-3]`` on the standardised scale, as it
  assumes a noise-free function); ``noise: learned`` gives TuRBO the default learned noise, for noisy
  hardware, ``noise: small`` gives ``gp_logei`` the tutorial's bound.
* Outcomes are standardised by the ``Standardize`` outcome transform rather than by hand (the same model);
  the tutorial's ``randint(0, d - 1)`` for a candidate with no perturbed coordinate is ``randint(0, d)``
  (every coordinate may be picked, and ``d = 1`` works); ``gp_logei`` also runs with exact Cholesky.
* Every random draw (Sobol scrambling, the perturbation masks, the QMC sampler of qLogEI, the raw samples
  of ``optimize_acqf``, the Thompson samples, a refit's restarts from the priors) happens inside
  ``torch.random.fork_rng`` seeded from ``seed`` and the round, never from the global stream.
* A GP fit or acquisition that fails numerically does not stop the run: that round asks Sobol points in
  the trust region (the whole cube for ``gp_logei``), and ``state_summary()`` counts and names it.

Measured on one core (``OMP_NUM_THREADS=1``, optimiser time only, the BlackBox's excluded): ``gp_logei``
at ``d = 10`` with ~300 points, batch 4: 1.0-1.3 s a round (under 1.8 s). On the op-amp (``hil bench
opamp``, ``d = 10``) once the GP holds its 500 points: 5-14 s of CPU a round, mostly 6-9 s (three runs sharing
2 cores), half of it in the GP fit and half in ``optimize_acqf`` at 1,200 designs, 83 % in ``optimize_acqf``
at 1,900 (py-spy); a 9,600-design run (2,400 rounds) took 7.2 hours of wall time with three runs sharing
2 cores (at most 4.8 hours of CPU), the simulator 15-35 s.
``turbo`` with the defaults on a 9,600-query budget: at ``d = 144``, 1.7 s a round near 1000 points and 222 s
for the whole run (148 rounds of 63); at ``d = 3600``, 3.7 s a round near 1000 points and 559 s for the whole
run (150 rounds of 62).
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from dataclasses import dataclass
from typing import Any

import torch

from hil.errors import ConfigError, OptimizerError
from hil.objectives import Objective
from hil.optim.base import Ask, Optimizer, make_ask, minimisation_values
from hil.optim.configs import AtLeastTwo, BayesOptConfig  # noqa: F401  (re-exported)
from hil.registry import OPTIMIZERS

#: ``method: auto`` uses ``gp_logei`` up to this dimension and ``turbo`` above
AUTO_TURBO_ABOVE = 20
#: TuRBO's number of rounds aimed at when the batch size is chosen from the budget
TURBO_TARGET_ROUNDS = 150
#: gp_logei's number of rounds aimed at when the batch size is chosen from the budget
LOGEI_TARGET_ROUNDS = 50


@dataclass
class TurboState:
    """The trust region of one TuRBO-1 instance, as in BoTorch's TuRBO-1 tutorial (values maximised)."""

    dim: int
    batch_size: int
    length: float = 0.8
    length_min: float = 0.5**7
    length_max: float = 1.6
    failure_counter: int = 0
    failure_tolerance: int = 0  # set in __post_init__
    success_counter: int = 0
    success_tolerance: int = 10  # the tutorial's; the TuRBO paper uses 3
    best_value: float = -math.inf
    restart_triggered: bool = False

    def __post_init__(self) -> None:
        self.failure_tolerance = math.ceil(max(4.0 / self.batch_size, float(self.dim) / self.batch_size))

    def update(self, y_next: torch.Tensor) -> None:
        """Fold one batch's (maximised, finite) values ``y_next`` (``n``) in: grow after ``success_tolerance``
        improving batches in a row, halve after ``failure_tolerance`` others, restart below ``length_min``."""
        best_next = float(y_next.max())
        if best_next > self.best_value + 1e-3 * math.fabs(self.best_value):
            self.success_counter += 1
            self.failure_counter = 0
        else:
            self.success_counter = 0
            self.failure_counter += 1
        if self.success_counter == self.success_tolerance:
            self.length = min(2.0 * self.length, self.length_max)
            self.success_counter = 0
        elif self.failure_counter == self.failure_tolerance:
            self.length /= 2.0
            self.failure_counter = 0
        self.best_value = max(self.best_value, best_next)
        if self.length < self.length_min:
            self.restart_triggered = True


def _numerical_errors() -> tuple[type[BaseException], ...]:
    """What a GP fit or an acquisition raises when the numbers go wrong (not programming errors)."""
    from botorch.exceptions.errors import ModelFittingError

    return ModelFittingError, RuntimeError, ValueError, ArithmeticError


@OPTIMIZERS.register("botorch")
class BayesOpt(Optimizer):
    """BoTorch Bayesian optimisation, ``gp_logei`` or TuRBO-1 (see the module docstring)."""

    Config = BayesOptConfig

    def __init__(self, config: Config, *, d: int, sense: str = "min", seed: int = 0,
                 budget: int | None = None) -> None:
        self.cfg = config
        self.d = d
        self.sense = sense
        self.seed = int(seed)
        self.method = config.method if config.method != "auto" else ("gp_logei" if d <= AUTO_TURBO_ABOVE
                                                                        else "turbo")
        turbo = self.method == "turbo"
        self.max_train = config.max_train_points or (300 if turbo else 500)
        if config.n_init is not None:
            n_init = config.n_init
        else:
            n_init = min(2 * d if turbo else 2 * d + 1, self.max_train)
            if budget is not None:
                n_init = min(n_init, budget // 4)
            n_init = max(n_init, 2)
        self.n_init = n_init
        if config.batch is not None:
            self.batch = config.batch
        elif budget is None:
            self.batch = 4  # the tutorials' batch size
        elif turbo:
            self.batch = max(4, min(100, math.ceil(max(budget - n_init, 1) / TURBO_TARGET_ROUNDS)))
        else:
            self.batch = max(1, min(4, math.ceil(max(budget - n_init, 1) / LOGEI_TARGET_ROUNDS)))
        tutorial = min(5000, max(2000, 200 * d))
        self.n_candidates = config.n_candidates or min(tutorial, 2000 if d <= 1000 else 1000)
        self.fit_maxiter = config.fit_maxiter or (200 if d <= AUTO_TURBO_ABOVE else 50 if d <= 1000 else 25)
        self.small_noise = config.noise == "small" or (config.noise == "auto" and turbo)
        # observations of the run, rows 0.._n-1 of growable buffers: the unit-cube points as asked and measured
        # (float32, ``n x d``: 9,600 x 3,600 is 138 MB) and their objective values (float64, NaN if invalid)
        self._x = torch.empty(0, d, dtype=torch.float32)
        self._value = torch.empty(0, dtype=torch.float64)
        self._n = 0
        self._inst_start = 0  # first row of the current TuRBO instance
        self._restarts = 0
        self._pending = self._sobol_design(0)  # Sobol points not yet asked
        self._state: TurboState | None = None
        self._warm: dict[str, torch.Tensor] | None = None
        self._round = 0
        self._last_weights: torch.Tensor | None = None
        self.fallbacks = 0
        self.last_fallback = ""
        self.last_fit_s = math.nan
        self.last_ask_s = math.nan
        self.last_n_train = 0
        self.stop_reason = ""

    @classmethod
    def from_config(cls, config: Config, *, box: Any, objective: Objective | None = None, estimator: Any = None,
                    seed: int = 0, budget: int | None = None) -> BayesOpt:
        try:
            import botorch  # noqa: F401
        except ImportError:
            raise ConfigError("optimizer type 'botorch' needs BoTorch: pip install 'hil[peers]'") from None
        sense = getattr(objective, "sense", "min")
        return cls(config, d=int(box.spec.input_dim), sense=sense, seed=seed, budget=budget)

    # -- ask / tell ------------------------------------------------------------------------------------------

    def ask(self, iteration: int, max_queries: int | None) -> Ask | None:
        """The rest of the Sobol design (``initial``), else ``batch`` (or what fits) acquired points
        (``population``); ``u`` is ``n x d`` float32 in ``[0, 1]``."""
        if max_queries is not None and max_queries < 1:
            return None
        t0 = time.perf_counter()
        self._round += 1
        if self._pending.shape[0] > 0:
            k = self._pending.shape[0] if max_queries is None else min(self._pending.shape[0], max_queries)
            u, self._pending = self._pending[:k], self._pending[k:]
            self.last_ask_s = time.perf_counter() - t0
            return make_ask(u.to(torch.float32), "initial", 0)
        q = self.batch if max_queries is None else min(self.batch, max_queries)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self._round_seed())
            try:
                u = self._propose(q)
            except _numerical_errors() as exc:
                self.fallbacks += 1
                where = "the trust region" if self.method == "turbo" else "the unit cube"
                self.last_fallback = (f"round {self._round}: {type(exc).__name__}: {str(exc)[:200]}; "
                                      f"asked {q} Sobol points in {where} instead")
                self._warm = None
                u = self._fallback(q)
        self.last_ask_s = time.perf_counter() - t0
        return make_ask(u.clamp(0, 1).to(torch.float32), "population", 0)

    def tell(self, asked: Ask, y: torch.Tensor, value: torch.Tensor) -> None:
        """Store the measured points and values; for TuRBO, update the trust region (after the design) and
        restart the instance when it has shrunk below ``length_min``."""
        n_new = len(asked)
        if self._n + n_new > self._x.shape[0]:  # grow (double) the buffers
            cap = max(2 * self._x.shape[0], self._n + n_new, 64)
            self._x = torch.cat([self._x[:self._n], torch.empty(cap - self._n, self.d, dtype=torch.float32)])
            self._value = torch.cat([self._value[:self._n], torch.empty(cap - self._n, dtype=torch.float64)])
        self._x[self._n:self._n + n_new] = asked.u.detach().to(device="cpu", dtype=torch.float32)
        self._value[self._n:self._n + n_new] = value.detach().to(device="cpu", dtype=torch.float64).reshape(-1)
        self._n += n_new
        if self.method != "turbo" or self._pending.shape[0] > 0:
            return
        y_all = self._maximised()
        if self._state is None:  # the instance's design is complete
            self._state = TurboState(self.d, self.batch, best_value=float(y_all[self._inst_start:].max()))
            return
        if asked.purpose[0] == "initial":
            return
        self._state.update(y_all[-n_new:])
        if self._state.restart_triggered:
            self._restarts += 1
            self._inst_start = self._n
            self._state = None
            self._warm = None
            self._last_weights = None
            self._pending = self._sobol_design(self._restarts)

    #: what :meth:`checkpoint` saves: everything ``ask`` and ``tell`` change (the config and seed rebuild the rest)
    _STATE = ("_x", "_value", "_n", "_inst_start", "_restarts", "_pending", "_state", "_warm", "_round",
              "_last_weights", "fallbacks", "last_fallback", "last_fit_s", "last_ask_s", "last_n_train", "stop_reason")

    def checkpoint(self) -> dict[str, Any]:
        """The observations, the Sobol points not yet asked, the trust region, the GP's warm start and the round
        counter (every random draw is seeded from the round), so a restored run asks exactly what this one would."""
        state = {name: copy.deepcopy(getattr(self, name)) for name in self._STATE if name not in ("_x", "_value")}
        state["_x"], state["_value"] = self._x[:self._n].clone(), self._value[:self._n].clone()  # not the spare rows
        return {"method": self.method, "d": self.d, "seed": self.seed, **state}

    def restore(self, state: dict[str, Any]) -> None:
        if (state.get("method"), state.get("d"), state.get("seed")) != (self.method, self.d, self.seed):
            raise OptimizerError(f"botorch: a checkpoint of {state.get('method')} in {state.get('d')}-D with seed "
                                 f"{state.get('seed')} cannot restore {self.method} in {self.d}-D with seed "
                                 f"{self.seed}")
        for name in self._STATE:
            setattr(self, name, copy.deepcopy(state[name]))

    def state_summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method, "observed": self._n, "batch": self.batch,
                               "gp_points": self.last_n_train, "fit_s": self.last_fit_s, "ask_s": self.last_ask_s,
                               "fallbacks": self.fallbacks}
        if self._n:
            out["best_loss"] = float(minimisation_values(self._value[:self._n], self.sense).min())
        if self.method == "turbo":
            out["restarts"] = self._restarts
            out["tr_length"] = self._state.length if self._state is not None else math.nan
        if self.last_fallback:
            out["last_fallback"] = self.last_fallback
        return out

    # -- internals ---------------------------------------------------------------------------------------------

    def _round_seed(self) -> int:
        return (self.seed * 1_000_003 + self._round * 7_919 + 17) % (2**62)

    def _sobol_design(self, restart: int) -> torch.Tensor:
        """``n_init x d`` float64 scrambled Sobol points (seeded by ``seed``, and the restart's index)."""
        seed = self.seed if restart == 0 else (self.seed * 1_000_003 + restart * 104_729) % (2**62)
        return torch.quasirandom.SobolEngine(self.d, scramble=True, seed=seed).draw(self.n_init,
                                                                                   dtype=torch.float64)

    def _maximised(self) -> torch.Tensor:
        """All ``n`` values as float64 to maximise (BoTorch's convention), an invalid one below the worst."""
        return -minimisation_values(self._value[:self._n], self.sense)

    def _train_rows(self) -> torch.Tensor:
        """Rows of the GP's training set: the current instance's, capped at the incumbent plus the most
        recent ``max_train_points - 1`` (see the module docstring)."""
        lo = self._inst_start if self.method == "turbo" else 0
        rows = torch.arange(lo, self._n)
        if rows.numel() <= self.max_train:
            return rows
        y = self._maximised()[lo:]
        best = lo + int(y.argmax())
        recent = rows[-(self.max_train - 1):]
        if best in recent:
            return rows[-self.max_train:]
        return torch.cat([torch.tensor([best]), recent])

    def _build_model(self, x: torch.Tensor, y: torch.Tensor) -> Any:
        from botorch.exceptions.warnings import InputDataWarning
        from botorch.models import SingleTaskGP
        from botorch.models.transforms.outcome import Standardize

        covar = likelihood = None
        if self.method == "turbo":
            from gpytorch.constraints import Interval
            from gpytorch.kernels import MaternKernel, ScaleKernel

            covar = ScaleKernel(MaternKernel(nu=2.5, ard_num_dims=self.d, lengthscale_constraint=Interval(0.005, 4.0)))
        if self.small_noise:
            from gpytorch.constraints import Interval
            from gpytorch.likelihoods import GaussianLikelihood

            likelihood = GaussianLikelihood(noise_constraint=Interval(1e-8, 1e-3))
        with warnings.catch_warnings():
            # the inputs are unit-cube points by construction and Standardize scales the outcomes, so
            # BoTorch's scaling checks have nothing to report; a training subset need not span the cube
            warnings.filterwarnings("ignore", category=InputDataWarning)
            return SingleTaskGP(x, y, covar_module=covar, likelihood=likelihood, outcome_transform=Standardize(m=1))

    def _fit(self, x: torch.Tensor, y: torch.Tensor) -> Any:
        """A fitted GP on ``x`` (``n x d``) and ``y`` (``n x 1``), warm-started when allowed; raises on failure."""
        import gpytorch
        from botorch.fit import fit_gpytorch_mll
        from gpytorch.mlls import ExactMarginalLogLikelihood

        t0 = time.perf_counter()
        starts = [self._warm, None] if (self.cfg.warm_start and self._warm is not None) else [None]
        error: BaseException | None = None
        for warm in starts:
            model = self._build_model(x, y)
            if warm is not None:
                model.load_state_dict(warm, strict=False)
            mll = ExactMarginalLogLikelihood(model.likelihood, model)
            try:
                with gpytorch.settings.max_cholesky_size(float("inf")):
                    fit_gpytorch_mll(mll, optimizer_kwargs={"options": {"maxiter": self.fit_maxiter}})
            except _numerical_errors() as exc:
                error = exc
                continue
            self._warm = {k: v.detach().clone() for k, v in model.state_dict().items()
                          if not k.startswith("outcome_transform") and "raw_" in k}
            self.last_fit_s = time.perf_counter() - t0
            self.last_n_train = x.shape[0]
            return model
        assert error is not None
        raise error

    def _propose(self, q: int) -> torch.Tensor:
        """``q x d`` float64 candidates from the fitted GP."""
        import gpytorch

        rows = self._train_rows()
        x = self._x[rows].to(torch.float64)
        y = self._maximised()[rows].unsqueeze(-1)
        model = self._fit(x, y)
        with gpytorch.settings.max_cholesky_size(float("inf")):
            if self.method == "turbo":
                return self._thompson(model, q)
            return self._logei(model, q)

    def _logei(self, model: Any, q: int) -> torch.Tensor:
        """``q x d`` float64 candidates maximising qLogEI over the unit cube."""
        from botorch.acquisition.logei import qLogExpectedImprovement
        from botorch.exceptions.warnings import BadInitialCandidatesWarning
        from botorch.optim import optimize_acqf

        acqf = qLogExpectedImprovement(model, best_f=float(self._maximised().max()))
        bounds = torch.stack([torch.zeros(self.d, dtype=torch.float64), torch.ones(self.d, dtype=torch.float64)])
        with warnings.catch_warnings():
            # as the tutorials do: a restart that fails is retried from new initial conditions
            warnings.filterwarnings("ignore", category=BadInitialCandidatesWarning)
            warnings.filterwarnings("ignore", category=RuntimeWarning, message="Optimization failed")
            cand, _ = optimize_acqf(acqf, bounds=bounds, q=q, num_restarts=self.cfg.num_restarts,
                                    raw_samples=self.cfg.raw_samples)
        return cand.detach()

    def _center(self) -> torch.Tensor:
        """The best point of the current TuRBO instance (``d``)."""
        lo = self._inst_start
        return self._x[lo + int(self._maximised()[lo:].argmax())].to(torch.float64)

    def _trust_region(self, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(centre, lower, upper)``, each ``d``: the tutorial's box of sides ``length * weights``."""
        center = self._center()
        length = self._state.length if self._state is not None else 0.8
        lb = torch.clamp(center - weights * length / 2.0, 0.0, 1.0)
        ub = torch.clamp(center + weights * length / 2.0, 0.0, 1.0)
        return center, lb, ub

    def _thompson(self, model: Any, q: int) -> torch.Tensor:
        """``q x d`` float64 candidates: Thompson samples over perturbed Sobol points in the trust region."""
        from botorch.generation import MaxPosteriorSampling

        d = self.d
        weights = model.covar_module.base_kernel.lengthscale.detach().reshape(-1).to(torch.float64)
        weights = weights / weights.mean()
        weights = weights / torch.prod(weights.pow(1.0 / len(weights)))
        self._last_weights = weights
        center, lb, ub = self._trust_region(weights)
        n_cand = max(self.n_candidates, q)
        sobol = torch.quasirandom.SobolEngine(d, scramble=True, seed=self._round_seed())
        pert = lb + (ub - lb) * sobol.draw(n_cand, dtype=torch.float64)
        prob_perturb = min(20.0 / d, 1.0)
        mask = torch.rand(n_cand, d, dtype=torch.float64) <= prob_perturb
        ind = torch.where(mask.sum(dim=1) == 0)[0]
        mask[ind, torch.randint(0, d, size=(len(ind),))] = True
        x_cand = center.expand(n_cand, d).clone()
        x_cand[mask] = pert[mask]
        with torch.no_grad():
            return MaxPosteriorSampling(model=model, replacement=False)(x_cand, num_samples=q)

    def _fallback(self, q: int) -> torch.Tensor:
        """``q x d`` Sobol points in the trust region (``turbo`` with data) or the whole cube."""
        sobol = torch.quasirandom.SobolEngine(self.d, scramble=True, seed=self._round_seed())
        u = sobol.draw(q, dtype=torch.float64)
        if self.method != "turbo" or self._n <= self._inst_start:
            return u
        weights = self._last_weights if self._last_weights is not None else torch.ones(self.d, dtype=torch.float64)
        _, lb, ub = self._trust_region(weights)
        return lb + (ub - lb) * u
