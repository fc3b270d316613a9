"""Noise and repeatability: repeated queries, per-output SNR, the noise model, frames to average.

A few patterns are queried ``repeats`` times each. Per output: the mean, the standard deviation and the SNR
(mean / std). The variance is fitted as ``var = read^2 + mean / gain``: read noise in counts, and the shot
noise of a camera with ``gain`` electrons per count. Outputs should be dark-subtracted (run ``camera``
first) for the read-noise term to mean what it says. The frames to average is the smallest ``n`` that lifts
the median SNR of the lit outputs to ``target_snr``. Correction: the rig's ``frames`` option when it has
one, else a ``frame_average`` wrapper.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np

from hil.blackbox import BlackBox
from hil.calib.base import Calibration, CalibrationContext, CalibrationResult, CalibrationSession, figure
from hil.config import Range
from hil.registry import BLACKBOXES, CALIBRATIONS


@CALIBRATIONS.register("noise")
class NoiseCalibration(Calibration):
    name = "noise"
    order = 30
    summary = "repeatability: per-output SNR, read and shot noise, frames to average for a target SNR"

    @dataclass
    class Config:
        patterns: Annotated[int, Range(ge=1, le=4096)] = 3
        repeats: Annotated[int, Range(ge=4, le=4096)] = 32
        target_snr: Annotated[float, Range(gt=0, le=1e6)] = 50.0
        lit_fraction: Annotated[float, Range(gt=0, lt=1)] = 0.1  # outputs above this fraction of the brightest are lit
        max_frames: Annotated[int, Range(ge=1, le=1024)] = 64

    def missing(self, rig: BlackBox, context: CalibrationContext) -> str | None:
        if not rig.spec.stochastic:
            return "the rig declares itself deterministic (no noise to measure)"
        return None

    def measure(self, session: CalibrationSession) -> CalibrationResult:
        c = self.config
        x = session.uniform(c.patterns)
        y = session.query(x.repeat(c.repeats, 1)).reshape(c.repeats, c.patterns, -1).numpy().astype(np.float64)
        mean, std = y.mean(axis=0), y.std(axis=0, ddof=1)  # patterns x outputs
        var = std**2
        lit = mean > c.lit_fraction * mean.max()
        if not bool((std[lit] > 0).any()):  # every repeat identical: a deterministic rig (e.g. a noise-free simulator)
            self._plot_data = None
            return CalibrationResult(
                measured={"mean": mean.round(4).tolist(), "std": std.round(5).tolist(), "repeats": c.repeats},
                fitted={"read_noise_counts": 0.0, "median_snr": None, "frames": 1, "deterministic": True},
                lines=["every repeated query gave the same answer: no noise to average; frames 1"])
        snr = np.where(std > 0, mean / np.where(std > 0, std, 1), np.inf)
        # var = a + b * mean over the lit outputs; weights for var's own scatter (~ var * sqrt(2 / (R - 1)))
        m, v = mean[lit], var[lit]
        w = 1.0 / np.maximum(v, 1e-12)
        design = np.stack([np.ones_like(m), m], axis=1)
        coef, cov = _wls(design, v, w, c.repeats)
        read = math.sqrt(max(coef[0], 0.0))
        gain = 1.0 / coef[1] if coef[1] > 0 else math.inf
        median_snr = float(np.median(snr[lit]))
        # frames needed: (target / SNR)^2, capped before squaring (a near-zero SNR must not overflow)
        ratio = c.target_snr / median_snr if median_snr > 0 else math.inf
        frames = 1 if ratio <= 1 else int(min(c.max_frames, math.ceil(min(ratio, c.max_frames) ** 2)))
        if _rig_has_option(session.context.rig_section, "frames"):
            corrections = {"set": [{"on": "blackbox", "key": "frames", "value": frames}]}
        else:
            corrections = {"wrappers": [{"type": "frame_average", "frames": frames}]} if frames > 1 else {}
        d_read = 0.5 * math.sqrt(max(cov[0, 0], 0.0)) / max(read, 1e-12)
        d_gain = math.sqrt(max(cov[1, 1], 0.0)) / coef[1] ** 2 if coef[1] > 0 else math.inf
        self._plot_data = (mean, var, lit, coef, snr)
        return CalibrationResult(
            measured={"mean": mean.round(4).tolist(), "std": std.round(5).tolist(), "repeats": c.repeats},
            fitted={"read_noise_counts": read, "gain_e_per_count": gain, "median_snr": median_snr,
                    "snr": np.where(np.isfinite(snr), snr, -1).round(3).tolist(), "frames": frames},
            uncertainty={"read_noise_counts": d_read, "gain_e_per_count": d_gain},
            corrections=corrections,
            lines=[f"median SNR of the lit outputs {median_snr:.1f} per frame; read noise {read:.2f} counts, "
                   f"gain {gain:.3g} e-/count", f"frames to average for SNR {c.target_snr:g}: {frames}"])

    def plot(self, result: CalibrationResult, path: Path) -> Path | None:
        if self._plot_data is None:
            return None
        mean, var, lit, coef, snr = self._plot_data
        with figure(path, 2, size=(10, 4)) as (fig, (a, b)):
            a.plot(mean[~lit], var[~lit], ".", color="0.7", ms=3, label="dim outputs")
            a.plot(mean[lit], var[lit], ".", ms=3, label="lit outputs")
            m = np.linspace(0, mean.max(), 50)
            a.plot(m, coef[0] + coef[1] * m, "r-", label=f"read {math.sqrt(max(coef[0], 0)):.2f}, 1/gain {coef[1]:.3g}")
            a.set(xlabel="mean (counts)", ylabel="variance (counts²)", title="noise model")
            a.legend(fontsize=8)
            b.hist(snr[lit & np.isfinite(snr)], bins=30)
            b.set(xlabel="SNR per frame (lit outputs)", ylabel="outputs", title=f"frames to average: "
                  f"{result.fitted['frames']}")
        return path


def _rig_has_option(section: dict, key: str) -> bool:
    """Whether the rig type itself (not a wrapper) has option ``key`` (e.g. an SLM + camera rig's ``frames``)."""
    return key in {f.name for f in dataclasses.fields(BLACKBOXES.get(section["type"]).Config)}


def _wls(design: np.ndarray, v: np.ndarray, w: np.ndarray, repeats: int) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least squares; the covariance uses the sample variance's own scatter (2 var^2 / (R - 1))."""
    aw = design * w[:, None]
    normal = design.T @ aw
    coef = np.linalg.solve(normal, aw.T @ v)
    # Var(v_i) ~ 2 v_i^2 / (R - 1): with w = 1/v_i that is (2 / (R - 1)) / w_i^2 ... cov = N^-1 A^T W S W A N^-1
    s = 2.0 * v**2 / (repeats - 1)
    middle = (design * (w**2 * s)[:, None]).T @ design
    inv = np.linalg.inv(normal)
    return coef, inv @ middle @ inv
