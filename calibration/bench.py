"""``hil bench calibration``: every calibration on a bench twin with known injected imperfections, recovered
against injected, side by side, with the time each takes.

The bench is the main job's (``configs/owms_twin.yaml``: distance, waist and beam position off the model twin,
crosstalk, gamma 1.1 at 97 % of 2 pi, 8-bit SLM, laser drift, a 12-bit camera) plus an SLM that settles with a
30 ms time constant and 8 e- of read noise. Each calibration runs on the uncorrected bench (``noise`` after
``camera``, as ``all`` orders them); then ``hil calibrate all`` runs the whole sequence.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from hil.registry import BENCHMARKS

TRUTH_GEOMETRY = {"distance_m": 0.0207, "waist_m": 7.3e-5, "beam_offset_m": [1.2e-5, -8.0e-6],
                  "camera_offset_m": [0.0, 0.0]}


def bench_config() -> dict[str, Any]:
    wrappers = [{"type": "slm_crosstalk", "sigma_px": 0.5}, {"type": "slm_phase_response", "gamma": 1.1, "scale": 0.97},
                {"type": "slm_quantisation", "bits": 8}, {"type": "slm_settling", "tau_s": 0.03, "frame_s": 0.005},
                {"type": "drift", "power_amplitude": 0.05, "period_queries": 20000, "seed": 0},
                {"type": "camera", "exposure_s": 1.0e-3, "bit_depth": 12, "read_noise_e": 8.0,
                 "dark_level_counts": 20.0, "seed": 0},
                {"type": "slm_macropixels", "blocks": [12, 12]}]
    return {"name": "calibration_bench", "blackbox": {"type": "owms_twin", **TRUTH_GEOMETRY, "wrappers": wrappers},
            "objective": {"type": "two_spots"}}


@BENCHMARKS.register("calibration")
def bench_calibration(json_path: str | None, quick: bool) -> int:
    from hil.calib.runner import load_rig_config, run_all, run_calibration

    rows: list[tuple[str, str, Any, Any, Any]] = []
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        cfg = d / "bench.yaml"
        cfg.write_text(yaml.safe_dump(bench_config(), sort_keys=False))
        # the bench settles before every other calibration measures (as `all` orders them)
        settled = bench_config()
        settled["blackbox"]["wrappers"][3]["settle_s"] = 0.2
        cfg_settled = d / "settled.yaml"
        cfg_settled.write_text(yaml.safe_dump(settled, sort_keys=False))
        (d / "nominal.yaml").write_text(yaml.safe_dump({"blackbox": {"type": "owms_twin", "wrappers": [
            {"type": "slm_macropixels", "blocks": [12, 12]}]}}))

        def run(name: str, config: Path, *records: str, options: tuple[str, ...] = ()) -> Any:
            rig = load_rig_config(config, extra_records=list(records), model=str(d / "nominal.yaml"))
            t = time.perf_counter()
            record = run_calibration(name, rig, out_dir=d / name, options=options, echo=lambda s: None)
            timings[name] = time.perf_counter() - t
            return record

        r = run("settle", cfg)
        rows.append(("settle", "tau_s", 0.03, r.fitted["tau_s"], r.uncertainty["tau_s"]))
        rows.append(("settle", "settle_s (1 % of a step, margin 1.2)", 0.03 * np.log(100) * 1.2 - 0.005,
                     r.fitted["settle_s"], None))
        cam = run("camera", cfg_settled)
        rows.append(("camera", "dark_level_counts", 20.0, cam.fitted["dark_level_counts"],
                     cam.uncertainty["dark_level_counts"]))
        rows.append(("camera", "linearity_error", 0.0, cam.fitted["linearity_error"], None))
        n = run("noise", cfg_settled, str(cam.path))
        for key, value in (("read_noise_counts", 8.0), ("gain_e_per_count", 1.0)):
            rows.append(("noise", key, value, n.fitted[key], n.uncertainty[key]))
        p = run("slm_phase", cfg_settled)
        rows.append(("slm_phase", "gamma", 1.1, p.fitted["gamma"], p.uncertainty["gamma"]))
        rows.append(("slm_phase", "scale", 0.97, p.fitted["scale"], p.uncertainty["scale"]))
        options = ("patterns=64", "iterations=30") if quick else ()
        t = run("twin_fit", cfg_settled, options=options)
        truth = {**TRUTH_GEOMETRY, "gamma": 1.1, "scale": 0.97, "crosstalk_sigma_px": 0.5}
        for key, value in truth.items():
            rows.append(("twin_fit", key, value, t.fitted[key], t.uncertainty[key]))
        t0 = time.perf_counter()
        records = run_all(load_rig_config(cfg, model=str(d / "nominal.yaml")), out_dir=d / "all",
                          echo=lambda s: None)
        timings["all"] = time.perf_counter() - t0
        after = {r.name: r for r in records}["twin_fit"]
    print("calibrations on the bench twin: injected vs recovered (each on the uncorrected, settled bench)")
    print(f"{'calibration':<11} {'quantity':<38} {'injected':>22} {'recovered ± uncertainty':>40}")
    out_rows = []
    for cal, key, truth_v, got, unc in rows:
        shown = _fmt(got) + (" ± " + _fmt(unc) if unc is not None else "")
        print(f"{cal:<11} {key:<38} {_fmt(truth_v):>22} {shown:>40}")
        out_rows.append({"calibration": cal, "quantity": key, "injected": truth_v, "recovered": got,
                         "uncertainty": unc})
    print("wall s: " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    print(f"after `hil calibrate all` (corrected rig): twin residual {after.fitted['rms_noise_sigmas']:.2f} noise "
          f"sigmas; distance {after.fitted['distance_m']:.5g} m, waist {after.fitted['waist_m']:.4g} m")
    if json_path:
        Path(json_path).write_text(json.dumps({"rows": out_rows, "wall_s": timings,
                                               "after_all": after.fitted}, indent=1))
        print(f"json: {json_path}")
    return 0


def _fmt(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt(a) for a in v) + "]"
    return f"{v:.4g}"
