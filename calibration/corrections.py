"""Corrections that calibration records apply to a rig: BlackBoxes around the rig, appended outermost.

Each acts on exactly what its calibration saw (the rig's inputs or outputs as the rig exposes them), and
each has a ``forward_differentiable``, so a corrected twin stays a differentiable model:

* ``dark_subtraction``: ``y - dark`` (a dark frame of the output's shape, or one level);
* ``frame_average``: each query answered by the mean of ``frames`` repeated queries of the rig (for rigs
  without their own ``frames`` option);
* ``slm_lut``: a phase lookup table: the desired phase is sent as the drive that produces it, by monotone
  linear interpolation of the measured (drive, phase) table; phases the SLM cannot reach go to the nearer
  end of its range, across the wrap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated

import torch
from hil.sim_backends.imperfections import lut_drive

from hil.blackbox import BlackBox, BlackBoxWrapper
from hil.config import Range, check
from hil.errors import ConfigError
from hil.registry import WRAPPERS

#: float32's largest finite value: the tables below become float32 tensors
F32_MAX = float(torch.finfo(torch.float32).max)
#: a finite number that stays finite as float32
Float32 = Annotated[float, Range(ge=-F32_MAX, le=F32_MAX)]


@WRAPPERS.register("dark_subtraction")
class DarkSubtraction(BlackBoxWrapper):
    """``y -> y - dark``: ``dark_counts`` is one level or a frame of the output's shape (flattened)."""

    @dataclass
    class Config:
        dark_counts: list[Float32] = field(default_factory=lambda: [0.0])

        def __post_init__(self) -> None:
            check(len(self.dark_counts) >= 1, "dark_counts", "give a level or a frame (at least one number), got []")

    def __init__(self, inner: BlackBox, dark_counts: list[float]) -> None:
        super().__init__(inner)
        dark = torch.tensor(dark_counts, dtype=torch.float32)
        n = inner.spec.output_dim
        if dark.numel() not in (1, n):
            raise ConfigError(f"dark_subtraction.dark_counts has {dark.numel()} values; the rig gives {n} outputs "
                              f"per query: rerun the camera calibration on this rig")
        self.dark = dark.reshape(inner.spec.output_shape) if dark.numel() == n else dark.reshape(())

    @classmethod
    def from_config(cls, config: Config, *, inner: BlackBox) -> DarkSubtraction:
        return cls(inner, config.dark_counts)

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(self.inner._query(x)).to(torch.float32) - self.dark

    def forward_differentiable(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward_differentiable(x) - self.dark.to(x.device)


@WRAPPERS.register("frame_average")
class FrameAverage(BlackBoxWrapper):
    """Each row answered by the mean of ``frames`` repeated rows (noise falls as ``1 / sqrt(frames)``)."""

    @dataclass
    class Config:
        frames: Annotated[int, Range(ge=1, le=1024)] = 1

    def __init__(self, inner: BlackBox, frames: int) -> None:
        super().__init__(inner)
        self.frames = frames

    @classmethod
    def from_config(cls, config: Config, *, inner: BlackBox) -> FrameAverage:
        return cls(inner, config.frames)

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        if self.frames == 1:
            return self.inner._query(x)
        y = torch.as_tensor(self.inner._query(x.repeat_interleave(self.frames, dim=0))).to(torch.float32)
        return y.reshape(x.shape[0], self.frames, *y.shape[1:]).mean(dim=1)


@WRAPPERS.register("slm_lut")
class SLMLookupTable(BlackBoxWrapper):
    """Send each desired phase as the drive that gives it: ``drive_rad[i]`` (increasing, in the rig's input
    bounds) produced ``phase_rad[i]`` (non-decreasing, relative to the lowest drive's phase)."""

    @dataclass
    class Config:
        drive_rad: list[Float32] = field(default_factory=lambda: [0.0, 2 * math.pi])
        phase_rad: list[Float32] = field(default_factory=lambda: [0.0, 2 * math.pi])

        def __post_init__(self) -> None:
            drive, phase = self.drive_rad, self.phase_rad
            check(len(drive) >= 2, "drive_rad", f"give a table of at least 2 drives, got {len(drive)}")
            check(len(phase) == len(drive), "phase_rad", f"must give one phase per drive ({len(drive)}), got "
                                                         f"{len(phase)}")
            for i in range(1, len(drive)):
                check(drive[i] > drive[i - 1], f"drive_rad[{i}]",
                      f"the drives must increase: must be > drive_rad[{i - 1}] ({drive[i - 1]:g}), got {drive[i]:g}")
                check(phase[i] >= phase[i - 1], f"phase_rad[{i}]",
                      f"the phases must not fall: must be >= phase_rad[{i - 1}] ({phase[i - 1]:g}), got {phase[i]:g}")
            check(phase[-1] > phase[0], "phase_rad", f"the phase must rise over the table: the last ({phase[-1]:g}) "
                                                     f"must be > the first ({phase[0]:g})")
            check(phase[-1] - phase[0] <= F32_MAX, "phase_rad", f"the phase's rise {phase[-1] - phase[0]:.4g} "
                                                                f"overflows float32; give phases in radians")

    def __init__(self, inner: BlackBox, drive_rad: list[float], phase_rad: list[float]) -> None:
        super().__init__(inner)
        lo, hi = float(inner.spec.lower.min()), float(inner.spec.upper.max())
        if drive_rad[0] < lo - 1e-6 or drive_rad[-1] > hi + 1e-6:
            raise ConfigError(f"slm_lut.drive_rad spans [{drive_rad[0]:.4g}, {drive_rad[-1]:.4g}], outside the rig's "
                              f"inputs [{lo:.4g}, {hi:.4g}]: rerun the slm_phase calibration on this rig")
        self.lower, self.period = lo, hi - lo
        self.drive = torch.tensor(drive_rad, dtype=torch.float32)
        self.phase = torch.tensor(phase_rad, dtype=torch.float32) - phase_rad[0]

    @classmethod
    def from_config(cls, config: Config, *, inner: BlackBox) -> SLMLookupTable:
        return cls(inner, config.drive_rad, config.phase_rad)

    def drive_for(self, x: torch.Tensor) -> torch.Tensor:
        """Desired phases (``batch x d_in``, in the rig's bounds) -> drives; piecewise linear, differentiable."""
        return lut_drive(x, self.drive.to(x.device), self.phase.to(x.device), self.lower, self.period)

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner._query(self.drive_for(x))

    def forward_differentiable(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward_differentiable(self.drive_for(x))
