"""The options of the OWMS twin (``type: owms_twin``) and of its ``two_spots`` objective, declared without
importing the twin (or torch): a config naming them is checked here; :mod:`.owms` is imported when it is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np

from hil.config import FiniteFloat, NonNegativeFloat, PositiveFloat, Range, check
from hil.device import check_device
from hil.registry import BLACKBOXES, OBJECTIVES
from hil.shapes import StaticSpec

#: the most samples per side of the propagation grid (SLM pixels plus camera samples): a 4K SLM and camera
MAX_GRID_SIDE = 8192
#: one side of an SLM or a camera, in pixels
Side = Annotated[int, Range(ge=1, le=MAX_GRID_SIDE)]


def critical_distance_m(half_width_m: float, pitch_m: float, wavelength_m: float) -> float:
    """Shortest distance at which the sampled Rayleigh-Sommerfeld kernel is not aliased (Voelz, eq. A.17)."""
    return 2 * half_width_m * pitch_m / wavelength_m


def check_distance(cfg: OWMSTwinConfig) -> None:
    """``distance_m`` is beyond the critical distance of the sampled grid, which the camera's offset widens;
    the error names the offset when the distance suffices on axis."""
    rows, cols = cfg.slm_shape
    b = cfg.binning
    half_width = 0.5 * max(rows * cfg.slm_pitch_m + cfg.camera_shape[0] * b * cfg.slm_pitch_m,
                           cols * cfg.slm_pitch_m + cfg.camera_shape[1] * b * cfg.slm_pitch_m)
    on_axis = critical_distance_m(half_width, cfg.slm_pitch_m, cfg.wavelength_m)
    offset = max(abs(v) for v in cfg.camera_offset_m)
    z_c = critical_distance_m(half_width + offset, cfg.slm_pitch_m, cfg.wavelength_m)
    check(cfg.distance_m >= on_axis, "distance_m",
          f"{cfg.distance_m:g} m is below the critical distance {on_axis:.4g} m for this SLM/camera geometry; "
          f"the sampled kernel would alias. Increase distance_m or reduce the pitch")
    room = cfg.distance_m * cfg.wavelength_m / (2 * cfg.slm_pitch_m) - half_width
    check(cfg.distance_m >= z_c, "camera_offset_m",
          f"{cfg.camera_offset_m} m moves the camera so far off axis that the critical distance becomes "
          f"{z_c:.4g} m, beyond distance_m = {cfg.distance_m:g} m (the sampled kernel would alias); at this "
          f"distance each offset must be <= {room:.4g} m")


@BLACKBOXES.declare("owms_twin", "hil.sim_backends.owms:OWMSTwin")
@dataclass
class OWMSTwinConfig:
    slm_shape: list[Side] | None = None  # [rows, cols]; default [60, 60]
    slm_pitch_m: PositiveFloat = 8e-6
    wavelength_m: PositiveFloat = 700e-9
    waist_m: Annotated[float, Range(gt=0, le=1)] = 70e-6  # a bench beam; float32's w^2 overflows past 1e19 m
    distance_m: Annotated[float, Range(gt=0, le=100)] = 0.02  # a bench; float32's r^2 overflows past 1e19 m
    camera_shape: list[Side] | None = None  # [rows, cols]; default [32, 32]
    camera_pitch_m: PositiveFloat = 16e-6
    beam_offset_m: list[FiniteFloat] | None = None  # [x, y]; default [0, 0]
    camera_offset_m: list[FiniteFloat] | None = None  # [x, y]; default [0, 0]
    power: Annotated[float, Range(gt=0, le=1e30)] = 1.0  # float32 intensities stay finite
    out_of_bounds: Literal["reject", "clip"] = "reject"
    device: str = "auto"  # auto | cpu | cuda | cuda:N: where the propagation runs (answers come back on CPU)

    def __post_init__(self) -> None:
        check_device(self.device)
        self.slm_shape = [60, 60] if self.slm_shape is None else list(self.slm_shape)
        self.camera_shape = [32, 32] if self.camera_shape is None else list(self.camera_shape)
        self.beam_offset_m = [0.0, 0.0] if self.beam_offset_m is None else [float(v) for v in self.beam_offset_m]
        self.camera_offset_m = ([0.0, 0.0] if self.camera_offset_m is None
                                else [float(v) for v in self.camera_offset_m])
        for key in ("slm_shape", "camera_shape"):
            value = getattr(self, key)
            check(len(value) == 2, key, f"must be [rows, cols] (2 positive integers), got {value}")
        for key in ("beam_offset_m", "camera_offset_m"):
            value = getattr(self, key)
            check(len(value) == 2, key, f"must be [x, y] in metres (2 numbers), got {value}")
        ratio = self.camera_pitch_m / self.slm_pitch_m
        check(ratio <= MAX_GRID_SIDE, "camera_pitch_m",
              f"camera_pitch_m / slm_pitch_m = {ratio:.4g} field samples per camera pixel must be <= "
              f"{MAX_GRID_SIDE} (camera_pitch_m {self.camera_pitch_m:g}, slm_pitch_m {self.slm_pitch_m:g})")
        check(round(ratio) >= 1 and abs(ratio - round(ratio)) < 1e-6, "camera_pitch_m",
              f"must be an integer multiple of slm_pitch_m ({self.slm_pitch_m:g}), got {self.camera_pitch_m:g}")
        b = self.binning
        for i, axis in enumerate(("rows", "cols")):
            side = self.slm_shape[i] + self.camera_shape[i] * b
            check(side <= MAX_GRID_SIDE, "camera_shape",
                  f"the propagation grid would have {self.slm_shape[i]} SLM + {self.camera_shape[i]} x {b} "
                  f"camera samples = {side} {axis} (camera_pitch_m / slm_pitch_m = {b} samples per camera "
                  f"pixel), more than {MAX_GRID_SIDE}; reduce slm_shape, camera_shape or camera_pitch_m")
        # the beam is sampled on the SLM's pixels: its centre on the SLM, and at least a pixel wide, or every
        # sample underflows to 0 and the normalised beam is NaN
        for i, axis in enumerate(("x (rows)", "y (cols)")):
            half = 0.5 * self.slm_shape[i] * self.slm_pitch_m
            check(abs(self.beam_offset_m[i]) <= half, f"beam_offset_m[{i}]",
                  f"puts the beam's centre off the SLM: |{self.beam_offset_m[i]:g}| m > {half:g} m, half the "
                  f"SLM's {axis} extent (slm_shape x slm_pitch_m / 2)")
        check(self.waist_m >= 0.5 * self.slm_pitch_m, "waist_m",
              f"must be >= half the SLM pixel (slm_pitch_m / 2 = {0.5 * self.slm_pitch_m:g} m) for the beam to "
              f"be sampled, got {self.waist_m:g}")
        check_distance(self)

    @property
    def binning(self) -> int:
        return int(round(self.camera_pitch_m / self.slm_pitch_m))

    def static_spec(self) -> StaticSpec:
        """``rows * cols`` SLM phases -> a ``camera_shape`` image, on an SLM of ``slm_shape``."""
        rows, cols = self.slm_shape
        return StaticSpec(rows * cols, tuple(self.camera_shape), (rows, cols))


@OBJECTIVES.declare("two_spots", "hil.sim_backends.owms:TwoSpots")
@dataclass
class TwoSpotsConfig:
    separation_px: NonNegativeFloat = 12.0
    waist_px: Annotated[float, Range(ge=0.25)] = 3.0  # narrower, a spot between pixel centres images as 0
    offset_px: list[FiniteFloat] | None = None  # [x, y] of the spot pair's centre; default [0, 0]

    def __post_init__(self) -> None:
        self.offset_px = [0.0, 0.0] if self.offset_px is None else [float(v) for v in self.offset_px]
        check(len(self.offset_px) == 2, "offset_px", f"must be [x, y] in camera pixels, got {self.offset_px}")

    def check_output_shape(self, output_shape: tuple[int, ...]) -> None:
        """A 2-D camera image, on which at least one spot falls (else the target is empty)."""
        check(len(output_shape) == 2, "", f"two_spots needs a 2-D camera image; the blackbox outputs {output_shape}")
        target = two_spot_target(output_shape, self.separation_px, self.waist_px, self.offset_px)
        check(bool(np.isfinite(target).all()), "",
              f"two_spots: both spots (separation_px {self.separation_px:g}, offset_px {self.offset_px}, waist_px "
              f"{self.waist_px:g}) fall outside the {output_shape[0]} x {output_shape[1]} camera image; the target "
              f"would be empty")


def two_spot_target(shape: tuple[int, ...], separation_px: float, waist_px: float,
                    offset_px: list[float] | tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """``rows x cols`` float32 image of two Gaussian spots (peak 1) centred on the camera plus ``offset_px``
    (all NaN when both spots fall outside it: every pixel underflows to 0)."""
    rows, cols = shape
    f32 = np.float32  # computed in float32 throughout, as the twin's images are
    yy, xx = np.meshgrid(np.arange(rows, dtype=f32) - f32((rows - 1) / 2) - f32(offset_px[1]),
                         np.arange(cols, dtype=f32) - f32((cols - 1) / 2) - f32(offset_px[0]), indexing="ij")
    spots = sum(np.exp(f32(-2) * ((xx - f32(s)) ** 2 + yy**2) / f32(waist_px**2))
                for s in (-separation_px / 2, separation_px / 2))
    with np.errstate(invalid="ignore"):
        return (spots / spots.max()).astype(np.float32)
