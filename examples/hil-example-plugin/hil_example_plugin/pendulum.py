"""A damped pendulum as a hil BlackBox twin, a rotary encoder that reads it, and the energy of its swing.

``type: damped_pendulum``: the inputs are the initial state ``(theta0 [rad], omega0 [rad/s])``, the answer is the
state ``(theta(T), omega(T))`` after ``horizon_s`` of

    theta'' = -(g / L) sin(theta) - damping * theta'

integrated with ``steps`` RK4 steps (batched, float32, differentiable: the ``exact`` estimator works). With
``noise_rad > 0`` the measured angle carries Gaussian noise (seeded) and the box declares itself stochastic.
The flow of an ODE is invertible, so every target state inside the box's reach has exactly one initial state:
:meth:`DampedPendulum.initial_state_for` computes it (the declared optimum of a ``target_distance`` objective).

``type: angle_encoder`` (a wrapper, ``blackbox.wrappers``): the angle as an incremental rotary encoder with
``counts_per_rev`` counts and a mounting offset reads it. ``type: swing_energy`` (an objective): the mechanical
energy per unit ``m L^2`` of the answered state, ``omega^2 / 2 + (g / L) (1 - cos theta)``.

Everything hil asks of a plug-in is here: a ``Config`` dataclass whose every number declares its range
(:class:`hil.config.Range`), ``from_config``, no I/O in a constructor, ``_query`` on validated float32 batches,
the registry decorators, and the entry point in ``pyproject.toml`` (see :mod:`hil.protocols`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Literal

import torch

from hil.blackbox import BlackBox, BlackBoxSpec, BlackBoxWrapper
from hil.config import Range, check
from hil.errors import ConfigError
from hil.objectives import Objective
from hil.registry import BLACKBOXES, OBJECTIVES, WRAPPERS

Length = Annotated[float, Range(gt=0, le=100)]  # m
Gravity = Annotated[float, Range(gt=0, le=100)]  # m/s^2


def rk4(state: torch.Tensor, w2: float, damping: float, dt: float, steps: int) -> torch.Tensor:
    """``steps`` RK4 steps of the pendulum from ``state`` (``batch x 2``: theta, omega); ``dt < 0`` runs back."""

    def f(s: torch.Tensor) -> torch.Tensor:
        theta, omega = s[:, 0], s[:, 1]
        return torch.stack([omega, -w2 * torch.sin(theta) - damping * omega], dim=1)

    s = state
    for _ in range(steps):
        k1 = f(s)
        k2 = f(s + 0.5 * dt * k1)
        k3 = f(s + 0.5 * dt * k2)
        k4 = f(s + dt * k3)
        s = s + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
    return s


@BLACKBOXES.register("damped_pendulum")
class DampedPendulum(BlackBox):
    """See the module docstring."""

    @dataclass
    class Config:
        length_m: Length = 0.5
        gravity_m_s2: Gravity = 9.81
        damping_per_s: Annotated[float, Range(ge=0, le=100)] = 0.3
        horizon_s: Annotated[float, Range(gt=0, le=1000)] = 2.0
        steps: Annotated[int, Range(ge=1, le=100_000)] = 40
        max_angle_rad: Annotated[float, Range(gt=0, le=math.pi)] = math.pi / 2
        max_speed_rad_s: Annotated[float, Range(gt=0, le=1000)] = 5.0
        noise_rad: Annotated[float, Range(ge=0, le=10)] = 0.0  # std of the measured angle's noise
        seed: Annotated[int, Range(ge=0, le=2**63 - 1)] = 0
        out_of_bounds: Literal["reject", "clip"] = "reject"

        def __post_init__(self) -> None:
            # RK4 is stable and accurate for w dt well below 2.8; past 0.5 the twin is no longer the pendulum
            w_dt = math.sqrt(self.gravity_m_s2 / self.length_m) * self.horizon_s / self.steps
            check(w_dt <= 0.5, "steps", f"too few for the horizon: sqrt(g / L) * horizon_s / steps = {w_dt:.3g} "
                                        f"must be <= 0.5; give steps >= {math.ceil(w_dt / 0.5 * self.steps)}")

    def __init__(self, config: Config | None = None) -> None:
        c = self.config = config or self.Config()
        super().__init__(BlackBoxSpec(name="damped_pendulum", input_dim=2,
                                      lower=torch.tensor([-c.max_angle_rad, -c.max_speed_rad_s]),
                                      upper=torch.tensor([c.max_angle_rad, c.max_speed_rad_s]),
                                      output_shape=(2,), stochastic=c.noise_rad > 0, out_of_bounds=c.out_of_bounds))
        self.w2 = c.gravity_m_s2 / c.length_m
        self.generator = torch.Generator().manual_seed(c.seed)  # no I/O here: a twin has nothing to open

    @classmethod
    def from_config(cls, config: Config) -> DampedPendulum:
        return cls(config)

    def forward_differentiable(self, x: torch.Tensor) -> torch.Tensor:
        """The noise-free state after ``horizon_s`` (``batch x 2`` -> ``batch x 2``), differentiable in ``x``."""
        c = self.config
        return rk4(x.to(torch.float32), self.w2, c.damping_per_s, c.horizon_s / c.steps, c.steps)

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        y = self.forward_differentiable(x)
        if self.config.noise_rad > 0:
            noise = torch.randn(x.shape[0], generator=self.generator) * self.config.noise_rad
            y = torch.stack([y[:, 0] + noise, y[:, 1]], dim=1)
        return y

    def initial_state_for(self, target: torch.Tensor, newton_steps: int = 8) -> torch.Tensor:
        """The initial state (``2``) whose state after ``horizon_s`` is ``target`` (``2``): RK4 run backwards,
        then Newton on the forward map (exact for the discretised twin). Outside the bounds if the target is out
        of the box's reach."""
        c = self.config
        x = rk4(torch.as_tensor(target, dtype=torch.float64).reshape(1, 2), self.w2, c.damping_per_s,
                -c.horizon_s / c.steps, c.steps)[0]
        target = torch.as_tensor(target, dtype=torch.float64)

        def forward(s: torch.Tensor) -> torch.Tensor:
            return rk4(s.reshape(1, 2), self.w2, c.damping_per_s, c.horizon_s / c.steps, c.steps)[0]

        for _ in range(newton_steps):
            jac = torch.autograd.functional.jacobian(forward, x)
            x = x - torch.linalg.solve(jac, forward(x) - target)
        return x.to(torch.float32)


@WRAPPERS.register("angle_encoder")
class AngleEncoder(BlackBoxWrapper):
    """The angle read by an incremental rotary encoder: ``counts_per_rev`` counts per turn, mounted ``offset_rad``
    off. The angular velocity passes through. The differentiable model quantises too, with the straight-through
    gradient (the identity), so it maps what the encoder answers."""

    @dataclass
    class Config:
        counts_per_rev: Annotated[int, Range(ge=4, le=2**24)] = 4096
        offset_rad: Annotated[float, Range(ge=-math.pi, le=math.pi)] = 0.0

    def __init__(self, inner: BlackBox, counts_per_rev: int = 4096, offset_rad: float = 0.0) -> None:
        if tuple(inner.spec.output_shape) != (2,):
            raise ConfigError(f"angle_encoder reads (theta, omega) answers; {inner.spec.name} answers shape "
                              f"{list(inner.spec.output_shape)}")
        super().__init__(inner)  # the same spec: same inputs, same answers' shape
        self.step_rad = 2 * math.pi / counts_per_rev
        self.offset_rad = offset_rad

    @classmethod
    def from_config(cls, config: Config, *, inner: BlackBox) -> AngleEncoder:
        return cls(inner, config.counts_per_rev, config.offset_rad)

    def read(self, y: torch.Tensor) -> torch.Tensor:
        theta = y[:, 0] + self.offset_rad
        counted = torch.round(theta / self.step_rad) * self.step_rad
        theta = theta + (counted - theta).detach()  # the counted value, with the identity as its gradient
        return torch.stack([theta, y[:, 1]], dim=1)

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        return self.read(self.inner._query(x))  # the inner box's private path: validated and logged once, here

    def forward_differentiable(self, x: torch.Tensor) -> torch.Tensor:
        return self.read(self.inner.forward_differentiable(x))


@OBJECTIVES.register("swing_energy")
class SwingEnergy(Objective):
    """``omega^2 / 2 + (g / L) (1 - cos theta)`` of the answered state (energy per unit ``m L^2``); ``sense: max``
    pumps the most energy into the swing, ``min`` brings it to rest."""

    @dataclass
    class Config:
        length_m: Length = 0.5
        gravity_m_s2: Gravity = 9.81
        sense: Literal["min", "max"] = "max"

    def __init__(self, w2: float, sense: Literal["min", "max"]) -> None:
        self.w2 = w2
        self.sense = sense

    @classmethod
    def from_config(cls, config: Config, *, output_shape: tuple[int, ...]) -> SwingEnergy:
        if tuple(output_shape) != (2,):
            raise ConfigError(f"objective swing_energy needs (theta, omega) answers; the blackbox answers shape "
                              f"{list(output_shape)}")
        return cls(config.gravity_m_s2 / config.length_m, config.sense)

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        y = y.to(torch.float32)
        return 0.5 * y[:, 1] ** 2 + self.w2 * (1 - torch.cos(y[:, 0]))
