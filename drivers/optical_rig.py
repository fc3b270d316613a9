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
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal

import numpy as np
import torch
from hil.drivers.rig import Float32, RigOptions, RowRig, check_bounds

from hil.blackbox import BlackBox, BlackBoxSpec
from hil.config import PositiveFloat, PositiveInt, Range, UnitFloat, check
from hil.errors import DeviceError
from hil.registry import BLACKBOXES

#: the most pixels an SLM or a camera ROI may have on a side (the largest sensors and SLMs have < 16k)
MAX_SIDE_PX = 16384
#: pixels on a side (an SLM's rows or cols, an ROI's height or width): 1 .. MAX_SIDE_PX
Side = Annotated[int, Range(ge=1, le=MAX_SIDE_PX)]
#: an ROI entry: offsets y0, x0 >= 0, sizes height, width >= 1 (checked in __post_init__)
RoiEntry = Annotated[int, Range(ge=0, le=MAX_SIDE_PX)]


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


def _finite_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_device_section(section: object, key: str) -> None:
    """``slm:`` / ``camera:``: ``{class: <import path>, args: [...], kwargs: {...}}``, as :func:`_instantiate`
    uses it."""
    check(isinstance(section, Mapping) and bool(section.get("class")), key,
          "give {class: <slmsuite class path>, args: [...], kwargs: {...}}")
    assert isinstance(section, Mapping)
    unknown = sorted(str(k) for k in section if k not in ("class", "args", "kwargs"))
    check(not unknown, f"{key}.{unknown[0] if unknown else ''}", "unknown key; allowed keys: args, class, kwargs")
    path = section["class"]
    check(isinstance(path, str) and "." in path.strip(".") and not path.startswith("."), f"{key}.class",
          f"give the class's import path, e.g. slmsuite.hardware.cameras.simulated.SimulatedCamera, got {path!r}")
    check(isinstance(section.get("args", []), list), f"{key}.args",
          f"expected a list of positional arguments, got {section.get('args')!r}")
    kwargs = section.get("kwargs", {})
    check(isinstance(kwargs, Mapping), f"{key}.kwargs", f"expected a mapping of keyword arguments, got {kwargs!r}")
    bad = [k for k in kwargs if not isinstance(k, str) or not k.isidentifier()]
    check(not bad, f"{key}.kwargs", f"keyword argument names must be identifiers, got {bad[0]!r}" if bad else "")


def _check_slm_gamma(g: Mapping[str, Any]) -> None:
    """``{levels: [...], gamma: [...]}``: what ``hil calibrate slmsuite_pixel`` writes (``slm.set_gamma``)."""
    what = "give {levels: [...], gamma: [...]} of the same length (what hil calibrate slmsuite_pixel writes)"
    unknown = sorted(str(k) for k in g if k not in ("levels", "gamma"))
    check(not unknown, f"slm_gamma.{unknown[0] if unknown else ''}", "unknown key; allowed keys: gamma, levels")
    for key in ("levels", "gamma"):
        check(key in g, "slm_gamma", f"missing key {key!r}; {what}")
        values = g[key]
        check(isinstance(values, list) and len(values) >= 2, f"slm_gamma.{key}",
              f"expected a list of at least 2 numbers, got {values!r}")
        for i, v in enumerate(values):
            check(_finite_number(v), f"slm_gamma.{key}[{i}]", f"expected a finite number, got {v!r}")
    check(len(g["levels"]) == len(g["gamma"]), "slm_gamma.gamma",
          f"must have one entry per level ({len(g['levels'])}), got {len(g['gamma'])}")
    for i, v in enumerate(g["levels"]):
        check(v >= 0, f"slm_gamma.levels[{i}]", f"a display level must be >= 0, got {v!r}")
    check(len(set(g["levels"])) == len(g["levels"]), "slm_gamma.levels", "must not repeat a level")


def _check_fourier_affine(f: Mapping[str, Any]) -> None:
    """``{M: [[a, b], [c, d]], b: [x, y]}``: what ``hil calibrate slmsuite_fourier`` writes."""
    unknown = sorted(str(k) for k in f if k not in ("M", "b"))
    check(not unknown, f"fourier_affine.{unknown[0] if unknown else ''}", "unknown key; allowed keys: M, b")
    for key in ("M", "b"):
        check(key in f, "fourier_affine", f"missing key {key!r}; give {{M: [[a, b], [c, d]], b: [x, y]}} (what hil "
                                          f"calibrate slmsuite_fourier writes)")
    m, b = f["M"], f["b"]
    check(isinstance(m, list) and len(m) == 2 and all(isinstance(r, list) and len(r) == 2 for r in m),
          "fourier_affine.M", f"expected a 2 x 2 matrix [[a, b], [c, d]], got {m!r}")
    for i, row in enumerate(m):
        for j, v in enumerate(row):
            check(_finite_number(v), f"fourier_affine.M[{i}][{j}]", f"expected a finite number, got {v!r}")
    check(isinstance(b, list) and len(b) == 2, "fourier_affine.b", f"expected [x, y], got {b!r}")
    for i, v in enumerate(b):
        check(_finite_number(v), f"fourier_affine.b[{i}]", f"expected a finite number, got {v!r}")


@dataclass
class SaturationStats:
    frames: int = 0
    saturated_frames: int = 0


@BLACKBOXES.register("slm_camera_rig")
class SLMCameraRig(RowRig):
    """``batch x n_phases`` phases -> ``batch x roi_h x roi_w`` counts (or ``batch x regions`` sums)."""

    @dataclass
    class Config(RigOptions):
        slm: dict = field(default_factory=dict)
        camera: dict = field(default_factory=dict)
        slm_shape: list[Side] = field(default_factory=lambda: [64, 64])  # rows, cols: checked on connect
        phase_min: Float32 = 0.0
        phase_max: Float32 = 2 * math.pi
        blocks: list[PositiveInt] | None = None
        exposure_s: PositiveFloat | None = None
        frames: Annotated[int, Range(ge=1, le=1024)] = 1
        roi: list[RoiEntry] | None = None  # y0, x0, height, width
        regions: list[PositiveInt] | None = None
        on_saturation: Literal["error", "count"] = "error"
        max_saturated_fraction: UnitFloat = 0.01
        #: the SLM's phase response from slmsuite's pixel calibration (``hil calibrate slmsuite_pixel``):
        #: ``{levels: [...], gamma: [...]}`` (gamma in units of 2 pi), applied with ``slm.set_gamma`` on connect
        slm_gamma: dict | None = None
        #: slmsuite's Fourier calibration (``hil calibrate slmsuite_fourier``): ``{M: [[...], [...]], b: [...]}``, the
        #: affine map from the SLM's k-space to camera pixels, for slmsuite holography and calibrations on the rig
        fourier_affine: dict | None = None
        #: real sleeps (settle_s) are multiplied by this: 0 on a simulated pair, so calibrations that step the
        #: settle time run at simulator speed (the settle times are still what the config and records say)
        sleep_scale: UnitFloat = 1.0

        def __post_init__(self) -> None:
            super().__post_init__()
            for key in ("slm", "camera"):
                _check_device_section(getattr(self, key), key)
            check(len(self.slm_shape) == 2, "slm_shape", f"give [rows, cols], got {self.slm_shape}")
            check_bounds(self.phase_min, self.phase_max, "phase_min", "phase_max")
            if self.blocks is not None:
                check(len(self.blocks) == 2, "blocks", f"give [rows, cols] of macro-pixels, got {self.blocks}")
                for i, (n, b) in enumerate(zip(self.slm_shape, self.blocks, strict=True)):
                    check(n % b == 0, f"blocks[{i}]", f"must divide slm_shape[{i}] ({n}) evenly, got {b}")
            check(self.roi is not None, "roi", "give the camera region to read, [y0, x0, height, width]")
            assert self.roi is not None
            check(len(self.roi) == 4, "roi", f"give [y0, x0, height, width], got {self.roi}")
            for i, name in ((2, "height"), (3, "width")):
                check(self.roi[i] >= 1, f"roi[{i}]", f"the ROI's {name} must be >= 1, got {self.roi[i]}")
            if self.regions is not None:
                check(len(self.regions) == 2, "regions", f"give [rows, cols] of detector regions, got {self.regions}")
                for i, (n, r) in enumerate(zip(self.roi[2:], self.regions, strict=True)):
                    check(n % r == 0, f"regions[{i}]", f"must divide the roi's {('height', 'width')[i]} (roi[{i + 2}] "
                                                       f"= {n}) evenly, got {r}")
            if self.slm_gamma is not None:
                _check_slm_gamma(self.slm_gamma)
            if self.fourier_affine is not None:
                _check_fourier_affine(self.fourier_affine)

    def __init__(self, config: Config) -> None:
        c = self.config = config
        n_in = c.blocks[0] * c.blocks[1] if c.blocks else c.slm_shape[0] * c.slm_shape[1]
        assert c.roi is not None  # Config checks it
        out: tuple[int, ...] = (c.regions[0] * c.regions[1],) if c.regions else (c.roi[2], c.roi[3])
        super().__init__(BlackBoxSpec(name="slm_camera_rig", input_dim=n_in, lower=torch.full((n_in,), c.phase_min),
                                      upper=torch.full((n_in,), c.phase_max), output_shape=out, stochastic=True,
                                      out_of_bounds=c.out_of_bounds))
        self.slm_shape = tuple(c.slm_shape)
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
