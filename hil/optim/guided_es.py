"""Guided evolution strategies (Maheswaranathan et al., ICML 2019) with an online surrogate's gradient as
the guiding subspace (``optimizer: {type: guided_es}``).

Per iteration and start, at the current point ``u`` (unit cube, ``n`` inputs):

1. ask: ``u`` itself (``step``) and ``P`` antithetic pairs ``u ± eps_i`` (``local_sample``), with
   ``eps ~ N(0, sigma^2 Sigma)``, ``Sigma = (alpha / n) I + ((1 - alpha) / k) U U^T`` and ``U`` an orthonormal
   basis of the last ``k`` surrogate gradients of this start (isotropic until there is one);
2. tell: every pair goes to the estimator (the surrogate trains on all of them); the ES gradient
   ``g = beta / (2 sigma^2 P) sum_i eps_i (f(u + eps_i) - f(u - eps_i))`` of the measured loss drives an Adam
   step; the surrogate's gradient at ``u`` (``J^T dloss/dy`` at the measured ``y``) joins ``U``.

``sigma`` is the per-input scale of the isotropic part (the paper's ``sigma`` is ``sigma sqrt(n)``), so
``eps = sigma (sqrt(alpha) z + sqrt((1 - alpha) n / k) U z_k)``; Adam makes the overall scale of ``g`` moot.

The surrogate's gradient is biased; guided ES uses it only to choose where to look, so a wrong surrogate
costs efficiency, never correctness (the estimate stays unbiased for the smoothed loss when ``alpha > 0``).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch

from hil.blackbox import BlackBox
from hil.estimators import GradientEstimator
from hil.objectives import Objective
from hil.optim.base import Ask, Optimizer, minimisation_values
from hil.optim.configs import GuidedESConfig
from hil.registry import OPTIMIZERS


@OPTIMIZERS.register("guided_es")
class GuidedES(Optimizer):
    uses_gradient: ClassVar[bool] = True

    Config = GuidedESConfig

    def __init__(self, config: Config, *, box: BlackBox, objective: Objective, estimator: GradientEstimator,
                 seed: int = 0) -> None:
        self.cfg = config
        self.objective = objective
        self.estimator = estimator.bind(box)
        self.n_starts = config.n_starts
        self.d = box.spec.input_dim
        self.gen = torch.Generator().manual_seed(seed)
        self.u = torch.rand(config.n_starts, self.d, generator=self.gen).requires_grad_(True)
        self.adam = torch.optim.Adam([self.u], lr=config.lr, betas=(config.adam_beta1, config.adam_beta2))
        self.guides: list[list[torch.Tensor]] = [[] for _ in range(config.n_starts)]
        self._eps: torch.Tensor | None = None
        self.last_alignment = math.nan

    @classmethod
    def from_config(cls, config: Config, *, box: BlackBox, objective: Objective, estimator: GradientEstimator,
                    seed: int = 0, budget: int | None = None) -> GuidedES:
        return cls(config, box=box, objective=objective, estimator=estimator, seed=seed)

    def _sample(self) -> torch.Tensor:
        """``n_starts x P x d`` perturbations drawn from each start's guided covariance."""
        cfg, p, d = self.cfg, self.cfg.n_starts, self.d
        z = torch.randn(p, cfg.pairs, d, generator=self.gen)
        eps = torch.empty_like(z)
        for s in range(p):
            if not self.guides[s]:
                eps[s] = cfg.sigma * z[s]  # isotropic N(0, sigma^2 I) until there is a guide
                continue
            basis, _ = torch.linalg.qr(torch.stack(self.guides[s], dim=1))  # d x k orthonormal
            k = basis.shape[1]
            zk = torch.randn(cfg.pairs, k, generator=self.gen)
            eps[s] = cfg.sigma * (math.sqrt(cfg.alpha) * z[s] + math.sqrt((1 - cfg.alpha) * d / k) * zk @ basis.T)
        return eps

    def ask(self, iteration: int, max_queries: int | None) -> Ask | None:
        p, m = self.cfg.n_starts, self.cfg.pairs
        cost = p * (1 + 2 * m + self.estimator.probes_per_point)
        if max_queries is not None and cost > max_queries:
            return None
        centre = self.u.detach().clamp(0, 1)
        self._eps = self._sample()
        plus = (centre.unsqueeze(1) + self._eps).clamp(0, 1)
        minus = (centre.unsqueeze(1) - self._eps).clamp(0, 1)
        pairs = torch.stack([plus, minus], dim=2).reshape(p * 2 * m, self.d)  # per start: +e1, -e1, +e2, ...
        starts = torch.cat([torch.arange(p), torch.arange(p).repeat_interleave(2 * m)])
        purposes = ("step",) * p + ("local_sample",) * (p * 2 * m)
        return Ask(torch.cat([centre, pairs]), purposes, starts, extra_queries=p * self.estimator.probes_per_point)

    def tell(self, asked: Ask, y: torch.Tensor, value: torch.Tensor) -> None:
        cfg, p, m = self.cfg, self.cfg.n_starts, self.cfg.pairs
        self.estimator.observe(asked.u, y, scores=minimisation_values(value, self.objective.sense))
        loss = minimisation_values(value, self.objective.sense).to(torch.float32)
        pair_loss = loss[p:].reshape(p, m, 2)
        diff = pair_loss[..., 0] - pair_loss[..., 1]  # p x m
        g_es = cfg.beta / (2 * cfg.sigma**2 * m) * torch.einsum("pm,pmd->pd", diff, self._eps)
        # the surrogate's gradient at the centre, from its measured output, guides the next samples
        y_c = y[:p].clone().requires_grad_(True)
        (grad_y,) = torch.autograd.grad(self.objective.loss(y_c).sum(), y_c)
        ok = torch.isfinite(value[:p]).reshape(-1, *([1] * (grad_y.ndim - 1)))
        grad_y = torch.where(ok, torch.nan_to_num(grad_y), 0.0)
        g_sur = self.estimator.vjp(asked.u[:p], y[:p], grad_y, iteration=asked.iteration, start=torch.arange(p))
        for s in range(p):
            if bool(torch.isfinite(g_sur[s]).all()) and float(g_sur[s].norm()) > 0:
                self.guides[s] = (self.guides[s] + [g_sur[s] / g_sur[s].norm()])[-cfg.subspace:]
        cos = torch.nn.functional.cosine_similarity(g_es, torch.nan_to_num(g_sur), dim=1)
        self.last_alignment = float(cos.mean())
        self.adam.zero_grad(set_to_none=True)
        self.u.grad = torch.nan_to_num(g_es).to(self.u.dtype)
        self.adam.step()
        with torch.no_grad():
            self.u.clamp_(0, 1)

    def state_summary(self) -> dict[str, Any]:
        return {"es_surrogate_cosine": self.last_alignment, **self.estimator.state_summary()}
