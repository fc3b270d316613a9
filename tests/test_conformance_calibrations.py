"""Every registered calibration through hil.testing's conformance mixin, one line each (hil.testing.calibrations):
it runs through `hil calibrate`'s runner on a small rig (the SLM + camera rig on slmsuite's simulated pair), writes
a record that loads back verified and applies to the rig, logs every query, and refuses an unsuitable rig before
any query."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

import pytest
import yaml

from hil.testing.conformance import CalibrationConformance, missing_conformance

ROOT = Path(__file__).resolve().parents[1]
NEEDS_OPTICS = pytest.mark.skipif(find_spec("torchoptics") is None, reason="pip install 'hil[optics]'")
NEEDS_SLM = pytest.mark.skipif(find_spec("slmsuite") is None, reason="pip install 'hil[slm]'")

#: a small optical bench: the OWMS twin on a 20 x 20 SLM driven in 5 x 5 macro-pixels, a 16 x 16 camera
OWMS = {"type": "owms_twin", "slm_shape": [20, 20], "camera_shape": [16, 16]}
CAMERA = {"type": "camera", "read_noise_e": 8.0, "dark_level_counts": 20.0, "seed": 0}
MACRO = {"type": "slm_macropixels", "blocks": [5, 5]}
SLM_RIG = yaml.safe_load((ROOT / "configs" / "slm_camera_rig.yaml").read_text())["blackbox"]


@NEEDS_OPTICS
class TestCamera(CalibrationConformance):
    calibration, rig, options = "camera", {**OWMS, "wrappers": [CAMERA, MACRO]}, {"exposures": 4, "repeats": 1}


@NEEDS_OPTICS
class TestNoise(CalibrationConformance):
    calibration, rig, options = "noise", {**OWMS, "wrappers": [CAMERA, MACRO]}, {"repeats": 6}


@NEEDS_OPTICS
class TestSettle(CalibrationConformance):
    calibration, options = "settle", {"waits": 5, "repeats": 2, "lead_frames": 2}
    rig = {**OWMS, "wrappers": [{"type": "slm_settling", "tau_s": 0.03, "frame_s": 0.005}, CAMERA, MACRO]}


@NEEDS_OPTICS
class TestSLMPhase(CalibrationConformance):
    calibration, options = "slm_phase", {"levels": 8}
    rig = {**OWMS, "wrappers": [{"type": "slm_phase_response"}, MACRO]}


@NEEDS_OPTICS
class TestTwinFit(CalibrationConformance):
    calibration, model = "twin_fit", {**OWMS, "wrappers": [MACRO]}
    rig = {**OWMS, "distance_m": 0.021, "wrappers": [CAMERA, MACRO]}
    options = {"patterns": 16, "levels": 4, "repeats": 2, "noise_patterns": 1, "iterations": 3}


@NEEDS_SLM
class TestSlmsuiteFourier(CalibrationConformance):
    calibration, rig, options = "slmsuite_fourier", SLM_RIG, {"array_shape": 3}


@NEEDS_SLM
class TestSlmsuitePixel(CalibrationConformance):
    calibration, rig, options = "slmsuite_pixel", SLM_RIG, {"quick": True, "levels": 4}
    before, before_options = ["slmsuite_fourier"], {"slmsuite_fourier": {"array_shape": 3}}


def test_every_registered_calibration_has_a_conformance_line():
    missing = missing_conformance(globals(), ["calibration"], package="hil")
    assert not missing, f"registered without a conformance line in {Path(__file__).name}: {missing}"
