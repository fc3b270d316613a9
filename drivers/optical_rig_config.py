"""The ``slm_camera_rig`` rig's config (:class:`hil.drivers.optical_rig.SLMCameraRig`), importable without torch
(or slmsuite): every key is checked here, and :meth:`SLMCameraRigConfig.static_spec` gives the rig's shapes, which
the rig itself is built with."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from hil.drivers.rig_config import Float32, RigOptions, check_bounds

from hil.config import PositiveFloat, PositiveInt, Range, UnitFloat, check
from hil.registry import BLACKBOXES
from hil.shapes import StaticSpec

#: the most pixels an SLM or a camera ROI may have on a side (the largest sensors and SLMs have < 16k)
MAX_SIDE_PX = 16384
#: pixels on a side (an SLM's rows or cols, an ROI's height or width): 1 .. MAX_SIDE_PX
Side = Annotated[int, Range(ge=1, le=MAX_SIDE_PX)]
#: an ROI entry: offsets y0, x0 >= 0, sizes height, width >= 1 (checked in __post_init__)
RoiEntry = Annotated[int, Range(ge=0, le=MAX_SIDE_PX)]


def _finite_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_device_section(section: object, key: str) -> None:
    """``slm:`` / ``camera:``: ``{class: <import path>, args: [...], kwargs: {...}}``, as
    :func:`hil.drivers.optical_rig._instantiate` uses it."""
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


@BLACKBOXES.declare("slm_camera_rig", "hil.drivers.optical_rig:SLMCameraRig")
@dataclass
class SLMCameraRigConfig(RigOptions):
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

    def static_spec(self) -> StaticSpec:
        """A phase per macro-pixel (``blocks``) or per SLM pixel in; the ROI's ``height x width`` counts (or one
        sum per detector region) out; the SLM's ``slm_shape``."""
        n_in = self.blocks[0] * self.blocks[1] if self.blocks else self.slm_shape[0] * self.slm_shape[1]
        assert self.roi is not None  # __post_init__ checks it
        out: tuple[int, ...] = (self.regions[0] * self.regions[1],) if self.regions else (self.roi[2], self.roi[3])
        return StaticSpec(n_in, out, (self.slm_shape[0], self.slm_shape[1]))
