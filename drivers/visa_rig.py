"""VISA rig: an AWG or multichannel DAC writes the input vector, a scope or DMM reads the response, over SCPI.

``type: visa_rig``; needs ``pip install 'hil[visa]'``. A query row is: set the
inputs (``set_command``), read the outputs (``measure_query``), optionally
check the instrument's error queue (``SYST:ERR?``). Commands are templates:
with ``{values}`` they carry the whole vector (``SOUR:VOLT:LIST {values}``,
one write), with ``{channel}`` they are sent once per channel
(``SOUR{channel}:VOLT {value}``); a ``measure_query`` with ``{channel}`` is
asked once per output. ``visa_library``: ``@py`` (pyvisa-py: real TCP, USB,
serial), ``hil-sim`` (pyvisa-sim with the YAML shipped in
``hil/drivers/visa_sim/hil_rig.yaml``) or any ``path.yaml@sim`` / VISA library.

TCP socket sessions get ``TCP_NODELAY`` (without it each query costs ~44 ms:
Nagle's algorithm holding the small write for the delayed ACK). Limits, retries,
reconnects and partial answers work as in :mod:`.serial_board`: ``v_min``/``v_max``
are the BlackBox bounds (checked against ``SOUR:VOLT:LIM?`` on connect when the
instrument answers it); timeouts and garbled replies are retried with
backoff; a lost connection is reopened; an error in the queue is the
instrument refusing, reported at once.
"""

from __future__ import annotations

from importlib import resources

import torch
from hil.drivers.rig import Retryable, RowRig
from hil.drivers.visa_rig_config import MAX_CHANNELS, VisaRigConfig  # noqa: F401

from hil.blackbox import BlackBoxSpec
from hil.errors import DeviceError
from hil.registry import BLACKBOXES


def shipped_sim_yaml() -> str:
    return str(resources.files("hil.drivers") / "visa_sim" / "hil_rig.yaml")


@BLACKBOXES.register("visa_rig")
class VisaRig(RowRig):
    """``batch x n_inputs`` volts -> ``batch x n_outputs`` volts read back by the instrument."""

    Config = VisaRigConfig

    def __init__(self, config: Config) -> None:
        c = self.config = config
        s = c.static_spec()
        super().__init__(BlackBoxSpec(name=f"visa_rig({c.resource})", input_dim=s.input_dim,
                                      lower=torch.full((s.input_dim,), float(c.v_min)),
                                      upper=torch.full((s.input_dim,), float(c.v_max)),
                                      output_shape=s.output_shape, stochastic=True, out_of_bounds=c.out_of_bounds))
        self.inst = None
        self.rm = None
        self.identity = ""
        self.nodelay = False

    what_to_check = "the network or cable, that the instrument is on, and its termination settings"
    # a fresh session after a timeout or garbled reply, not inst.clear(): a late reply must not answer the
    # next row, and pyvisa-py's clear() spins forever on a socket the instrument has closed
    reopen_after_retryable = True

    @property
    def address(self) -> str:
        return f"VISA rig at {self.config.resource}"

    @property
    def is_open(self) -> bool:
        return self.inst is not None

    @classmethod
    def from_config(cls, config: Config) -> VisaRig:
        return cls(config)

    # -- connection ------------------------------------------------------------------------------------------
    def _library(self) -> str:
        lib = self.config.visa_library
        return f"{shipped_sim_yaml()}@sim" if lib == "hil-sim" else lib

    def _open(self) -> None:
        try:
            import pyvisa
        except ImportError as exc:
            raise DeviceError("the VISA rig needs pyvisa: pip install 'hil[visa]'") from exc
        c = self.config
        if self.rm is None:
            self.rm = pyvisa.ResourceManager(self._library())
        self.inst = self.rm.open_resource(c.resource, read_termination="\n", write_termination="\n",
                                          timeout=int(c.timeout_s * 1000))
        if c.resource.upper().endswith("::SOCKET"):
            self.nodelay = self._disable_nagle(pyvisa)

    def _disable_nagle(self, pyvisa: object) -> bool:
        """TCP_NODELAY on a socket session: the VISA attribute, else pyvisa-py's socket (pyvisa 1.16 rejects
        VI_ATTR_TCPIP_NODELAY on SOCKET resources as unknown; measured here: 42 ms a query without it)."""
        import socket

        try:
            self.inst.set_visa_attribute(pyvisa.constants.ResourceAttribute.tcpip_nodelay, True)
            return True
        except Exception:
            pass
        try:
            sock = self.rm.visalib.sessions[self.inst.session].interface
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        except Exception:  # pyvisa-sim and other libraries have no socket to tune
            return False

    def _connect(self) -> None:
        c = self.config
        try:
            self._open()
        except DeviceError:
            raise
        except Exception as exc:
            raise DeviceError(f"cannot open VISA resource {c.resource} with {self._library()!r}: {exc}; check "
                              f"the address, that the instrument is on and reachable, and the VISA library") from exc
        try:
            self.identity = self.inst.query("*IDN?").strip()
            if not self.identity.startswith(c.identify_prefix):
                raise DeviceError(f"{c.resource}: *IDN? answered {self.identity!r}, expected {c.identify_prefix}...")
            self._check_limits()
        except DeviceError:
            self._close()
            raise
        except Exception as exc:
            self._close()
            raise DeviceError(f"{c.resource}: no answer to *IDN? ({exc}); check the address, that the instrument "
                              f"is on and reachable, and its termination (\\n)") from exc

    def _check_limits(self) -> None:
        c = self.config
        try:
            lo, hi = (float(t) for t in self.inst.query("SOUR:VOLT:LIM?").split(","))
        except Exception:  # the instrument does not report limits: the declared ones stand alone
            self._drain_errors()
            return
        if c.v_min < lo or c.v_max > hi:
            raise DeviceError(f"{c.resource}: declared limits [{c.v_min}, {c.v_max}] V exceed the instrument's "
                              f"[{lo}, {hi}] V; narrow v_min / v_max")

    def _drain_errors(self) -> None:
        if not self.config.check_errors:
            return
        for _ in range(20):
            if self.inst.query("SYST:ERR?").strip().lstrip("+").startswith("0"):
                return

    def _close(self) -> None:
        if self.inst is not None:
            try:
                self.inst.close()
            except Exception:
                pass
            self.inst = None

    # -- one row -----------------------------------------------------------------------------------------------
    def _row(self, volts: list[float]) -> list[float]:
        import pyvisa

        c, inst = self.config, self.inst
        try:
            if "{values}" in c.set_command:
                inst.write(c.set_command.format(values=",".join(f"{v:.6f}" for v in volts)))
            else:
                for ch, v in enumerate(volts, start=1):
                    inst.write(c.set_command.format(channel=ch, value=f"{v:.6f}"))
            if c.check_errors:
                err = inst.query("SYST:ERR?").strip()
                if not err.lstrip("+").startswith("0"):
                    raise DeviceError(f"{c.resource} refused the inputs {volts}: {err}")
            if "{channel}" in c.measure_query:
                replies = [inst.query(c.measure_query.format(channel=ch)) for ch in range(1, c.n_outputs + 1)]
            else:
                replies = inst.query(c.measure_query).split(",")
        except pyvisa.errors.VisaIOError as exc:
            if exc.error_code == pyvisa.constants.StatusCode.error_timeout:
                self.faults.timeouts += 1
                raise Retryable(f"timeout after {c.timeout_s} s") from exc
            raise
        try:
            values = [float(r) for r in replies]
            if len(values) != c.n_outputs:
                raise ValueError(replies)
        except ValueError as exc:
            self.faults.garbled += 1
            raise Retryable(f"garbled reply {','.join(replies)[:60]!r}") from exc
        return values
