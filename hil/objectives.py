"""Objectives: differentiable maps from a BlackBox's measured output to one number per row.

The loss is always computed on the *measured* output, so ``dloss/dy`` is exact;
only ``dy/dx`` comes from an estimator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import torch

from hil.config import Range, Seed, check
from hil.errors import ConfigError
from hil.registry import OBJECTIVES

#: the largest float32: a target is held in float32, so a larger value would become infinite
FLOAT32_MAX = float(torch.finfo(torch.float32).max)
#: an output value (finite in float32)
OutputValue = Annotated[float, Range(ge=-FLOAT32_MAX, le=FLOAT32_MAX)]


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

    @dataclass
    class Config:
        target: list[OutputValue] | None = None  # as many values as the blackbox outputs (checked when built)
        target_low: OutputValue = -1.0
        target_high: OutputValue = 1.0
        target_seed: Seed = 1
        norm: Literal["rms", "l2", "l1", "mse"] = "rms"

        def __post_init__(self) -> None:
            check(self.target is None or len(self.target) >= 1, "target",
                  "give one value per blackbox output (or null: drawn in [target_low, target_high])")
            check(self.target_low < self.target_high, "target_high",
                  f"must be > target_low ({self.target_low:g}), got {self.target_high:g}")
            check(self.target_high - self.target_low <= FLOAT32_MAX, "target_high",
                  f"must be at most {FLOAT32_MAX:g} above target_low (the target is drawn in float32), got "
                  f"{self.target_high:g} with target_low {self.target_low:g}")

    def __init__(self, target: torch.Tensor, norm: str = "rms") -> None:
        self.target = target.to(torch.float32)
        self.norm = norm

    @classmethod
    def from_config(cls, config: Config, *, output_shape: tuple[int, ...]) -> TargetDistance:
        n = 1
        for s in output_shape:
            n *= s
        if config.target is not None:
            if len(config.target) != n:
                # the objective section (the only place an objective is configured) cannot see the blackbox's
                # output shape when it is parsed: this is checked when the run builds it
                raise ConfigError(f"objective.target: has {len(config.target)} values; the blackbox outputs {n}")
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
