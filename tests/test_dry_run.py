"""`--dry-run`: the very config that drives a bench runs on the rig's simulated counterpart, which hil starts and
stops itself (the fake firmware on a pty, the loopback SCPI server, slmsuite's simulated SLM and camera)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hil.dryrun import dry_run
from hil.pnn import load_pnn_config
from hil.querylog import read_log
from hil.registry import SIMULATORS
from hil.run import is_pnn_config, load_run_config

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}


def _rig_configs() -> list[Path]:
    out = []
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        section = data.get("bench") if is_pnn_config(data) else data.get("blackbox")
        if section.get("type") in SIMULATORS.names():
            out.append(path)
    return out


def _simulators_alive() -> list[str]:
    """Command lines of live processes that are a simulated device (the fake firmware)."""
    alive = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "hil.drivers.fake_firmware" in cmd and "hil-dry-run-" in cmd:
                alive.append(cmd)
    return alive


def test_every_rig_type_has_a_simulated_counterpart_and_the_shipped_rigs_are_found() -> None:
    assert {"serial_board", "visa_rig", "slm_camera_rig"} <= set(SIMULATORS.names())
    assert {p.name for p in _rig_configs()} >= {"serial_board.yaml", "visa_rig.yaml", "slm_camera_rig.yaml",
                                                  "pnn_digits_rig.yaml"}


@pytest.mark.parametrize("config", ["serial_board.yaml", "visa_rig.yaml", "slm_camera_rig.yaml"])
def test_hil_run_dry_run_completes_with_nothing_started_by_hand(config: str, tmp_path: Path) -> None:
    log = tmp_path / "dry.h5"
    out = subprocess.run([sys.executable, "-m", "hil.cli", "run", str(ROOT / "configs" / config), "--dry-run",
                          "--log", str(log), "--no-progress"], capture_output=True, text=True, timeout=600,
                         env=ENV, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "dry run: blackbox" in out.stderr and "simulated counterpart" in out.stderr
    data = read_log(log)
    assert len(data) > 100 and data.attrs["config"]["name"] == config.removesuffix(".yaml")
    assert not _simulators_alive()


def test_the_swapped_section_keeps_what_the_config_declares_and_everything_stops() -> None:
    data = yaml.safe_load((ROOT / "configs" / "serial_board.yaml").read_text())
    with dry_run(data, say=lambda s: None) as swapped:
        section = swapped["blackbox"]
        assert section["port"] != data["blackbox"]["port"] and Path(section["port"]).exists()
        assert {k: v for k, v in section.items() if k != "port"} == {
            k: v for k, v in data["blackbox"].items() if k != "port"}
        config = load_run_config(swapped)
        with config.blackbox.build() as box:  # the board answers through the pty
            import torch

            y = box.query(torch.full((2, 4), 1.0))
            assert y.shape == (2, 3)
        assert _simulators_alive()
    assert not Path(section["port"]).exists() and not _simulators_alive()


def test_the_simulator_stops_when_the_run_fails() -> None:
    data = yaml.safe_load((ROOT / "configs" / "visa_rig.yaml").read_text())
    with pytest.raises(RuntimeError, match="boom"), dry_run(data, say=lambda s: None) as swapped:
        resource = swapped["blackbox"]["resource"]
        raise RuntimeError("boom")
    import socket

    port = int(resource.split("::")[2])
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


def test_a_pnn_rig_config_dry_runs_its_bench() -> None:
    data = yaml.safe_load((ROOT / "configs" / "pnn_digits_rig.yaml").read_text())
    with dry_run(data, say=lambda s: None) as swapped:
        config = load_pnn_config(swapped)
        assert config.bench["sleep_scale"] == 0.0 and config.bench["slm"]["args"] == [[60, 60]]


def test_hil_calibrate_dry_run_writes_records_for_the_simulated_rig(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "hil.cli", "calibrate", "noise", "--rig",
                          str(ROOT / "configs" / "serial_board.yaml"), "--dry-run"], capture_output=True, text=True,
                         timeout=600, env=ENV, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "calibrations" / "serial_board-dry-run" / "noise.json").exists()
    assert not _simulators_alive()


def test_hil_pnn_dry_run_trains_on_the_simulated_bench(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "hil.cli", "pnn", str(ROOT / "configs" / "pnn_digits_rig.yaml"),
                          "--dry-run", "--seeds", "1", "--epochs", "1", "--no-progress", "--json",
                          str(tmp_path / "pnn.json")], capture_output=True, text=True, timeout=900, env=ENV,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "dry run: bench (slm_camera_rig)" in out.stderr
    summary = __import__("json").loads((tmp_path / "pnn.json").read_text())
    assert summary and (tmp_path / "runs").is_dir()
