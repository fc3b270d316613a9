"""slmsuite's own calibrations on its simulated hardware, with known injected imperfections.

Run:  OMP_NUM_THREADS=1 python demo.py            (full pixel sweep, ~30-60 s on 2 busy cores)
      OMP_NUM_THREADS=1 python demo.py --quick    (pixel sweep in x only, one period: ~4x faster)
Options: --no-noise  (camera without dark pedestal / read noise)
         --real-settle-default  (also time the stock settle_calibrate() with real sleeps, ~35 s)

Injected truth (all known):
  * SLM phase response  gamma_sim[level] = 0.9 * (level/256)**1.15   (units of 2 pi)
  * camera placement    M, b = build_affine(1024 px per kxy unit, theta=0.05 rad), centred
  * camera noise        GaussianDetectorNoise: dark pedestal (counts at the exposure) + read std
  * SLM settle lag      (this file's LaggedSimulatedSLM/Camera; slmsuite simulates none):
                        delay d, then exponential approach with time constant tau;
                        "settle time" in slmsuite's own definition = d + 4 tau
Recovered with: fourier_calibrate, pixel_calibrate + pixel_calibration_process, settle_calibrate.
Writes ./out/record.json (our own serialisable record) and ./out/*.h5 (slmsuite's own).
"""
import argparse
import json
import logging
import os
import sys
import time
import warnings

import numpy as np

warnings.filterwarnings("ignore")          # cupy-missing / power-of-two chatter

import slmsuite.hardware.cameraslms._settle as _settle_module  # noqa: E402 (after the warnings filter, on purpose)
import slmsuite.hardware.slms.slm as _slm_module  # noqa: E402 (after the warnings filter, on purpose)
from slmsuite.hardware.cameras.simulated import GaussianDetectorNoise, SimulatedCamera  # noqa: E402 (after the warnings filter, on purpose)
from slmsuite.hardware.cameraslms import FourierSLM  # noqa: E402 (after the warnings filter, on purpose)
from slmsuite.hardware.slms.simulated import SimulatedSLM  # noqa: E402 (after the warnings filter, on purpose)

# settle_calibrate's default vector (.005, .005) kxy lands 5 px from the 0th order here and
# its default window (16 spot radii = 29 px) then contains the 0th order: no step is seen.
SETTLE_VECTOR = (0.03, 0.03)   # ~42 px from the 0th order on this camera
SETTLE_SIZE = 8                # px; small window -> little pedestal/read noise summed in

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "out")


def quiet_slmsuite(level=logging.ERROR):
    for name in list(logging.root.manager.loggerDict):
        logging.getLogger(name).setLevel(level)


# --------------------------------------------------------------------------------------
# Settle-lag injection. SimulatedSLM._set_phase_hw is a no-op: the simulated SLM switches
# instantly and settle_time_s is only a sleep inside set_phase(settle=True). To give
# settle_calibrate something to measure, these subclasses add a lag:
#   w(t) = 0                             for t < t_switch + delay
#   w(t) = 1 - exp(-(t - t_switch - delay)/tau)   afterwards
# mode "intensity": frame = (1-w)*frame(old pattern) + w*frame(new)  -> exactly the
#                   exponential-in-intensity model settle_calibration_process fits.
# mode "phase":     realized phase = old + w*(new - old) (LC-like phase relaxation);
#                   the first-order intensity is then NOT exponential in t.
# The "old" state is the previous pattern fully settled (settle_calibrate always settles
# before switching). `clock` supplies perf_counter (real or virtual, see VirtualClock).
# --------------------------------------------------------------------------------------
class LaggedSimulatedSLM(SimulatedSLM):
    def __init__(self, *args, lag_delay_s=0.0, lag_tau_s=0.0, lag_mode="intensity",
                 clock=time, **kwargs):
        self.lag_enabled = False
        self.lag_delay_s, self.lag_tau_s, self.lag_mode = lag_delay_s, lag_tau_s, lag_mode
        self.clock = clock
        self._lag_prev = self._lag_cur = None
        self._lag_t0 = 0.0
        super().__init__(*args, **kwargs)

    def _set_phase_hw(self, display):
        self._lag_prev = None if self._lag_cur is None else self._lag_cur
        self._lag_cur = np.array(display, copy=True)
        self._lag_t0 = self.clock.perf_counter()

    def lag_weight(self):
        if not self.lag_enabled or self._lag_prev is None:
            return 1.0
        dt = self.clock.perf_counter() - self._lag_t0 - self.lag_delay_s
        if dt < 0:
            return 0.0
        return 1.0 if self.lag_tau_s <= 0 else float(1 - np.exp(-dt / self.lag_tau_s))

    def _display2phase(self, display, dtype=np.float32):
        new = super()._display2phase(display, dtype=dtype)
        if self.lag_mode != "phase":
            return new
        w = self.lag_weight()
        if w >= 1:
            return new
        old = super()._display2phase(self._lag_prev, dtype=dtype)
        return (old + w * (new - old)).astype(dtype)


class LaggedSimulatedCamera(SimulatedCamera):
    def _render(self):
        slm = self._slm
        if getattr(slm, "lag_mode", None) != "intensity":
            return super()._render()
        w = slm.lag_weight()
        new = super()._render()
        if w >= 1:
            return new
        current = slm.display
        try:
            slm.display = slm._lag_prev
            old = super()._render()
        finally:
            slm.display = current
        return w * new + (1 - w) * old


class VirtualClock:
    """Stand-in for the `time` module: sleep() advances a counter instantly. Patched into
    slmsuite's slm and _settle modules (module global `time`) so settle_calibrate's sleeps
    cost nothing and the lag is seen with exact timing."""
    def __init__(self):
        self.t = 0.0

    def perf_counter(self):
        return self.t

    def sleep(self, s):
        self.t += max(0.0, float(s))

    def __getattr__(self, name):  # anything else (time.time, ...) from the real module
        return getattr(time, name)


class patched_time:
    def __init__(self, clock):
        self.clock = clock

    def __enter__(self):
        self.saved = (_slm_module.time, _settle_module.time)
        _slm_module.time = _settle_module.time = self.clock

    def __exit__(self, *exc):
        _slm_module.time, _settle_module.time = self.saved


# --------------------------------------------------------------------------------------
def true_realized_error(slm, gamma_sim, use_lut):
    """Max |wrapped(realized - requested)| [rad] over requested phases the SLM can reach,
    where 'realized' uses the TRUE response gamma_sim of the level set_phase would write."""
    lut, gamma = slm.lut, slm.gamma
    if not use_lut:
        slm.lut = slm.gamma = None
    try:
        phase = np.linspace(0, 2 * np.pi, slm.shape[0] * slm.shape[1], endpoint=False)
        gray = slm._phase2gray(phase.reshape(slm.shape).astype(np.float32).copy())
    finally:
        slm.lut, slm.gamma = lut, gamma
    realized = np.mod(slm._gamma_sign * 2 * np.pi * gamma_sim[np.ravel(gray)], 2 * np.pi)
    err = np.angle(np.exp(1j * (realized - phase)))
    # Reachable set: mod(-2 pi gamma_sim) covers [2 pi (1 - max gamma), 2 pi) plus 0.
    lo = 2 * np.pi * (1 - np.max(gamma_sim)) + 0.02
    ok = phase >= lo
    return float(np.max(np.abs(err[ok])))


def build(noise_on, truth, clock):
    slm = LaggedSimulatedSLM(
        (truth["slm_cols"], truth["slm_rows"]), pitch_um=(8, 8), gpu=False,
        gamma_sim=truth["gamma_sim"], settle_time_s=0.0,          # SimulatedSLM default is 0
        lag_delay_s=truth["lag_delay_s"], lag_tau_s=truth["lag_tau_s"], clock=clock,
    )
    cam = LaggedSimulatedCamera(slm, resolution=(128, 128), pitch_um=(8, 8), bitdepth=8)
    M, b = cam.build_affine(truth["f_ij"], units="ij", theta=truth["theta"])   # offset: centre
    cam.set_affine(M, b)
    cam.set_exposure(truth["exposure_s"])
    if noise_on:
        cam.noise = GaussianDetectorNoise(
            dark=truth["dark_counts"] / (2 ** cam.bitdepth * truth["exposure_s"]),
            read=truth["read_counts"] / 2 ** cam.bitdepth,
        )
    fs = FourierSLM(cam, slm)
    return fs, slm, cam, M, b


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-noise", action="store_true")
    ap.add_argument("--real-settle-default", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    np.random.seed(args.seed)         # GaussianDetectorNoise draws from numpy's global RNG
    quiet_slmsuite()
    os.makedirs(OUT, exist_ok=True)
    timings = {}
    levels_all = np.arange(256)
    truth = dict(
        slm_rows=64, slm_cols=64, gamma_exp=1.15, gamma_scale=0.9,
        gamma_sim=0.9 * (levels_all / 256) ** 1.15,
        f_ij=1024.0, theta=0.05, exposure_s=0.25,
        dark_counts=10.0, read_counts=2.0,
        lag_delay_s=0.020, lag_tau_s=0.015,
    )
    noise_on = not args.no_noise

    t = time.perf_counter()
    fs, slm, cam, M_true, b_true = build(noise_on, truth, time)
    timings["build"] = time.perf_counter() - t
    quiet_slmsuite()
    t = time.perf_counter()
    for _ in range(50):
        cam.get_image()
    timings["one_frame"] = (time.perf_counter() - t) / 50

    # ---- (b) camera dark/read: blank frame via gain=0 (no light), then slmsuite's own fit
    gain = cam.gain
    cam.gain = 0.0
    blank = np.stack([cam.get_image() for _ in range(8)]).astype(float)
    cam.gain = gain
    print(f"[camera] injected pedestal {truth['dark_counts'] if noise_on else 0:.2f} counts, "
          f"read std {truth['read_counts'] if noise_on else 0:.2f}; blank frame mean "
          f"{blank.mean():.2f} std {blank.std():.2f} (uint8 truncation biases mean by ~-0.5)")

    # ---- 1. Fourier calibration. A dark pedestal biases the array fit (b off by ~3 px), so
    # calibrate on a background-free image (on hardware: subtract a dark frame).
    noise = cam.noise
    cam.noise = None
    fs.calibrations.pop("fourier", None)       # a bad previous fit poisons a re-run
    t = time.perf_counter()
    four = fs.fourier_calibrate(array_shape=6, array_pitch=8)    # defaults (10,10) don't fit 64 px
    timings["fourier_calibrate"] = time.perf_counter() - t
    cam.noise = noise
    M_err = np.max(np.abs(four["M"] - M_true)) / np.max(np.abs(M_true))
    b_err = np.max(np.abs(np.ravel(four["b"]) - np.ravel(b_true)))
    print(f"[fourier] M recovered {np.round(four['M'], 2).tolist()} vs injected "
          f"{np.round(M_true, 2).tolist()}: rel err {M_err:.2e}; b err {b_err:.3f} px; "
          f"{timings['fourier_calibrate']:.2f} s")

    # ---- 2. Pixel (gamma) calibration. settle=True inside -> sleeps slm.settle_time_s per
    # frame; lag is off here (a lag with settle_time_s=0 would corrupt the sweep).
    err_before = true_realized_error(slm, truth["gamma_sim"], use_lut=False)
    kw = dict(levels=32)
    if args.quick:
        kw.update(directions="x", periods=1)
    t = time.perf_counter()
    pix = fs.pixel_calibrate(**kw)
    timings["pixel_calibrate"] = time.perf_counter() - t
    t = time.perf_counter()
    gamma = fs.pixel_calibration_process(plot=0, apply=True)     # -> slm.set_gamma(gamma, levels)
    timings["pixel_calibration_process"] = time.perf_counter() - t
    levels = pix["levels"].astype(int)
    r2 = float(fs.calibrations["pixel"]["gamma_r2"])
    # gamma is relative (min subtracted, sign fixed increasing); gamma_sim[0] = 0 here.
    err_lv = 2 * np.pi * (gamma - truth["gamma_sim"][levels])
    err_all = 2 * np.pi * (np.asarray(slm.gamma) - truth["gamma_sim"])
    err_after = true_realized_error(slm, truth["gamma_sim"], use_lut=True)
    lut_fit, gamma_fit = slm.lut, slm.gamma
    slm.set_gamma(truth["gamma_sim"])          # the LUT a perfect calibration would give
    err_floor = true_realized_error(slm, truth["gamma_sim"], use_lut=True)
    slm.lut, slm.gamma = lut_fit, gamma_fit
    n_frames = len(pix["directions"]) * len(pix["periods"]) * len(levels) ** 2
    print(f"[pixel] {n_frames} frames, periods {pix['periods'].tolist()}, orders "
          f"{pix['orders'].tolist()}, R^2 {r2:.5f}; {timings['pixel_calibrate']:.1f} s + "
          f"{timings['pixel_calibration_process']:.2f} s")
    print(f"[pixel] max |gamma err| at the {len(levels)} sampled levels: {np.max(np.abs(err_lv)):.4f} rad; "
          f"over all 256 levels (slm.gamma, interpolated): {np.max(np.abs(err_all)):.4f} rad "
          f"(levels 0-{levels[-1]}: {np.max(np.abs(err_all[:levels[-1] + 1])):.4f}; levels "
          f"{levels[-1] + 1}-255, set_gamma's circular extrapolation past the last sample: "
          f"{np.max(np.abs(err_all[levels[-1] + 1:])):.4f})")
    print(f"[pixel] true realized-phase error over reachable phases: no LUT {err_before:.3f} rad"
          f" -> with slm.lut {err_after:.4f} rad (perfect-LUT floor {err_floor:.4f})")

    # save / load with slmsuite's own h5, and our own JSON record
    h5 = fs.save_calibration("pixel", path=OUT)
    h5_fourier = fs.save_calibration("fourier", path=OUT)
    record = {
        "fourier": {"M": np.asarray(four["M"]).tolist(), "b": np.ravel(four["b"]).tolist()},
        "pixel": {"levels": levels.tolist(), "gamma_2pi": np.asarray(gamma).tolist(),
                  "gamma_r2": r2, "slm_bitdepth": int(slm.bitdepth)},
    }

    # ---- 3. Settle calibration
    slm.lag_enabled = True
    injected_settle = truth["lag_delay_s"] + 4 * truth["lag_tau_s"]
    print(f"[settle] injected lag: delay {truth['lag_delay_s'] * 1e3:.1f} ms, tau "
          f"{truth['lag_tau_s'] * 1e3:.1f} ms -> settle (d + 4 tau) {injected_settle * 1e3:.1f} ms")

    def run_settle(label, times, clock=None, mode="intensity", **kw):
        slm.lag_mode = mode
        slm.clock = clock or time
        t = time.perf_counter()
        if clock is None:
            res = fs.settle_calibrate(vector=SETTLE_VECTOR, size=SETTLE_SIZE, times=times, plot=-1, **kw)
        else:
            with patched_time(clock):
                res = fs.settle_calibrate(vector=SETTLE_VECTOR, size=SETTLE_SIZE, times=times, plot=-1, **kw)
        wall = time.perf_counter() - t
        timings["settle_" + label] = wall
        print(f"[settle:{label}] mode={mode} times={len(np.ravel(res['times']))} pts to "
              f"{np.max(res['times']) * 1e3:.0f} ms: settle {res['settle_time'] * 1e3:.1f} ms "
              f"(comm {res['communication_time'] * 1e3:.1f}, relax {res['relax_time'] * 1e3:.1f}) "
              f"vs injected {injected_settle * 1e3:.1f} (d {truth['lag_delay_s'] * 1e3:.1f}, tau "
              f"{truth['lag_tau_s'] * 1e3:.1f}); mean set_phase {np.mean(res['set_phase_time']) * 1e3:.2f} ms,"
              f" get_image {np.mean(res['get_image_time']) * 1e3:.2f} ms; wall {wall:.2f} s")
        return res

    real = run_settle("real_short", np.linspace(0, 0.2, 21))
    run_settle("real_minimal", np.linspace(0, 0.1, 11))
    run_settle("virtual_default", None, clock=VirtualClock())          # stock 21 pts over 1 s
    run_settle("virtual_fine", np.linspace(0, 0.2, 41), clock=VirtualClock())
    run_settle("virtual_phase", np.linspace(0, 0.2, 41), clock=VirtualClock(), mode="phase")
    if args.real_settle_default:
        run_settle("real_default", None)
    slm.lag_enabled = False
    slm.lag_mode, slm.clock = "intensity", time
    record["settle"] = {k: float(real[k]) for k in ("settle_time", "relax_time", "communication_time")}

    with open(os.path.join(OUT, "record.json"), "w") as f:
        json.dump(record, f, indent=1)

    # ---- apply the record to a fresh system and compare with slmsuite's own load path
    fs2, slm2, cam2, _, _ = build(noise_on, truth, time)
    quiet_slmsuite()
    rec = json.load(open(os.path.join(OUT, "record.json")))
    fs2.fourier_calibrate_analytic(np.array(rec["fourier"]["M"]), np.array(rec["fourier"]["b"]))
    slm2.set_gamma(rec["pixel"]["gamma_2pi"], levels=rec["pixel"]["levels"])
    slm2.settle_time_s = rec["settle"]["settle_time"]
    same_lut = bool(np.array_equal(np.asarray(slm2.lut), np.asarray(slm.lut)))
    fs3, slm3, _, _, _ = build(noise_on, truth, time)
    quiet_slmsuite()
    fs3.load_calibration("pixel", h5)          # re-applies gamma via set_gamma
    fs3.load_calibration("fourier", h5_fourier)
    same_h5 = bool(np.array_equal(np.asarray(slm3.lut), np.asarray(slm.lut)))
    print(f"[record] JSON -> set_gamma LUT identical: {same_lut}; h5 load_calibration LUT "
          f"identical: {same_h5}; kxy->ij agree: "
          f"{np.allclose(fs2.kxyslm_to_ijcam([0.01, 0.02]), fs.kxyslm_to_ijcam([0.01, 0.02]))}")

    print("[timings s] " + ", ".join(f"{k} {v:.3f}" for k, v in timings.items()))


if __name__ == "__main__":
    sys.exit(main())
