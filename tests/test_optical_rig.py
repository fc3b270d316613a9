"""SLM + camera rig on slmsuite's own SimulatedSLM and SimulatedCamera: frames, limits, saturation, configs."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from hil.errors import ConfigError, DeviceError, InputError
from hil.sections import parse_blackbox

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # slmsuite warns that cupy (GPU) is missing
    pytest.importorskip("slmsuite.hardware.cameras.simulated", reason="the optical rig needs slmsuite: "
                                                                     "pip install 'hil[slm]'")

ROOT = Path(__file__).resolve().parents[1]
SLM = {"class": "slmsuite.hardware.slms.simulated.SimulatedSLM", "args": [[32, 32]], "kwargs": {"pitch_um": [8, 8]}}
CAMERA = {"class": "slmsuite.hardware.cameras.simulated.SimulatedCamera", "args": ["$slm"]}


def rig(**options):
    section = {"type": "slm_camera_rig", "slm": SLM, "camera": CAMERA, "slm_shape": [32, 32],
               "roi": [8, 8, 16, 16], "exposure_s": 1.0, "on_saturation": "count", **options}
    return parse_blackbox(section).build()


def test_a_query_displays_the_pattern_and_returns_the_roi_of_the_frame():
    x = torch.rand(3, 32 * 32, generator=torch.Generator().manual_seed(0)) * 2 * math.pi
    with rig() as box:
        y = box.query(x)
        # the same pattern straight through slmsuite gives the same frame
        box.slm.set_phase(x[2].reshape(32, 32).double().numpy(), settle=False)
        direct = np.asarray(box.camera.get_image(), dtype=np.float32)[8:24, 8:24]
    assert y.shape == (3, 16, 16)
    np.testing.assert_allclose(y[2].numpy(), direct)
    assert not torch.equal(y[0], y[1])


def test_blocks_and_detector_regions_shape_the_rig_for_a_pnn():
    with rig(blocks=[4, 4], regions=[2, 2]) as box:
        assert box.spec.input_dim == 16 and box.spec.output_shape == (4,)
        x = torch.rand(2, 16) * 2 * math.pi
        y = box.query(x)
        pattern = box.pattern(x[0])
        assert pattern.shape == (32, 32) and np.allclose(pattern[:8, :8], float(x[0, 0]))
    with rig(regions=None) as full, rig(regions=[2, 2]) as regions:
        frame = full.query(x[:1, :1].repeat(1, 1024))  # a flat pattern on both rigs
        summed = regions.query(x[:1, :1].repeat(1, 1024))
    np.testing.assert_allclose(summed[0].numpy(), frame[0].reshape(2, 8, 2, 8).sum(dim=(1, 3)).reshape(-1).numpy())
    assert y.shape == (2, 4)


def test_declared_phase_limits_hold():
    with rig(out_of_bounds="reject") as box:
        with pytest.raises(InputError, match="out of bounds.*nothing was sent"):
            box.query(torch.full((1, 1024), 7.0))
        assert box.stats.queries == 0
    with rig(phase_max=math.pi) as box:  # a rig declared to use half the range: inputs are clipped to it
        box.query(torch.full((1, 1024), 6.0))
        assert float(np.max(box.slm.phase)) <= math.pi + 1e-6 if hasattr(box.slm, "phase") else True
        assert box.stats.clipped_rows == 1


def test_saturation_is_an_error_that_says_to_lower_the_exposure_or_is_counted():
    flat = torch.zeros(1, 1024)  # all light in one far-field spot
    with rig(on_saturation="error", max_saturated_fraction=0.0) as box:
        with pytest.raises(DeviceError, match="camera saturated: 0.4 % of the ROI.*lower the rig's exposure_s"):
            box.query(flat, purpose="calibration")
        assert box.stats.queries == 0  # a saturated frame is not an answer
    with rig(max_saturated_fraction=0.0) as box:
        box.query(flat.repeat(3, 1))
        assert box.saturation.saturated_frames == 3 and box.saturation.frames == 3


class FlakyCamera:
    """slmsuite's SimulatedCamera whose frame grabs time out now and then (every 4th grab)."""

    grabs = 0

    def __new__(cls, *args, **kwargs):
        from slmsuite.hardware.cameras.simulated import SimulatedCamera

        class Flaky(SimulatedCamera):
            def get_image(self, *a, **k):
                FlakyCamera.grabs += 1
                if FlakyCamera.grabs % 4 == 0:
                    raise TimeoutError("frame grab timed out")
                return super().get_image(*a, **k)

        return Flaky(*args, **kwargs)


def test_frame_grab_faults_are_retried_and_every_answered_row_is_logged_once(tmp_path):
    from hil.querylog import QueryLog, read_log

    x = torch.rand(12, 1024, generator=torch.Generator().manual_seed(3)) * 2 * math.pi
    with rig() as clean:
        expected = clean.query(x)
    flaky = rig(camera={**CAMERA, "class": "test_optical_rig.FlakyCamera"}, backoff_s=0.0)
    with QueryLog.create(tmp_path / "rig.h5", input_dim=1024, output_shape=(16, 16), run_id="flaky") as log, flaky:
        flaky.attach_log(log)
        y = flaky.query(x)
    assert flaky.faults.reconnects >= 3  # each timeout reopened both devices
    np.testing.assert_array_equal(y.numpy(), expected.numpy())  # the same frames, none lost
    data = read_log(tmp_path / "rig.h5")
    assert len(data) == 12
    np.testing.assert_array_equal(data.x, x.numpy())


def test_misconfigured_rig_fails_with_what_to_fix():
    with pytest.raises(ConfigError, match=r"blackbox.slm: give \{class:"):
        parse_blackbox({"type": "slm_camera_rig", "camera": CAMERA, "roi": [0, 0, 4, 4]})
    with pytest.raises(ConfigError, match=r"blackbox.blocks\[0\]: must divide slm_shape\[0\] \(32\) evenly, got 5"):
        rig(blocks=[5, 5])
    with pytest.raises(DeviceError, match="cannot import 'slmsuite.hardware.slms.nope.SLM'"):
        rig(slm={"class": "slmsuite.hardware.slms.nope.SLM"}).connect()
    with pytest.raises(DeviceError, match="does not fit the camera's"):
        rig(roi=[20, 20, 16, 16]).connect()
    with pytest.raises(DeviceError, match="the SLM has \\[32, 32\\] pixels"):
        rig(slm_shape=[64, 64]).connect()


SECTION = {"type": "slm_camera_rig", "slm": SLM, "camera": CAMERA, "slm_shape": [32, 32], "roi": [8, 8, 16, 16]}


@pytest.mark.parametrize("options, match", [
    # regression: blocks [0, 16] crashed `hil validate` with a ZeroDivisionError (slm_shape % 0)
    ({"blocks": [0, 16]}, r"blackbox.blocks\[0\]: must be >= 1, got 0"),
    ({"blocks": [-4, 4]}, r"blackbox.blocks\[0\]: must be >= 1, got -4"),
    ({"blocks": [4, 5]}, r"blackbox.blocks\[1\]: must divide slm_shape\[1\] \(32\) evenly, got 5"),
    ({"blocks": [4]}, r"blackbox.blocks: give \[rows, cols\]"),
    ({"regions": [0, 2]}, r"blackbox.regions\[0\]: must be >= 1, got 0"),  # the same crash, on regions
    ({"regions": [2, 3]}, r"blackbox.regions\[1\]: must divide the roi's width \(roi\[3\] = 16\)"),
    ({"regions": [2, 2, 2]}, r"blackbox.regions: give \[rows, cols\]"),
    ({"roi": [-1, 8, 16, 16]}, r"blackbox.roi\[0\]: must be >= 0"),
    ({"roi": [8, -2, 16, 16]}, r"blackbox.roi\[1\]: must be >= 0"),
    ({"roi": [8, 8, 0, 16]}, r"blackbox.roi\[2\]: the ROI's height must be >= 1, got 0"),
    ({"roi": [8, 8, 16, -3]}, r"blackbox.roi\[3\]: must be >= 0"),
    ({"roi": [8, 8, 16]}, r"blackbox.roi: give \[y0, x0, height, width\], got \[8, 8, 16\]"),
    ({"roi": None}, r"blackbox.roi: give the camera region to read"),
    ({"slm_shape": [32]}, r"blackbox.slm_shape: give \[rows, cols\]"),
    ({"slm_shape": [0, 32]}, r"blackbox.slm_shape\[0\]: must be >= 1"),
    ({"slm_shape": [32, 10**6]}, r"blackbox.slm_shape\[1\]: must be >= 1 and <= 16384"),
    ({"exposure_s": float("nan")}, r"blackbox.exposure_s: expected a finite number, got nan"),
    ({"exposure_s": float("inf")}, r"blackbox.exposure_s: expected a finite number, got inf"),
    ({"exposure_s": 0.0}, r"blackbox.exposure_s: must be > 0, got 0.0"),
    ({"settle_s": float("nan")}, r"blackbox.settle_s: expected a finite number, got nan"),
    ({"settle_s": float("inf")}, r"blackbox.settle_s: expected a finite number, got inf"),
    ({"settle_s": -0.1}, r"blackbox.settle_s: must be >= 0 and <= 60, got -0.1"),
    ({"settle_s": 61.0}, r"blackbox.settle_s: must be >= 0 and <= 60, got 61.0"),
    ({"backoff_s": float("inf")}, r"blackbox.backoff_s: expected a finite number, got inf"),
    ({"retries": -1}, r"blackbox.retries: must be >= 0"),
    ({"retries": 40}, r"blackbox.retries: with retries 40, the waits between a row's attempts"),
    ({"phase_min": float("-inf")}, r"blackbox.phase_min: expected a finite number, got -inf"),
    ({"phase_max": float("nan")}, r"blackbox.phase_max: expected a finite number, got nan"),
    ({"phase_min": 3.0, "phase_max": 1.0}, r"blackbox.phase_max: must be > phase_min \(3\), got 1"),
    ({"phase_max": 1e300}, r"blackbox.phase_max: must be >= -3.40282e\+38 and <= 3.40282e\+38, got 1e\+300"),
    ({"phase_min": -3e38, "phase_max": 3e38}, r"blackbox.phase_max: phase_max - phase_min = 6e\+38 overflows"),
    ({"frames": 0}, r"blackbox.frames: must be >= 1 and <= 1024, got 0"),
    ({"max_saturated_fraction": 1.5}, r"blackbox.max_saturated_fraction: must be >= 0 and <= 1, got 1.5"),
    ({"sleep_scale": float("nan")}, r"blackbox.sleep_scale: expected a finite number, got nan"),
    ({"slm": {**SLM, "args": 32}}, r"blackbox.slm.args: expected a list of positional arguments, got 32"),
    ({"camera": {**CAMERA, "kwargs": [1]}}, r"blackbox.camera.kwargs: expected a mapping of keyword arguments"),
    ({"camera": {**CAMERA, "kwarg": {}}}, r"blackbox.camera.kwarg: unknown key; allowed keys: args, class, kwargs"),
    ({"slm": {"class": "SimulatedSLM"}}, r"blackbox.slm.class: give the class's import path"),
    ({"slm_gamma": {"levels": 3, "gamma": 3}}, r"blackbox.slm_gamma.levels: expected a list of at least 2 numbers"),
    ({"slm_gamma": {"levels": [0, 128], "gamma": [0, float("nan")]}}, r"blackbox.slm_gamma.gamma\[1\]: expected a "
                                                                      r"finite number, got nan"),
    ({"slm_gamma": {"levels": [0, 128, 255], "gamma": [0, 1]}}, r"blackbox.slm_gamma.gamma: must have one entry per "
                                                                r"level \(3\), got 2"),
    ({"slm_gamma": {"levels": [-1, 128], "gamma": [0, 1]}}, r"blackbox.slm_gamma.levels\[0\]: a display level must "
                                                            r"be >= 0"),
    ({"slm_gamma": {"levels": [0, 128]}}, r"blackbox.slm_gamma: missing key 'gamma'"),
    ({"fourier_affine": {"M": [[1, 0], [0]], "b": [0, 0]}}, r"blackbox.fourier_affine.M: expected a 2 x 2 matrix"),
    ({"fourier_affine": {"M": [[1, 0], [0, 1]], "b": [0, "x"]}}, r"blackbox.fourier_affine.b\[1\]: expected a "
                                                                 r"finite number, got 'x'"),
    ({"fourier_affine": {"M": [[1, 0], [0, 1]]}}, r"blackbox.fourier_affine: missing key 'b'"),
])
def test_a_bad_rig_config_is_a_config_error_naming_the_key(options, match):
    with pytest.raises(ConfigError, match=match):
        parse_blackbox({**SECTION, **options})


def test_a_bad_bench_names_the_bench_section():
    # a PNN config's rig is its bench: the same checks name the section it sits in
    with pytest.raises(ConfigError, match=r"^bench.blocks\[1\]: must be >= 1, got 0$"):
        parse_blackbox({**SECTION, "blocks": [4, 0]}, "bench")


def test_hil_validate_reports_blocks_0_without_a_traceback(tmp_path, capsys):
    from hil.cli import main

    data = yaml.safe_load((ROOT / "configs" / "slm_camera_rig.yaml").read_text())
    data["blackbox"]["blocks"] = [0, 16]  # crashed `hil validate` with a ZeroDivisionError before
    cfg = tmp_path / "rig.yaml"
    cfg.write_text(yaml.safe_dump(data))
    assert main(["validate", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "blackbox.blocks[0]: must be >= 1, got 0" in err and "Traceback" not in err


def test_calibration_values_for_the_rig_are_accepted():
    box = parse_blackbox({**SECTION, "slm_gamma": {"levels": [0.0, 128.0, 255.0], "gamma": [0.0, 0.5, 0.99]},
                          "fourier_affine": {"M": [[100.0, 0.0], [0.0, 100.0]], "b": [16.0, 16.0]}})
    assert box.options.slm_gamma["levels"] == [0.0, 128.0, 255.0]


def test_the_owms_task_runs_on_the_rig_with_only_the_config_changed(tmp_path):
    from hil.run import execute, load_run_config

    data = yaml.safe_load((ROOT / "configs" / "slm_camera_rig.yaml").read_text())
    data["optimizer"].update(iterations=4, n_starts=2)
    data["estimator"]["hidden"] = [32, 32]
    data["log"] = {"dir": str(tmp_path)}
    result = execute(load_run_config(data), log_path=tmp_path / "rig.h5")
    best = result.trace.best_array()
    assert best.shape == (4, 2) and np.isfinite(best).all() and (best[-1] <= best[0]).all()


def test_the_pnn_trains_on_the_rig_with_only_the_bench_changed(tmp_path):
    pytest.importorskip("torchoptics")
    pytest.importorskip("sklearn")
    from hil.pnn import load_pnn_config, run_pnn_experiment

    data = yaml.safe_load((ROOT / "configs" / "pnn_digits_rig.yaml").read_text())
    data["training"].update(epochs=3, seeds=[0], warmup_queries=200, warmup_epochs=5)
    data["modes"] = ["pat_model_twin", "pat_gradpie"]
    result = run_pnn_experiment(load_pnn_config(data), log_path=tmp_path / "pnn.h5", progress=False)
    twin, gradpie = result["runs"]
    assert gradpie["mode"] == "pat_gradpie" and gradpie["bench_queries"] == 200 + 3 * 1257 + 540
    assert gradpie["bench_accuracy"] > 0.3  # chance is 0.1
    # the Fourier twin is the rig's exact model: physics-aware training through it is at home on the rig
    assert twin["mode"] == "pat_model_twin" and twin["bench_accuracy"] > 0.85
