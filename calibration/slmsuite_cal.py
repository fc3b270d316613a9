"""slmsuite's own calibrations on an SLM + camera rig (``type: slm_camera_rig``), through the rig's logged path.

slmsuite's ``FourierSLM`` drives the SLM and reads the camera itself. Here it gets the rig's own SLM and a
camera proxy whose ``get_image`` is a query of the rig's :class:`~hil.drivers.optical_rig.FrameView` (the
levels slmsuite displayed in, the whole frame out): every frame slmsuite looks at is validated and logged
(``purpose: calibration``), and nothing outside the SLM's levels reaches it.

* ``slmsuite_fourier``: ``fourier_calibrate`` (a spot array) -> the affine map from the SLM's k-space to camera
  pixels (``M``, ``b``): recorded for holography on the rig (``fourier_calibrate_analytic(M, b)``).
* ``slmsuite_pixel``: ``pixel_calibrate`` then ``pixel_calibration_process`` -> the SLM's phase response per
  display level (``gamma``, in units of 2 pi): applied as the rig's ``slm_gamma`` (``slm.set_gamma`` on connect),
  so every later phase goes through slmsuite's corrected lookup table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np

from hil.blackbox import BlackBox
from hil.calib.base import Calibration, CalibrationContext, CalibrationResult, CalibrationSession, figure
from hil.config import Range
from hil.errors import CalibrationError
from hil.registry import CALIBRATIONS


def _rig_of(box: Any) -> Any:
    while box is not None and not callable(getattr(box, "frame_view", None)):
        box = getattr(box, "inner", None)
    return box


def _missing(rig: BlackBox, context: CalibrationContext) -> str | None:
    base = _rig_of(rig)
    if base is None:
        return "it needs an SLM + camera rig driven through slmsuite (type: slm_camera_rig)"
    if context.rig_section.get("type") != "slm_camera_rig":
        return "it needs the rig itself (type: slm_camera_rig)"
    c = base.config
    if abs(c.phase_min) > 1e-9 or abs(c.phase_max - 2 * math.pi) > 1e-6:
        return "slmsuite's calibrations display the SLM's full range of levels; this rig declares a narrower " \
               f"phase range [{c.phase_min:g}, {c.phase_max:g}]"
    return None


class ProxyCamera:
    """The rig's camera as slmsuite sees it, except that every frame is a logged query of the frame view."""

    def __init__(self, session: CalibrationSession, rig: Any) -> None:
        self._session, self._rig = session, rig

    def get_image(self, *args: Any, **kwargs: Any) -> np.ndarray:
        levels = np.asarray(self._rig.slm.display, dtype=np.float32).reshape(1, -1)
        import torch

        frame = self._session.query(torch.from_numpy(levels))[0].numpy()
        return frame

    def flush(self, *args: Any, **kwargs: Any) -> None:
        pass  # each frame is grabbed fresh

    def autoexpose(self, *args: Any, **kwargs: Any) -> None:
        raise CalibrationError("autoexposure would grab frames outside the logged path; run the camera calibration "
                               "first instead")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._rig.camera, name)


def _fourier_slm(session: CalibrationSession) -> tuple[Any, Any]:
    from slmsuite.hardware.cameraslms import FourierSLM

    rig = _rig_of(session.base)
    return FourierSLM(ProxyCamera(session, rig), rig.slm), rig


class _SlmsuiteCalibration(Calibration):
    def missing(self, rig: BlackBox, context: CalibrationContext) -> str | None:
        return _missing(rig, context)

    def query_box(self, rig: BlackBox) -> BlackBox:
        return _rig_of(rig).frame_view()


@CALIBRATIONS.register("slmsuite_fourier")
class SlmsuiteFourier(_SlmsuiteCalibration):
    name = "slmsuite_fourier"
    order = 35
    summary = "slmsuite's Fourier calibration: the affine map from the SLM's k-space to camera pixels"

    @dataclass
    class Config:
        #: spots per side of the calibration array (slmsuite's default 10 does not fit 64 px)
        array_shape: Annotated[int, Range(ge=2, le=32)] = 6
        array_pitch: Annotated[int, Range(ge=2, le=64)] = 8  # pixels between spots

    def measure(self, session: CalibrationSession) -> CalibrationResult:
        fs, _ = _fourier_slm(session)
        c = self.config
        try:
            cal = fs.fourier_calibrate(array_shape=c.array_shape, array_pitch=c.array_pitch, plot=0)
        except Exception as exc:  # slmsuite raises ValueError/RuntimeError on a spot array it cannot fit
            raise CalibrationError(f"slmsuite's fourier_calibrate failed: {exc}; try --option array_shape=... "
                                   f"--option array_pitch=... (smaller for small SLMs)") from exc
        m, b = np.asarray(cal["M"], dtype=float), np.asarray(cal["b"], dtype=float).reshape(-1)
        return CalibrationResult(
            fitted={"M": m.tolist(), "b": b.tolist()},
            corrections={"set": [{"on": "blackbox", "key": "fourier_affine", "value": {"M": m.tolist(),
                                                                                    "b": b.tolist()}}]},
            lines=[f"k-space -> camera pixels: M = {np.round(m, 2).tolist()}, b = {np.round(b, 2).tolist()} px",
                   "the rig keeps it as fourier_affine (FourierSLM(cam, slm).fourier_calibrate_analytic(M, b))"])


@CALIBRATIONS.register("slmsuite_pixel")
class SlmsuitePixel(_SlmsuiteCalibration):
    name = "slmsuite_pixel"
    order = 45
    summary = "slmsuite's pixel calibration: the SLM's phase per display level -> its corrected lookup table"

    @dataclass
    class Config:
        levels: Annotated[int, Range(ge=4, le=256)] = 32
        quick: bool = False  # one direction and period: ~4x fewer frames, a little less accurate

    def measure(self, session: CalibrationSession) -> CalibrationResult:
        fs, rig = _fourier_slm(session)
        c = self.config
        bits = int(rig.slm.bitresolution)
        # every (bits // levels)-th level, and the top one (no extrapolation); an SLM with fewer levels: all of them
        levels = np.unique(np.r_[np.arange(0, bits, max(1, bits // c.levels)), bits - 1])
        kwargs: dict[str, Any] = {"directions": "x", "periods": 1} if c.quick else {}
        affine = rig.config.fourier_affine
        if affine is not None:
            fs.fourier_calibrate_analytic(np.asarray(affine["M"], float), np.asarray(affine["b"], float).reshape(2, 1))
        else:  # slmsuite's pixel calibration finds the diffraction orders through the Fourier calibration
            fs.fourier_calibrate(array_shape=6, array_pitch=8, plot=0)
        if rig.config.slm_gamma is not None:
            rig.slm.set_gamma(None)  # measure the raw response (integer display levels bypass it anyway)
        try:
            fs.pixel_calibrate(levels=levels, plot=0, **kwargs)
            gamma = np.asarray(fs.pixel_calibration_process(plot=0, apply=False), dtype=float)
        except Exception as exc:
            raise CalibrationError(f"slmsuite's pixel calibration failed: {exc}") from exc
        r2 = float(fs.calibrations.get("pixel", {}).get("gamma_r2", float("nan")))
        self._data = (levels, gamma)
        return CalibrationResult(
            measured={"levels": levels.tolist()},
            fitted={"gamma": gamma.tolist(), "r2": r2, "max_phase_rad": float(2 * math.pi * gamma.max())},
            corrections={"set": [{"on": "blackbox", "key": "slm_gamma",
                                  "value": {"levels": levels.astype(float).tolist(), "gamma": gamma.tolist()}}]},
            lines=[f"phase response over {len(levels)} levels: reaches {gamma.max():.3f} x 2 pi (fit R^2 {r2:.3f})"])

    def plot(self, result: CalibrationResult, path: Path) -> Path:
        levels, gamma = self._data
        with figure(path, 1, size=(6, 4)) as (fig, ax):
            ax.plot(levels, 2 * math.pi * gamma, "o-", ms=3, label="slmsuite pixel calibration")
            ax.plot(levels, 2 * math.pi * levels / (levels.max() + 1), "k:", label="ideal")
            ax.set(xlabel="display level", ylabel="phase (rad)", title="SLM phase response")
            ax.legend(fontsize=8)
        return path
