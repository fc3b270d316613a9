"""Serial rig: a microcontroller board (DAC outputs -> a physical system -> ADC inputs) over pyserial.

``type: serial_board``; needs ``pip install 'hil[serial]'``. One query row is
one round trip of the line protocol (ASCII, ``\\n``-terminated, 115200 baud):

=================  =======================================  ==========================================
command            reply                                    meaning
=================  =======================================  ==========================================
``*IDN?``          ``HIL,<model>,<serial>,<firmware>``      identification (must start with ``HIL,``)
``CFG?``           ``DAC n vmin vmax;ADC m vmin vmax``      channel counts and the board's own ranges
``Q v1,...,vn``    ``A a1,...,am``                          set the DACs (volts), settle, read the ADCs
any                ``ERR <code> <text>``                    1 unknown command, 2 bad values,
                                                            3 out of range, 4 busy (retry)
=================  =======================================  ==========================================

Limits: ``dac_min_v``/``dac_max_v`` are declared in the config, must lie inside
the board's ``CFG?`` range, and are the BlackBox bounds, so the base class
clips or rejects anything outside before this driver sees it; the driver
checks again before writing. Faults: a timeout, a garbled or partial reply or
``ERR 4`` is retried (``retries`` times, exponential backoff from
``backoff_s``; setting the same voltages again is harmless); a port that
errors out (unplugged) is reopened by name until ``reconnect_timeout_s``.
When a row still fails, the rows already answered are handed to the log
(:class:`hil.errors.PartialAnswerError`) and the error names the port and
what to check. Every row is logged once, by the BlackBox base class, when it
has been answered.
"""

from __future__ import annotations

import torch
from hil.drivers.rig import Retryable, RowRig
from hil.drivers.serial_board_config import MAX_BAUDRATE, MAX_CHANNELS, SerialBoardConfig  # noqa: F401

from hil.blackbox import BlackBoxSpec
from hil.errors import DeviceError
from hil.registry import BLACKBOXES


@BLACKBOXES.register("serial_board")
class SerialBoard(RowRig):
    """``batch x n_dac`` DAC voltages -> ``batch x n_adc`` ADC voltages of the board's physical system."""

    Config = SerialBoardConfig

    def __init__(self, config: Config) -> None:
        c = self.config = config
        s = c.static_spec()
        super().__init__(BlackBoxSpec(name=f"serial_board({c.port})", input_dim=s.input_dim,
                                      lower=torch.full((s.input_dim,), float(c.dac_min_v)),
                                      upper=torch.full((s.input_dim,), float(c.dac_max_v)),
                                      output_shape=s.output_shape, stochastic=True, out_of_bounds=c.out_of_bounds))
        self.serial = None
        self.identity = ""
        self.what_to_check = (f"the cable and power, that the firmware runs, and the baud rate ({c.baudrate})")

    @property
    def address(self) -> str:
        return f"serial board at {self.config.port}"

    @property
    def is_open(self) -> bool:
        return self.serial is not None

    @classmethod
    def from_config(cls, config: Config) -> SerialBoard:
        return cls(config)

    # -- connection -------------------------------------------------------------------------------------------
    def _open(self) -> None:
        try:
            import serial
        except ImportError as exc:
            raise DeviceError("the serial rig needs pyserial: pip install 'hil[serial]'") from exc
        self.serial = serial.Serial(self.config.port, self.config.baudrate, timeout=self.config.timeout_s,
                                    write_timeout=self.config.timeout_s)

    def _connect(self) -> None:
        c = self.config
        try:
            self._open()
        except (OSError, ValueError) as exc:
            raise DeviceError(f"cannot open serial port {c.port}: {exc}; check the cable, the port name "
                              f"(ls /dev/serial/by-id/) and your permissions (dialout group)") from exc
        try:
            self.identity = self._ask("*IDN?")
            if not self.identity.startswith("HIL,"):
                raise DeviceError(f"{c.port}: *IDN? answered {self.identity!r}; is this a hil board?")
            cfg = self._ask("CFG?")
            self._check_cfg(cfg)
        except BaseException:
            self._close()
            raise

    def _check_cfg(self, cfg: str) -> None:
        c = self.config
        try:
            dac, adc = cfg.split(";")
            _, n_dac, vmin, vmax = dac.split()
            n_adc = int(adc.split()[1])
        except ValueError as exc:
            raise DeviceError(f"{c.port}: unreadable CFG? reply {cfg!r}") from exc
        if int(n_dac) != c.n_dac or n_adc != c.n_adc:
            raise DeviceError(f"{c.port}: the board has {n_dac} DAC and {n_adc} ADC channels; the config says "
                              f"n_dac {c.n_dac}, n_adc {c.n_adc}")
        if c.dac_min_v < float(vmin) or c.dac_max_v > float(vmax):
            raise DeviceError(f"{c.port}: declared DAC limits [{c.dac_min_v}, {c.dac_max_v}] V exceed the "
                              f"board's [{vmin}, {vmax}] V; narrow dac_min_v / dac_max_v")

    def _close(self) -> None:
        if self.serial is not None:
            try:
                self.serial.close()
            except OSError:
                pass
            self.serial = None

    # -- one round trip ----------------------------------------------------------------------------------------
    def _ask(self, command: str) -> str:
        import serial

        s = self.serial
        try:
            s.reset_input_buffer()  # drop the rest of an earlier garbled reply
            s.write((command + "\n").encode())
            raw = s.readline()
        except serial.SerialTimeoutException as exc:
            self.faults.timeouts += 1
            raise Retryable(f"write timed out: {exc}") from exc
        if not raw.endswith(b"\n"):
            self.faults.timeouts += 1
            raise Retryable(f"no complete reply within {self.config.timeout_s} s (got {raw[:40]!r})")
        return raw.decode(errors="replace").strip()

    def _measure(self, volts: list[float]) -> list[float]:
        c = self.config
        reply = self._ask("Q " + ",".join(f"{v:.6f}" for v in volts))
        if reply.startswith("ERR 4"):
            self.faults.busy += 1
            raise Retryable(reply)
        if reply.startswith("ERR"):
            raise DeviceError(f"{c.port} refused Q: {reply}")
        try:
            if not reply.startswith("A "):
                raise ValueError(reply)
            values = [float(t) for t in reply[2:].split(",")]
            if len(values) != c.n_adc:
                raise ValueError(reply)
        except ValueError as exc:
            self.faults.garbled += 1
            raise Retryable(f"garbled reply {reply[:60]!r}") from exc
        return values

    def _row(self, values: list[float]) -> list[float]:
        return self._measure(values)
