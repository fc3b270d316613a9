"""CNON twin: coupled nonlinear oscillators (Frenkel-Kontorova-like).

    q''_i = -sin q_i + sum_j J_ij (sin q_j - sin q_i) + b_i,    q(0) = x, q'(0) = 0

integrated with fixed-step RK4 up to ``horizon``; the output is ``q(horizon)``.
In matrix form ``q'' = K sin q + b`` with ``K = J - diag(J 1) - I``. ``J`` is
symmetric, ``coupling * (A + A^T) / 2`` with ``A ~ U(0, 1)``, and ``b ~ U(-drive, drive)``,
both drawn from ``seed``. The map is differentiable, so the exact gradient is
available through autograd (:meth:`CNONTwin.forward_differentiable`) as the
reference estimator.
"""

from __future__ import annotations

import torch
from hil.sim_backends.cnon_config import MAX_AMPLITUDE, CNONTwinConfig  # noqa: F401  (re-exported)

from hil.blackbox import BlackBox, BlackBoxSpec
from hil.device import resolve_device
from hil.registry import BLACKBOXES


@BLACKBOXES.register("cnon_twin")
class CNONTwin(BlackBox):
    """``batch x dim`` initial amplitudes in ``[-input_bound, input_bound]`` -> ``batch x dim`` final amplitudes."""

    Config = CNONTwinConfig

    def __init__(self, config: Config | None = None) -> None:
        cfg = config or self.Config()
        self.config = cfg
        super().__init__(
            BlackBoxSpec(
                name="cnon_twin",
                input_dim=cfg.dim,
                lower=torch.full((cfg.dim,), -cfg.input_bound),
                upper=torch.full((cfg.dim,), cfg.input_bound),
                output_shape=(cfg.dim,),
                stochastic=False,
                out_of_bounds=cfg.out_of_bounds,
            )
        )
        gen = torch.Generator().manual_seed(cfg.seed)
        a = torch.rand(cfg.dim, cfg.dim, generator=gen)
        j = cfg.coupling * (a + a.T) / 2
        j.fill_diagonal_(0.0)
        self.device = resolve_device(cfg.device, "device")
        self.coupling_matrix = j
        self.k_matrix = (j - torch.diag(j.sum(dim=1)) - torch.eye(cfg.dim)).to(self.device)
        self.drive = ((torch.rand(cfg.dim, generator=gen) * 2 - 1) * cfg.drive).to(self.device)

    @classmethod
    def from_config(cls, config: Config) -> CNONTwin:
        return cls(config)

    def forward_differentiable(self, x: torch.Tensor) -> torch.Tensor:
        """Batched RK4: ``batch x dim`` -> ``batch x dim`` on ``x``'s device (computed on the twin's device;
        differentiable, not validated, not logged)."""
        caller, x = x.device, x.to(self.device)
        k_t = self.k_matrix.to(x.dtype).T
        b = self.drive.to(x.dtype)
        dt = self.config.horizon / self.config.steps

        def accel(q: torch.Tensor) -> torch.Tensor:
            return torch.sin(q) @ k_t + b

        q, v = x, torch.zeros_like(x)
        for _ in range(self.config.steps):
            a1 = accel(q)
            q2 = q + 0.5 * dt * v
            v2 = v + 0.5 * dt * a1
            a2 = accel(q2)
            q3 = q + 0.5 * dt * v2
            v3 = v + 0.5 * dt * a2
            a3 = accel(q3)
            q4 = q + dt * v3
            v4 = v + dt * a3
            a4 = accel(q4)
            q = q + dt / 6 * (v + 2 * v2 + 2 * v3 + v4)
            v = v + dt / 6 * (a1 + 2 * a2 + 2 * a3 + a4)
        return q.to(caller)

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.forward_differentiable(x)
