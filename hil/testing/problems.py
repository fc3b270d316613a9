"""Small BlackBoxes with a known optimum, for conformance tests (registered as ``hil_test_*`` types)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from hil.blackbox import BlackBox, BlackBoxSpec
from hil.config import PositiveInt
from hil.registry import BLACKBOXES


@BLACKBOXES.register("hil_test_shifted")
class ShiftedBox(BlackBox):
    """``batch x d`` in ``[-2, 3]^d`` -> ``batch x d`` (the input itself): with a ``target_distance`` objective
    to ``target`` the optimum is 0, at ``x = target``. Differentiable (the exact gradient exists)."""

    @dataclass
    class Config:
        dim: PositiveInt = 3

    def __init__(self, dim: int = 3) -> None:
        super().__init__(BlackBoxSpec("hil_test_shifted", dim, -2.0, 3.0, (dim,)))
        self.received: list[torch.Tensor] = []

    @classmethod
    def from_config(cls, config: Config) -> ShiftedBox:
        return cls(config.dim)

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        self.received.append(x.clone())
        return x.clone()

    def forward_differentiable(self, x: torch.Tensor) -> torch.Tensor:
        return x


@BLACKBOXES.register("hil_test_mixed_space")
class MixedSpaceBox(BlackBox):
    """Three inputs declared as a bench would: a width on a log scale (1e-6 to 1e-4 m), a whole-number count
    (1 to 4) and a linear voltage (-1 to 1 V). Output: the inputs, as received."""

    @dataclass
    class Config:
        scale: list[str] = field(default_factory=lambda: ["log", "linear", "linear"])

    def __init__(self) -> None:
        super().__init__(BlackBoxSpec("hil_test_mixed_space", 3, torch.tensor([1e-6, 1.0, -1.0]),
                                      torch.tensor([1e-4, 4.0, 1.0]), (3,), scale=("log", "linear", "linear"),
                                      integer=(False, True, False)))
        self.received: list[torch.Tensor] = []

    @classmethod
    def from_config(cls, config: Config) -> MixedSpaceBox:
        return cls()

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        self.received.append(x.clone())
        return x.clone()


#: the target of the shifted problem (an interior point, not the centre of the box)
SHIFTED_TARGET = [0.5, -1.0, 1.5]
