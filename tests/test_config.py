"""Configs fail on load, before anything runs, with a message naming the key and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import small_run_config

from hil.errors import ConfigError
from hil.pnn import load_pnn_config
from hil.run import is_pnn_config, load_run_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_validate(path):
    data = yaml.safe_load(path.read_text())
    cfg = load_pnn_config(data) if is_pnn_config(data) else load_run_config(data)
    assert cfg.name


def _bad(tmp_path, section, key, value):
    data = small_run_config(tmp_path)
    if section is None:
        data[key] = value
    else:
        data[section][key] = value
    return data


@pytest.mark.parametrize(
    "section, key, value, expected",
    [
        (None, "optimiser", {}, "optimiser: unknown top-level key; allowed keys: name, description"),
        ("optimizer", "itrations", 5, "optimizer.itrations: unknown key for type 'gradient'; allowed keys:"),
        ("optimizer", "iterations", "many", "optimizer.iterations: expected an integer, got 'many'"),
        ("optimizer", "iterations", 0, "optimizer.iterations: must be >= 1, got 0"),
        ("optimizer", "mode", "online", "optimizer.mode: replaced by optimizer.type; write type: gradient"),
        ("optimizer", "type", "newton", "optimizer.type: unknown optimizer type 'newton'; allowed: "),
        ("optimizer", "type", ["gradient"], "optimizer.type: expected the name of an optimiser, got ['gradient']"),
        ("optimizer", "max_wall_s", float("inf"), "optimizer.max_wall_s: expected a finite number, got inf"),
        ("optimizer", "lr", float("nan"), "optimizer.lr: expected a finite number, got nan"),
        ("blackbox", "type", "cnon", "blackbox.type: unknown blackbox type 'cnon'; allowed: cnon_twin"),
        ("blackbox", "dim", 2.5, "blackbox.dim: expected an integer, got 2.5"),
        ("blackbox", "couplng", 1.0, "blackbox.couplng: unknown key; allowed keys: coupling, device, dim"),
        ("blackbox", "out_of_bounds", "wrap", "allowed values: 'reject', 'clip'"),
        ("estimator", "type", "magic",
         "estimator.type: unknown estimator type 'magic'; allowed: exact, finite_difference"),
        ("estimator", "loss", "huber",
         "estimator.loss: 'huber' is not allowed; allowed values: 'mse', 'mae', 'gradpie'"),
        ("estimator", "hidden", [64, "wide"], "estimator.hidden[1]: expected an integer"),
        ("estimator", "k", 0, "estimator.k: must be >= 1 and"),
        ("objective", "norm", "max", "objective.norm: 'max' is not allowed"),
    ],
)
def test_bad_config_names_the_key(tmp_path, section, key, value, expected):
    with pytest.raises(ConfigError) as info:
        load_run_config(_bad(tmp_path, section, key, value))
    assert expected in str(info.value)


def test_missing_type_lists_allowed(tmp_path):
    data = small_run_config(tmp_path)
    del data["blackbox"]["type"]
    with pytest.raises(ConfigError, match="blackbox: missing key 'type'; allowed types: cnon_twin"):
        load_run_config(data)


def test_missing_section(tmp_path):
    data = small_run_config(tmp_path)
    del data["objective"]
    with pytest.raises(ConfigError, match="missing section 'objective'"):
        load_run_config(data)


def test_a_gradient_optimizer_needs_an_estimator_section(tmp_path):
    data = small_run_config(tmp_path)
    del data["estimator"]
    with pytest.raises(ConfigError, match="estimator: optimizer type 'gradient' follows a gradient, so it needs an "
                                          "estimator section"):
        load_run_config(data)


@pytest.mark.parametrize("optimizer", [{"type": "random"}])
def test_a_gradient_free_optimizer_rejects_an_estimator_section_naming_it(tmp_path, optimizer):
    data = small_run_config(tmp_path)
    data["optimizer"] = {**optimizer, "iterations": 3}
    with pytest.raises(ConfigError, match=f"estimator: optimizer type '{optimizer['type']}' does not use a gradient, "
                                          f"so it takes no estimator section; remove it"):
        load_run_config(data)
    del data["estimator"]
    assert load_run_config(data).estimator is None


def test_offline_needs_a_surrogate_estimator(tmp_path):
    data = small_run_config(tmp_path, type="offline")
    data["estimator"] = {"type": "exact"}
    with pytest.raises(ConfigError, match="estimator.type: optimizer type 'offline' needs estimator type 'surrogate'"):
        load_run_config(data)


def test_yaml_errors_are_config_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("blackbox: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_run_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_run_config(tmp_path / "nope.yaml")


def test_scientific_notation_strings_are_numbers(tmp_path):
    text = yaml.safe_dump(small_run_config(tmp_path)).replace("epochs: 2", "epochs: 2\n  lr: 1e-3")
    path = tmp_path / "c.yaml"
    path.write_text(text)
    assert load_run_config(path).estimator.options.lr == pytest.approx(1e-3)
