"""OWMS twin on TorchOptics: agreement with TorchOptics' own propagation, physics, gradients, objective."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

pytest.importorskip("torchoptics", reason="the OWMS twin needs TorchOptics: pip install 'hil[optics]'")

from hil.sim_backends.owms import OWMSTwin, TwoSpots, two_spot_target  # noqa: E402

from hil.errors import ConfigError, InputError  # noqa: E402
from hil.run import load_run_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def twin():
    return OWMSTwin()


def test_matches_torchoptics_field_propagation(twin):
    from torchoptics import Field

    phase = torch.rand(3, 60, 60, generator=torch.Generator().manual_seed(0)) * 2 * math.pi
    field = Field(twin.input_fields() * torch.polar(torch.ones_like(phase), phase), wavelength=700e-9, spacing=8e-6)
    reference = field.propagate((64, 64), 0.02, 8e-6, propagation_method="DIM").data
    ours = twin.camera_field(phase)
    assert ours.dtype == torch.complex64
    assert (ours - reference).abs().max() < 1e-4 * reference.abs().max()


def test_output_is_power_fraction_and_float32(twin):
    with twin:
        flat = twin.query(torch.zeros(1, 3600))
        speckle = twin.query(torch.rand(4, 3600, generator=torch.Generator().manual_seed(1)) * 2 * math.pi)
    assert flat.shape == (1, 32, 32) and flat.dtype == torch.float32
    # a flat SLM sends (nearly) the whole Gaussian beam onto the camera; a random one scatters most of it away
    assert 0.95 < float(flat.sum()) <= 1.0 + 1e-4
    assert float(speckle.sum(dim=(1, 2)).max()) < 0.3
    # energy of a flat phase is centred: the brightest pixel is one of the four central ones
    r, c = divmod(int(flat[0].argmax()), 32)
    assert r in (15, 16) and c in (15, 16)


def test_a_linear_phase_ramp_steers_the_beam(twin):
    """A blazed grating of period P deflects by lambda / P: the spot moves by z * lambda / P on the camera."""
    cols = torch.arange(60, dtype=torch.float32) * 8e-6
    period_m = 16 * 8e-6
    ramp = torch.remainder(2 * math.pi * cols / period_m, 2 * math.pi).expand(60, 60).reshape(1, -1)
    with twin:
        image = twin.query(ramp)[0]
    shift_m = 0.02 * 700e-9 / period_m  # 109 um = 6.8 camera pixels of 16 um
    centroid_px = float((image.sum(dim=0) * torch.arange(32)).sum() / image.sum()) - 15.5
    assert abs(centroid_px * 16e-6 - shift_m) < 16e-6


def test_gradients_are_finite_and_match_finite_differences(twin):
    objective = TwoSpots(two_spot_target((32, 32), 12, 3))
    x = (torch.rand(2, 3600, generator=torch.Generator().manual_seed(2)) * 2 * math.pi).requires_grad_(True)
    loss = objective(twin.forward_differentiable(x)).sum()
    (g,) = torch.autograd.grad(loss, x)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    direction = torch.randn(2, 3600, generator=torch.Generator().manual_seed(3))
    eps = 1e-2
    with torch.no_grad():
        up = objective(twin.forward_differentiable(x + eps * direction)).sum()
        down = objective(twin.forward_differentiable(x - eps * direction)).sum()
    numeric = float(up - down) / (2 * eps)
    assert abs(float((g * direction).sum()) - numeric) < 0.05 * abs(numeric) + 1e-4


def test_objective_ranges_random_flat_and_target(twin):
    objective = TwoSpots(two_spot_target((32, 32), 12, 3))
    with twin:
        random = objective(twin.query(torch.rand(64, 3600, generator=torch.Generator().manual_seed(4)) * 2 * math.pi))
    assert 0.2 < float(random.mean()) < 0.35
    assert float(objective(objective.target[None] * 7.0)) < 1e-6  # scale invariant: any power is fine


def test_bad_inputs_and_geometry_fail_clearly(twin):
    with twin:
        with pytest.raises(InputError, match="out of bounds"):
            twin.query(torch.full((1, 3600), 7.0))
        with pytest.raises(InputError, match=r"shape \(batch, 3600\)"):
            twin.query(torch.zeros(1, 60, 60))
    with pytest.raises(ConfigError, match="critical distance"):
        load_run_config({"blackbox": {"type": "owms_twin", "distance_m": 0.002},
                         "objective": {"type": "two_spots"}, "estimator": {"type": "exact"}})
    with pytest.raises(ConfigError, match="camera_pitch_m"):
        load_run_config({"blackbox": {"type": "owms_twin", "camera_pitch_m": 1e-5},
                         "objective": {"type": "two_spots"}, "estimator": {"type": "exact"}})


def test_chunked_batches_equal_row_by_row(twin):
    """Big batches are split into FFT chunks (speed); the answer must not depend on the split."""
    x = torch.rand(300, 3600, generator=torch.Generator().manual_seed(5)) * 2 * math.pi
    with twin:
        whole = twin.query(x)
        parts = torch.cat([twin.query(x[:7]), twin.query(x[7:])])
    assert whole.shape == (300, 32, 32)
    assert torch.allclose(whole, parts, rtol=1e-4, atol=1e-9)


def _short(config: dict, tmp_path) -> dict:
    config = dict(config)
    config["optimizer"] = {**config["optimizer"], "n_starts": 2, "iterations": 3}
    if config["estimator"]["type"] == "surrogate":
        config["estimator"] = {**config["estimator"], "hidden": [16], "epochs": 1}
    config["log"] = {"dir": str(tmp_path)}
    return config


def test_main_job_config_runs_on_the_noisy_bench_and_reports_images(tmp_path):
    from pathlib import Path

    import h5py
    import matplotlib.image

    from hil.config import load_yaml
    from hil.run import execute

    root = Path(__file__).resolve().parents[1]
    config = load_run_config(_short(load_yaml(root / "configs" / "owms_twin.yaml"), tmp_path))
    result = execute(config)
    with h5py.File(result.log_path, "r") as f:
        assert f["y"].shape[1:] == (32, 32)
        assert f["x"].shape[1] == 144  # 12 x 12 macro-pixels
        frames = f["y"][:]
    assert frames.max() <= 4095 and (frames == frames.round()).all()  # 12-bit camera counts
    png = matplotlib.image.imread(result.report_path)
    assert png.shape[1] > 1.5 * png.shape[0]  # curves plus the three image panels


def test_exact_estimator_with_a_model_twin_backs_a_mismatched_bench():
    from hil.errors import ConfigError as CE
    from hil.errors import EstimatorError

    bench = {"type": "owms_twin", "distance_m": 0.021, "wrappers": [{"type": "camera"}]}
    cfg = load_run_config({"blackbox": bench, "objective": {"type": "two_spots"},
                           "estimator": {"type": "exact", "model": {"type": "owms_twin"}}})
    bb, est = cfg.blackbox.build(), cfg.estimator.build()
    est.bind(bb)
    x = torch.rand(2, 3600) * 2 * math.pi
    g = est.vjp(x, None, torch.ones(2, 32, 32))
    assert g.shape == (2, 3600) and torch.isfinite(g).all()
    with pytest.raises(EstimatorError, match="maps 3600"):
        small = load_run_config({"blackbox": {"type": "owms_twin", "camera_shape": [16, 16]},
                                 "objective": {"type": "two_spots"},
                                 "estimator": {"type": "exact", "model": {"type": "owms_twin"}}})
        small.estimator.build().bind(small.blackbox.build())
    with pytest.raises(CE, match=r"estimator.model.type: unknown blackbox type 'owms'"):
        load_run_config({"blackbox": bench, "objective": {"type": "two_spots"},
                         "estimator": {"type": "exact", "model": {"type": "owms"}}})


def test_report_shows_the_phase_of_macropixels_as_an_image(tmp_path):
    """A macro-pixel SLM's input (one phase per block) is drawn as a blocks-shaped image, not dropped."""
    import numpy as np

    from hil.optim.loop import Trace
    from hil.run import report_images

    cfg = load_run_config({
        "blackbox": {"type": "owms_twin", "wrappers": [{"type": "slm_macropixels", "blocks": [6, 10]}]},
        "objective": {"type": "two_spots"},
        "estimator": {"type": "exact"},
    })
    box = cfg.blackbox.build()
    objective = cfg.objective.build(output_shape=box.spec.output_shape)
    x = torch.rand(2, 60) * 2 * math.pi
    with box:
        y = box.query(x)
    trace = Trace(sense="min", best=[np.array([0.5, 0.2])], x_best=x, y_best=y)
    images = report_images(box, objective, trace)
    phase = [name for name in images if name.startswith("best SLM phase")]
    assert len(phase) == 1 and "start 1" in phase[0]  # the better start
    assert images[phase[0]].shape == (6, 10)
    np.testing.assert_array_equal(images[phase[0]], x[1].reshape(6, 10).numpy())
    assert images["its camera image"].shape == (32, 32) and images["target"].shape == (32, 32)


# -- the config: every number declared; non-finite, out-of-range and inconsistent geometry fail on parse ----------

INF, NAN = float("inf"), float("nan")


def test_camera_pitch_inf_is_a_clean_validate_error_not_a_traceback(tmp_path, capsys):
    """Regression: ``camera_pitch_m: .inf`` crashed ``hil validate`` with an OverflowError traceback (round(inf))."""
    from hil.cli import main

    text = (ROOT / "configs" / "owms_twin.yaml").read_text().replace("camera_pitch_m: 1.6e-5", "camera_pitch_m: .inf")
    assert "camera_pitch_m: .inf" in text
    cfg = tmp_path / "inf.yaml"
    cfg.write_text(text)
    assert main(["validate", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "hil: error: blackbox.camera_pitch_m: expected a finite number, got inf" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"camera_pitch_m": INF}, r"^blackbox.camera_pitch_m: expected a finite number, got inf"),
        ({"camera_pitch_m": NAN}, r"^blackbox.camera_pitch_m: expected a finite number, got nan"),
        ({"slm_pitch_m": NAN}, r"^blackbox.slm_pitch_m: expected a finite number, got nan"),
        ({"slm_pitch_m": -8e-6}, r"^blackbox.slm_pitch_m: must be > 0, got -8e-06"),
        ({"wavelength_m": INF}, r"^blackbox.wavelength_m: expected a finite number, got inf"),
        ({"wavelength_m": 0.0}, r"^blackbox.wavelength_m: must be > 0, got 0.0"),
        ({"waist_m": NAN}, r"^blackbox.waist_m: expected a finite number, got nan"),
        ({"waist_m": 1e20}, r"^blackbox.waist_m: must be > 0 and <= 1, got 1e\+20"),  # float32's w^2: NaN beam
        ({"distance_m": INF}, r"^blackbox.distance_m: expected a finite number, got inf"),
        ({"distance_m": 1e20}, r"^blackbox.distance_m: must be > 0 and <= 100, got 1e\+20"),
        ({"power": INF}, r"^blackbox.power: expected a finite number, got inf"),
        ({"power": 0.0}, r"^blackbox.power: must be > 0 and <= 1e\+30, got 0.0"),
        ({"beam_offset_m": [NAN, 0.0]}, r"^blackbox.beam_offset_m\[0\]: expected a finite number, got nan"),
        ({"camera_offset_m": [0.0, INF]}, r"^blackbox.camera_offset_m\[1\]: expected a finite number, got inf"),
        ({"camera_offset_m": [0.0]}, r"^blackbox.camera_offset_m: must be \[x, y\] in metres"),
        ({"slm_shape": [60, 0]}, r"^blackbox.slm_shape\[1\]: must be >= 1 and <= 8192, got 0"),
        ({"slm_shape": [60, 60, 1]}, r"^blackbox.slm_shape: must be \[rows, cols\]"),
        ({"camera_shape": [-4, 32]}, r"^blackbox.camera_shape\[0\]: must be >= 1"),
        ({"device": "gpu"}, r"^blackbox.device: must be one of"),
    ],
)
def test_bad_numbers_fail_on_parse_naming_the_key(options, message):
    from hil.sections import parse_blackbox

    with pytest.raises(ConfigError, match=message):
        parse_blackbox({"type": "owms_twin", **options})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        # the camera's pixel is not a whole number of SLM pixels
        ({"camera_pitch_m": 1e-5}, r"^blackbox.camera_pitch_m: must be an integer multiple of slm_pitch_m"),
        # smaller than the SLM's pixel
        ({"camera_pitch_m": 4e-6}, r"^blackbox.camera_pitch_m: must be an integer multiple of slm_pitch_m"),
        # a ratio too large to sample (round() of it would not overflow, the grid would)
        ({"slm_pitch_m": 1e-300}, r"^blackbox.camera_pitch_m: camera_pitch_m / slm_pitch_m = 1.6e\+295"),
        ({"camera_pitch_m": 8e-6 * 300}, r"^blackbox.camera_shape: the propagation grid would have 60 SLM \+ "
                                          r"32 x 300 camera samples = 9660 rows"),
        # on axis the distance is short: distance_m is at fault
        ({"distance_m": 0.002}, r"^blackbox.distance_m: 0.002 m is below the critical distance 0.01134 m"),
        # on axis the distance suffices; the camera's offset is at fault (was reported as distance_m)
        ({"camera_offset_m": [0.01, 0.0]}, r"^blackbox.camera_offset_m: \[0.01, 0.0\] m moves the camera so far off "
                                           r"axis that the critical distance becomes 0.2399 m, beyond distance_m = "
                                           r"0.02 m .* each offset must be <= 0.000379 m"),
        ({"beam_offset_m": [0.0, -3e-4]}, r"^blackbox.beam_offset_m\[1\]: puts the beam's centre off the SLM"),
        ({"waist_m": 1e-7}, r"^blackbox.waist_m: must be >= half the SLM pixel"),
    ],
)
def test_inconsistent_geometry_fails_on_parse_naming_the_key_at_fault(options, message):
    from hil.sections import parse_blackbox

    with pytest.raises(ConfigError, match=message):
        parse_blackbox({"type": "owms_twin", **options})


def test_the_largest_camera_offset_the_message_allows_builds_finite_answers():
    from hil.sections import parse_blackbox

    ok = parse_blackbox({"type": "owms_twin", "camera_offset_m": [3.7e-4, 0.0],
                         "beam_offset_m": [2.3e-4, -2.3e-4], "waist_m": 4e-6}).build()
    with ok:
        y = ok.query(torch.rand(2, 3600, generator=torch.Generator().manual_seed(0)) * 2 * math.pi)
    assert torch.isfinite(y).all() and float(y.sum()) > 0


def test_two_spots_numbers_and_target_are_checked():
    from hil.config import parse, undeclared_numbers

    assert undeclared_numbers(OWMSTwin.Config) == [] and undeclared_numbers(TwoSpots.Config) == []
    for options, message in [({"waist_px": NAN}, r"^objective.waist_px: expected a finite number, got nan"),
                             ({"waist_px": 0.01}, r"^objective.waist_px: must be >= 0.25, got 0.01"),
                             ({"separation_px": -1.0}, r"^objective.separation_px: must be >= 0, got -1.0"),
                             ({"offset_px": [INF, 0.0]}, r"^objective.offset_px\[0\]: expected a finite number"),
                             ({"offset_px": [1.0]}, r"^objective.offset_px: must be \[x, y\]")]:
        with pytest.raises(ConfigError, match=message):
            parse(TwoSpots.Config, options, "objective")
    far = parse(TwoSpots.Config, {"offset_px": [1e4, 0.0]}, "objective")
    with pytest.raises(ConfigError, match=r"both spots .* fall outside the 32 x 32 camera image"):
        TwoSpots.from_config(far, output_shape=(32, 32))
