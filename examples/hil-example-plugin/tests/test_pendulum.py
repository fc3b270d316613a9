"""The example plug-in as hil sees it: registered through the hil.plugins entry point, the twin's physics, its
declared optimum, and the shipped config validated and run to that optimum."""

from __future__ import annotations

import math
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import torch

from hil.cli import main
from hil.config import parse
from hil.errors import ConfigError
from hil.querylog import read_log
from hil.registry import BLACKBOXES, OBJECTIVES, WRAPPERS
from hil.run import execute, load_run_config
from hil.sections import parse_blackbox

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "pendulum.yaml"


def test_hil_finds_the_plugins_through_the_entry_point():
    names = {ep.value for ep in entry_points(group="hil.plugins")}
    assert "hil_example_plugin.pendulum" in names, "pip install -e examples/hil-example-plugin"
    assert "damped_pendulum" in BLACKBOXES.names()  # loads the entry points: nothing here imported the module
    assert "angle_encoder" in WRAPPERS.names() and "swing_energy" in OBJECTIVES.names()
    assert BLACKBOXES.get("damped_pendulum").__module__ == "hil_example_plugin.pendulum"


def test_small_swings_follow_the_damped_harmonic_oscillator():
    box = parse_blackbox({"type": "damped_pendulum", "steps": 400, "damping_per_s": 0.3}).build()
    theta0 = 1e-3
    with box:
        theta, omega = box.query(torch.tensor([[theta0, 0.0]]))[0].tolist()
    w0, g = math.sqrt(9.81 / 0.5), 0.15  # sqrt(g / L), half the damping
    wd = math.sqrt(w0**2 - g**2)
    t = 2.0
    expected = theta0 * math.exp(-g * t) * (math.cos(wd * t) + g / wd * math.sin(wd * t))
    assert theta == pytest.approx(expected, abs=1e-6)


def test_the_declared_optimum_reaches_the_target_and_lies_in_the_box():
    box = parse_blackbox({"type": "damped_pendulum", "max_angle_rad": 1.5}).build()
    target = torch.tensor([0.3, -0.5])
    x = box.initial_state_for(target)
    assert bool(((x >= box.spec.lower) & (x <= box.spec.upper)).all())
    with box:
        torch.testing.assert_close(box.query(x[None])[0], target, atol=1e-4, rtol=0)


def test_a_config_error_names_the_key():
    cls = BLACKBOXES.get("damped_pendulum")
    with pytest.raises(ConfigError, match="steps: too few for the horizon"):
        parse(cls.Config, {"steps": 2}, "blackbox")
    with pytest.raises(ConfigError, match=r"blackbox.wrappers\[0\].counts_per_rev: must be >= 4"):
        parse_blackbox({"type": "damped_pendulum", "wrappers": [{"type": "angle_encoder", "counts_per_rev": 2}]})


def test_hil_validates_and_runs_the_shipped_config_to_the_declared_optimum(tmp_path):
    assert main(["validate", str(CONFIG)]) == 0
    config = load_run_config(CONFIG)
    config.log.report = False
    result = execute(config, log_path=tmp_path / "pendulum.h5")
    assert float(result.trace.best_array().min()) < 0.01  # rms distance to the target state
    log = read_log(result.log_path)
    optimum = config.blackbox.build().inner.initial_state_for(torch.tensor([0.3, -0.5]))
    closest = torch.as_tensor(log.x).sub(optimum).norm(dim=1).min()
    assert float(closest) < 0.02, "the best query is the declared optimum"
