"""Optical rig: an SLM and a camera driven through slmsuite, as one BlackBox (``type: slm_camera_rig``).

Any SLM and camera slmsuite supports plug in by naming the class and its init
arguments (``pip install 'hil[slm]'``; slmsuite is imported only on connect)::

    blackbox:
      type: slm_camera_rig
      slm: {class: slmsuite.hardware.slms.simulated.SimulatedSLM, args: [[64, 64]], kwargs: {pitch_um: [8, 8]}}
      camera: {class: slmsuite.hardware.cameras.simulated.SimulatedCamera, args: [$slm]}   # $slm: the SLM object
      exposure_s: 0.02
      roi: [16, 16, 32, 32]      # y0, x0, height, width of the frame kept
      regions: [4, 4]            # optional: sum the ROI over a grid of detector regions

A query row is a phase pattern (``slm_rows x slm_cols`` phases in
``[phase_min, phase_max]``, or ``blocks`` macro-pixels): the rig displays it,
waits ``settle_s``, grabs ``frames`` frames and averages them, and returns the
ROI (``roi_h x roi_w`` counts) or its detector regions. Our layer adds the
declared limits (the BlackBox bounds; the exposure must lie inside the camera's
``exposure_bounds_s`` when it declares them), the settle time, averaging, ROI
and regions, and a saturation check: a frame whose ROI has more than
``max_saturated_fraction`` of its pixels at full scale is an error that says
to lower the exposure (``on_saturation: error``) or is counted
(``on_saturation: count``).
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from hil.drivers.optical_rig_config import MAX_SIDE_PX, RoiEntry, Side, SLMCameraRigConfig  # noqa: F401
from hil.drivers.rig import RowRig

from hil.blackbox import BlackBox, BlackBoxSpec
from hil.errors import DeviceError
from hil.registry import BLACKBOXES


def _instantiate(section: dict[str, Any], what: str, slm: object = None) -> object:
    path = section.get("class", "")
    module_name, _, cls_name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise DeviceError(f"the rig's {what}.class: cannot import {path!r} ({exc}); slmsuite classes need "
                          f"pip install 'hil[slm]'") from exc

    def resolve(v: object) -> object:
        return slm if v == "$slm" else v

    args = [resolve(a) for a in section.get("args", [])]
    kwargs = {k: resolve(v) for k, v in section.get("kwargs", {}).items()}
    try:
        return cls(*args, **kwargs)
    except Exception as exc:
        raise DeviceError(f"the rig's {what}: {path}(*{args}, **{kwargs}) failed: {exc}") from exc


@dataclass
class SaturationStats:
    frames: int = 0
    saturated_frames: int = 0


@BLACKBOXES.register("slm_camera_rig")
class SLMCameraRig(RowRig):
    """``batch x n_phases`` phases -> ``batch x roi_h x roi_w`` counts (or ``batch x regions`` sums)."""

    Config = SLMCameraRigConfig

    def __init__(self, config: Config) -> None:
        c = self.config = config
        s = c.static_spec()
        n_in = s.input_dim
        super().__init__(BlackBoxSpec(name="slm_camera_rig", input_dim=n_in, lower=torch.full((n_in,), c.phase_min),
                                      upper=torch.full((n_in,), c.phase_max), output_shape=s.output_shape,
                                      stochastic=True, out_of_bounds=c.out_of_bounds))
        self.slm_shape = s.slm_shape
        self.input_image_shape = tuple(c.blocks) if c.blocks else self.slm_shape  # the input as an image (reports)
        self.slm = self.camera = None
        self.saturation = SaturationStats()
        self.full_scale = 0.0

    settle_after_row = False  # the rig settles between display and grab, in _row

    what_to_check = "the SLM's and the camera's connections and drivers, and the camera's trigger and timeout"

    @property
    def address(self) -> str:
        return f"SLM + camera rig ({self.config.slm.get('class')}, {self.config.camera.get('class')})"

    @property
    def is_open(self) -> bool:
        return self.camera is not None

    @classmethod
    def from_config(cls, config: Config) -> SLMCameraRig:
        return cls(config)

    def _connect(self) -> None:
        self._open()

    def _open(self) -> None:
        c = self.config
        self.slm = _instantiate(c.slm, "slm")
        try:
            self.camera = _instantiate(c.camera, "camera", slm=self.slm)
            shape = tuple(int(s) for s in self.slm.shape)
            if shape != self.slm_shape:
                raise DeviceError(f"the SLM has {list(shape)} pixels (rows, cols); the config says slm_shape "
                                  f"{list(self.slm_shape)}")
            cam_shape = tuple(int(s) for s in self.camera.shape)
            y0, x0, h, w = c.roi
            if y0 < 0 or x0 < 0 or y0 + h > cam_shape[0] or x0 + w > cam_shape[1]:
                raise DeviceError(f"roi {c.roi} does not fit the camera's {list(cam_shape)} frame")
            if c.exposure_s is not None:
                bounds = getattr(self.camera, "exposure_bounds_s", None)
                if bounds is not None and not (bounds[0] <= c.exposure_s <= bounds[1]):
                    raise DeviceError(f"exposure_s {c.exposure_s} s is outside the camera's "
                                      f"{list(bounds)} s")
                self.camera.set_exposure(c.exposure_s)
            self.full_scale = float(2 ** int(self.camera.bitdepth) - 1)
            if c.slm_gamma is not None:
                self.slm.set_gamma(np.asarray(c.slm_gamma["gamma"], dtype=float),
                                   levels=np.asarray(c.slm_gamma["levels"]))
        except BaseException:
            self._close()
            raise

    def _close(self) -> None:
        for dev in (self.camera, self.slm):
            if dev is not None:
                try:
                    dev.close()
                except Exception:
                    pass
        self.slm = self.camera = None

    # -- what calibrations drive (hil.calibration): exposure within the camera's limits ----------------------
    @property
    def exposure_bounds_s(self) -> tuple[float, float]:
        bounds = getattr(self.camera, "exposure_bounds_s", None)
        return (1e-6, 10.0) if bounds is None else (float(bounds[0]), float(bounds[1]))

    @property
    def full_scale_counts(self) -> float:
        return self.full_scale

    def get_exposure_s(self) -> float:
        if self.camera is None:
            raise DeviceError("the rig is not connected")
        return float(self.camera.get_exposure())

    def set_exposure_s(self, exposure_s: float) -> None:
        if self.camera is None:
            raise DeviceError("the rig is not connected")
        lo, hi = self.exposure_bounds_s
        if not (lo <= exposure_s <= hi):
            raise DeviceError(f"exposure {exposure_s:.6g} s is outside the camera's [{lo:g}, {hi:g}] s")
        self.camera.set_exposure(float(exposure_s))
        self.config = replace(self.config, exposure_s=float(exposure_s))

    def frame_view(self) -> FrameView:
        """The same open SLM and camera as a BlackBox of whole frames, for calibrations that drive every pixel
        (slmsuite's): display levels in, the camera's full frame out, validated and logged like any query."""
        if self.camera is None:
            raise DeviceError("the rig is not connected")
        return FrameView(self)

    def pattern(self, row: torch.Tensor) -> np.ndarray:
        """One input row -> the ``slm_rows x slm_cols`` phase pattern displayed."""
        rows, cols = self.slm_shape
        if self.config.blocks:
            br, bc = self.config.blocks
            img = row.reshape(br, bc).repeat_interleave(rows // br, 0).repeat_interleave(cols // bc, 1)
        else:
            img = row.reshape(rows, cols)
        return img.double().numpy()

    def _frame(self) -> np.ndarray:
        c = self.config
        y0, x0, h, w = c.roi
        acc = np.zeros((h, w))
        for _ in range(c.frames):
            frame = np.asarray(self.camera.get_image(), dtype=np.float64)[y0: y0 + h, x0: x0 + w]
            self.saturation.frames += 1
            saturated = float((frame >= self.full_scale).mean())
            if saturated > c.max_saturated_fraction:
                self.saturation.saturated_frames += 1
                if c.on_saturation == "error":
                    raise DeviceError(f"camera saturated: {100 * saturated:.1f} % of the ROI at full scale "
                                      f"({self.full_scale:.0f}); lower the rig's exposure_s (now "
                                      f"{self.camera.get_exposure():.3g} s)")
            acc += frame
        return acc / c.frames

    def _row(self, values: list[float]) -> list[float] | np.ndarray:
        c = self.config
        self.slm.set_phase(self.pattern(torch.tensor(values)), settle=False)
        if c.settle_s * c.sleep_scale > 0:
            time.sleep(c.settle_s * c.sleep_scale)
        img = self._frame()
        if c.regions:
            r, q = c.regions
            img = img.reshape(r, img.shape[0] // r, q, img.shape[1] // q).sum(axis=(1, 3)).reshape(-1)
        return img


class FrameView(BlackBox):
    """``batch x (rows * cols)`` SLM display levels (whole numbers in ``[0, levels - 1]``) -> ``batch x cam_rows x
    cam_cols`` full camera frames, on an open :class:`SLMCameraRig`'s devices. Each row is displayed as integer
    levels (``set_phase(levels, phase_correct=False)``, slmsuite's direct display), the rig's settle time is
    waited, and one frame is grabbed."""

    def __init__(self, rig: SLMCameraRig) -> None:
        slm, cam = rig.slm, rig.camera
        levels = int(getattr(slm, "bitresolution", 256))
        n = rig.slm_shape[0] * rig.slm_shape[1]
        super().__init__(BlackBoxSpec(name="slm_camera_rig.frames", input_dim=n, lower=torch.zeros(n),
                                      upper=torch.full((n,), float(levels - 1)), output_shape=tuple(cam.shape),
                                      stochastic=True, integer=True))
        self.rig = rig
        self._dtype = np.asarray(slm.display).dtype
        self._connected = True  # the rig's devices are open already

    def _close(self) -> None:
        pass  # the rig owns the devices

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        rig, frames = self.rig, []
        for row in x:
            display = np.rint(row.numpy()).astype(self._dtype).reshape(rig.slm_shape)
            rig.slm.set_phase(display, phase_correct=False, settle=False)
            if rig.config.settle_s * rig.config.sleep_scale > 0:
                time.sleep(rig.config.settle_s * rig.config.sleep_scale)
            frames.append(np.asarray(rig.camera.get_image(), dtype=np.float32))
        return torch.from_numpy(np.stack(frames))
