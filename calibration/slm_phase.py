"""SLM phase response -> a corrected lookup table, from split-screen interference.

Half of the SLM (its left columns) stays at the lowest drive; the other half steps through ``levels``
drives. The two halves' light interferes on the camera, so every output follows
``a_p + b_p cos(phi(g) + c_p)``: the frames (levels x outputs, centred) span a plane, and in that plane the
levels lie on an ellipse whose angle is the phase difference ``phi(g)``. The ellipse is fitted (a conic
through the first two principal components), mapped onto a circle, and its angle unwrapped from the
lowest level: that is the measured response, with no model of the optics. It is then fitted as
``phi(u) = scale * 2 pi * u ** gamma`` (``u``: the drive's fraction of the range), with uncertainties, and
the table of drives for 256 phases (from the fit, monotone) becomes the ``slm_lut`` correction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import torch

from hil.blackbox import BlackBox, find_attribute
from hil.calib.base import Calibration, CalibrationContext, CalibrationResult, CalibrationSession, figure
from hil.config import Range
from hil.errors import CalibrationError
from hil.registry import CALIBRATIONS

TWO_PI = 2 * math.pi


@CALIBRATIONS.register("slm_phase")
class SLMPhaseCalibration(Calibration):
    name = "slm_phase"
    order = 40
    summary = "SLM phase response (gamma, scale) from split-screen interference -> corrected lookup table"

    @dataclass
    class Config:
        levels: Annotated[int, Range(ge=8, le=1024)] = 32
        repeats: Annotated[int, Range(ge=1, le=1024)] = 2
        table: Annotated[int, Range(ge=8, le=65536)] = 256  # entries of the lookup table

    def missing(self, rig: BlackBox, context: CalibrationContext) -> str | None:
        if context.rig_section.get("type") == "slm_camera_rig":
            return "on an SLM + camera rig, slmsuite's own pixel calibration (slmsuite_pixel) measures the response"
        shape = find_attribute(rig, "input_image_shape")
        if shape is None or len(shape) != 2 or int(np.prod(shape)) != rig.spec.input_dim or shape[1] < 2:
            return "it needs an SLM rig whose inputs are an image of phases (input_image_shape)"
        span = rig.spec.upper - rig.spec.lower
        if not bool(torch.allclose(span, torch.full_like(span, TWO_PI), atol=1e-3)):
            return "its inputs must be phases spanning 2 pi (the lookup table maps a period of phase)"
        if rig.spec.output_dim < 3:
            return "it needs at least 3 outputs to see interference fringes"
        return None

    def measure(self, session: CalibrationSession) -> CalibrationResult:
        c, spec = self.config, session.rig.spec
        rows, cols = find_attribute(session.rig, "input_image_shape")
        lower = float(spec.lower.min())
        drives = lower + TWO_PI * np.arange(c.levels) / c.levels
        img = torch.full((c.levels, rows, cols), lower)
        img[:, :, cols // 2:] = torch.tensor(drives, dtype=torch.float32)[:, None, None]
        x = img.reshape(c.levels, -1)
        y = session.query(x.repeat(c.repeats, 1)).reshape(c.repeats, c.levels, -1).mean(dim=0).numpy()
        try:
            phase, points = split_screen_phase(y.astype(np.float64))
            u = (drives - lower) / TWO_PI
            (scale, gamma), cov, rms = fit_power_law(u, phase)
        except (np.linalg.LinAlgError, ValueError) as exc:
            raise CalibrationError(f"slm_phase: the split-screen frames show no interference ellipse to measure "
                                   f"the phase from ({exc}); the camera must see where the two halves' light "
                                   f"overlaps") from exc
        if not all(np.isfinite([scale, gamma, rms])) or not (0.05 < scale < 2 and 0.1 < gamma < 10):
            raise CalibrationError(f"slm_phase: the fitted response (scale {scale:.3g}, gamma {gamma:.3g}) is not "
                                   f"physical; the camera must see where the two halves' light overlaps")
        table_u = np.linspace(0, 1, c.table)
        table_drive = lower + TWO_PI * table_u * (1 - 1e-6)
        table_phase = np.maximum.accumulate(scale * TWO_PI * table_u**gamma)
        self._plot_data = (u, phase, scale, gamma, points)
        return CalibrationResult(
            measured={"drive_rad": drives.tolist(), "phase_rad": phase.round(5).tolist()},
            fitted={"scale": scale, "gamma": gamma, "rms_rad": rms, "max_phase_rad": float(table_phase[-1])},
            uncertainty={"scale": math.sqrt(cov[0, 0]), "gamma": math.sqrt(cov[1, 1])},
            corrections={"wrappers": [{"type": "slm_lut", "drive_rad": table_drive.round(6).tolist(),
                                       "phase_rad": table_phase.round(6).tolist()}]},
            lines=[f"phase response: scale {scale:.4f} ± {math.sqrt(cov[0, 0]):.4f}, gamma {gamma:.4f} ± "
                   f"{math.sqrt(cov[1, 1]):.4f} (rms residual {rms:.3f} rad); the SLM reaches "
                   f"{table_phase[-1] / TWO_PI:.3f} x 2 pi"])

    def plot(self, result: CalibrationResult, path: Path) -> Path:
        u, phase, scale, gamma, points = self._plot_data
        with figure(path, 2, size=(10, 4)) as (fig, (a, b)):
            a.plot(points[:, 0], points[:, 1], "o-", ms=3)
            a.set(title="levels in the fringe plane (an ellipse)", xlabel="PC 1", ylabel="PC 2", aspect="equal")
            uu = np.linspace(0, 1, 200)
            b.plot(u, phase, "o", ms=3, label="measured")
            b.plot(uu, scale * TWO_PI * uu**gamma, "r-", label=f"fit: {scale:.3f} 2π u^{gamma:.3f}")
            b.plot(uu, TWO_PI * uu, "k:", lw=0.8, label="ideal")
            b.set(xlabel="drive (fraction of the range)", ylabel="phase (rad)", title="SLM phase response")
            b.legend(fontsize=8)
        return path


def split_screen_phase(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``levels x outputs`` frames of a split-screen series -> the phase of each level relative to the first
    (unwrapped, increasing) and the levels' 2-D points in the fringe plane."""
    centred = y - y.mean(axis=0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    points = u[:, :2] * s[:2]
    px, py = points[:, 0], points[:, 1]
    # conic A x^2 + B xy + C y^2 + D x + E y + F = 0: the right singular vector of the smallest value
    design = np.stack([px * px, px * py, py * py, px, py, np.ones_like(px)], axis=1)
    conic = np.linalg.svd(design / np.linalg.norm(design, axis=0))[2][-1] / np.linalg.norm(design, axis=0)
    a, b, c, d, e, f = conic
    q = np.array([[a, b / 2], [b / 2, c]])
    centre = np.linalg.solve(2 * q, -np.array([d, e]))
    k = centre @ q @ centre - f
    shape = q / k  # (p - centre)^T shape (p - centre) = 1
    w, v = np.linalg.eigh(shape)
    root = v @ np.diag(np.sqrt(np.abs(w))) @ v.T
    circle = (points - centre) @ root.T
    angle = np.unwrap(np.arctan2(circle[:, 1], circle[:, 0]))
    phase = angle - angle[0]
    if phase[-1] < 0:
        phase = -phase
    return phase, points


def fit_power_law(u: np.ndarray, phase: np.ndarray) -> tuple[tuple[float, float], np.ndarray, float]:
    """Least squares ``phase = scale * 2 pi * u ** gamma`` (Gauss-Newton from a log-log start); returns
    (scale, gamma), their covariance from the residuals, and the rms residual (rad)."""
    ok = u > 0
    slope, icpt = np.polyfit(np.log(u[ok]), np.log(np.maximum(phase[ok], 1e-6)), 1)
    theta = np.array([math.exp(icpt) / TWO_PI, slope])
    for _ in range(50):
        pred = theta[0] * TWO_PI * u**theta[1]
        jac = np.stack([TWO_PI * u**theta[1], theta[0] * TWO_PI * u**theta[1] * np.log(np.where(ok, u, 1))], axis=1)
        step = np.linalg.lstsq(jac, phase - pred, rcond=None)[0]
        theta = theta + step
        if np.abs(step).max() < 1e-10:
            break
    pred = theta[0] * TWO_PI * u**theta[1]
    resid = phase - pred
    dof = max(1, len(u) - 2)
    sigma2 = float(resid @ resid) / dof
    cov = sigma2 * np.linalg.inv(jac.T @ jac)
    return (float(theta[0]), float(theta[1])), cov, math.sqrt(sigma2)
