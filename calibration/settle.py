"""Latency and settle time: step between two patterns, watch the frames converge, set the wait with a margin.

For each wait ``t`` in a series the rig shows pattern A for ``lead`` frames at the longest wait (so the SLM
has settled on A), then pattern B once, at wait ``t``; B differs from A by ``step_rad`` up or down (at
random) on every pixel, a step small enough for the frame to follow the SLM linearly. The mean of those
first frames of B over the repeats, minus B's settled frame, projected on the step (A's settled frame minus
B's) and divided by the step's squared norm, is the step response ``d(t)``: 1 when the frame still shows A,
0 once it shows B, and the projection averages the noise over every output. A liquid-crystal SLM relaxes
exponentially, ``d(t) = exp(-(t + t0) / tau)`` (``t0``: the part of the frame time the wait does not cover),
so ``log d`` is a line in ``t``; the settle time is the wait where ``d`` falls to ``tolerance``, times
``margin``. Also the latency: one frame's round trip, the wait taken out. Correction: the rig's
``settle_s`` (on the rig, or on an ``slm_settling`` twin).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import torch

from hil.blackbox import BlackBox
from hil.calib.base import Calibration, CalibrationContext, CalibrationResult, CalibrationSession, figure, find_control
from hil.config import Range
from hil.registry import CALIBRATIONS


@CALIBRATIONS.register("settle")
class SettleCalibration(Calibration):
    name = "settle"
    order = 10
    summary = "latency and settle time: step response of the SLM, the rig's wait with a margin"

    @dataclass
    class Config:
        #: the longest wait tried (and the settled reference); at most a rig's longest settle time, 60 s
        max_wait_s: Annotated[float, Range(gt=0, le=60)] = 0.2
        waits: Annotated[int, Range(ge=4, le=1024)] = 16
        #: frames of A (at the longest wait) before the step, and of B after it
        lead_frames: Annotated[int, Range(ge=2, le=1024)] = 4
        repeats: Annotated[int, Range(ge=1, le=1024)] = 6
        step_rad: Annotated[float, Range(gt=0, lt=6)] = 0.3  # the step between the two patterns, on every pixel
        tolerance: Annotated[float, Range(gt=0, lt=0.5)] = 0.01  # residual of a step left when a frame is grabbed
        margin: Annotated[float, Range(ge=1)] = 1.2

    def missing(self, rig: BlackBox, context: CalibrationContext) -> str | None:
        if find_control(rig, "set_settle_s") is None:
            return "it needs a rig whose settle time it can set (set_settle_s): an SLM + camera rig, or an " \
                   "slm_settling wrapper on a twin"
        span = float((rig.spec.upper - rig.spec.lower).min())
        if span <= 2 * self.config.step_rad:
            return f"its inputs span {span:.4g}, too little for steps of step_rad = {self.config.step_rad:g} on " \
                   f"either side: give --option step_rad=... below {span / 2:.4g}"
        return None

    def measure(self, session: CalibrationSession) -> CalibrationResult:
        c, rig = self.config, session.rig
        control = find_control(rig, "set_settle_s")
        before = control.get_settle_s()
        spec = rig.spec
        b = spec.lower + c.step_rad + (spec.upper - spec.lower - 2 * c.step_rad) * torch.rand(
            1, spec.input_dim, generator=session.generator)
        sign = torch.randint(0, 2, (1, spec.input_dim), generator=session.generator) * 2 - 1
        a = b + c.step_rad * sign  # +-step_rad per pixel: small enough for the frame to follow it linearly
        waits = np.linspace(0.0, c.max_wait_s, c.waits)
        settled = 2  # settled frames kept of each pattern
        try:
            d = np.zeros((c.repeats, len(waits)))
            noise = np.zeros((c.repeats, len(waits)))
            latency = np.zeros((c.repeats, len(waits)))  # one frame's round trip, the wait taken out
            for r in range(c.repeats):
                for j, t in enumerate(waits):
                    # references measured around each step, so slow drifts (laser power) cancel
                    control.set_settle_s(c.max_wait_s)
                    y_a = session.query(a.repeat(c.lead_frames, 1))[-settled:].reshape(settled, -1)
                    control.set_settle_s(float(t))
                    t_query = time.perf_counter()
                    y_t = session.query(b)[0].reshape(-1)  # the first frame of B, grabbed after t
                    latency[r, j] = time.perf_counter() - t_query - t * _sleep_scale(session.base)
                    control.set_settle_s(c.max_wait_s)
                    y_b = session.query(b.repeat(c.lead_frames, 1))[-settled:].reshape(settled, -1)
                    # the step's direction from one settled frame of each, the reference from another: with
                    # independent noise the projection is unbiased
                    step = y_a.mean(dim=0) - y_b[0]
                    norm2 = max(float(step @ step), 1e-24)
                    # the frame's projection on the step: 1 when it still shows A, 0 once it shows B; noise averages
                    # over every output instead of adding up
                    d[r, j] = float((y_t - y_b[1]) @ step) / norm2
                    var = (y_b[1] - y_b[0]) ** 2 / 2  # one frame's noise variance per output
                    noise[r, j] = float((var @ step**2 * 2).sqrt()) / norm2
        finally:
            control.set_settle_s(before)
        floor = float(np.sqrt((noise**2).mean() / c.repeats))  # the noise left in the mean over repeats
        dm = d.mean(axis=0)
        usable = (dm > 3 * floor + 1e-6) & (dm < 0.5)  # the near-settled, linear part of the step
        if usable.sum() >= 2:
            # log d has noise floor / d: weight each point by (d / floor)^2
            fit_w = dm[usable] / max(floor, 1e-9)
            if usable.sum() > 3:
                (slope, intercept), fit_cov = np.polyfit(waits[usable], np.log(dm[usable]), 1, w=fit_w, cov=True)
            else:
                (slope, intercept), fit_cov = np.polyfit(waits[usable], np.log(dm[usable]), 1, w=fit_w), None
            tau = -1.0 / slope if slope < 0 else math.inf
            t0 = -intercept * tau if math.isfinite(tau) else 0.0
            settle = max(0.0, tau * math.log(1.0 / c.tolerance) - t0) * c.margin if math.isfinite(tau) else c.max_wait_s
            d_tau = math.sqrt(fit_cov[0, 0]) / slope**2 if fit_cov is not None and slope < 0 else tau
        else:  # settles within the shortest wait tried: no lag to see
            tau, t0, settle, d_tau = 0.0, 0.0, 0.0, 0.0
        capped = settle > c.max_wait_s
        settle = float(min(settle, c.max_wait_s))
        self._plot_data = (waits, d, floor, tau, t0, settle)
        lines = [f"time constant {tau * 1e3:.2f} ms (frame lag {t0 * 1e3:.2f} ms); settle time {settle * 1e3:.2f} ms "
                 f"leaves {c.tolerance:.0%} of a step, with margin {c.margin:g}" if tau > 0 else
                 "no lag seen: every frame had settled at the shortest wait; settle time 0"]
        lines.append(f"one frame's round trip (display, grab, read back), the wait taken out: "
                     f"{np.median(latency) * 1e3:.2f} ms median")
        if capped:
            lines.append(f"warning: the SLM needs more than max_wait_s = {c.max_wait_s:g} s to settle; rerun with "
                         f"--option max_wait_s={min(60.0, 4 * c.max_wait_s):g}")
        return CalibrationResult(
            measured={"waits_s": waits.tolist(), "step_residual": d.round(5).tolist(), "noise_floor": floor,
                      "settle_before_s": before},
            fitted={"tau_s": float(tau), "frame_lag_s": float(t0), "settle_s": settle, "capped": bool(capped),
                    "query_latency_s": float(np.median(latency))},
            uncertainty={"tau_s": float(d_tau)},
            corrections={"set": [{"on": "blackbox" if not hasattr(control, "inner") else "slm_settling",
                                  "key": "settle_s", "value": settle}]},
            lines=lines)

    def plot(self, result: CalibrationResult, path: Path) -> Path:
        waits, d, floor, tau, t0, settle = self._plot_data
        with figure(path, 1, size=(6, 4)) as (fig, ax):
            for r in d:
                ax.plot(waits * 1e3, r, "o", ms=3, color="C0", alpha=0.6)
            if tau > 0:
                t = np.linspace(0, waits.max(), 200)
                label = f"exp(-(t + {t0 * 1e3:.1f} ms) / {tau * 1e3:.1f} ms)"
                ax.plot(t * 1e3, np.exp(-(t + t0) / tau), "r-", label=label)
            ax.axhline(max(floor, 1e-6), color="0.5", ls=":", label="noise floor")
            ax.axvline(settle * 1e3, color="k", ls="--", label=f"settle {settle * 1e3:.1f} ms")
            ax.set(yscale="log", xlabel="wait after the pattern (ms)", ylabel="residual of the step",
                   title="SLM step response")
            ax.legend(fontsize=8)
        return path


def _sleep_scale(rig: BlackBox) -> float:
    """How much of a settle time the rig really sleeps (a simulated pair: none; a twin: its time_scale)."""
    box: object = rig
    while box is not None:
        config = getattr(box, "config", None)
        for key in ("sleep_scale", "time_scale"):
            if config is not None and hasattr(config, key):
                return float(getattr(config, key))
        box = getattr(box, "inner", None)
    return 1.0
