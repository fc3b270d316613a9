"""Surrogate-gradient steps inside a trust region, with restarts (``optimizer: {type: gradient_tr}``).

Algorithm 1 (:mod:`hil.optim.gradient`) with one change per start, borrowed from TuRBO (Eriksson et al.
2019): each start has a trust length ``L`` (a fraction of the unit cube). Its Adam step is ``L`` times the
bias-corrected ``m / (sqrt(v) + eps)`` (Adam's per-coordinate step is about ``lr``; here ``lr`` is ``L``), and
its local samples spread ``sigma * L / L_init``, so the surrogate is asked for gradients only where it
has data. After ``success_tolerance`` iterations in a row that improved the start's best (by more than
``1e-3`` of its magnitude) ``L`` doubles, up to ``length_max``; after ``failure_tolerance`` in a row that
did not, it halves. When ``L`` falls below ``length_min`` the start has converged or frozen (e.g. pushed
against the bounds by a surrogate that extrapolates): it restarts from a fresh uniform point with ``L`` and
its Adam moments reset, while the trace keeps its best so far. The estimator keeps everything it learnt.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from hil.optim.base import Ask
from hil.optim.configs import TrustRegionConfig
from hil.optim.gradient import GradientOptimizer
from hil.registry import OPTIMIZERS


@OPTIMIZERS.register("gradient_tr")
class TrustRegionGradient(GradientOptimizer):
    """Algorithm 1 with a per-start trust length and restarts (module docstring)."""

    Config = TrustRegionConfig

    def __init__(self, config: TrustRegionConfig, **kw: Any) -> None:
        super().__init__(config, **kw)
        p = config.n_starts
        self.length = torch.full((p,), config.length_init)
        self.m = torch.zeros(p, self.d)
        self.v = torch.zeros(p, self.d)
        self.t = torch.zeros(p)
        self.best = torch.full((p,), math.nan, dtype=torch.float64)
        self.successes = torch.zeros(p, dtype=torch.long)
        self.failures = torch.zeros(p, dtype=torch.long)
        self.restarts = 0

    def ask(self, iteration: int, max_queries: int | None) -> Ask | None:
        asked = super().ask(iteration, max_queries)
        if asked is None or not asked.counted or self.cfg.local_samples == 0:
            return asked
        p, m = self.cfg.n_starts, self.cfg.local_samples
        centres = asked.u[:p]
        scale = (self.length / self.cfg.length_init).repeat_interleave(m).unsqueeze(1)  # samples spread with L
        asked.u[p:] = (centres.repeat_interleave(m, dim=0) + (asked.u[p:] - centres.repeat_interleave(m, dim=0))
                       * scale).clamp(0, 1)
        return asked

    def apply_step(self, u_from: torch.Tensor, grad_u: torch.Tensor) -> None:
        cfg = self.cfg
        b1, b2, eps = cfg.adam_beta1, cfg.adam_beta2, 1e-8
        self.t += 1
        self.m = b1 * self.m + (1 - b1) * grad_u
        self.v = b2 * self.v + (1 - b2) * grad_u**2
        m_hat = self.m / (1 - b1 ** self.t).unsqueeze(1)
        v_hat = self.v / (1 - b2 ** self.t).unsqueeze(1)
        step = self.length.unsqueeze(1) * m_hat / (v_hat.sqrt() + eps)
        with torch.no_grad():
            self.u.copy_((u_from - step).clamp(0, 1))

    def tell(self, asked: Ask, y: torch.Tensor, value: torch.Tensor) -> None:
        super().tell(asked, y, value)
        if asked.counted:
            self._update_lengths(asked, value)

    def _update_lengths(self, asked: Ask, value: torch.Tensor) -> None:
        cfg, sign = self.cfg, (1.0 if self.objective.sense == "min" else -1.0)
        for s in range(cfg.n_starts):
            rows = (asked.start == s) & torch.isfinite(value)
            if not bool(rows.any()):
                self.failures[s] += 1
                self.successes[s] = 0
            else:
                got = float((sign * value[rows].double()).min())
                old = float(self.best[s])
                improved = math.isnan(old) or got < old - 1e-3 * abs(old)
                if math.isnan(old) or got < old:
                    self.best[s] = got
                self.successes[s] = self.successes[s] + 1 if improved else 0
                self.failures[s] = 0 if improved else self.failures[s] + 1
            if self.successes[s] >= cfg.success_tolerance:
                self.length[s] = min(2 * float(self.length[s]), cfg.length_max)
                self.successes[s] = 0
            elif self.failures[s] >= cfg.failure_tolerance:
                self.length[s] = float(self.length[s]) / 2
                self.failures[s] = 0
            if cfg.restart and float(self.length[s]) < cfg.length_min:
                self._restart(s)

    def _restart(self, s: int) -> None:
        with torch.no_grad():
            self.u[s] = torch.rand(self.d, generator=self.gen)
        self.length[s] = self.cfg.length_init
        self.m[s], self.v[s], self.t[s] = 0.0, 0.0, 0.0
        self.best[s] = math.nan
        self.successes[s] = self.failures[s] = 0
        self.restarts += 1

    def state_summary(self) -> dict[str, Any]:
        return {"restarts": self.restarts, "length_mean": float(self.length.mean()), **super().state_summary()}
