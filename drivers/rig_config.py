"""The config side of every row-by-row instrument rig (:mod:`.rig`), importable without torch: the keys every
rig shares (:class:`RigOptions`), float32-safe bounds, and the limits they are checked against."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np

from hil.config import NonNegativeFloat, Range, check

#: the longest settle time a config or a calibration may set (s)
MAX_SETTLE_S = 60.0
#: the longest the waits between a row's attempts may add up to (s); far beyond it, ``time.sleep`` overflows
MAX_BACKOFF_TOTAL_S = 86400.0
#: float32's largest finite value: a rig's bounds become the BlackBox's float32 bounds
F32_MAX = float(np.finfo(np.float32).max)
#: a finite number that stays finite as float32 (a voltage or phase that becomes a BlackBox bound)
Float32 = Annotated[float, Range(ge=-F32_MAX, le=F32_MAX)]


def check_bounds(lower: float, upper: float, lower_key: str, upper_key: str) -> None:
    """``lower < upper`` as the float32 BlackBox bounds they become, with a span that is finite in float32."""
    check(lower < upper, upper_key, f"must be > {lower_key} ({lower:g}), got {upper:g}")
    lo, hi = float(np.float32(lower)), float(np.float32(upper))
    check(lo < hi, upper_key, f"must differ from {lower_key} ({lower:g}) in float32 (the BlackBox bounds' "
                              f"precision), got {upper:g}")
    check(hi - lo <= F32_MAX, upper_key, f"{upper_key} - {lower_key} = {hi - lo:.4g} overflows float32 "
                                         f"(max {F32_MAX:.4g}); narrow the range")


@dataclass
class RigOptions:
    """Config keys every rig shares (a rig's ``Config`` derives from this and calls ``super().__post_init__()``)."""

    retries: Annotated[int, Range(ge=0, le=100)] = 3  # attempts per row after the first
    backoff_s: Annotated[float, Range(ge=0, le=60)] = 0.01  # first wait between attempts; doubles each time
    reconnect_timeout_s: NonNegativeFloat = 5.0  # how long to keep reopening a port that went away
    settle_s: Annotated[float, Range(ge=0, le=MAX_SETTLE_S)] = 0.0
    out_of_bounds: Literal["reject", "clip"] = "clip"

    def __post_init__(self) -> None:
        total = self.backoff_s * (2**self.retries - 1)
        check(total <= MAX_BACKOFF_TOTAL_S, "retries",
              f"with retries {self.retries}, the waits between a row's attempts (backoff_s doubling each time) "
              f"add up to {total:.4g} s; keep them under {MAX_BACKOFF_TOTAL_S:g} s (fewer retries or a shorter "
              f"backoff_s)")
