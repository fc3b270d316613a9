"""The options of the bench imperfections (:mod:`.imperfections`, the ``blackbox.wrappers`` list), declared without
importing them (or torch): a config naming them is checked here; :mod:`.imperfections` is imported when it is built.

Each ``Config.static_spec(inner)`` says what the wrapper turns the BlackBox it wraps into (:mod:`hil.shapes`) and
checks that it fits it; the wrappers' constructors call it, so each check is written once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from hil.config import NonNegativeFloat, PositiveFloat, PositiveInt, Range, Seed, check
from hil.registry import WRAPPERS
from hil.shapes import StaticSpec

#: a seed for torch.Generator.manual_seed (which refuses integers past 2^64 - 1)
#: a bit depth (an SLM's drive, a camera's ADC)
Bits = Annotated[int, Range(ge=1, le=16)]
#: a delay per query or per batch (s); past an hour, a batch's sleep could overflow time.sleep
Delay = Annotated[float, Range(ge=0, le=3600)]
#: electrons per unit of the inner box's output, at most: the scale must be a float32 (3.4e38), or a dark pixel's
#: 0 x inf is NaN
MAX_ELECTRONS_PER_UNIT = 1e38


def _check_rows_cols(value: list[int], key: str) -> None:
    check(len(value) == 2, key, f"must be [rows, cols] (2 positive integers), got {value}")


def _check_slm(inner: StaticSpec) -> tuple[int, int]:
    """The SLM shape of the BlackBox an SLM wrapper wraps (it must have one)."""
    check(inner.slm_shape is not None, "", "the blackbox it wraps has no slm_shape; wrap an SLM twin")
    assert inner.slm_shape is not None
    return inner.slm_shape


class _PassThrough:
    """A wrapper that keeps the shapes of the BlackBox it wraps, whatever it is."""

    def static_spec(self, inner: StaticSpec) -> StaticSpec:
        return inner


@WRAPPERS.declare("slm_quantisation", "hil.sim_backends.imperfections:SLMQuantisation")
@dataclass
class SLMQuantisationConfig(_PassThrough):
    bits: Bits = 8


@WRAPPERS.declare("slm_phase_response", "hil.sim_backends.imperfections:SLMPhaseResponse")
@dataclass
class SLMPhaseResponseConfig(_PassThrough):
    gamma: Annotated[float, Range(ge=0.2, le=5)] = 1.0
    scale: Annotated[float, Range(gt=0, le=1)] = 1.0


@WRAPPERS.declare("slm_crosstalk", "hil.sim_backends.imperfections:SLMCrosstalk")
@dataclass
class SLMCrosstalkConfig:
    sigma_px: Annotated[float, Range(ge=0.01, le=10)] = 0.5  # under 0.01 px: no crosstalk (and float32's 0/0)

    def static_spec(self, inner: StaticSpec) -> StaticSpec:
        """Blurs the drive of the SLM of the BlackBox it wraps, which must have one."""
        _check_slm(inner)
        return inner


@WRAPPERS.declare("drift", "hil.sim_backends.imperfections:Drift")
@dataclass
class DriftConfig(_PassThrough):
    power_amplitude: Annotated[float, Range(ge=0, lt=1)] = 0.05
    offset_amplitude: Annotated[float, Range(ge=0, le=1e30)] = 0.0  # float32 answers stay finite
    period_queries: Annotated[float, Range(ge=1)] = 5000.0  # shorter than a query is noise, and 2 pi n / period
    seed: Seed = 0                                             # overflows to inf (sin: NaN) for tiny periods


@WRAPPERS.declare("camera", "hil.sim_backends.imperfections:Camera")
@dataclass
class CameraConfig(_PassThrough):
    exposure_s: PositiveFloat = 1e-3
    photons_per_s: PositiveFloat = 1.5e8  # with the defaults, a two-spot pattern peaks near 3000 of 4095 counts
    quantum_efficiency: Annotated[float, Range(gt=0, le=1)] = 0.6
    gain_e_per_count: Annotated[float, Range(ge=1e-6)] = 1.0  # cameras: 0.01-100
    read_noise_e: NonNegativeFloat = 5.0
    dark_level_counts: NonNegativeFloat = 20.0
    bit_depth: Bits = 12
    shot_noise: bool = True
    seed: Seed = 0

    def __post_init__(self) -> None:
        full_scale = 2**self.bit_depth - 1
        check(self.dark_level_counts < full_scale, "dark_level_counts",
              f"must be below the full scale 2^bit_depth - 1 = {full_scale}, got {self.dark_level_counts:g} "
              f"(every pixel would read saturated)")
        per_unit = self.photons_per_s * self.exposure_s * self.quantum_efficiency
        check(per_unit <= MAX_ELECTRONS_PER_UNIT, "exposure_s",
              f"photons_per_s x exposure_s x quantum_efficiency = {per_unit:.3g} electrons per unit of signal "
              f"must be <= {MAX_ELECTRONS_PER_UNIT:g} (float32); lower exposure_s or photons_per_s")


@WRAPPERS.declare("latency", "hil.sim_backends.imperfections:Latency")
@dataclass
class LatencyConfig(_PassThrough):
    settle_s: Delay = 0.01
    exposure_s: Delay = 0.0
    per_batch_s: Delay = 0.0


@WRAPPERS.declare("slm_settling", "hil.sim_backends.imperfections:SLMSettling")
@dataclass
class SLMSettlingConfig(_PassThrough):
    tau_s: Annotated[float, Range(gt=0, le=10)] = 0.02
    settle_s: Annotated[float, Range(ge=0, le=100)] = 0.0
    frame_s: Annotated[float, Range(ge=0, le=100)] = 0.005
    time_scale: Annotated[float, Range(ge=0, le=100)] = 0.0


@WRAPPERS.declare("slm_macropixels", "hil.sim_backends.imperfections:SLMMacropixels")
@dataclass
class SLMMacropixelsConfig:
    blocks: list[PositiveInt] = field(default_factory=lambda: [10, 10])

    def __post_init__(self) -> None:
        _check_rows_cols(self.blocks, "blocks")

    def static_spec(self, inner: StaticSpec) -> StaticSpec:
        """One input per macro-pixel: the blocks divide the SLM of the BlackBox it wraps, which takes one input per
        SLM pixel (nothing reshapes its input before: it is the outermost input-side wrapper)."""
        shape = _check_slm(inner)
        rows, cols = self.blocks
        check(shape[0] % rows == 0 and shape[1] % cols == 0, "blocks",
              f"{self.blocks} must divide the SLM's {list(shape)} pixels evenly")
        check(inner.input_dim == shape[0] * shape[1], "blocks",
              f"must be the outermost input-side wrapper: the blackbox it wraps takes {inner.input_dim} inputs, "
              f"not one per pixel of its {list(shape)} SLM")
        return StaticSpec(rows * cols, inner.output_shape, inner.slm_shape)


@WRAPPERS.declare("detector_regions", "hil.sim_backends.imperfections:DetectorRegions")
@dataclass
class DetectorRegionsConfig:
    grid: list[PositiveInt] = field(default_factory=lambda: [4, 4])

    def __post_init__(self) -> None:
        _check_rows_cols(self.grid, "grid")

    def static_spec(self, inner: StaticSpec) -> StaticSpec:
        """One sum per region: the grid divides the 2-D image of the BlackBox it wraps."""
        shape = inner.output_shape
        check(len(shape) == 2, "grid", f"needs a 2-D camera image; the blackbox it wraps outputs {list(shape)}")
        check(shape[0] % self.grid[0] == 0 and shape[1] % self.grid[1] == 0, "grid",
              f"{self.grid} must divide the camera image {list(shape)} evenly")
        return StaticSpec(inner.input_dim, (self.grid[0] * self.grid[1],), inner.slm_shape)
