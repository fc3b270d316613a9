"""Physical neural networks: macro-pixel and detector-region readout, hybrid models, the three-way experiment."""

from __future__ import annotations

import json
import math
from pathlib import Path

import h5py
import pytest
import torch
import yaml
from test_imperfections import PhaseEcho, wrap

from hil.cli import main
from hil.errors import ConfigError
from hil.estimators import ExactEstimator
from hil.layer import PhysicalLayer
from hil.pnn import HybridClassifier, PeriodicBounds, load_pnn_config, run_pnn_experiment
from hil.querylog import read_log
from hil.sections import parse_blackbox

pytest.importorskip("torchoptics", reason="the OWMS twin needs TorchOptics: pip install 'hil[optics]'")
pytest.importorskip("sklearn", reason="the digits dataset needs scikit-learn: pip install 'hil[optics]'")

ROOT = Path(__file__).resolve().parents[1]
TWO_PI = 2 * math.pi


def test_macropixels_copy_each_phase_onto_its_block():
    echo = PhaseEcho()
    box = wrap(echo, {"type": "slm_macropixels", "blocks": [10, 10]})
    assert box.spec.input_dim == 100
    x = torch.rand(2, 100) * TWO_PI
    with box:
        box.query(x)
    slm = echo.received[-1].reshape(2, 60, 60)
    for r, c in [(0, 0), (3, 7), (9, 9)]:
        block = slm[:, 6 * r: 6 * r + 6, 6 * c: 6 * c + 6]
        assert torch.allclose(block, x.reshape(2, 10, 10)[:, r, c, None, None].expand_as(block))


def test_macropixels_must_divide_the_slm():
    with pytest.raises(ConfigError, match="divide the SLM"):
        wrap(PhaseEcho(), {"type": "slm_macropixels", "blocks": [7, 10]})


def test_detector_regions_sum_the_camera_image_without_the_dark_level():
    camera = {"type": "camera", "bit_depth": 16, "read_noise_e": 0.0, "shot_noise": False, "dark_level_counts": 40.0}
    frames = parse_blackbox({"type": "owms_twin", "wrappers": [camera]}).build()
    regions = parse_blackbox({"type": "owms_twin", "wrappers": [camera, {"type": "detector_regions",
                                                                         "grid": [4, 2]}]}).build()
    assert regions.spec.output_shape == (8,)
    x = torch.rand(3, 3600) * TWO_PI
    with frames, regions:
        img = frames.query(x) - 40.0
        sig = regions.query(x)
    expected = img.reshape(3, 4, 8, 2, 16).sum(dim=(2, 4)).reshape(3, 8)
    assert torch.allclose(sig, expected, rtol=1e-5, atol=1e-2)


def test_detector_regions_must_divide_the_image():
    with pytest.raises(ConfigError, match="divide the camera image"):
        parse_blackbox({"type": "owms_twin", "wrappers": [{"type": "detector_regions", "grid": [5, 4]}]}).build()


def test_periodic_bounds_wrap_phases_and_pass_gradients():
    wrap_ = PeriodicBounds(torch.zeros(3), torch.full((3,), TWO_PI))
    x = torch.tensor([[-0.5, 7.0, 1.0]], requires_grad=True)
    y = wrap_(x)
    assert torch.allclose(y, torch.tensor([[TWO_PI - 0.5, 7.0 - TWO_PI, 1.0]]))
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones(1, 3))


def _model_twin():
    return parse_blackbox({"type": "owms_twin", "wrappers": [{"type": "detector_regions", "grid": [4, 4]},
                                                             {"type": "slm_macropixels", "blocks": [10, 10]}]}).build()


def test_gradients_reach_the_digital_layers_through_the_physical_layer():
    with _model_twin() as twin:
        torch.manual_seed(0)
        model = HybridClassifier(64, PhysicalLayer(twin, ExactEstimator()), 10)
        x, labels = torch.rand(8, 64), torch.arange(8)
        torch.nn.functional.cross_entropy(model(x), labels).backward()
        for name in ("encoder.weight", "encoder.bias", "readout.weight"):
            grad = dict(model.named_parameters())[name].grad
            assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
        assert twin.stats.queries == 8  # forward on the box, backward by the estimator without queries


def _small_config(tmp_path, **training):
    data = load_pnn_config(ROOT / "configs" / "pnn_digits.yaml")
    import dataclasses

    cfg = dataclasses.asdict(data)
    cfg["surrogate"] = {"type": "surrogate", "loss": "gradpie", "input_features": "phase", "k": 5,
                        "hidden": [64, 64], "epochs": 1}
    cfg["training"].update({"epochs": 1, "seeds": [0], "warmup_queries": 200, "warmup_epochs": 2, **training})
    cfg["log"] = {"dir": str(tmp_path)}
    return cfg


def test_experiment_trains_all_three_ways_and_logs_bench_and_twin_apart(tmp_path):
    cfg = load_pnn_config(_small_config(tmp_path))
    result = run_pnn_experiment(cfg, log_path=tmp_path / "pnn.h5", progress=False)
    assert set(result["summary"]) == {"in_silico", "pat_model_twin", "pat_gradpie"}
    for run in result["runs"]:
        assert 0.3 < run["bench_accuracy"] <= 1.0, run  # chance is 0.1
    bench, twin = read_log(result["log"]), read_log(result["model_twin_log"])
    assert bench.run_ids == twin.run_ids == ["in_silico-seed0", "pat_model_twin-seed0", "pat_gradpie-seed0"]
    n_test, n_train = 540, 1257
    runs = {r["mode"]: r for r in result["runs"]}
    # in silico: every training query on the twin, the bench sees only the test set
    assert runs["in_silico"]["bench_queries"] == n_test
    assert runs["in_silico"]["model_twin_queries"] == n_train + n_test
    # physics-aware: training forward passes on the bench; GradPIE also spends its warm-up there
    assert runs["pat_model_twin"]["bench_queries"] == n_train + n_test
    assert runs["pat_gradpie"]["bench_queries"] == 200 + n_train + n_test
    assert len(bench) == sum(r["bench_queries"] for r in result["runs"])
    assert int(bench.mask("evaluation").sum()) == 3 * n_test
    assert int(bench.mask("calibration").sum()) == 200
    with h5py.File(result["log"], "r") as f:
        assert f["x"].shape == (len(bench), 100) and f["y"].shape == (len(bench), 16)


def test_pnn_config_errors_name_the_key(tmp_path):
    cfg = _small_config(tmp_path)
    with pytest.raises(ConfigError, match=r"modes\[1\].*allowed values: in_silico"):
        load_pnn_config({**cfg, "modes": ["in_silico", "backprop"]})
    with pytest.raises(ConfigError, match=r"^training\.epochs: must be >= 1, got 0$"):
        load_pnn_config({**cfg, "training": {**cfg["training"], "epochs": 0}})
    with pytest.raises(ConfigError, match=r"^surrogate\.type: must be 'surrogate'"):
        load_pnn_config({**cfg, "surrogate": {"type": "exact"}})
    with pytest.raises(ConfigError, match="sigma_px"):
        load_pnn_config({**cfg, "bench": {"type": "owms_twin", "wrappers": [{"type": "slm_crosstalk",
                                                                              "sigma_px": -1}]}})
    mismatched = {**cfg, "model_twin": {"type": "owms_twin"}}
    with pytest.raises(ConfigError, match="model_twin must take and give what the bench does"):
        run_pnn_experiment(load_pnn_config(mismatched), log_path=tmp_path / "x.h5", progress=False)


@pytest.mark.parametrize("key, value, message", [
    ("lr", math.inf, "expected a finite number, got inf"), ("lr", math.nan, "expected a finite number, got nan"),
    ("lr", -1e-3, "must be > 0"), ("k", 0, "must be >= 1"), ("recent_fraction", 2.0, "must be >= 0 and <= 1"),
    ("pairs_per_anchor", 9, "must be <= k (5), got 9"), ("device", "tpu", "must be one of auto"),
    ("bogus", 1, "unknown key; allowed keys:"),
])
def test_errors_in_the_surrogate_section_name_surrogate_not_estimator(tmp_path, key, value, message):
    cfg = _small_config(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_pnn_config({**cfg, "surrogate": {**cfg["surrogate"], key: value}})
    assert str(info.value).startswith(f"surrogate.{key}: ") and message in str(info.value), str(info.value)
    with pytest.raises(ConfigError, match=r"^surrogate\.hidden\[1\]: must be >= 1"):
        load_pnn_config({**cfg, "surrogate": {**cfg["surrogate"], "hidden": [8, 0]}})
    with pytest.raises(ConfigError, match=r"^surrogate\.loss: matchopt sorts its data by an objective"):
        load_pnn_config({**cfg, "surrogate": {**cfg["surrogate"], "loss": "matchopt"}})  # failed in training


def test_errors_in_the_model_twin_section_name_model_twin_not_blackbox(tmp_path):
    cfg = _small_config(tmp_path)
    twin = cfg["model_twin"]
    with pytest.raises(ConfigError, match=r"^model_twin\.bogus: unknown key"):
        load_pnn_config({**cfg, "model_twin": {**twin, "bogus": 1}})
    with pytest.raises(ConfigError, match=r"^model_twin\.wrappers\[0\]\.type: unknown"):
        load_pnn_config({**cfg, "model_twin": {**twin, "wrappers": [{"type": "nope"}]}})
    bad = tmp_path / "twin.yaml"
    bad.write_text("blackbox: {type: owms_twin, bogus: 1}\n")
    with pytest.raises(ConfigError, match=r"^model_twin: .*twin\.yaml\.bogus: unknown key"):
        load_pnn_config({**cfg, "model_twin": str(bad)})
    with pytest.raises(ConfigError, match=r"^model_twin: config file .*absent\.yaml.* does not exist"):
        load_pnn_config({**cfg, "model_twin": str(tmp_path / "absent.yaml")})


@pytest.mark.parametrize("training, path, message", [
    ({"lr": math.inf}, "lr", "expected a finite number, got inf"),
    ({"lr": math.nan}, "lr", "expected a finite number, got nan"),
    ({"batch_size": 0}, "batch_size", "must be >= 1"),
    ({"test_fraction": 1.0}, "test_fraction", "must be > 0 and < 1, got 1.0"),
    ({"test_fraction": math.nan}, "test_fraction", "expected a finite number"),
    ({"warmup_queries": -1}, "warmup_queries", "must be >= 0"),
    ({"warmup_epochs": -1}, "warmup_epochs", "must be >= 0"),
    ({"seeds": []}, "seeds", "give at least one seed"),
    ({"seeds": [0, 1, 0]}, "seeds[2]", "seed 0 is listed twice"),
    ({"seeds": [0, 2**64]}, "seeds[1]", "must be >= 0 and <= "),  # would overflow torch.manual_seed
])
def test_training_options_are_checked_naming_the_path(tmp_path, training, path, message):
    cfg = _small_config(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_pnn_config({**cfg, "training": {**cfg["training"], **training}})
    assert str(info.value).startswith(f"training.{path}: ") and message in str(info.value), str(info.value)


def test_modes_calibrations_and_top_level_keys_name_the_path(tmp_path):
    cfg = _small_config(tmp_path)
    with pytest.raises(ConfigError, match=r"^modes\[1\]: 'in_silico' is listed twice"):
        load_pnn_config({**cfg, "modes": ["in_silico", "in_silico"]})
    with pytest.raises(ConfigError, match=r"^modes: give at least one mode"):
        load_pnn_config({**cfg, "modes": []})
    with pytest.raises(ConfigError, match=r"^calibrations\.max_age_h: expected a finite number, got inf"):
        load_pnn_config({**cfg, "calibrations": {"records": [], "max_age_h": math.inf}})
    with pytest.raises(ConfigError, match=r"^calibrations\.max_age_h: must be > 0"):
        load_pnn_config({**cfg, "calibrations": {"max_age_h": 0}})
    with pytest.raises(ConfigError, match=r"^calibrations\[0\]: expected a string, got 3"):
        load_pnn_config({**cfg, "calibrations": [3]})
    with pytest.raises(ConfigError, match=r"^traning: unknown key; allowed keys: "):
        load_pnn_config({**cfg, "traning": {}})


def test_hil_run_points_pnn_configs_to_hil_pnn(capsys):
    assert main(["run", str(ROOT / "configs" / "pnn_digits.yaml"), "--no-progress"]) == 2
    assert "run it with `hil pnn CONFIG`" in capsys.readouterr().err


def test_hil_pnn_prints_the_three_way_table_and_writes_json(tmp_path, capsys):
    cfg = _small_config(tmp_path, warmup_queries=0)
    cfg["modes"] = ["in_silico", "pat_model_twin"]
    path = tmp_path / "pnn.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["pnn", str(path), "--json", str(tmp_path / "out.json"), "--log", str(tmp_path / "l.h5"),
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "in_silico" in out and "pat_model_twin" in out and "bench test accuracy" in out
    result = json.loads((tmp_path / "out.json").read_text())
    assert set(result["summary"]) == {"in_silico", "pat_model_twin"}
    assert result["summary"]["in_silico"]["n_seeds"] == 1
