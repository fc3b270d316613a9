"""The options of the CNON twin (``type: cnon_twin``), declared without importing the twin (or torch): a config
naming it is checked here; :mod:`.cnon` is imported when it is built."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from hil.config import NonNegativeFloat, PositiveFloat, Range, Seed, check
from hil.device import check_device
from hil.registry import BLACKBOXES
from hil.shapes import StaticSpec

#: the largest |q| the integration may reach (a bound from the config, see ``Config``): float32 stays finite
MAX_AMPLITUDE = 1e30


@BLACKBOXES.declare("cnon_twin", "hil.sim_backends.cnon:CNONTwin")
@dataclass
class CNONTwinConfig:
    dim: Annotated[int, Range(ge=1, le=10_000)] = 10  # the dim x dim coupling matrix: 400 MB at 10 000
    coupling: NonNegativeFloat = 0.5
    drive: NonNegativeFloat = 0.1
    horizon: PositiveFloat = 3.0
    steps: Annotated[int, Range(ge=1, le=1_000_000)] = 30  # RK4 steps per query (4 matmuls each)
    input_bound: Annotated[float, Range(ge=1e-6)] = 1.0  # float32 keeps the box [-input_bound, input_bound]
    seed: Seed = 0
    out_of_bounds: Literal["reject", "clip"] = "clip"
    device: str = "auto"  # auto | cpu | cuda | cuda:N: where the integration runs (answers come back on CPU)

    def __post_init__(self) -> None:
        check_device(self.device)
        # |q''| <= |K sin q| + |b| <= coupling * dim + 1 + drive, so |q(T)| <= input_bound + T^2 * that:
        # past float32's range the coupling matrix or the state turns inf / NaN at run time
        reach = self.input_bound + self.horizon * self.horizon * (self.coupling * self.dim + 1 + self.drive)
        check(reach <= MAX_AMPLITUDE, "coupling",
              f"input_bound + horizon^2 * (coupling * dim + 1 + drive) = {reach:.3g} bounds the amplitudes the "
              f"integration may reach and must be <= {MAX_AMPLITUDE:g} (float32); lower coupling, drive, "
              f"horizon or input_bound")

    def static_spec(self) -> StaticSpec:
        """``dim`` initial amplitudes -> ``dim`` final amplitudes."""
        return StaticSpec(self.dim, (self.dim,))
