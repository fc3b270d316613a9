"""VISA rig: protocol and state on pyvisa-sim, the full loop over pyvisa-py's TCP socket to a loopback SCPI server."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from hil.errors import ConfigError, DeviceError, PartialAnswerError
from hil.querylog import QueryLog, read_log
from hil.sections import parse_blackbox

pytest.importorskip("pyvisa", reason="the VISA rig needs pyvisa: pip install 'hil[visa]'")
pytest.importorskip("pyvisa_py", reason="the VISA rig's TCP path needs pyvisa-py: pip install 'hil[visa]'")

from hil.drivers.scpi_loopback import LoopbackInstrument  # noqa: E402


def rig(resource: str, **options):
    return parse_blackbox({"type": "visa_rig", "resource": resource, **options}).build()


SIM = {"visa_library": "hil-sim", "set_command": "SOUR{channel}:VOLT {value}", "measure_query": "MEAS{channel}:VOLT?",
       "check_errors": True}


def test_simulated_rig_identifies_sets_state_and_reads_back():
    pytest.importorskip("pyvisa_sim", reason="the simulated rig needs pyvisa-sim: pip install 'hil[visa]'")
    box = rig("TCPIP::hil-rig::5025::SOCKET", identify_prefix="HIL,SIM", **SIM)
    with box:
        assert box.identity == "HIL,SIM-AWG-SCOPE,0003,1.0"
        y = box.query(torch.tensor([[0.5, 1.0, 1.5, 2.0]]))
        assert y.tolist() == [[0.5, 1.5, 2.5]]  # the simulated scope's fixed readings
        assert [float(box.inst.query(f"SOUR{ch}:VOLT?")) for ch in (1, 2, 3, 4)] == [0.5, 1.0, 1.5, 2.0]


def test_simulated_rig_error_replies_become_clear_errors():
    pytest.importorskip("pyvisa_sim", reason="the simulated rig needs pyvisa-sim: pip install 'hil[visa]'")
    # declared limits wider than the instrument's (5 V > 3.3 V): the limit query catches it on connect...
    with pytest.raises(DeviceError, match=r"declared limits \[0.0, 5.0\] V exceed the instrument's \[0.0, 3.3\] V"):
        rig("TCPIP::hil-rig::5025::SOCKET", v_max=5.0, **SIM).connect()
    # ...and a refused command is reported from the error queue, not retried
    box = rig("TCPIP::hil-rig::5025::SOCKET", **{**SIM, "set_command": "SOUR{channel}:VOLTAGE {value}"})
    with box, pytest.raises(PartialAnswerError, match=r"refused the inputs .* -113,\"Undefined header\""):
        box.query(torch.tensor([[0.5, 1.0, 1.5, 2.0]]))
    with pytest.raises(DeviceError, match=r"127.0.0.1::1::SOCKET: no answer to \*IDN\?.*refused.*check the address"):
        rig("TCPIP::127.0.0.1::1::SOCKET", timeout_s=0.2).connect()  # nothing listens on port 1
    with pytest.raises(ConfigError, match="blackbox.resource: give the VISA resource"):
        rig("")



@pytest.mark.parametrize("options, match", [
    ({"v_min": float("nan")}, r"blackbox.v_min: expected a finite number, got nan"),
    ({"v_max": float("inf")}, r"blackbox.v_max: expected a finite number, got inf"),
    ({"v_min": 2.0, "v_max": 1.0}, r"blackbox.v_max: must be > v_min \(2\), got 1"),
    ({"v_min": 1.0, "v_max": 1.00000001}, r"blackbox.v_max: must differ from v_min \(1\) in float32"),
    ({"v_max": 1e39}, r"blackbox.v_max: must be >= -3.40282e\+38 and <= 3.40282e\+38"),
    ({"n_inputs": 0}, r"blackbox.n_inputs: must be >= 1 and <= 4096, got 0"),
    ({"n_outputs": -1}, r"blackbox.n_outputs: must be >= 1"),
    ({"timeout_s": float("inf")}, r"blackbox.timeout_s: expected a finite number, got inf"),
    ({"timeout_s": 0.0}, r"blackbox.timeout_s: must be >= 0.001"),  # VISA timeouts are whole ms: 0 ms never waits
    ({"timeout_s": 1e-4}, r"blackbox.timeout_s: must be >= 0.001"),
    ({"settle_s": float("nan")}, r"blackbox.settle_s: expected a finite number, got nan"),
    ({"reconnect_timeout_s": -1.0}, r"blackbox.reconnect_timeout_s: must be >= 0, got -1.0"),
    ({"retries": 3.5}, r"blackbox.retries: expected an integer, got 3.5"),
    ({"set_command": "SOUR:VOLT"}, r"blackbox.set_command: must contain \{values\} or \{channel\}"),
    ({"set_command": "SOUR{channel}:VOLT"}, r"blackbox.set_command: sends the value nowhere"),
    # templates that only failed (KeyError, ValueError) when the first row was sent
    ({"set_command": "SOUR:VOLT:LIST {values} {unit}"}, r"blackbox.set_command: cannot fill .* \(KeyError: 'unit'\)"),
    ({"set_command": "SOUR{channel}:VOLT {value"}, r"blackbox.set_command: cannot fill .*ValueError"),
    ({"measure_query": "MEAS{channel}:VOLT? {range}"}, r"blackbox.measure_query: cannot fill .*KeyError: 'range'"),
    ({"nope": 1}, r"blackbox.nope: unknown key; allowed keys: "),
])
def test_a_bad_visa_config_is_a_config_error_naming_the_key(options, match):
    with pytest.raises(ConfigError, match=match):
        parse_blackbox({"type": "visa_rig", "resource": "TCPIP::192.0.2.10::5025::SOCKET", **options})


def test_per_channel_templates_with_format_specs_are_accepted():
    box = rig("TCPIP::192.0.2.10::5025::SOCKET", set_command="SOUR{channel}:VOLT {value:>10}",
              measure_query="MEAS{channel:d}:VOLT?")
    assert box.config.set_command == "SOUR{channel}:VOLT {value:>10}"

def test_loopback_over_tcp_with_nagle_off_answers_the_physical_response():
    from hil.drivers.fake_firmware import Board, physical_response

    with LoopbackInstrument(noise_v=0.0) as inst:
        box = rig(inst.resource)
        x = torch.rand(30, 4, generator=torch.Generator().manual_seed(0)) * 3.3
        with box:
            assert box.nodelay, "TCP_NODELAY must be on for socket sessions"
            y = box.query(x)
            t = time.perf_counter()
            for _ in range(20):
                box.query(x[:1])
            per_query_s = (time.perf_counter() - t) / 20
    ref = Board(4, 3, 0.0, 3.3, seed=0, noise_v=0.0)
    expected = np.stack([physical_response(v, ref.w, ref.b) for v in x.double().numpy()])
    np.testing.assert_allclose(y.numpy(), expected, atol=1e-3)
    np.testing.assert_allclose(np.array(inst.applied[:30]), x.numpy(), atol=1e-6)
    assert per_query_s < 0.02  # with Nagle on, each query waits ~40 ms for the delayed ACK


def test_faults_over_tcp_are_retried_and_every_answered_row_is_logged_once(tmp_path):
    with LoopbackInstrument(drop_every=7, garble_every=5, disconnect_every=13) as inst:
        box = rig(inst.resource, timeout_s=0.1)
        x = torch.rand(40, 4, generator=torch.Generator().manual_seed(1)) * 3.3
        with QueryLog.create(tmp_path / "visa.h5", input_dim=4, output_shape=(3,), run_id="faults") as log, box:
            box.attach_log(log)
            y = box.query(x)
    assert box.faults.timeouts > 0 and box.faults.garbled > 0 and box.faults.reopened > 0
    data = read_log(tmp_path / "visa.h5")
    assert len(data) == 40
    np.testing.assert_array_equal(data.x, x.numpy())
    np.testing.assert_array_equal(data.y, y.numpy())
    assert len(inst.applied) > 40  # the instrument saw retried rows more than once; the log did not


def test_training_loop_runs_over_the_socket_and_limits_hold(tmp_path):
    from hil.run import execute, load_run_config

    with LoopbackInstrument() as inst:
        cfg = load_run_config({
            "blackbox": {"type": "visa_rig", "resource": inst.resource, "v_min": 0.4, "v_max": 2.9},
            "objective": {"type": "target_distance", "target": [3.3, 0.0, 3.3]},
            "estimator": {"type": "surrogate", "loss": "gradpie", "k": 3, "hidden": [32, 32], "epochs": 2},
            "optimizer": {"type": "gradient", "n_starts": 4, "iterations": 12, "lr": 0.3, "local_samples": 1,
                          "sigma": 0.3, "seed": 0},
            "log": {"dir": str(tmp_path)}})
        result = execute(cfg, log_path=tmp_path / "loop.h5")
    applied = np.array(inst.applied)
    assert len(read_log(tmp_path / "loop.h5")) == result.queries == len(applied)
    assert applied.min() >= 0.4 - 1e-9 and applied.max() <= 2.9 + 1e-9
    assert (np.isclose(applied, 0.4) | np.isclose(applied, 2.9)).any()


def test_an_instrument_that_goes_away_gives_a_clear_error_and_loses_no_answer(tmp_path):
    inst = LoopbackInstrument().start()
    box = rig(inst.resource, timeout_s=0.1, retries=1, reconnect_timeout_s=0.2)
    x = torch.rand(10, 4, generator=torch.Generator().manual_seed(2)) * 3.3
    with QueryLog.create(tmp_path / "gone.h5", input_dim=4, output_shape=(3,), run_id="gone") as log, box:
        box.attach_log(log)
        box.query(x[:5])
        inst.stop()
        with pytest.raises(PartialAnswerError, match=rf"VISA rig at {inst.resource}: no valid answer to row 0"):
            box.query(x[5:])
    assert len(read_log(tmp_path / "gone.h5")) == 5
