"""Camera calibration: dark frame and level, linearity, and the exposure that puts the peak at a target.

The rig shows a few reference patterns (a flat phase, which on a Fresnel rig lights the camera most, and
random ones; ``references: random`` leaves the flat phase out, for Fourier rigs) at a
geometric series of exposures. Each output is fitted as ``counts = dark + rate * exposure`` over its
unsaturated points: the intercepts are the dark frame (no shutter needed), the largest relative residual is
the linearity error, and the exposure chosen puts the brightest output at ``target_peak`` of full scale.
Corrections: the exposure (``set``) and a ``dark_subtraction`` wrapper.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch

from hil.blackbox import BlackBox
from hil.calib.base import Calibration, CalibrationContext, CalibrationResult, CalibrationSession, figure, find_control
from hil.config import Range
from hil.registry import CALIBRATIONS


def exposure_target(control: object) -> str:
    """Where the exposure lives in the rig section: the rig itself or its ``camera`` wrapper."""
    return "camera" if hasattr(control, "inner") else "blackbox"


@CALIBRATIONS.register("camera")
class CameraCalibration(Calibration):
    name = "camera"
    order = 20
    summary = "dark frame and level, linearity, exposure for a target peak below saturation"

    @dataclass
    class Config:
        #: of full scale, on the reference patterns (an optimised pattern can focus more)
        target_peak: Annotated[float, Range(ge=0.05, le=0.95)] = 0.4
        exposures: Annotated[int, Range(ge=3, le=1024)] = 8  # points of the exposure series
        #: the series spans exposure / span .. exposure * 2 (at most 6 decades below: no exposure rounds to 0)
        span: Annotated[float, Range(gt=1, le=1e6)] = 16.0
        patterns: Annotated[int, Range(ge=0, le=4096)] = 4  # random reference patterns
        repeats: Annotated[int, Range(ge=1, le=1024)] = 2
        #: flat_and_random: a flat phase too (on a Fresnel rig it lights the camera most); random: only random
        #: patterns (a Fourier rig, where a flat phase puts all the light on one pixel)
        references: Literal["flat_and_random", "random"] = "flat_and_random"

    def missing(self, rig: BlackBox, context: CalibrationContext) -> str | None:
        if find_control(rig, "set_exposure_s") is None:
            return "it needs a camera whose exposure it can set (set_exposure_s): a camera wrapper on a twin, " \
                   "or a rig whose camera has exposure control"
        return None

    def measure(self, session: CalibrationSession) -> CalibrationResult:
        c, rig = self.config, session.rig
        control = find_control(rig, "set_exposure_s")
        full_scale = float(getattr(control, "full_scale_counts", float("inf")))
        lo_bound, hi_bound = control.exposure_bounds_s
        exposure0 = control.get_exposure_s()
        spec = rig.spec
        references = [session.uniform(max(c.patterns, 1))]
        if c.references == "flat_and_random":
            references.insert(0, spec.lower[None].clone())
        patterns = torch.cat(references)
        exposures = np.geomspace(exposure0 / c.span, exposure0 * 2, c.exposures).clip(lo_bound, hi_bound)
        frames = []
        try:
            for e in exposures:
                control.set_exposure_s(float(e))
                y = session.query(patterns.repeat(c.repeats, 1)).reshape(c.repeats, len(patterns), -1)
                frames.append(y.mean(dim=0).numpy())
        finally:
            control.set_exposure_s(exposure0)
        counts = np.stack(frames)  # exposures x patterns x outputs
        unsat = counts < 0.98 * full_scale
        dark, rate, resid = _fit_lines(exposures, counts, unsat)  # outputs; patterns x outputs; relative
        dark_frame = np.median(dark, axis=0)  # the intercept is the same for every pattern: median over them
        max_rate = float(rate.max())
        exposure = (c.target_peak * full_scale - float(np.median(dark_frame))) / max(max_rate, 1e-30)
        exposure = float(np.clip(exposure, lo_bound, hi_bound)) if math.isfinite(full_scale) else exposure0
        level = float(np.median(dark_frame))
        n_fit = unsat.sum(axis=0)
        spread = float(np.std(dark, axis=0).mean() / math.sqrt(max(1, dark.shape[0])))
        on = exposure_target(control)
        result = CalibrationResult(
            measured={"exposures_s": exposures.tolist(), "counts": counts.round(3).tolist(), "full_scale": full_scale,
                      "exposure_before_s": exposure0},
            fitted={"dark_level_counts": level, "exposure_s": exposure, "peak_rate_counts_per_s": max_rate,
                    "linearity_error": float(resid), "dark_frame_counts": dark_frame.round(4).tolist()},
            uncertainty={"dark_level_counts": float(np.std(dark_frame) / math.sqrt(dark_frame.size)) + spread,
                         "exposure_s": exposure * 0.02},
            corrections={"set": [{"on": on, "key": "exposure_s", "value": exposure}],
                         "wrappers": [{"type": "dark_subtraction", "dark_counts": dark_frame.round(4).tolist()}]},
            lines=[f"dark level {level:.2f} counts (frame of {dark_frame.size} outputs), linearity error "
                   f"{100 * resid:.2f} %", f"exposure {exposure:.4g} s (was {exposure0:.4g} s) puts the brightest "
                   f"output at {c.target_peak:.0%} of {full_scale:.0f} counts; {int(n_fit.min())}+ unsaturated "
                   f"points per fit"])
        self._plot_data = (exposures, counts, dark_frame, rate, full_scale, exposure, c.references)
        return result

    def plot(self, result: CalibrationResult, path: Path) -> Path:
        exposures, counts, dark_frame, rate, full_scale, exposure, references = self._plot_data
        with figure(path, 2, size=(10, 4)) as (fig, (a, b)):
            brightest = np.unravel_index(np.argmax(rate), rate.shape)
            for p in range(counts.shape[1]):
                j = int(np.argmax(rate[p]))
                flat = p == 0 and references != "random"
                a.plot(exposures, counts[:, p, j], "o-", ms=3, label="flat phase" if flat else None)
            a.axhline(full_scale, color="k", lw=0.8, ls=":")
            a.axvline(exposure, color="r", lw=0.8, ls="--", label=f"chosen {exposure:.3g} s")
            a.set(xscale="log", yscale="log", xlabel="exposure (s)", ylabel="counts (brightest output per pattern)",
                  title=f"linearity; brightest: pattern {brightest[0]}")
            a.legend(fontsize=8)
            b.hist(dark_frame, bins=30)
            b.set(xlabel="dark counts (intercept)", ylabel="outputs",
                  title=f"dark frame: median {np.median(dark_frame):.2f}")
        return path


def _fit_lines(exposures: np.ndarray, counts: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Per pattern and output, least squares ``counts = dark + rate * e`` over the points where ``ok``.
    Returns dark (patterns x outputs), rate (patterns x outputs) and the largest relative residual of the
    well-lit outputs."""
    e = exposures[:, None, None] * np.ones_like(counts)
    w = ok.astype(np.float64)
    n = w.sum(0).clip(1)
    se, sy = (w * e).sum(0), (w * counts).sum(0)
    see, sey = (w * e * e).sum(0), (w * e * counts).sum(0)
    det = n * see - se * se
    good = (w.sum(0) >= 2) & (det > 0)
    rate = np.where(good, (n * sey - se * sy) / np.where(det > 0, det, 1), 0.0)
    dark = np.where(good, (sy - rate * se) / n, np.nan)
    dark = np.where(np.isnan(dark), np.nanmedian(dark), dark)
    pred = dark[None] + rate[None] * e
    bright = ok & (pred - dark[None] > 0.1 * (pred - dark[None]).max())
    # nonlinearity: at each exposure, the mean relative deviation of the well-lit outputs from their lines (a
    # camera's nonlinearity is common to its pixels; the noise of single pixels averages out); the worst exposure
    rel = np.where(bright, (counts - pred) / np.abs(pred - dark[None]).clip(1e-9), 0.0)
    per_exposure = rel.sum(axis=(1, 2)) / bright.sum(axis=(1, 2)).clip(1)
    resid = float(np.abs(per_exposure[bright.any(axis=(1, 2))]).max()) if bright.any() else 0.0
    return dark, rate, resid
