"""The ``serial_board`` rig's config (:class:`hil.drivers.serial_board.SerialBoard`), importable without torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from hil.drivers.rig_config import Float32, RigOptions, check_bounds

from hil.config import Range, check
from hil.registry import BLACKBOXES
from hil.shapes import StaticSpec

#: the fastest serial line (baud): USB-serial bridges top out at 12 Mbaud
MAX_BAUDRATE = 20_000_000
#: the most DAC or ADC channels one board may declare
MAX_CHANNELS = 4096


@BLACKBOXES.declare("serial_board", "hil.drivers.serial_board:SerialBoard")
@dataclass
class SerialBoardConfig(RigOptions):
    port: str = ""
    baudrate: Annotated[int, Range(ge=1, le=MAX_BAUDRATE)] = 115200
    n_dac: Annotated[int, Range(ge=1, le=MAX_CHANNELS)] = 4
    n_adc: Annotated[int, Range(ge=1, le=MAX_CHANNELS)] = 3
    dac_min_v: Float32 = 0.0
    dac_max_v: Float32 = 3.3
    timeout_s: Annotated[float, Range(gt=0, le=3600)] = 0.2

    def __post_init__(self) -> None:
        super().__post_init__()
        check(bool(self.port), "port", "give the serial port, e.g. /dev/ttyACM0 or /dev/serial/by-id/...")
        check_bounds(self.dac_min_v, self.dac_max_v, "dac_min_v", "dac_max_v")

    def static_spec(self) -> StaticSpec:
        """``n_dac`` DAC voltages in, ``n_adc`` ADC voltages out."""
        return StaticSpec(self.n_dac, (self.n_adc,))
