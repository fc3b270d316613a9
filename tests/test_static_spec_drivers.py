"""The rigs' configs, declared in torch-free modules (hil.drivers.*_config), know the rig's shapes before it is built
(``Config.static_spec() == static_spec_of(built rig)``) and reject every bad value at parse time, so nothing that
validates fails when the rig is built. Building a rig connects to nothing (slmsuite, pyserial, pyvisa are imported on
connect)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from hil.errors import ConfigError
from hil.sections import parse_blackbox
from hil.shapes import StaticSpec, static_spec_of

ROOT = Path(__file__).resolve().parents[1]
RIGS = {"slm_camera_rig": "hil.drivers.optical_rig_config", "serial_board": "hil.drivers.serial_board_config",
        "visa_rig": "hil.drivers.visa_rig_config"}


def shipped(name: str) -> dict[str, Any]:
    """The ``blackbox:`` section of ``configs/NAME.yaml``, its wrappers dropped (the base box is compared)."""
    section = yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())["blackbox"]
    section.pop("wrappers", None)
    return section


def variant(name: str, drop: tuple[str, ...] = (), **options: Any) -> dict[str, Any]:
    section = {k: v for k, v in copy.deepcopy(shipped(name)).items() if k not in drop}
    return {**section, **options}


SPEC_CASES = {
    "slm shipped (blocks 16 x 16)": (shipped("slm_camera_rig"), StaticSpec(256, (32, 32), (64, 64))),
    "slm blocks not set": (variant("slm_camera_rig", drop=("blocks",)), StaticSpec(64 * 64, (32, 32), (64, 64))),
    "slm blocks null": (variant("slm_camera_rig", blocks=None), StaticSpec(64 * 64, (32, 32), (64, 64))),
    "slm blocks 8 x 4": (variant("slm_camera_rig", blocks=[8, 4]), StaticSpec(32, (32, 32), (64, 64))),
    "slm blocks = pixels": (variant("slm_camera_rig", blocks=[64, 64]), StaticSpec(64 * 64, (32, 32), (64, 64))),
    "slm smaller roi": (variant("slm_camera_rig", roi=[4, 6, 8, 12]), StaticSpec(256, (8, 12), (64, 64))),
    "slm 1 x 1 roi": (variant("slm_camera_rig", roi=[0, 0, 1, 1]), StaticSpec(256, (1, 1), (64, 64))),
    "slm regions": (variant("slm_camera_rig", regions=[4, 4]), StaticSpec(256, (16,), (64, 64))),
    "slm regions, smaller roi": (variant("slm_camera_rig", roi=[0, 0, 8, 12], regions=[2, 3]),
                                 StaticSpec(256, (6,), (64, 64))),
    "slm non-square slm, no blocks": (variant("slm_camera_rig", slm_shape=[24, 40], blocks=None, roi=[0, 0, 5, 7]),
                                      StaticSpec(24 * 40, (5, 7), (24, 40))),
    "slm non-square slm, blocks": (variant("slm_camera_rig", slm_shape=[24, 40], blocks=[6, 5]),
                                   StaticSpec(30, (32, 32), (24, 40))),
    "serial shipped": (shipped("serial_board"), StaticSpec(4, (3,))),
    "serial 1 dac, 7 adc": (variant("serial_board", n_dac=1, n_adc=7), StaticSpec(1, (7,))),
    "serial defaults": ({"type": "serial_board", "port": "/dev/ttyACM0"}, StaticSpec(4, (3,))),
    "visa shipped": (shipped("visa_rig"), StaticSpec(4, (3,))),
    "visa 8 in, 1 out, per channel": (variant("visa_rig", n_inputs=8, n_outputs=1, set_command="SOUR{channel}:VOLT "
                                              "{value}", measure_query="MEAS{channel}?"), StaticSpec(8, (1,))),
}


@pytest.mark.parametrize("section, expected", SPEC_CASES.values(), ids=SPEC_CASES.keys())
def test_the_configs_static_spec_is_the_built_rigs(section: dict[str, Any], expected: StaticSpec) -> None:
    parsed = parse_blackbox(section)
    spec = parsed.base.options.static_spec()
    assert spec == expected
    box = parsed.base.build()  # building connects to nothing (entering ``with box`` would)
    assert static_spec_of(box) == spec
    assert box.spec.input_dim == spec.input_dim and box.spec.output_shape == spec.output_shape
    assert parsed.static_spec() == spec


SLM_GAMMA = {"levels": [0, 128, 255], "gamma": [0.0, 0.5, 1.0]}
AFFINE = {"M": [[1.0, 0.0], [0.0, 1.0]], "b": [0.0, 0.0]}

#: (rig, options changed or (with None) dropped, the key the error names, a piece of its message)
ERROR_CASES: dict[str, tuple[str, dict[str, Any], str, str]] = {
    # RigOptions (every rig)
    "slm backoff adds up": ("slm_camera_rig", {"retries": 100, "backoff_s": 1.0}, "retries", "add up to"),
    "serial backoff adds up": ("serial_board", {"retries": 40, "backoff_s": 0.01}, "retries", "add up to"),
    "visa backoff adds up": ("visa_rig", {"retries": 30, "backoff_s": 0.1}, "retries", "add up to"),
    # slm_camera_rig: the device sections
    "slm section empty": ("slm_camera_rig", {"slm": {}}, "slm", "give {class:"),
    "camera section without a class": ("slm_camera_rig", {"camera": {"args": ["$slm"]}}, "camera", "give {class:"),
    "camera unknown key": ("slm_camera_rig", {"camera": {"class": "a.B", "kwarg": {}}}, "camera.kwarg",
                           "unknown key"),
    "slm class not an import path": ("slm_camera_rig", {"slm": {"class": "SimulatedSLM"}}, "slm.class",
                                     "import path"),
    "slm class relative": ("slm_camera_rig", {"slm": {"class": ".slms.SimulatedSLM"}}, "slm.class", "import path"),
    "camera args not a list": ("slm_camera_rig", {"camera": {"class": "a.B", "args": "$slm"}}, "camera.args",
                               "list of positional"),
    "camera kwargs not a mapping": ("slm_camera_rig", {"camera": {"class": "a.B", "kwargs": [1]}}, "camera.kwargs",
                                    "mapping of keyword"),
    "slm kwargs name not an identifier": ("slm_camera_rig", {"slm": {"class": "a.B", "kwargs": {"pitch-um": 8}}},
                                          "slm.kwargs", "identifiers"),
    # slm_camera_rig: shapes and bounds
    "slm_shape not 2": ("slm_camera_rig", {"slm_shape": [64, 64, 3]}, "slm_shape", "[rows, cols]"),
    "phase_max below phase_min": ("slm_camera_rig", {"phase_min": 1.0, "phase_max": 0.5}, "phase_max", "must be >"),
    "phase bounds equal in float32": ("slm_camera_rig", {"phase_min": 1.0, "phase_max": 1.0 + 1e-9}, "phase_max",
                                      "in float32"),
    "phase span overflows float32": ("slm_camera_rig", {"phase_min": -3e38, "phase_max": 3e38}, "phase_max",
                                     "overflows float32"),
    "blocks not 2": ("slm_camera_rig", {"blocks": [16]}, "blocks", "[rows, cols]"),
    "blocks do not divide the slm": ("slm_camera_rig", {"blocks": [16, 5]}, "blocks[1]", "must divide slm_shape[1]"),
    "blocks larger than the slm": ("slm_camera_rig", {"blocks": [128, 16]}, "blocks[0]", "must divide slm_shape[0]"),
    "roi missing": ("slm_camera_rig", {"roi": None}, "roi", "give the camera region"),
    "roi not 4": ("slm_camera_rig", {"roi": [0, 0, 8]}, "roi", "[y0, x0, height, width]"),
    "roi height 0": ("slm_camera_rig", {"roi": [0, 0, 0, 8]}, "roi[2]", "height must be >= 1"),
    "roi width 0": ("slm_camera_rig", {"roi": [0, 0, 8, 0]}, "roi[3]", "width must be >= 1"),
    "regions not 2": ("slm_camera_rig", {"regions": [4]}, "regions", "[rows, cols]"),
    "regions do not divide the roi": ("slm_camera_rig", {"regions": [5, 4]}, "regions[0]", "must divide the roi's"),
    "regions do not divide a smaller roi": ("slm_camera_rig", {"roi": [0, 0, 8, 12], "regions": [2, 8]}, "regions[1]",
                                            "must divide the roi's width"),
    # slm_camera_rig: the calibrations it carries
    "slm_gamma unknown key": ("slm_camera_rig", {"slm_gamma": {**SLM_GAMMA, "phase": [0, 1]}}, "slm_gamma.phase",
                              "unknown key"),
    "slm_gamma missing key": ("slm_camera_rig", {"slm_gamma": {"levels": [0, 255]}}, "slm_gamma", "missing key"),
    "slm_gamma too short": ("slm_camera_rig", {"slm_gamma": {"levels": [0], "gamma": [0.0]}}, "slm_gamma.levels",
                            "at least 2"),
    "slm_gamma not a number": ("slm_camera_rig", {"slm_gamma": {"levels": [0, 255], "gamma": [0.0, "one"]}},
                               "slm_gamma.gamma[1]", "finite number"),
    "slm_gamma lengths differ": ("slm_camera_rig", {"slm_gamma": {"levels": [0, 255], "gamma": [0.0, 0.5, 1.0]}},
                                 "slm_gamma.gamma", "one entry per level"),
    "slm_gamma negative level": ("slm_camera_rig", {"slm_gamma": {"levels": [-1, 255], "gamma": [0.0, 1.0]}},
                                 "slm_gamma.levels[0]", ">= 0"),
    "slm_gamma repeated level": ("slm_camera_rig", {"slm_gamma": {"levels": [0, 0], "gamma": [0.0, 1.0]}},
                                 "slm_gamma.levels", "repeat"),
    "fourier_affine unknown key": ("slm_camera_rig", {"fourier_affine": {**AFFINE, "c": [0, 0]}}, "fourier_affine.c",
                                   "unknown key"),
    "fourier_affine missing key": ("slm_camera_rig", {"fourier_affine": {"M": AFFINE["M"]}}, "fourier_affine",
                                   "missing key"),
    "fourier_affine M not 2 x 2": ("slm_camera_rig", {"fourier_affine": {**AFFINE, "M": [[1.0, 0.0]]}},
                                   "fourier_affine.M", "2 x 2"),
    "fourier_affine M not a number": ("slm_camera_rig", {"fourier_affine": {**AFFINE, "M": [[1.0, 0.0], [0.0, "x"]]}},
                                      "fourier_affine.M[1][1]", "finite number"),
    "fourier_affine b not 2": ("slm_camera_rig", {"fourier_affine": {**AFFINE, "b": [0.0]}}, "fourier_affine.b",
                               "[x, y]"),
    "fourier_affine b not a number": ("slm_camera_rig", {"fourier_affine": {**AFFINE, "b": [0.0, None]}},
                                      "fourier_affine.b[1]", "finite number"),
    # serial_board
    "serial port empty": ("serial_board", {"port": ""}, "port", "give the serial port"),
    "serial dac_max_v below dac_min_v": ("serial_board", {"dac_min_v": 3.0, "dac_max_v": 0.2}, "dac_max_v",
                                         "must be >"),
    "serial dac bounds equal in float32": ("serial_board", {"dac_min_v": 1.0, "dac_max_v": 1.0 + 1e-9}, "dac_max_v",
                                           "in float32"),
    # visa_rig
    "visa resource empty": ("visa_rig", {"resource": ""}, "resource", "give the VISA resource"),
    "visa v_max below v_min": ("visa_rig", {"v_min": 3.0, "v_max": 0.2}, "v_max", "must be >"),
    "visa v span overflows float32": ("visa_rig", {"v_min": -3e38, "v_max": 3e38}, "v_max", "overflows float32"),
    "visa set_command without a placeholder": ("visa_rig", {"set_command": "SOUR:VOLT 1"}, "set_command",
                                               "must contain {values} or {channel}"),
    "visa set_command stray field": ("visa_rig", {"set_command": "SOUR:VOLT:LIST {values} {unit}"}, "set_command",
                                     "cannot fill"),
    "visa set_command unbalanced brace": ("visa_rig", {"set_command": "SOUR{channel}:VOLT {value"}, "set_command",
                                          "cannot fill"),
    "visa set_command sends no value": ("visa_rig", {"set_command": "SOUR{channel}:VOLT 1"}, "set_command",
                                        "sends the value nowhere"),
    "visa measure_query stray field": ("visa_rig", {"measure_query": "MEAS{channel}:{what}?"}, "measure_query",
                                       "cannot fill"),
}


@pytest.mark.parametrize("rig, options, key, message", ERROR_CASES.values(), ids=ERROR_CASES.keys())
def test_a_bad_config_is_rejected_when_parsed(rig: str, options: dict[str, Any], key: str, message: str) -> None:
    section = variant(rig, drop=tuple(k for k, v in options.items() if v is None),
                      **{k: v for k, v in options.items() if v is not None})
    with pytest.raises(ConfigError) as info:
        parse_blackbox(section)
    assert str(info.value).startswith(f"blackbox.{key}: "), str(info.value)
    assert message in str(info.value)


def test_the_rigs_configs_are_checked_without_torch() -> None:
    """The declaring modules import no torch, and with them a rig's section is parsed and its shapes computed
    without importing torch or the rig's implementation."""
    sections = {name: shipped(name) for name in RIGS}
    code = (
        "import json, sys\n"
        f"for module in {list(RIGS.values())!r}:\n"
        "    __import__(module)\n"
        "from hil.sections import parse_blackbox\n"
        f"sections = json.loads({json.dumps(json.dumps(sections))})\n"
        "specs = {n: repr(parse_blackbox(s).static_spec()) for n, s in sections.items()}\n"
        "print(json.dumps(specs))\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith(('hil.drivers.', 'hil.blackbox'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=str(ROOT))
    specs, modules = out.stdout.strip().split("\n")
    assert json.loads(specs) == {"slm_camera_rig": repr(StaticSpec(256, (32, 32), (64, 64))),
                                 "serial_board": repr(StaticSpec(4, (3,))), "visa_rig": repr(StaticSpec(4, (3,)))}
    assert eval(modules) == sorted(["hil.drivers.rig_config", *RIGS.values()])  # noqa: S307  (our own output)


def test_the_rigs_use_the_declared_configs() -> None:
    from hil.drivers import optical_rig, optical_rig_config, rig, rig_config, serial_board, visa_rig

    from hil.registry import BLACKBOXES

    for name, module in RIGS.items():
        assert BLACKBOXES.get(name).Config is BLACKBOXES.config(name)
        assert BLACKBOXES.config(name).__module__ == module
    # what the rig modules exported before keeps importing from them
    assert rig.RigOptions is rig_config.RigOptions and rig.check_bounds is rig_config.check_bounds
    assert (rig.Float32, rig.F32_MAX, rig.MAX_SETTLE_S, rig.MAX_BACKOFF_TOTAL_S) == (
        rig_config.Float32, rig_config.F32_MAX, rig_config.MAX_SETTLE_S, rig_config.MAX_BACKOFF_TOTAL_S)
    assert optical_rig.MAX_SIDE_PX == optical_rig_config.MAX_SIDE_PX == 16384
    assert serial_board.MAX_CHANNELS == visa_rig.MAX_CHANNELS == 4096 and serial_board.MAX_BAUDRATE == 20_000_000
