"""Online gradient optimisation with a gradient estimator (paper 000, Algorithm 1), as ask/tell.

Per iteration ``t`` for a population of ``P`` starting points sharing one estimator:

1. ask: the current points ``u_t`` (``purpose="step"``) and ``M`` local samples
   ``u ~ N(u_t, sigma^2)`` per point, clipped to the unit cube (``purpose="local_sample"``);
2. tell: every measured pair goes to the estimator (a surrogate trains on all data); rank selection
   keeps, per start, the best measured of ``u_t`` and its samples; the loss is computed on the
   *measured* output of the selected points, ``dloss/dy`` is exact and ``dloss/du = J^T dloss/dy``
   comes from the estimator (probing estimators query here, declared in the ask); Adam takes one step.

Everything is in the unit cube of the BlackBox's declared parameter space (:mod:`hil.space`): ``lr``
and ``sigma`` are fractions of each input's range (of its log range on a log scale).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from hil.blackbox import BlackBox
from hil.errors import EstimatorError
from hil.estimators import GradientEstimator
from hil.objectives import Objective
from hil.optim.base import Ask, Optimizer, given_start, make_ask, minimisation_values
from hil.optim.configs import AdamBeta, GradientConfig, UnitStep  # noqa: F401  (re-exported)
from hil.registry import OPTIMIZERS
from hil.sampling import latin_hypercube


def select_best(x: torch.Tensor, y: torch.Tensor, obj: torch.Tensor, start: torch.Tensor, n_starts: int,
                sense: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
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


@OPTIMIZERS.register("gradient")
class GradientOptimizer(Optimizer):
    """Algorithm 1 (module docstring). ``box`` is the unit-cube view the estimator is bound to."""

    uses_gradient: ClassVar[bool] = True
    Config = GradientConfig

    def __init__(self, config: GradientConfig, *, box: BlackBox, objective: Objective,
                 estimator: GradientEstimator, seed: int = 0) -> None:
        self.cfg = config
        self.objective = objective
        self.box = box
        self.estimator = estimator if getattr(estimator, "blackbox", None) is box else estimator.bind(box)
        self.n_starts = config.n_starts
        self.d = box.spec.input_dim
        self.gen = torch.Generator().manual_seed(seed)
        p = config.n_starts
        u0 = latin_hypercube(p, self.d, self.gen) if config.init == "lhs" else torch.rand(p, self.d, generator=self.gen)
        if config.x0 is not None:
            u0 = given_start(config.x0, box).expand(p, self.d)
        self.u = u0.clone().requires_grad_(True)
        self.adam = torch.optim.Adam([self.u], lr=config.lr, betas=(config.adam_beta1, config.adam_beta2))
        self.start_ids = torch.arange(p)
        self._initial_pending = config.init_samples > 0

    @classmethod
    def from_config(cls, config: GradientConfig, *, box: BlackBox, objective: Objective,
                    estimator: GradientEstimator, seed: int = 0, budget: int | None = None) -> GradientOptimizer:
        return cls(config, box=box, objective=objective, estimator=estimator, seed=seed)

    # -- ask -------------------------------------------------------------------------------
    def _initial_ask(self, n: int) -> Ask:
        return make_ask(latin_hypercube(n, self.d, self.gen), "initial", -1, counted=False)

    def iteration_queries(self) -> int:
        cfg = self.cfg
        return cfg.n_starts * (1 + cfg.local_samples + self.estimator.probes_per_point)

    def ask(self, iteration: int, max_queries: int | None) -> Ask | None:
        if self._initial_pending:
            self._initial_pending = False
            n = self.cfg.init_samples
            if max_queries is None or n + self.iteration_queries() <= max_queries:
                return self._initial_ask(n)
        if max_queries is not None and self.iteration_queries() > max_queries:
            return None
        p, m = self.cfg.n_starts, self.cfg.local_samples
        centres = self.u.detach().clamp(0, 1)
        parts, purposes, starts = [centres], ["step"] * p, [self.start_ids]
        if m > 0:
            noise = torch.randn(p, m, self.d, generator=self.gen) * self.cfg.sigma
            parts.append((centres.unsqueeze(1) + noise).clamp(0, 1).reshape(p * m, self.d))
            purposes += ["local_sample"] * (p * m)
            starts.append(self.start_ids.repeat_interleave(m))
        return Ask(torch.cat(parts), tuple(purposes), torch.cat(starts),
                   extra_queries=p * self.estimator.probes_per_point)

    # -- tell ------------------------------------------------------------------------------
    def tell(self, asked: Ask, y: torch.Tensor, value: torch.Tensor) -> None:
        self.estimator.observe(asked.u, y, scores=minimisation_values(value, self.objective.sense))
        if not asked.counted:
            return
        self.step(asked, y, value)

    def step(self, asked: Ask, y: torch.Tensor, value: torch.Tensor) -> None:
        """Rank selection, the estimator's gradient at the selected points, one Adam step."""
        t = asked.iteration
        u_sel, y_sel, obj_sel = select_best(asked.u, y, value, asked.start, self.cfg.n_starts, self.objective.sense)
        y_leaf = y_sel.clone().requires_grad_(True)
        loss = self.objective.loss(y_leaf).sum()
        (grad_y,) = torch.autograd.grad(loss, y_leaf)
        # a start with no valid measurement this iteration (e.g. every design invalid) has no gradient: it stays
        measured = torch.isfinite(obj_sel).reshape(-1, *([1] * (grad_y.ndim - 1)))
        grad_y = torch.where(measured, torch.nan_to_num(grad_y, nan=0.0, posinf=0.0, neginf=0.0), 0.0)
        expected = getattr(self.estimator, "objective_gradient", None)
        if expected is not None:  # a model of the answers' distribution: the expected objective's gradient
            grad_u = expected(u_sel, self.objective.loss, iteration=t, start=self.start_ids)
            grad_u = torch.where(measured.reshape(-1, 1), grad_u, 0.0)
        else:
            grad_u = self.estimator.vjp(u_sel, y_sel, grad_y, iteration=t, start=self.start_ids)
        bad = ~torch.isfinite(grad_u).all(dim=1)
        if bool(bad.any()):
            raise EstimatorError(
                f"iteration {t}: the gradient estimator {type(self.estimator).__name__} returned a non-finite "
                f"gradient for starting point(s) {bad.nonzero().flatten().tolist()}; no step was taken and every "
                f"answered query is logged." + (" A surrogate that diverged trains with a lower estimator.lr"
                                                if hasattr(self.estimator, "surrogate") else "")
            )
        self.apply_step(u_sel, grad_u)

    def apply_step(self, u_from: torch.Tensor, grad_u: torch.Tensor) -> None:
        """Adam from ``u_from`` (``P x d``) along ``-grad_u``, kept in the unit cube."""
        with torch.no_grad():
            self.u.copy_(u_from)
        self.adam.zero_grad(set_to_none=True)
        self.u.grad = grad_u.to(self.u.dtype)
        self.adam.step()
        with torch.no_grad():
            self.u.clamp_(0, 1)

    def recommend(self) -> torch.Tensor:
        """The current iterates (``n_starts x d``, unit cube): what the run would return now."""
        return self.u.detach().clamp(0, 1).clone()

    def state_summary(self) -> dict[str, Any]:
        return self.estimator.state_summary()
