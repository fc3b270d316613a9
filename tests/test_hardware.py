"""One suite for every rig, simulated and real: the real runs when its address is given, as slmsuite and pymeasure do.

    HIL_SERIAL_PORT=/dev/ttyACM0 pytest -m hardware tests/test_hardware.py
    HIL_VISA_RESOURCE=TCPIP::192.0.2.10::5025::SOCKET pytest -m hardware tests/test_hardware.py
    HIL_SLM_RIG_CONFIG=my_rig.yaml pytest -m hardware tests/test_hardware.py     # a config with a blackbox section

Without an address the real-device cases skip, saying which variable to set;
the simulated cases (fake firmware, loopback SCPI server, slmsuite's simulated
pair) always run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
import yaml

from hil.sections import parse_blackbox


def _serial_sim(tmp_path):
    pytest.importorskip("serial", reason="pip install 'hil[serial]'")
    link = tmp_path / "board"
    proc = subprocess.Popen([sys.executable, "-m", "hil.drivers.fake_firmware", "--link", str(link)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith("READY")
    return {"type": "serial_board", "port": str(link)}, lambda: (proc.kill(), proc.wait())


def _visa_sim(tmp_path):
    pytest.importorskip("pyvisa_py", reason="pip install 'hil[visa]'")
    from hil.drivers.scpi_loopback import LoopbackInstrument

    inst = LoopbackInstrument().start()
    return {"type": "visa_rig", "resource": inst.resource}, inst.stop


def _slm_sim(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pytest.importorskip("slmsuite.hardware.cameras.simulated", reason="pip install 'hil[slm]'")
    return {"type": "slm_camera_rig", "slm_shape": [32, 32], "blocks": [4, 4], "roi": [8, 8, 16, 16],
            "regions": [2, 2], "exposure_s": 1.0, "on_saturation": "count",
            "slm": {"class": "slmsuite.hardware.slms.simulated.SimulatedSLM", "args": [[32, 32]]},
            "camera": {"class": "slmsuite.hardware.cameras.simulated.SimulatedCamera", "args": ["$slm"]}}, None


def _real(variable: str, build):
    def make(tmp_path):
        value = os.environ.get(variable)
        if not value:
            pytest.skip(f"no real device: set {variable} to run this against one")
        return build(value), None

    return make


def _slm_real_section(path: str) -> dict:
    return yaml.safe_load(open(path))["blackbox"]


RIGS = {
    "serial-sim": _serial_sim,
    "visa-sim": _visa_sim,
    "slm-sim": _slm_sim,
    "serial-real": _real("HIL_SERIAL_PORT", lambda v: {"type": "serial_board", "port": v}),
    "visa-real": _real("HIL_VISA_RESOURCE", lambda v: {"type": "visa_rig", "resource": v,
                                                       "visa_library": os.environ.get("HIL_VISA_LIBRARY", "@py")}),
    "slm-real": _real("HIL_SLM_RIG_CONFIG", _slm_real_section),
}


@pytest.fixture(params=[pytest.param(name, marks=pytest.mark.hardware) if name.endswith("-real") else name
                        for name in RIGS])
def rig_section(request, tmp_path):
    section, stop = RIGS[request.param](tmp_path)
    yield section
    if stop is not None:
        stop()


def test_connects_identifies_and_answers_finite_values(rig_section):
    box = parse_blackbox(rig_section).build()
    with box:
        spec = box.spec
        x = spec.lower + (spec.upper - spec.lower) * torch.rand(5, spec.input_dim, generator=torch.Generator()
                                                                 .manual_seed(0))
        y = box.query(x)
    assert y.shape == (5, *spec.output_shape) and torch.isfinite(y).all()


def test_requests_past_the_limits_are_clipped_to_them(rig_section):
    box = parse_blackbox({**rig_section, "out_of_bounds": "clip"}).build()
    with box:
        spec = box.spec
        x = torch.stack([spec.upper + 1.0, spec.lower - 1.0])
        y = box.query(x)
    assert box.stats.clipped_rows == 2 and torch.isfinite(y).all()


def test_a_short_online_run_completes_with_every_query_logged(rig_section, tmp_path):
    from hil.querylog import read_log
    from hil.run import execute, load_run_config

    box = parse_blackbox(rig_section).build()
    n_out = int(np.prod(box.spec.output_shape))
    cfg = load_run_config({
        "blackbox": rig_section, "objective": {"type": "target_distance", "target": [0.5] * n_out},
        "estimator": {"type": "surrogate", "loss": "gradpie", "k": 3, "hidden": [32, 32], "epochs": 2},
        "optimizer": {"type": "gradient", "n_starts": 2, "iterations": 3, "local_samples": 1, "sigma": 0.05,
                      "lr": 0.05, "seed": 0},
        "log": {"dir": str(tmp_path)}})
    result = execute(cfg, log_path=tmp_path / "hw.h5")
    assert len(read_log(tmp_path / "hw.h5")) == result.queries == 2 * 2 * 3


# -- the config every rig shares: checked at parse, before any device is opened -----------------------------------

MINIMAL = {
    "serial_board": {"port": "/dev/ttyACM0"},
    "visa_rig": {"resource": "TCPIP::192.0.2.10::5025::SOCKET"},
    "slm_camera_rig": {"slm": {"class": "slmsuite.hardware.slms.simulated.SimulatedSLM", "args": [[32, 32]]},
                       "camera": {"class": "slmsuite.hardware.cameras.simulated.SimulatedCamera", "args": ["$slm"]},
                       "slm_shape": [32, 32], "roi": [8, 8, 16, 16]},
}


@pytest.mark.parametrize("kind", MINIMAL)
def test_every_number_of_a_rig_config_declares_its_range(kind):
    from hil.config import undeclared_numbers
    from hil.registry import BLACKBOXES

    assert undeclared_numbers(BLACKBOXES.get(kind).Config) == []
    parse_blackbox({"type": kind, **MINIMAL[kind]})  # the minimal section is valid


@pytest.mark.parametrize("kind", MINIMAL)
@pytest.mark.parametrize("key, value, match", [
    ("settle_s", float("nan"), "expected a finite number, got nan"),
    ("settle_s", float("inf"), "expected a finite number, got inf"),
    ("settle_s", 3600.0, "must be >= 0 and <= 60, got 3600.0"),  # a calibration may not set more either
    ("backoff_s", float("inf"), "expected a finite number, got inf"),
    ("backoff_s", 1e9, "must be >= 0 and <= 60"),
    ("reconnect_timeout_s", float("nan"), "expected a finite number, got nan"),
    ("retries", -1, "must be >= 0 and <= 100, got -1"),
    ("retries", 60, "with retries 60, the waits between a row's attempts"),  # time.sleep would overflow
    ("out_of_bounds", "wrap", "'wrap' is not allowed; allowed values: 'reject', 'clip'"),
])
def test_the_options_every_rig_shares_are_checked_on_every_rig(kind, key, value, match):
    from hil.errors import ConfigError

    with pytest.raises(ConfigError, match=rf"^blackbox\.{key}: {match}"):
        parse_blackbox({"type": kind, **MINIMAL[kind], key: value})
