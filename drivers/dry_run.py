"""Dry runs of a bench config: each rig's simulated counterpart, started and stopped by hil itself.

``hil run CONFIG --dry-run`` (and ``hil calibrate ... --dry-run``, ``hil pnn ... --dry-run``) hands each rig
section to its entry in :data:`hil.registry.SIMULATORS`: a context manager that starts the simulated device,
yields the section rewritten to reach it, and stops it on the way out (also on an error or Ctrl-C), so the very
file that drives the bench runs on a laptop and in CI with nothing started by hand:

- ``serial_board``: the fake firmware (:mod:`.fake_firmware`) in a child process on a pty, with the rig's DAC
  and ADC counts; ``port`` points at the pty's link in a temporary folder.
- ``visa_rig``: the loopback SCPI instrument (:mod:`.scpi_loopback`) on a free port of 127.0.0.1, with the rig's
  input and output counts; ``resource`` points at it through pyvisa-py, and the set/measure templates are the
  loopback's (a bench's instrument-specific SCPI is not what the loopback speaks).
- ``slm_camera_rig``: slmsuite's ``SimulatedSLM`` with the rig's declared ``slm_shape`` (and the SLM's
  ``pitch_um`` when the config gives one) and a ``SimulatedCamera`` looking at it; real waits are skipped
  (``sleep_scale: 0``).

Everything else in the section (declared limits, blocks, ROI, exposure, retries) stays as written, so the dry
run checks what the bench run will do.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from hil.errors import DeviceError
from hil.registry import SIMULATORS

READY_TIMEOUT_S = 30.0


@SIMULATORS.register("serial_board")
@contextlib.contextmanager
def fake_board(section: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The fake firmware on a pty for a ``serial_board`` section; yields the section with ``port`` on it."""
    folder = tempfile.mkdtemp(prefix="hil-dry-run-")
    link = os.path.join(folder, "board")
    cmd = [sys.executable, "-m", "hil.drivers.fake_firmware", "--link", link,
           "--n-dac", str(section.get("n_dac", 4)), "--n-adc", str(section.get("n_adc", 3))]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_ready(proc, "the fake firmware")
        yield {**section, "port": link}
    finally:
        _stop(proc)
        shutil.rmtree(folder, ignore_errors=True)


def _wait_ready(proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else ""
            raise DeviceError(f"dry run: {what} exited with code {proc.returncode} before it was ready: {err.strip()}")
        ready, _, _ = select.select([proc.stdout], [], [], 0.1)
        if ready and proc.stdout.readline().startswith("READY"):
            return
    raise DeviceError(f"dry run: {what} was not ready after {READY_TIMEOUT_S:g} s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


@SIMULATORS.register("visa_rig")
@contextlib.contextmanager
def loopback_instrument(section: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The loopback SCPI instrument for a ``visa_rig`` section; yields the section with ``resource`` on it."""
    from hil.drivers.scpi_loopback import LoopbackInstrument

    instrument = LoopbackInstrument(port=0, n_in=int(section.get("n_inputs", 4)),
                                    n_out=int(section.get("n_outputs", 3)))
    with instrument:
        yield {**section, "resource": instrument.resource, "visa_library": "@py",
               "set_command": "SOUR:VOLT:LIST {values}", "measure_query": "MEAS:VOLT:LIST?", "identify_prefix": ""}


@SIMULATORS.register("slm_camera_rig")
@contextlib.contextmanager
def simulated_slm_camera(section: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """slmsuite's simulated SLM (the rig's ``slm_shape``) and camera for an ``slm_camera_rig`` section."""
    rows, cols = section.get("slm_shape", [64, 64])
    slm = section.get("slm") if isinstance(section.get("slm"), dict) else {}
    pitch = (slm.get("kwargs") or {}).get("pitch_um", [8, 8])
    yield {**section,
           "slm": {"class": "slmsuite.hardware.slms.simulated.SimulatedSLM", "args": [[cols, rows]],
                   "kwargs": {"pitch_um": pitch}},
           "camera": {"class": "slmsuite.hardware.cameras.simulated.SimulatedCamera", "args": ["$slm"]},
           "sleep_scale": 0.0}
