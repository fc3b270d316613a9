"""Offline optimisation (paper 000, Algorithm A1): fit a surrogate once on a dataset, then optimise with
BlackBox forward passes and the frozen surrogate's backward pass.

The dataset is ``dataset_size`` Latin-hypercube queries (``dataset: lhs``, measured as the first,
uncounted ask and logged with purpose ``initial``) or the rows of an earlier query log
(``dataset: log``, ``dataset_log: PATH``: nothing is queried for it).

Two choices make it MATCH-OPT's search (paper 001) rather than Algorithm A1's:

* ``start: top``: the starts are the ``n_starts`` best points of the dataset (A1: ``random``, the gradient
  optimiser's starts);
* ``search: surrogate``: each step follows the gradient of the objective of the surrogate's *prediction* at the
  current point, gradient ascent on the frozen surrogate (A1: ``blackbox``, the objective of the measured answer
  back-propagated through the surrogate). Each step's point is still measured, so the trace is the truth's.

With ``estimator: {loss: matchopt}`` the surrogate is fitted by MATCH-OPT's loss on trajectories sorted by
each point's objective (:mod:`hil.matchopt`).
"""

from __future__ import annotations

from typing import ClassVar

import torch

from hil.errors import ConfigError
from hil.optim.base import Ask, minimisation_values
from hil.optim.configs import OfflineConfig
from hil.optim.gradient import GradientOptimizer
from hil.registry import OPTIMIZERS


@OPTIMIZERS.register("offline")
class OfflineOptimizer(GradientOptimizer):
    """Algorithm A1 (module docstring); needs a ``surrogate`` estimator."""

    Config = OfflineConfig
    estimator_types: ClassVar[tuple[str, ...]] = ("surrogate",)

    def __init__(self, config: OfflineConfig, **kw) -> None:
        super().__init__(config, **kw)
        if not hasattr(self.estimator, "fit_now"):
            raise ConfigError("optimizer type 'offline' needs estimator type 'surrogate'")
        self._dataset_pending = True

    def ask(self, iteration: int, max_queries: int | None) -> Ask | None:
        cfg = self.cfg
        if self._dataset_pending:
            self._dataset_pending = False
            if cfg.dataset == "lhs":
                return self._initial_ask(cfg.dataset_size)
            self._fit(*self._log_dataset())
        return super().ask(iteration, max_queries)

    def tell(self, asked: Ask, y: torch.Tensor, value: torch.Tensor) -> None:
        if not asked.counted:
            self._fit(asked.u, y, value)
            return
        if self.cfg.search == "blackbox":
            self.step(asked, y, value)  # the surrogate is frozen: new measurements only steer the search
            return
        centres = asked.u[: self.n_starts]  # the current points (the ask's step rows)
        u = centres.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            loss = self.objective.loss(self.estimator.surrogate.predict(u)).sum()
            (grad_u,) = torch.autograd.grad(loss, u)
        self.apply_step(centres, grad_u)

    def _log_dataset(self) -> tuple[torch.Tensor, torch.Tensor]:
        from hil.querylog import read_log

        data = read_log(self.cfg.dataset_log)
        spec = self.box.spec
        if data.x.shape[1] != spec.input_dim or tuple(data.y.shape[1:]) != tuple(spec.output_shape):
            raise ConfigError(
                f"optimizer.dataset_log: {self.cfg.dataset_log} has inputs of {data.x.shape[1]} and outputs of shape "
                f"{tuple(data.y.shape[1:])}; the blackbox takes {spec.input_dim} inputs and answers "
                f"{tuple(spec.output_shape)}"
            )
        u = self.box.space.to_unit(torch.from_numpy(data.x))
        y = torch.from_numpy(data.y).to(torch.float32)
        return u, y, self.objective(y).detach()

    def _fit(self, u: torch.Tensor, y: torch.Tensor, value: torch.Tensor) -> None:
        est = self.estimator
        scores = minimisation_values(value, self.objective.sense)
        est.observe(u, y, scores=scores)
        est.fit_now(self.cfg.fit_epochs)
        est.frozen = True
        if self.cfg.start == "top":
            top = torch.argsort(scores)[: self.n_starts]
            if len(top) < self.n_starts:
                raise ConfigError(f"optimizer.n_starts: start: top needs {self.n_starts} points in the dataset, it "
                                  f"has {len(top)}")
            with torch.no_grad():
                self.u.copy_(u[top].to(self.u.dtype))
