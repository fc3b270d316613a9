"""The options of the core objectives (the ``objective:`` section), declared without importing the objectives (or
torch), so a config is checked without them; see :mod:`hil.objectives`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Literal

from hil.config import Range, Seed, check
from hil.registry import OBJECTIVES

#: the largest float32: a target is held in float32, so a larger value would become infinite
FLOAT32_MAX = 3.4028234663852886e38
#: an output value (finite in float32)
OutputValue = Annotated[float, Range(ge=-FLOAT32_MAX, le=FLOAT32_MAX)]
@OBJECTIVES.declare("target_distance", "hil.objectives:TargetDistance")
@dataclass
class TargetDistanceConfig:
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

    def check_output_shape(self, output_shape: tuple[int, ...]) -> None:
        """A given ``target`` has one value per output (``math.prod(output_shape)``)."""
        n = math.prod(output_shape)
        check(self.target is None or len(self.target) == n, "target",
              f"has {len(self.target or [])} values; the blackbox outputs {n}")
