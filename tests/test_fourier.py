"""The Fourier twin: what slmsuite's simulated SLM + camera answer through the rig, in torch, and fitted to it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from hil.calib.runner import load_rig_config, run_calibration
from hil.errors import ConfigError
from hil.sections import parse_blackbox

ROOT = Path(__file__).resolve().parent.parent
GAMMA_SIM = (0.93 * (np.arange(256) / 256) ** 1.2).tolist()  # an SLM reaching 0.93 x 2 pi, gamma 1.2


def rig_and_twin(config: str, section_key: str, gamma: bool) -> tuple[dict, dict]:
    data = yaml.safe_load((ROOT / "configs" / config).read_text())
    rig = data[section_key]
    if gamma:
        rig["slm"]["kwargs"]["gamma_sim"] = GAMMA_SIM
    r = rig["slm"]["args"][0]
    twin = {"type": "fourier_twin", "slm_shape": [r[1], r[0]], "blocks": rig["blocks"], "roi": rig["roi"],
            "regions": rig.get("regions"), "exposure_s": rig["exposure_s"]}
    if gamma:
        twin.update(gamma=1.2, scale=0.93)
    return rig, twin


@pytest.mark.parametrize("config, key, gamma", [("pnn_digits_rig.yaml", "bench", False),
                                                ("pnn_digits_rig.yaml", "bench", True),
                                                ("slm_camera_rig.yaml", "blackbox", False)])
def test_fourier_twin_answers_what_the_simulated_rig_answers(config, key, gamma):
    pytest.importorskip("slmsuite")
    rig_section, twin_section = rig_and_twin(config, key, gamma)
    rig, twin = parse_blackbox(rig_section).build(), parse_blackbox(twin_section).build()
    x = torch.rand(12, rig.spec.input_dim, generator=torch.Generator().manual_seed(0)) * 2 * np.pi
    x[0] = 0.0  # a flat phase: everything on the zero order, saturated
    with rig, twin:
        y_rig, y_twin = rig.query(x), twin.query(x)
    assert y_twin.shape == y_rig.shape
    assert float((y_rig - y_twin).abs().max()) == 0.0  # identical counts, saturation and truncation included


def test_fourier_twin_is_differentiable_and_checks_its_config():
    twin = parse_blackbox({"type": "fourier_twin", "slm_shape": [60, 60], "blocks": [10, 10],
                           "roi": [14, 14, 32, 32], "regions": [4, 4], "exposure_s": 0.25}).build()
    x = (torch.rand(4, 100) * 6.0).requires_grad_(True)
    with twin:
        twin.forward_differentiable(x).sum().backward()
    assert torch.isfinite(x.grad).all() and float(x.grad.abs().sum()) > 0
    assert twin.spec.output_shape == (16,) and twin.input_image_shape == (10, 10)
    with pytest.raises(ConfigError, match="blocks"):
        parse_blackbox({"type": "fourier_twin", "slm_shape": [60, 60], "blocks": [7, 7]}).build()
    with pytest.raises(ConfigError, match="gamma"):
        parse_blackbox({"type": "fourier_twin", "gamma": 9.0})


def test_twin_fit_recovers_the_slms_response_on_the_simulated_rig(tmp_path):
    pytest.importorskip("slmsuite")
    data = yaml.safe_load((ROOT / "configs" / "pnn_digits_rig.yaml").read_text())
    data["bench"]["slm"]["kwargs"]["gamma_sim"] = GAMMA_SIM
    cfg = tmp_path / "rig.yaml"
    cfg.write_text(yaml.safe_dump(data))
    record = run_calibration("twin_fit", load_rig_config(cfg), out_dir=tmp_path, echo=lambda s: None)
    assert abs(record.fitted["gamma"] - 1.2) < 0.02
    assert abs(record.fitted["scale"] - 0.93) < 0.01
    assert abs(record.fitted["gain"] - 1.0) < 0.02
    fitted = yaml.safe_load((tmp_path / record.files["twin"]).read_text())["blackbox"]
    assert fitted["type"] == "fourier_twin" and fitted["gamma"] == pytest.approx(record.fitted["gamma"], abs=1e-5)


INF, NAN = float("inf"), float("nan")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"exposure_s": INF}, r"^blackbox.exposure_s: expected a finite number, got inf"),
        ({"exposure_s": NAN}, r"^blackbox.exposure_s: expected a finite number, got nan"),
        ({"exposure_s": 0.0}, r"^blackbox.exposure_s: must be > 0, got 0.0"),
        ({"gain": INF}, r"^blackbox.gain: expected a finite number, got inf"),
        ({"gain": -1.0}, r"^blackbox.gain: must be > 0, got -1.0"),
        ({"exposure_s": 1e20, "gain": 1e20}, r"^blackbox.exposure_s: exposure_s x gain = 1e\+40 must be <= 1e\+30"),
        ({"gamma": NAN}, r"^blackbox.gamma: expected a finite number, got nan"),
        ({"gamma": 9.0}, r"^blackbox.gamma: must be >= 0.2 and <= 5, got 9.0"),
        ({"scale": 0.0}, r"^blackbox.scale: must be > 0 and <= 1.5, got 0.0"),
        ({"slm_bitdepth": 0}, r"^blackbox.slm_bitdepth: must be >= 1 and <= 16, got 0"),
        ({"camera_bitdepth": 32}, r"^blackbox.camera_bitdepth: must be >= 1 and <= 16, got 32"),
        ({"slm_shape": [64, 0]}, r"^blackbox.slm_shape\[1\]: must be >= 1 and <= 8192, got 0"),
        ({"slm_shape": [64]}, r"^blackbox.slm_shape: must be \[rows, cols\]"),
        ({"blocks": [0, 8]}, r"^blackbox.blocks\[0\]: must be >= 1"),
        ({"regions": [4, 4, 4]}, r"^blackbox.regions: must be \[rows, cols\]"),
        ({"roi": [0, -1, 8, 8]}, r"^blackbox.roi\[1\]: must be >= 0, got -1"),
        ({"roi": [0, 0, 8]}, r"^blackbox.roi: must be \[y0, x0, height, width\]"),
        ({"device": "tpu"}, r"^blackbox.device: must be one of"),
    ],
)
def test_bad_numbers_fail_on_parse_naming_the_key(options, message):
    with pytest.raises(ConfigError, match=message):
        parse_blackbox({"type": "fourier_twin", **options})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"slm_shape": [60, 60], "blocks": [7, 7]}, r"^blackbox.blocks: \[7, 7\] must divide slm_shape \[60, 60\]"),
        ({"slm_shape": [32, 32], "camera_shape": [64, 32]},
         r"^blackbox.camera_shape: \[64, 32\] is larger than the far field \[32, 32\]"),
        ({"slm_shape": [32, 32], "roi": [30, 0, 8, 8]}, r"^blackbox.roi: \[30, 0, 8, 8\] does not fit the camera's "
                                                        r"\[32, 32\] frame"),
        ({"slm_shape": [32, 32], "roi": [0, 0, 0, 8]}, r"^blackbox.roi: height and width must be >= 1"),
        ({"slm_shape": [32, 32], "roi": [0, 0, 9, 8], "regions": [2, 2]},
         r"^blackbox.regions: \[2, 2\] must divide the roi's 9 x 8"),
    ],
)
def test_inconsistent_geometry_fails_on_parse_not_on_build(options, message):
    """The optics' geometry checks (FourierRig) run at validation, naming the key, not when the twin is built."""
    with pytest.raises(ConfigError, match=message):
        parse_blackbox({"type": "fourier_twin", **options})


def test_the_config_declares_the_range_of_every_number():
    from hil.sim_backends.fourier import FourierTwin

    from hil.config import undeclared_numbers

    assert undeclared_numbers(FourierTwin.Config) == []
