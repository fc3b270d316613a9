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
