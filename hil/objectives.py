"""Objectives: differentiable maps from a BlackBox's measured output to one number per row.

The loss is always computed on the *measured* output, so ``dloss/dy`` is exact;
only ``dy/dx`` comes from an estimator.
"""

from __future__ import annotations

from typing import Literal

import torch

from hil.config import FieldError
from hil.errors import ConfigError
from hil.objective_configs import FLOAT32_MAX, OutputValue, TargetDistanceConfig  # noqa: F401  (re-exported)
from hil.registry import OBJECTIVES


class Objective:
    """``batch x *output_shape`` -> ``batch`` values; ``sense`` says whether lower or higher is better."""

    sense: Literal["min", "max"] = "min"

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def better(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Elementwise: is ``a`` better than ``b``?"""
        return a < b if self.sense == "min" else a > b

    def loss(self, y: torch.Tensor) -> torch.Tensor:
        """Per-row loss to *minimise* (the objective, negated when maximising)."""
        value = self(y)
        return value if self.sense == "min" else -value


@OBJECTIVES.register("target_distance")
class TargetDistance(Objective):
    """Distance of the output to a target: ``rms`` = ``||y - t||_2 / sqrt(n)``, or ``l2`` / ``l1`` / ``mse``.

    The target is given explicitly (``target: [...]``) or drawn uniformly in
    ``[target_low, target_high]`` from ``target_seed``.
    """

    Config = TargetDistanceConfig

    def __init__(self, target: torch.Tensor, norm: str = "rms") -> None:
        self.target = target.to(torch.float32)
        self.norm = norm

    @classmethod
    def from_config(cls, config: Config, *, output_shape: tuple[int, ...]) -> TargetDistance:
        n = 1
        for s in output_shape:
            n *= s
        try:
            config.check_output_shape(tuple(output_shape))
        except FieldError as exc:  # built without a config's path to name (a config is checked before it is built)
            raise ConfigError(f"objective.{exc}") from None
        if config.target is not None:
            target = torch.tensor(config.target, dtype=torch.float32)
        else:
            gen = torch.Generator().manual_seed(config.target_seed)
            target = config.target_low + (config.target_high - config.target_low) * torch.rand(n, generator=gen)
        return cls(target.reshape(output_shape), config.norm)

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        diff = (y.to(self.target.dtype) - self.target).reshape(y.shape[0], -1)
        if self.norm == "rms":
            return diff.pow(2).mean(dim=1).sqrt()
        if self.norm == "mse":
            return diff.pow(2).mean(dim=1)
        if self.norm == "l2":
            return diff.norm(dim=1)
        return diff.abs().mean(dim=1)
