"""Every registered BlackBox, wrapper and objective through hil.testing's conformance mixins, one line each
(hil.testing.blackbox): a consistent spec, a valid batch answered as batch x output_shape, bad inputs never
reaching _query, every query logged once with its purpose, ranged configs, from_config without I/O; the rigs on
their simulated counterparts (the ones `hil run --dry-run` starts), with connect/close twice and a reconnect."""

from __future__ import annotations

import shutil
from importlib.util import find_spec
from pathlib import Path

import pytest
import torch
import yaml

from hil.testing.conformance import BlackBoxConformance, DriverConformance, missing_conformance

ROOT = Path(__file__).resolve().parents[1]


def shipped(name: str) -> dict:
    """The ``blackbox:`` section of ``configs/NAME.yaml``, as a bench config writes it."""
    return yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())["blackbox"]


def _ngspice_missing() -> bool:
    from hil.sim_backends.ngspice import find_libngspice

    return find_libngspice() is None or shutil.which("ngspice") is None


OWMS = {"type": "owms_twin", "slm_shape": [16, 16], "camera_shape": [8, 8]}
FOURIER = {"type": "fourier_twin", "slm_shape": [16, 16]}
NEEDS_NGSPICE = pytest.mark.skipif(_ngspice_missing(), reason="NGspice is not installed (apt-get install ngspice "
                                                              "libngspice0)")
NEEDS_SERIAL = pytest.mark.skipif(find_spec("serial") is None, reason="pip install 'hil[serial]'")
NEEDS_VISA = pytest.mark.skipif(find_spec("pyvisa") is None, reason="pip install 'hil[visa]'")
NEEDS_SLM = pytest.mark.skipif(find_spec("slmsuite") is None, reason="pip install 'hil[slm]'")
NEEDS_OPTICS = pytest.mark.skipif(find_spec("torchoptics") is None, reason="pip install 'hil[optics]'")


# -- twins and problems ------------------------------------------------------------------------------------------
class TestCNONTwin(BlackBoxConformance):
    section, objective = {"type": "cnon_twin", "dim": 4, "steps": 5}, {"type": "target_distance"}


class TestFourierTwin(BlackBoxConformance):
    section = FOURIER


class TestThreeHump(BlackBoxConformance):
    section, objective = {"type": "three_hump"}, {"type": "sigmoid_window"}


class TestRosenbrock(BlackBoxConformance):
    section, objective = {"type": "rosenbrock"}, {"type": "mean_output"}


class TestSubmanifoldRosenbrock(BlackBoxConformance):
    section = {"type": "submanifold_rosenbrock"}


class TestSubmanifoldHump(BlackBoxConformance):
    section = {"type": "submanifold_hump"}


class TestShiftedProblem(BlackBoxConformance):
    section = {"type": "hil_test_shifted"}


class TestMixedSpaceProblem(BlackBoxConformance):
    section = {"type": "hil_test_mixed_space"}


@NEEDS_OPTICS
class TestOWMSTwin(BlackBoxConformance):
    section, objective = OWMS, {"type": "two_spots", "separation_px": 4.0, "waist_px": 1.0}


@NEEDS_NGSPICE
class TestOpAmpNGspice(BlackBoxConformance):
    section, objective, invalid_rows = {"type": "opamp_ngspice", "n_workers": 1}, {"type": "opamp_fom"}, True


# -- wrappers, each on the small optical twin ----------------------------------------------------------------------
@NEEDS_OPTICS
class TestCameraWrapper(BlackBoxConformance):
    section = {**OWMS, "wrappers": [{"type": "camera"}]}


@NEEDS_OPTICS
class TestDriftWrapper(BlackBoxConformance):
    section = {**OWMS, "wrappers": [{"type": "drift"}]}


@NEEDS_OPTICS
class TestLatencyWrapper(BlackBoxConformance):
    section = {**OWMS, "wrappers": [{"type": "latency", "settle_s": 0.001}]}


@NEEDS_OPTICS
class TestDetectorRegionsWrapper(BlackBoxConformance):
    section = {**OWMS, "wrappers": [{"type": "detector_regions"}]}


@NEEDS_OPTICS
class TestSLMCrosstalkWrapper(BlackBoxConformance):
    section = {**OWMS, "wrappers": [{"type": "slm_crosstalk"}]}


@NEEDS_OPTICS
class TestSLMPhaseResponseWrapper(BlackBoxConformance):
    section = {**OWMS, "wrappers": [{"type": "slm_phase_response"}]}


@NEEDS_OPTICS
class TestSLMQuantisationWrapper(BlackBoxConformance):
    section = {**OWMS, "wrappers": [{"type": "slm_quantisation"}]}


@NEEDS_OPTICS
class TestSLMSettlingWrapper(BlackBoxConformance):
    section = {**OWMS, "wrappers": [{"type": "slm_settling"}]}

    def test_it_declares_its_history_dependence_as_varying_answers(self, conformance_box):
        """The same pattern is answered differently after another one (tau 20 ms, 5 ms frames) than when the
        SLM has settled on it: the box declares stochastic answers."""
        box = conformance_box
        assert box.spec.stochastic
        x = self.valid_inputs(box.spec, 5)[3:]  # two random patterns (a uniform phase only shifts the field)
        box.query(x[:1])
        after_other = box.query(x[1:])
        for _ in range(40):  # exp(-40 * 5 / 20) of the difference is left
            box.query(x[1:])
        settled = box.query(x[1:])
        assert not torch.allclose(after_other, settled, rtol=1e-2, atol=0)


@NEEDS_OPTICS
class TestSLMMacropixelsWrapper(BlackBoxConformance):
    section = {**OWMS, "wrappers": [{"type": "slm_macropixels", "blocks": [4, 4]}]}


@NEEDS_OPTICS
class TestDarkSubtractionWrapper(BlackBoxConformance):
    section = {**OWMS, "wrappers": [{"type": "camera"}, {"type": "dark_subtraction"}]}


@NEEDS_OPTICS
class TestFrameAverageWrapper(BlackBoxConformance):
    section = {**OWMS, "wrappers": [{"type": "camera"}, {"type": "frame_average", "frames": 2}]}


@NEEDS_OPTICS
class TestSLMLookupTableWrapper(BlackBoxConformance):
    section = {**OWMS, "wrappers": [{"type": "slm_lut"}]}


# -- rigs on their simulated counterparts (the shipped configs' sections, as a bench writes them) ------------------
@NEEDS_SERIAL
class TestSerialBoardOnTheFakeFirmware(DriverConformance):
    section = shipped("serial_board")


@NEEDS_VISA
class TestVisaRigOnTheLoopbackServer(DriverConformance):
    section = shipped("visa_rig")


@NEEDS_SLM
class TestSLMCameraRigOnSlmsuitesSimulatedPair(DriverConformance):
    section = shipped("slm_camera_rig")


def test_every_registered_blackbox_wrapper_and_objective_has_a_conformance_line():
    missing = missing_conformance(globals(), ["blackbox", "wrapper", "objective"], package="hil")
    assert not missing, f"registered without a conformance line in {Path(__file__).name}: {missing}"
