"""Op-amp twin in NGspice: figures match ``ngspice -b``, faults never lose a batch, bad designs are invalid."""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hil.sim_backends.ngspice import INSTALL_HINT, find_libngspice
from hil.sim_backends.opamp import (
    DESIGN_SPACE,
    PARAM_NAMES,
    OpAmpFoM,
    OpAmpTwin,
    build_netlist,
    designs,
    generic_models_path,
)
from hil.sim_backends.opamp_measure import fom, measure
from hil.sim_backends.spice_pool import SimulatorPool
from hil.sim_backends.spice_worker import with_params

from hil.errors import ConfigError, DeviceError
from hil.sections import parse_blackbox
from hil.space import ParameterSpace

ROOT = Path(__file__).resolve().parents[1]
SKY130 = ROOT.parent / "shared" / "spice" / "sky130"

needs_ngspice = pytest.mark.skipif(find_libngspice() is None or shutil.which("ngspice") is None,
                                   reason=f"NGspice is not installed: {INSTALL_HINT}")


# -- measurements (no simulator) ---------------------------------------------------------------------------


def two_pole(f, a0_db=60.0, p1=1e3, p2=1e7):
    s = 1j * f
    return 10 ** (a0_db / 20) / ((1 + s / p1) * (1 + s / p2))


def test_measure_matches_a_two_pole_response():
    f = np.logspace(0, 10, 2001)
    fig = measure(f, two_pole(f))
    a0 = 1000.0
    # |H(ugbw)| = 1 solved numerically on a fine grid, phase margin = 180 - atan(f/p1) - atan(f/p2)
    fine = np.logspace(5, 8, 200001)
    ugbw = fine[np.argmin(np.abs(np.abs(two_pole(fine)) - 1))]
    pm = 180 - math.degrees(math.atan(ugbw / 1e3) + math.atan(ugbw / 1e7))
    assert fig.valid
    assert fig.gain_db == pytest.approx(20 * math.log10(a0), abs=1e-3)
    assert fig.ugbw_hz == pytest.approx(ugbw, rel=2e-3)
    assert fig.phase_margin_deg == pytest.approx(pm, abs=0.2)
    assert fig.fom == pytest.approx(fom(fig.gain_db, fig.ugbw_hz, fig.phase_margin_deg))


def test_phase_is_unwrapped_so_an_unstable_loop_has_a_negative_margin():
    f = np.logspace(0, 10, 2001)
    s = 1j * f
    h = 1e4 / ((1 + s / 1e2) * (1 + s / 1e3) * (1 + s / 1e4))  # three poles: -270 deg before 0 dB
    fig = measure(f, h)
    assert fig.valid and fig.phase_margin_deg < 0


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        (lambda f: 0.5 / (1 + 1j * f / 1e3), "no gain"),
        (lambda f: np.full(len(f), 10.0 + 0j), "never crosses 0 dB"),
        (lambda f: np.where(f > 1e3, np.nan, 1.0 + 0j), "non-finite"),
    ],
)
def test_measure_marks_impossible_responses_invalid(response, reason):
    f = np.logspace(0, 10, 201)
    fig = measure(f, response(f))
    assert not fig.valid and reason in fig.reason
    assert all(math.isnan(v) for v in (fig.gain_db, fig.ugbw_hz, fig.phase_margin_deg, fig.fom))


def to_physical(u: np.ndarray) -> list[dict[str, float]]:
    """Unit-cube points -> designs, through the space the twin declares (what every optimiser uses)."""
    return designs(ParameterSpace(OpAmpTwin().spec).to_physical(torch.as_tensor(u, dtype=torch.float32)).numpy())


def test_design_space_is_declared_in_physical_units_on_log_and_integer_scales():
    spec = OpAmpTwin().spec
    for i, (name, low, high, kind) in enumerate(DESIGN_SPACE):
        assert float(spec.lower[i]) == pytest.approx(low) and float(spec.upper[i]) == pytest.approx(high), name
        assert spec.scale[i] == ("linear" if kind == "int" else "log") and spec.integer[i] == (kind == "int")
    lo, hi = to_physical(np.zeros((1, 10)))[0], to_physical(np.ones((1, 10)))[0]
    for name, low, high, _ in DESIGN_SPACE:
        assert lo[name] == pytest.approx(low) and hi[name] == pytest.approx(high)
    ratios = [d["ratio"] for d in to_physical(np.array([[0.5] * 8 + [u, 0.5] for u in (0, 0.32, 0.34, 0.66, 0.67, 1)]))]
    assert ratios == [1, 1, 2, 2, 3, 3]
    assert to_physical(np.full((1, 10), 0.5))[0]["w_dp"] == pytest.approx(8e-6)  # log-uniform: geometric middle


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"^blackbox.model_files\[0\]: no such file"):
        parse_blackbox({"type": "opamp_ngspice", "models": "files", "model_files": [str(tmp_path / "none.lib")]})
    with pytest.raises(ConfigError, match=r"^blackbox.model_files: give the model files"):
        parse_blackbox({"type": "opamp_ngspice", "models": "files"})
    with pytest.raises(ConfigError, match="^blackbox.models: must be 'generic130' or 'files', got 'tsmc'"):
        parse_blackbox({"type": "opamp_ngspice", "models": "tsmc"})
    with pytest.raises(ConfigError, match="^blackbox.analysis: must be an AC analysis"):
        parse_blackbox({"type": "opamp_ngspice", "analysis": "tran 1n 1u"})


INF, NAN = float("inf"), float("nan")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"vdd_v": INF}, r"^blackbox.vdd_v: expected a finite number, got inf"),
        ({"vdd_v": -1.8}, r"^blackbox.vdd_v: must be > 0, got -1.8"),
        ({"ibias_a": NAN}, r"^blackbox.ibias_a: expected a finite number, got nan"),
        ({"ibias_a": 0.0}, r"^blackbox.ibias_a: must be > 0, got 0.0"),
        ({"cl_f": INF}, r"^blackbox.cl_f: expected a finite number, got inf"),
        ({"vcm_v": NAN}, r"^blackbox.vcm_v: expected a finite number, got nan"),
        ({"vcm_v": 2.5}, r"^blackbox.vcm_v: the input common-mode voltage must lie between the rails, 0 and vdd_v "
                         r"\(1.8 V\), got 2.5"),
        ({"vdd_v": 0.5}, r"^blackbox.vcm_v: .* got 0.9"),  # the default common mode above a lowered supply
        ({"n_workers": 0}, r"^blackbox.n_workers: must be >= 1 and <= 256, got 0"),
        ({"timeout_s": INF}, r"^blackbox.timeout_s: expected a finite number, got inf"),
        ({"timeout_s": 0.0}, r"^blackbox.timeout_s: must be > 0 and <= 86400, got 0.0"),
        ({"timeout_s": 1e9}, r"^blackbox.timeout_s: must be > 0 and <= 86400"),  # the pool's wait would overflow
    ],
)
def test_bad_numbers_fail_on_parse_naming_the_key(options, message):
    from hil.config import undeclared_numbers

    assert undeclared_numbers(OpAmpTwin.Config) == []
    with pytest.raises(ConfigError, match=message):
        parse_blackbox({"type": "opamp_ngspice", **options})


def test_missing_ngspice_fails_on_connect_naming_the_package(monkeypatch):
    monkeypatch.setenv("HIL_LIBNGSPICE", "/nonexistent/libngspice.so")
    box = OpAmpTwin()
    with pytest.raises(DeviceError, match="apt-get install ngspice libngspice0"):
        box.connect()


# -- the simulator -------------------------------------------------------------------------------------------

KNOWN = {"w_bias": 8e-6, "l_bias": 1e-6, "w_dp": 8e-6, "l_dp": 0.5e-6, "w_load": 4e-6, "l_load": 1e-6,
         "w_gain": 16e-6, "l_gain": 0.5e-6, "ratio": 2.0, "cc": 2e-12}


def physical(design: dict[str, float]) -> torch.Tensor:
    """A ``1 x 10`` query in the twin's physical units."""
    return torch.tensor([[design[name] for name in PARAM_NAMES]], dtype=torch.float64).to(torch.float32)


def ngspice_batch(netlist: str, tmp_path: Path) -> dict[str, float]:
    """Gain, UGBW and phase margin measured by ngspice itself (``meas``) in batch mode."""
    control = """.control
ac dec 20 1 10g
let vdb = db(v(out))
let ph = 180/pi*cph(v(out))
meas ac gain_db find vdb at=1
meas ac ugbw when vdb=0 cross=1
meas ac phase find ph when vdb=0 cross=1
.endc
"""
    body = [ln for ln in netlist.splitlines() if ln.strip().lower() != ".end"]
    deck = "\n".join(body) + "\n" + control + ".end\n"
    (tmp_path / "opamp.cir").write_text(deck)
    out = subprocess.run(["ngspice", "-b", "opamp.cir"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=60, env={**os.environ, "OMP_NUM_THREADS": "1"})
    values = dict(re.findall(r"^(gain_db|ugbw|phase)\s+=\s+(\S+)", out.stdout, flags=re.M))
    assert set(values) == {"gain_db", "ugbw", "phase"}, out.stdout[-2000:] + out.stderr[-2000:]
    return {k: float(v) for k, v in values.items()}


@needs_ngspice
def test_known_sizing_matches_a_direct_ngspice_batch_run(tmp_path):
    box = OpAmpTwin()
    x = physical(KNOWN)
    assert designs(x.numpy())[0] == pytest.approx(KNOWN, rel=1e-5)
    with box:
        gain_db, ugbw_hz, pm_deg = box.query(x)[0].tolist()
    ref = ngspice_batch(with_params(box.netlist, designs(x.numpy())[0]), tmp_path)
    assert gain_db == pytest.approx(ref["gain_db"], abs=0.01)
    assert ugbw_hz == pytest.approx(ref["ugbw"], rel=0.01)  # both interpolate between 20-per-decade points
    assert pm_deg == pytest.approx(180 + ref["phase"], abs=0.5)
    assert gain_db > 40 and 1e5 < ugbw_hz < 1e9  # an op-amp, not a wire


@needs_ngspice
def test_fom_objective_and_invalid_rows():
    f = OpAmpFoM()(torch.tensor([[80.0, 1e8, 60.0], [math.nan, math.nan, math.nan], [0.1, 2e4, 165.0]]))
    assert float(f[0]) == pytest.approx(1.2 * 0.8 + 1.0 + 1.6 * 60 / 90, rel=1e-5)
    assert math.isnan(float(f[1]))
    assert float(f[2]) == pytest.approx(1.2 * 0.001 + 1.6 + 2e-4, rel=1e-4)  # a wire: PM counts up to 90 only
    assert float(f[2]) == pytest.approx(fom(0.1, 2e4, 165.0), rel=1e-5)


@needs_ngspice
def test_an_impossible_design_is_marked_invalid_not_raised():
    # below threshold nothing conducts (the common mode stays between the rails, as validation requires)
    box = parse_blackbox({"type": "opamp_ngspice", "vdd_v": 0.2, "vcm_v": 0.1}).build()
    with box:
        y = box.query(ParameterSpace(box.spec).to_physical(torch.full((3, 10), 0.5)))
    assert torch.isnan(y).all()
    assert box.invalid_reasons == {"no gain": 3}


def _designs(n: int, seed: int = 0) -> list[dict[str, float]]:
    return to_physical(np.random.default_rng(seed).random((n, 10)))


@needs_ngspice
def test_a_simulator_killed_mid_batch_is_replaced_and_the_batch_returns():
    netlist = OpAmpTwin().netlist
    designs = _designs(300)
    with SimulatorPool(netlist, "ac dec 20 1 10g", "v(out)", n_workers=2) as pool:
        clean, _ = pool.simulate(designs)
        killed = []

        def kill_at_100(i, pid):  # SIGKILL the worker that was just handed design 100, mid-batch
            if i == 100:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

        rows, reasons = pool.simulate(designs, on_dispatch=kill_at_100)
        assert killed and killed[0] not in pool.pids() and len(pool.pids()) == 2
    assert len(rows) == len(designs)
    crashed = [i for i, r in enumerate(reasons) if r.startswith("simulator crashed")]
    assert crashed == [100] and rows[100][0] == 0.0
    assert pool.stats.crashes == 1 and pool.stats.replaced == 1
    same = [i for i in range(len(designs)) if i not in crashed]
    np.testing.assert_array_equal(np.array(rows)[same], np.array(clean)[same])  # every other design answered


@needs_ngspice
def test_a_hung_simulator_times_out_is_replaced_and_the_batch_returns():
    netlist = OpAmpTwin().netlist
    designs = _designs(40)
    with SimulatorPool(netlist, "ac dec 20 1 10g", "v(out)", n_workers=2, timeout_s=0.5) as pool:
        victim = pool.pids()[1]
        os.kill(victim, signal.SIGSTOP)  # a hang, as far as the pool can tell
        t = time.monotonic()
        rows, reasons = pool.simulate(designs)
        elapsed = time.monotonic() - t
    hung = [r for r in reasons if r.startswith("simulator timeout")]
    assert len(rows) == 40 and len(hung) == 1
    assert sum(r[0] for r in rows) >= 35  # the rest went to the live worker and its replacement
    assert elapsed < 10 and pool.stats.timeouts == 1


@needs_ngspice
def test_online_loop_runs_on_the_op_amp_and_logs_invalid_designs(tmp_path):
    from hil.querylog import read_log
    from hil.run import execute, load_run_config

    cfg = load_run_config({
        "blackbox": {"type": "opamp_ngspice"}, "objective": {"type": "opamp_fom"},
        "estimator": {"type": "surrogate", "loss": "gradpie", "k": 3, "hidden": [32, 32], "epochs": 2,
                      "output_scale": "per_output"},
        "optimizer": {"type": "gradient", "n_starts": 8, "iterations": 6, "local_samples": 1, "sigma": 0.05,
                      "lr": 0.05, "seed": 0},
        "log": {"dir": str(tmp_path)}})
    result = execute(cfg, log_path=tmp_path / "opamp.h5")
    best = result.trace.best_array()
    assert np.isfinite(best[-1]).any() and np.nanmean(best[-1]) >= np.nanmean(best[0])
    log = read_log(tmp_path / "opamp.h5")
    assert len(log) == result.queries
    finite = np.isfinite(log.y).all(axis=1)
    assert finite.any()
    assert (np.isnan(log.y).all(axis=1) | finite).all()  # an invalid design is a whole NaN row


@needs_ngspice
@pytest.mark.skipif(not SKY130.is_dir(), reason=f"SkyWater 130 nm cards not found at {SKY130}")
def test_the_skywater_130_path_works():
    cells = SKY130 / "cells"
    files = [cells / "nfet_01v8" / "sky130_fd_pr__nfet_01v8__mismatch.corner.spice",
             cells / "pfet_01v8" / "sky130_fd_pr__pfet_01v8__mismatch.corner.spice",
             SKY130 / "models" / "parameters" / "lod.spice",
             cells / "nfet_01v8" / "sky130_fd_pr__nfet_01v8__tt.corner.spice",
             cells / "pfet_01v8" / "sky130_fd_pr__pfet_01v8__tt.corner.spice"]
    box = parse_blackbox({"type": "opamp_ngspice", "models": "files", "model_files": [str(f) for f in files],
                          "nmos": "sky130_fd_pr__nfet_01v8", "pmos": "sky130_fd_pr__pfet_01v8",
                          "instance": "subckt", "n_workers": 1, "timeout_s": 60}).build()
    assert "XM1 n3 inn tail 0 sky130_fd_pr__nfet_01v8" in box.netlist
    with box:
        gain_db, ugbw_hz, pm_deg = box.query(physical(KNOWN))[0].tolist()
    generic = build_netlist([str(generic_models_path())], "nch", "pch", "model", vdd_v=1.8, ibias_a=2e-5,
                            cl_f=1e-12, vcm_v=0.9)
    assert generic != box.netlist
    assert gain_db > 50 and 1e6 < ugbw_hz < 1e9 and -90 < pm_deg < 120
