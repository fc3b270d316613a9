"""Serial rig against a fake firmware on a pty: protocol, declared limits, faults, nothing lost or logged twice."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from hil.errors import ConfigError, DeviceError, PartialAnswerError
from hil.querylog import QueryLog, read_log
from hil.sections import parse_blackbox

pytest.importorskip("serial", reason="the serial rig needs pyserial: pip install 'hil[serial]'")
if not sys.platform.startswith("linux"):
    pytest.skip("the fake firmware uses Linux pseudo-terminals", allow_module_level=True)


@pytest.fixture
def firmware(tmp_path):
    procs = []

    def start(*flags: str, noise_v: float = 0.0) -> tuple[str, Path]:
        link, record = tmp_path / f"board{len(procs)}", tmp_path / f"applied{len(procs)}.txt"
        proc = subprocess.Popen([sys.executable, "-m", "hil.drivers.fake_firmware", "--link", str(link),
                                 "--record", str(record), "--noise-v", str(noise_v), *flags],
                                stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().startswith("READY"), "fake firmware did not start"
        return str(link), record

    yield start
    for p in procs:
        p.kill()
        p.wait()


def board(port: str, **options):
    return parse_blackbox({"type": "serial_board", "port": port, **options}).build()


def applied(record: Path) -> np.ndarray:
    return np.loadtxt(record, delimiter=",", ndmin=2)


def test_identifies_and_answers_with_the_physical_response(firmware):
    from hil.drivers.fake_firmware import Board, physical_response

    port, record = firmware()
    x = torch.rand(20, 4, generator=torch.Generator().manual_seed(0)) * 3.3
    with board(port) as box:
        assert box.identity.startswith("HIL,FAKEBOARD")
        y = box.query(x)
    ref = Board(4, 3, 0.0, 3.3, seed=0, noise_v=0.0)
    expected = np.stack([physical_response(v, ref.w, ref.b) for v in x.double().numpy()])
    np.testing.assert_allclose(y.numpy(), expected, atol=1e-3)  # 12-bit ADC, 4 decimals on the wire
    np.testing.assert_allclose(applied(record), x.numpy(), atol=1e-6)


def test_config_and_board_mismatch_fail_with_what_to_fix(firmware):
    port, _ = firmware()
    with pytest.raises(ConfigError, match="blackbox.port: give the serial port"):
        board("")
    with pytest.raises(DeviceError, match="the board has 4 DAC and 3 ADC channels; the config says n_dac 5"):
        board(port, n_dac=5).connect()
    with pytest.raises(DeviceError, match="exceed the board's"):
        board(port, dac_max_v=5.0).connect()
    with pytest.raises(DeviceError, match="cannot open serial port /nonexistent.*check the cable"):
        board("/nonexistent/tty").connect()



@pytest.mark.parametrize("options, match", [
    ({"baudrate": 0}, r"blackbox.baudrate: must be >= 1 and <= 2e\+07, got 0"),  # regression: 0 was accepted
    ({"baudrate": -9600}, r"blackbox.baudrate: must be >= 1"),
    ({"baudrate": 10**12}, r"blackbox.baudrate: must be >= 1 and <= 2e\+07"),
    ({"baudrate": 115200.5}, r"blackbox.baudrate: expected an integer"),
    ({"n_dac": 0}, r"blackbox.n_dac: must be >= 1 and <= 4096, got 0"),
    ({"n_adc": 10**9}, r"blackbox.n_adc: must be >= 1 and <= 4096"),
    ({"dac_min_v": float("nan")}, r"blackbox.dac_min_v: expected a finite number, got nan"),
    ({"dac_max_v": float("inf")}, r"blackbox.dac_max_v: expected a finite number, got inf"),
    ({"dac_min_v": float("-inf")}, r"blackbox.dac_min_v: expected a finite number, got -inf"),
    ({"dac_min_v": 3.0, "dac_max_v": 1.0}, r"blackbox.dac_max_v: must be > dac_min_v \(3\), got 1"),
    ({"dac_min_v": -3e38, "dac_max_v": 3e38}, r"blackbox.dac_max_v: dac_max_v - dac_min_v = 6e\+38 overflows"),
    ({"timeout_s": 0.0}, r"blackbox.timeout_s: must be > 0 and <= 3600, got 0.0"),
    ({"timeout_s": float("nan")}, r"blackbox.timeout_s: expected a finite number, got nan"),
    ({"settle_s": float("inf")}, r"blackbox.settle_s: expected a finite number, got inf"),
    ({"backoff_s": -0.01}, r"blackbox.backoff_s: must be >= 0 and <= 60, got -0.01"),
    ({"retries": 101}, r"blackbox.retries: must be >= 0 and <= 100, got 101"),
    ({"retries": 30, "backoff_s": 1.0}, r"blackbox.retries: with retries 30, the waits .* add up to 1.074e\+09 s"),
])
def test_a_bad_serial_config_is_a_config_error_naming_the_key(options, match):
    with pytest.raises(ConfigError, match=match):
        parse_blackbox({"type": "serial_board", "port": "/dev/ttyACM0", **options})


def test_a_bad_serial_config_in_a_config_file_fails_hil_validate(tmp_path, capsys):
    from hil.cli import main

    data = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "serial_board.yaml").read_text())
    data["blackbox"]["baudrate"] = 0
    cfg = tmp_path / "board.yaml"
    cfg.write_text(yaml.safe_dump(data))
    assert main(["validate", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "blackbox.baudrate: must be >= 1" in err and "Traceback" not in err

def test_declared_limits_hold_when_the_optimiser_pushes_past_them(firmware, tmp_path):
    from hil.run import execute, load_run_config

    port, record = firmware()
    cfg = load_run_config({
        "blackbox": {"type": "serial_board", "port": port, "dac_min_v": 0.5, "dac_max_v": 2.5},
        "objective": {"type": "target_distance", "target": [3.3, 0.0, 3.3]},  # out of reach: drives to limits
        "estimator": {"type": "spsa"},
        "optimizer": {"type": "gradient", "n_starts": 4, "iterations": 15, "lr": 0.5, "local_samples": 1,
                      "sigma": 0.5, "seed": 0},
        "log": {"dir": str(tmp_path)}})
    execute(cfg, log_path=tmp_path / "limits.h5")
    volts = applied(record)
    assert len(volts) == len(read_log(tmp_path / "limits.h5"))
    assert volts.min() >= 0.5 - 1e-9 and volts.max() <= 2.5 + 1e-9
    assert (np.isclose(volts, 0.5) | np.isclose(volts, 2.5)).mean() > 0.2  # it did push against them
    with board(port, dac_min_v=0.5, dac_max_v=2.5, out_of_bounds="reject") as box:
        n = len(applied(record))
        with pytest.raises(Exception, match="out of bounds"):
            box.query(torch.tensor([[2.0, 2.0, 2.0, 3.0]]))
        assert len(applied(record)) == n  # nothing was sent


def test_faults_are_retried_and_every_answered_row_is_logged_once(firmware, tmp_path):
    port, record = firmware("--drop-every", "7", "--garble-every", "5", "--busy-every", "11",
                            "--disconnect-at", "30", "--down-s", "0.2")
    x = torch.rand(60, 4, generator=torch.Generator().manual_seed(1)) * 3.3
    box = board(port, timeout_s=0.05)
    with QueryLog.create(tmp_path / "faults.h5", input_dim=4, output_shape=(3,), run_id="faults") as log, box:
        box.attach_log(log)
        y1 = box.query(x[:30])
        y2 = box.query(x[30:])
    f = box.faults
    assert f.reconnects == 1 and f.garbled > 0 and f.busy > 0 and f.timeouts > 0
    data = read_log(tmp_path / "faults.h5")
    assert len(data) == 60  # each row once, although the device saw several rows more than once
    np.testing.assert_array_equal(data.x, x.numpy())
    np.testing.assert_array_equal(data.y, torch.cat([y1, y2]).numpy())
    assert len(applied(record)) > 60


def test_a_device_that_dies_mid_batch_gives_a_clear_error_and_loses_no_answer(firmware, tmp_path):
    port, _ = firmware("--die-at", "21")
    x = torch.rand(50, 4, generator=torch.Generator().manual_seed(2)) * 3.3
    box = board(port, timeout_s=0.05, retries=2, reconnect_timeout_s=0.3)
    with QueryLog.create(tmp_path / "dead.h5", input_dim=4, output_shape=(3,), run_id="dead") as log, box:
        box.attach_log(log)
        with pytest.raises(PartialAnswerError, match=rf"serial board at {port}: no valid answer to row 20.*check"):
            box.query(x, purpose="step", iteration=0)
    data = read_log(tmp_path / "dead.h5")
    assert len(data) == 20  # the 20 rows answered before the device died
    np.testing.assert_array_equal(data.x, x[:20].numpy())
