"""Calibration: the record file, the contract (refusal before any query), every calibration recovering an injected
imperfection of the bench twin, the corrections, and the records applied by a run config."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from hil.calib.record import read_record
from hil.calib.runner import load_rig_config, run_all, run_calibration
from hil.cli import main
from hil.errors import CalibrationError, ConfigError
from hil.querylog import read_log
from hil.run import execute, load_run_config
from hil.sections import parse_blackbox

pytest.importorskip("torchoptics")

TWO_PI = 2 * math.pi


def quiet(_: str) -> None:
    pass


def write_config(path: Path, wrappers: list[dict], **geometry) -> Path:
    """A run config whose blackbox is the OWMS twin with ``wrappers`` (the bench) and ``geometry``."""
    config = {"name": "bench", "blackbox": {"type": "owms_twin", **geometry, "wrappers": wrappers},
              "objective": {"type": "two_spots"},
              "optimizer": {"type": "random", "n_starts": 2, "iterations": 2, "seed": 0}}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


CAMERA = {"type": "camera", "exposure_s": 1.0e-3, "bit_depth": 12, "read_noise_e": 8.0, "dark_level_counts": 20.0,
          "seed": 0}
MACRO = {"type": "slm_macropixels", "blocks": [12, 12]}
MAIN_BENCH = {"waist_m": 7.3e-5, "distance_m": 0.0207, "beam_offset_m": [1.2e-5, -8.0e-6]}


# -- records ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def camera_record(tmp_path_factory):
    d = tmp_path_factory.mktemp("camera")
    cfg = write_config(d / "bench.yaml", [CAMERA, MACRO])
    record = run_calibration("camera", load_rig_config(cfg), out_dir=d / "out", echo=quiet)
    return cfg, record


def test_record_round_trip_and_files(camera_record):
    cfg, record = camera_record
    again = read_record(record.path)
    assert again.fitted == record.fitted and again.id == record.id
    out = record.path.parent
    assert (out / record.files["plot"]).stat().st_size > 1000
    log = read_log(out / record.files["log"])
    assert len(log) == record.measured["queries"] > 0
    assert set(log.purpose_labels()) == {"calibration"}
    assert again.versions["hil"] and again.rig["type"] == "owms_twin" and again.created


def test_corrupt_record_is_refused(camera_record, tmp_path):
    _, record = camera_record
    text = record.path.read_text()
    bad = tmp_path / "edited.json"
    bad.write_text(text.replace('"dark_level_counts": ', '"dark_level_counts": 1', 1))
    with pytest.raises(CalibrationError, match="corrupt or was edited"):
        read_record(bad)
    (tmp_path / "trunc.json").write_text(text[: len(text) // 2])
    with pytest.raises(CalibrationError, match="not valid JSON"):
        read_record(tmp_path / "trunc.json")


def test_record_for_another_rig_or_too_old_is_refused(camera_record, tmp_path):
    cfg, record = camera_record
    other = write_config(tmp_path / "other.yaml", [CAMERA, MACRO], distance_m=0.021)
    with pytest.raises(CalibrationError, match="made for another rig"):
        load_rig_config(other, extra_records=[str(record.path)])
    with pytest.raises(CalibrationError, match="h old"):
        load_rig_config(cfg, extra_records=[str(record.path)], now=record.created_unix + 8 * 24 * 3600)
    data = yaml.safe_load(cfg.read_text())
    data["calibrations"] = {"records": [str(record.path)], "max_age_h": 1e-6}
    with pytest.raises(CalibrationError, match="max_age_h"):
        load_run_config(data)


def test_a_record_measured_on_top_of_another_needs_it_first(tmp_path):
    cfg = write_config(tmp_path / "bench.yaml", [CAMERA, MACRO])
    camera = run_calibration("camera", load_rig_config(cfg), out_dir=tmp_path / "a", echo=quiet)
    noise = run_calibration("noise", load_rig_config(cfg, extra_records=[str(camera.path)]), out_dir=tmp_path / "a",
                            echo=quiet)
    assert noise.applied == [camera.id]
    with pytest.raises(CalibrationError, match="list that record before"):
        load_rig_config(cfg, extra_records=[str(noise.path)])
    load_rig_config(cfg, extra_records=[str(camera.path), str(noise.path)])


# -- the contract: refused before any query ---------------------------------------------------------------------


def test_calibration_refused_before_any_query_names_what_is_missing(tmp_path):
    cfg = write_config(tmp_path / "bare.yaml", [MACRO])  # no camera: no exposure to set, no noise
    rig = load_rig_config(cfg)
    with pytest.raises(CalibrationError, match="camera whose exposure"):
        run_calibration("camera", rig, out_dir=tmp_path / "out", echo=quiet)
    with pytest.raises(CalibrationError, match="settle time it can set"):
        run_calibration("settle", rig, out_dir=tmp_path / "out", echo=quiet)
    with pytest.raises(CalibrationError, match="needs a model twin"):
        run_calibration("twin_fit", rig, out_dir=tmp_path / "out", echo=quiet)
    assert not (tmp_path / "out").exists()  # no log, no record: nothing was queried
    with pytest.raises(ConfigError, match="calibration camera options.nope: unknown key; allowed keys: "):
        run_calibration("camera", load_rig_config(write_config(tmp_path / "c.yaml", [CAMERA, MACRO])),
                        options=["nope=1"], out_dir=tmp_path / "o2", echo=quiet)



def test_every_number_of_a_calibration_or_correction_declares_its_range():
    from hil.config import undeclared_numbers
    from hil.registry import CALIBRATIONS, WRAPPERS

    for name in CALIBRATIONS.names():
        assert undeclared_numbers(CALIBRATIONS.get(name).Config) == [], name
    for name in ("dark_subtraction", "frame_average", "slm_lut"):
        assert undeclared_numbers(WRAPPERS.get(name).Config) == [], name


@pytest.mark.parametrize("name, options, match", [
    ("camera", {"target_peak": float("nan")}, r"calibrate.camera.target_peak: expected a finite number, got nan"),
    ("camera", {"target_peak": 0.99}, r"calibrate.camera.target_peak: must be >= 0.05 and <= 0.95, got 0.99"),
    ("camera", {"span": float("inf")}, r"calibrate.camera.span: expected a finite number, got inf"),
    ("camera", {"span": 1e9}, r"calibrate.camera.span: must be > 1 and <= 1e\+06"),  # exposure / span rounds to 0
    ("camera", {"exposures": 2}, r"calibrate.camera.exposures: must be >= 3 and <= 1024, got 2"),
    ("camera", {"patterns": -1}, r"calibrate.camera.patterns: must be >= 0"),
    ("noise", {"target_snr": float("inf")}, r"calibrate.noise.target_snr: expected a finite number, got inf"),
    ("noise", {"target_snr": 0}, r"calibrate.noise.target_snr: must be > 0 and <= 1e\+06, got 0.0"),
    ("noise", {"lit_fraction": 1.0}, r"calibrate.noise.lit_fraction: must be > 0 and < 1, got 1.0"),
    ("noise", {"repeats": 3}, r"calibrate.noise.repeats: must be >= 4"),
    ("noise", {"max_frames": 0}, r"calibrate.noise.max_frames: must be >= 1 and <= 1024, got 0"),
    ("settle", {"max_wait_s": float("nan")}, r"calibrate.settle.max_wait_s: expected a finite number, got nan"),
    ("settle", {"max_wait_s": 120}, r"calibrate.settle.max_wait_s: must be > 0 and <= 60, got 120.0"),
    ("settle", {"tolerance": 0.5}, r"calibrate.settle.tolerance: must be > 0 and < 0.5, got 0.5"),
    ("settle", {"margin": float("inf")}, r"calibrate.settle.margin: expected a finite number, got inf"),
    ("settle", {"step_rad": -0.3}, r"calibrate.settle.step_rad: must be > 0 and < 6, got -0.3"),
    ("settle", {"waits": 3}, r"calibrate.settle.waits: must be >= 4"),
    ("slm_phase", {"levels": 4}, r"calibrate.slm_phase.levels: must be >= 8 and <= 1024, got 4"),
    ("slm_phase", {"table": 7}, r"calibrate.slm_phase.table: must be >= 8"),
    ("slmsuite_fourier", {"array_shape": 1}, r"calibrate.slmsuite_fourier.array_shape: must be >= 2 and <= 32"),
    ("slmsuite_pixel", {"levels": 512}, r"calibrate.slmsuite_pixel.levels: must be >= 4 and <= 256, got 512"),
    ("twin_fit", {"patterns": 8}, r"calibrate.twin_fit.patterns: must be >= 16"),
    ("twin_fit", {"iterations": 0}, r"calibrate.twin_fit.iterations: must be >= 1 and <= 10000, got 0"),
    ("twin_fit", {"repeats": 1.5}, r"calibrate.twin_fit.repeats: expected an integer, got 1.5"),
])
def test_bad_calibration_options_name_the_key(name, options, match):
    from hil.calib.runner import parse_calibrate

    with pytest.raises(ConfigError, match=match):
        parse_calibrate({name: options})


def test_an_option_that_is_not_yaml_is_a_config_error():
    from hil.calib.runner import parse_options
    from hil.registry import CALIBRATIONS

    with pytest.raises(ConfigError, match=r"--option 'target_peak=\[': the value is not valid YAML"):
        parse_options(CALIBRATIONS.get("camera"), ["target_peak=["], "camera")
    with pytest.raises(ConfigError, match=r"calibration camera options.target_peak: expected a finite number"):
        parse_options(CALIBRATIONS.get("camera"), ["target_peak=.nan"], "camera")


@pytest.mark.parametrize("wrapper, match", [
    ({"type": "dark_subtraction", "dark_counts": []}, r"dark_counts: give a level or a frame"),
    ({"type": "dark_subtraction", "dark_counts": [1.0, float("nan")]}, r"dark_counts\[1\]: expected a finite number"),
    ({"type": "dark_subtraction", "dark_counts": [1e39]}, r"dark_counts\[0\]: must be >= -3.40282e\+38"),
    ({"type": "frame_average", "frames": 0}, r"frames: must be >= 1 and <= 1024, got 0"),
    ({"type": "frame_average", "frames": 2000}, r"frames: must be >= 1 and <= 1024, got 2000"),
    ({"type": "slm_lut", "drive_rad": [0.0], "phase_rad": [0.0]}, r"drive_rad: give a table of at least 2 drives"),
    ({"type": "slm_lut", "drive_rad": [0.0, 3.0, 6.0], "phase_rad": [0.0, 3.0]},
     r"phase_rad: must give one phase per drive \(3\), got 2"),
    ({"type": "slm_lut", "drive_rad": [0.0, 3.0, 3.0], "phase_rad": [0.0, 3.0, 6.0]},
     r"drive_rad\[2\]: the drives must increase: must be > drive_rad\[1\] \(3\), got 3"),
    ({"type": "slm_lut", "drive_rad": [0.0, 3.0, 6.0], "phase_rad": [0.0, 4.0, 3.0]},
     r"phase_rad\[2\]: the phases must not fall"),
    ({"type": "slm_lut", "drive_rad": [0.0, 6.0], "phase_rad": [1.0, 1.0]}, r"phase_rad: the phase must rise"),
    ({"type": "slm_lut", "drive_rad": [0.0, float("inf")], "phase_rad": [0.0, 6.0]},
     r"drive_rad\[1\]: expected a finite number, got inf"),
    ({"type": "slm_lut", "drive_rad": [0.0, 6.0], "phase_rad": [-3e38, 3e38]}, r"phase_rad: the phase's rise 6e\+38 "
                                                                                r"overflows float32"),
])
def test_bad_correction_wrappers_name_the_key_where_they_sit(wrapper, match):
    with pytest.raises(ConfigError, match=r"^blackbox.wrappers\[1\]." + match):
        parse_blackbox({"type": "owms_twin", "wrappers": [MACRO, wrapper]})


def test_settle_refuses_a_step_larger_than_the_inputs_allow_before_any_query(tmp_path):
    settling = {"type": "slm_settling", "tau_s": 0.03, "frame_s": 0.005}
    cfg = write_config(tmp_path / "bench.yaml", [settling, CAMERA, MACRO])
    with pytest.raises(CalibrationError, match=r"too little for steps of step_rad = 5"):
        run_calibration("settle", load_rig_config(cfg), options=["step_rad=5"], out_dir=tmp_path / "out", echo=quiet)
    assert not (tmp_path / "out").exists()

# -- each calibration recovers what was injected ----------------------------------------------------------------


def test_camera_recovers_dark_level_and_sets_the_exposure(camera_record):
    cfg, record = camera_record
    f = record.fitted
    assert abs(f["dark_level_counts"] - 20.0) < 1.0  # injected: 20 counts
    assert f["linearity_error"] < 0.02
    rig = load_rig_config(cfg, extra_records=[str(record.path)])
    box = parse_blackbox(rig.corrected()).build()
    with box:
        flat = box.query(box.spec.lower[None].clone(), purpose="calibration")
    peak = float(flat.max()) + f["dark_level_counts"]  # dark-subtracted output: add the dark back
    assert abs(peak / 4095 - 0.4) < 0.05  # the target peak, 40 % of full scale
    # the same rig at the chosen exposure, without the dark frame: its answers are higher by the dark level
    exposed = {k: v for k, v in rig.corrected().items()}
    exposed["wrappers"] = [w for w in exposed["wrappers"] if w["type"] != "dark_subtraction"]
    x = torch.rand(8, 144, generator=torch.Generator().manual_seed(1)) * TWO_PI
    with parse_blackbox(exposed).build() as raw, box:
        difference = float((raw.query(x) - box.query(x)).mean())
    assert abs(difference - 20.0) < 1.0


def test_noise_recovers_read_noise_and_gain_and_averages_to_the_target(camera_record, tmp_path):
    cfg, camera = camera_record
    rig = load_rig_config(cfg, extra_records=[str(camera.path)])
    record = run_calibration("noise", rig, out_dir=tmp_path, echo=quiet)
    f = record.fitted
    assert abs(f["read_noise_counts"] - 8.0) < 1.2  # injected 8 e-, gain 1 e-/count
    assert abs(f["gain_e_per_count"] - 1.0) < 0.15
    assert f["frames"] > 1 and record.corrections["wrappers"][0] == {"type": "frame_average", "frames": f["frames"]}
    after = run_calibration("noise", load_rig_config(cfg, extra_records=[str(camera.path), str(record.path)]),
                            out_dir=tmp_path / "after", echo=quiet)
    assert after.fitted["median_snr"] > 0.8 * 50  # the target SNR, reached by averaging


def test_settle_recovers_the_time_constant_and_removes_the_lag(tmp_path):
    settling = {"type": "slm_settling", "tau_s": 0.03, "frame_s": 0.005}
    cfg = write_config(tmp_path / "bench.yaml", [settling, CAMERA, MACRO])
    record = run_calibration("settle", load_rig_config(cfg), out_dir=tmp_path, echo=quiet)
    assert abs(record.fitted["tau_s"] - 0.03) < 0.15 * 0.03
    assert record.corrections["set"][0]["on"] == "slm_settling"
    settle = record.fitted["settle_s"]
    assert 0.03 * math.log(100) * 0.9 < settle + 0.005 < 0.03 * math.log(100) * 1.5
    # the lag left after a step, as the twin computes it: below 2 % with the correction, ~85 % without
    assert math.exp(-(settle + 0.005) / 0.03) < 0.02


@pytest.mark.parametrize("crosstalk, tolerance", [(None, 2e-3), (0.5, 0.05)])
def test_slm_phase_recovers_gamma_and_scale(tmp_path, crosstalk, tolerance):
    response = {"type": "slm_phase_response", "gamma": 1.1, "scale": 0.97}
    wrappers = ([{"type": "slm_crosstalk", "sigma_px": crosstalk}] if crosstalk else []) + [response, MACRO]
    cfg = write_config(tmp_path / "bench.yaml", wrappers)
    record = run_calibration("slm_phase", load_rig_config(cfg), out_dir=tmp_path, echo=quiet)
    # crosstalk blurs the split screen's edge, where the beam is brightest: a stated bias of a few percent
    assert abs(record.fitted["gamma"] - 1.1) < tolerance * 1.1
    assert abs(record.fitted["scale"] - 0.97) < tolerance * 0.97
    # corrected, the SLM's response is linear again (up to its reach, 0.97 x 2 pi)
    again = run_calibration("slm_phase", load_rig_config(cfg, extra_records=[str(record.path)]),
                            out_dir=tmp_path / "after", echo=quiet)
    assert abs(again.fitted["gamma"] - 1.0) < abs(record.fitted["gamma"] - 1.0) / 2


@pytest.fixture(scope="module")
def twin_fit_record(tmp_path_factory):
    d = tmp_path_factory.mktemp("twin")
    bench = [{"type": "slm_crosstalk", "sigma_px": 0.5}, {"type": "slm_phase_response", "gamma": 1.1, "scale": 0.97},
             {"type": "slm_quantisation", "bits": 8}, {**CAMERA, "read_noise_e": 5.0}, MACRO]
    cfg = write_config(d / "bench.yaml", bench, **MAIN_BENCH)
    (d / "nominal.yaml").write_text(yaml.safe_dump({"blackbox": {"type": "owms_twin", "wrappers": [MACRO]}}))
    record = run_calibration("twin_fit", load_rig_config(cfg, model=str(d / "nominal.yaml")), out_dir=d / "out",
                             echo=quiet)
    return cfg, record


def test_twin_fit_recovers_the_bench_geometry_and_phase_response(twin_fit_record):
    _, record = twin_fit_record
    f, u = record.fitted, record.uncertainty
    assert abs(f["distance_m"] - 0.0207) < 0.002 * 0.0207
    assert abs(f["waist_m"] - 7.3e-5) < 0.01 * 7.3e-5
    assert np.allclose(f["beam_offset_m"], [1.2e-5, -8.0e-6], atol=0.5e-6)
    assert np.allclose(f["camera_offset_m"], [0.0, 0.0], atol=0.5e-6)
    assert abs(f["gamma"] - 1.1) < 0.01 and abs(f["scale"] - 0.97) < 0.005
    assert abs(f["crosstalk_sigma_px"] - 0.5) < 0.03
    assert f["rms_noise_sigmas"] < 1.5 < record.measured["rms_noise_sigmas_before"]
    assert all(v > 0 for v in np.ravel([u[k] for k in ("distance_m", "waist_m", "gamma")]))


def test_fitted_twin_config_is_a_backward_model_closer_to_the_bench(twin_fit_record):
    cfg, record = twin_fit_record
    twin_path = record.path.parent / record.files["twin"]
    data = yaml.safe_load(cfg.read_text())
    bench = parse_blackbox(data["blackbox"]).build()
    fitted = parse_blackbox(yaml.safe_load(twin_path.read_text())["blackbox"]).build()
    nominal = parse_blackbox({"type": "owms_twin", "wrappers": [MACRO]}).build()
    x = torch.rand(16, 144, generator=torch.Generator().manual_seed(5)) * TWO_PI
    with bench, fitted, nominal:
        truth = bench.forward_differentiable(x).reshape(16, -1)

        def err(box):
            y = box.forward_differentiable(x).reshape(16, -1)
            y = y / y.sum(1, keepdim=True)
            return float((y - truth / truth.sum(1, keepdim=True)).norm() / (truth / truth.sum(1, keepdim=True)).norm())

        assert err(fitted) < 0.05 < err(nominal) / 4
    # a run config uses it by path, relative to the config's folder
    data["estimator"] = {"type": "exact", "model": str(twin_path.relative_to(cfg.parent))}
    data["optimizer"] = {"type": "gradient", "n_starts": 2, "iterations": 2, "lr": 0.02, "seed": 0}
    (cfg.parent / "exact.yaml").write_text(yaml.safe_dump(data))
    assert load_run_config(cfg.parent / "exact.yaml").estimator.options.model["distance_m"] == pytest.approx(
        record.fitted["distance_m"])


# -- the records in a run, and the command line --------------------------------------------------------------


def test_run_applies_records_and_its_log_names_them(camera_record, tmp_path):
    cfg, record = camera_record
    data = yaml.safe_load(cfg.read_text())
    data["calibrations"] = [str(record.path)]
    config = load_run_config(data)
    types = [w.type for w in config.blackbox.wrappers]
    assert types[-1] == "dark_subtraction" and config.calibrations[0].id == record.id
    result = execute(config, log_path=tmp_path / "run.h5")
    attrs = read_log(result.log_path).attrs
    assert [r["id"] for r in attrs["calibrations"]] == [record.id]
    assert attrs["config"]["calibrations"] == [record.id]


def test_calibrate_all_cli_list_and_show(tmp_path, capsys):
    settling = {"type": "slm_settling", "tau_s": 0.01, "frame_s": 0.005}
    cfg = write_config(tmp_path / "bench.yaml", [settling, {"type": "slm_phase_response", "gamma": 1.1}, CAMERA,
                                                 MACRO])
    assert main(["calibrate", "list", "--rig", str(cfg)]) == 0
    listed = capsys.readouterr().out
    assert "twin_fit" in listed and "cannot run" in listed and "settle" in listed
    assert main(["calibrate", "all", "--rig", str(cfg), "--out", str(tmp_path / "all")]) == 0
    out = capsys.readouterr().out
    index = yaml.safe_load((tmp_path / "all" / "calibrations.yaml").read_text())["calibrations"]
    assert [Path(p).stem for p in index] == ["settle", "camera", "noise", "slm_phase"]
    assert "twin_fit: skipped" in out
    assert main(["calibrate", "show", "--record", index[-1]]) == 0
    assert "slm_phase" in capsys.readouterr().out
    assert main(["calibrate", "nope", "--rig", str(cfg)]) == 2
    assert "unknown calibration 'nope'" in capsys.readouterr().err
    data = yaml.safe_load(cfg.read_text())
    data["calibrations"] = index
    config = load_run_config(data)
    assert [w.type for w in config.blackbox.wrappers][-3:] == ["dark_subtraction", "frame_average", "slm_lut"]
    assert json.loads(json.dumps(config.as_dict()))["calibrations"] == [read_record(p).id for p in index]


# -- corrections ----------------------------------------------------------------------------------------------


def test_lookup_table_inverts_a_power_law_and_is_differentiable():
    from hil.calibration.corrections import SLMLookupTable

    inner = parse_blackbox({"type": "owms_twin", "wrappers": [MACRO]}).build()
    u = torch.linspace(0, 1, 256)
    lut = SLMLookupTable(inner, (u * TWO_PI * (1 - 1e-6)).tolist(), (0.9 * TWO_PI * u**1.2).tolist())
    want = torch.tensor([[0.0, 1.0, 3.0, 5.5, 0.92 * TWO_PI, 0.999 * TWO_PI]])
    drive = lut.drive_for(want)
    got = 0.9 * TWO_PI * (drive / TWO_PI) ** 1.2
    assert torch.allclose(got[0, :4], want[0, :4], atol=2e-3)  # reachable phases: hit
    assert float(got[0, 4]) == pytest.approx(0.9 * TWO_PI, abs=1e-3)  # above the reach, nearer the top: the top
    assert float(drive[0, 5]) == pytest.approx(0.0, abs=1e-6)  # just below 2 pi: across the wrap, the bottom
    x = want[:, :4].clone().requires_grad_(True)
    lut.drive_for(x).sum().backward()
    assert bool((x.grad > 0).all())


# -- slmsuite's own calibrations on its simulated SLM + camera, through the rig's logged path ---------------------


@pytest.fixture(scope="module")
def slmsuite_rig(tmp_path_factory):
    pytest.importorskip("slmsuite")
    d = tmp_path_factory.mktemp("slmsuite")
    data = yaml.safe_load((Path(__file__).resolve().parent.parent / "configs" / "slm_camera_rig.yaml").read_text())
    gamma = 0.9 * (np.arange(256) / 256) ** 1.15  # injected: 0.9 x 2 pi at the top level, gamma 1.15
    data["blackbox"]["slm"]["kwargs"]["gamma_sim"] = gamma.tolist()
    cfg = d / "rig.yaml"
    cfg.write_text(yaml.safe_dump(data))
    fourier = run_calibration("slmsuite_fourier", load_rig_config(cfg), out_dir=d / "out", echo=quiet)
    pixel = run_calibration("slmsuite_pixel", load_rig_config(cfg, extra_records=[str(fourier.path)]),
                            options=["quick=true"], out_dir=d / "out", echo=quiet)
    return cfg, gamma, fourier, pixel


def test_slmsuite_pixel_calibration_recovers_the_phase_response_through_the_logged_path(slmsuite_rig):
    cfg, gamma, fourier, pixel = slmsuite_rig
    assert np.asarray(fourier.fitted["M"]).shape == (2, 2) and len(fourier.fitted["b"]) == 2
    levels = np.asarray(pixel.measured["levels"]).astype(int)
    recovered = np.asarray(pixel.fitted["gamma"])
    assert np.abs(TWO_PI * (recovered - (gamma[levels] - gamma[0]))).max() < 0.02  # rad
    log = read_log(pixel.path.parent / pixel.files["log"])
    assert len(log) == pixel.measured["queries"] > 500 and set(log.purpose_labels()) == {"calibration"}
    assert log.x.shape[1] == 64 * 64 and float(np.asarray(log.x).max()) <= 255  # display levels, validated


def test_slmsuite_lookup_table_makes_the_realised_phase_the_desired_one(slmsuite_rig):
    cfg, gamma, fourier, pixel = slmsuite_rig

    def worst_error(records: list[str]) -> float:
        box = parse_blackbox(load_rig_config(cfg, extra_records=records).corrected()).build()
        errors = []
        with box:
            for phi in np.linspace(1.0, 5.0, 9):
                box.slm.set_phase(np.full((64, 64), phi), settle=False)
                level = int(np.asarray(box.slm.display).flat[0])
                realised = (-TWO_PI * gamma[level]) % TWO_PI  # SimulatedSLM: phase = -2 pi gamma_sim[level]
                errors.append(abs((realised - phi + math.pi) % TWO_PI - math.pi))
        return max(errors)

    assert worst_error([]) > 0.3
    assert worst_error([str(fourier.path), str(pixel.path)]) < 0.05


def test_calibrate_section_sets_options_and_skips(tmp_path):
    cfg = write_config(tmp_path / "bench.yaml", [CAMERA, MACRO])
    data = yaml.safe_load(cfg.read_text())
    data["calibrate"] = {"camera": {"target_peak": 0.2}, "skip": ["noise"]}
    cfg.write_text(yaml.safe_dump(data))
    lines: list[str] = []
    records = run_all(load_rig_config(cfg), out_dir=tmp_path / "out", echo=lines.append)
    assert [r.name for r in records] == ["camera", "slm_phase"]
    assert "noise: skipped (calibrate.skip in the config)" in lines
    camera = records[0]
    assert camera.fitted["exposure_s"] < 0.7e-3  # a 20 % target instead of 40 %: about half the exposure
    for bad, match in (({"nope": {}}, "calibrate.nope: unknown calibration"),
                       ({"camera": {"x": 1}}, "calibrate.camera"),
                       ({"skip": ["nope"]}, r"calibrate.skip\[0\]: 'nope' is not a calibration")):
        with pytest.raises(ConfigError, match=match):
            load_run_config({**data, "calibrate": bad})


def test_camera_references_random_leaves_the_flat_phase_out(tmp_path):
    cfg = write_config(tmp_path / "bench.yaml", [CAMERA, MACRO])
    flat = run_calibration("camera", load_rig_config(cfg), out_dir=tmp_path / "a", echo=quiet)
    speckle = run_calibration("camera", load_rig_config(cfg), options=["references=random"], out_dir=tmp_path / "b",
                              echo=quiet)
    assert np.asarray(flat.measured["counts"]).shape[1] == 5 and np.asarray(speckle.measured["counts"]).shape[1] == 4
    # random speckle is dimmer than the flat phase's spot here: the same target needs a longer exposure
    assert speckle.fitted["exposure_s"] > flat.fitted["exposure_s"]
