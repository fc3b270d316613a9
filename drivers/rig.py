"""What every row-by-row instrument rig shares: bounded retries, reconnects, partial answers, fault counts.

A subclass of :class:`RowRig` opens and closes its transport (``_open``,
``_close``), answers one row (``_row``), and names itself (``address``,
``what_to_check``). It raises :class:`Retryable` for a late, garbled or busy
reply, :class:`hil.errors.DeviceError` when the instrument refuses (reported at
once), and lets transport errors through (the rig reopens the port). The
shared ``_query`` retries with exponential backoff, and when a row still fails
it raises :class:`hil.errors.PartialAnswerError` with the rows already
answered, so the BlackBox base class logs them: nothing answered is lost, and
every row is logged once, when answered.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Annotated, Literal

import numpy as np
import torch

from hil.blackbox import BlackBox
from hil.config import NonNegativeFloat, Range, check
from hil.errors import DeviceError, PartialAnswerError

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


class Retryable(Exception):
    """A reply that was late, garbled or 'busy': ask again."""


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


@dataclass
class RigFaults:
    retries: int = 0
    timeouts: int = 0
    garbled: int = 0
    busy: int = 0
    reconnects: int = 0  # after a transport error
    reopened: int = 0  # fresh sessions after a retryable reply (rigs that want them)


class RowRig(BlackBox):
    """Base of the serial, VISA and SLM + camera rigs: ``config`` is a :class:`RigOptions`; the spec's bounds
    are the declared limits."""

    #: what to tell the user to check when a row cannot be answered
    what_to_check = "the cable and power, and that the device is on"
    #: open a fresh session after a retryable reply (a late reply must not answer the next row)
    reopen_after_retryable = False
    #: sleep ``config.settle_s`` after each row (rigs that settle between set and read do it in ``_row``)
    settle_after_row = True

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.faults = RigFaults()

    @property
    def address(self) -> str:
        raise NotImplementedError

    #: the longest settle time a calibration may set (s)
    max_settle_s = MAX_SETTLE_S

    def get_settle_s(self) -> float:
        return self.config.settle_s

    def set_settle_s(self, settle_s: float) -> None:
        """The wait after setting a row before reading it (the settle calibration chooses it)."""
        if not (0 <= settle_s <= self.max_settle_s):
            raise DeviceError(f"{self.address}: settle time {settle_s:.6g} s is outside [0, {self.max_settle_s:g}] s")
        self.config = replace(self.config, settle_s=float(settle_s))

    @property
    def is_open(self) -> bool:
        raise NotImplementedError

    def _open(self) -> None:
        raise NotImplementedError

    def _row(self, values: list[float]) -> list[float]:
        raise NotImplementedError

    def _reconnect(self) -> None:
        self._close()
        deadline = time.monotonic() + self.config.reconnect_timeout_s
        while True:
            try:
                self._open()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def _partial(self, message: str, rows: list[list[float]]) -> PartialAnswerError:
        answered = _stack(rows, self.spec.output_shape)
        return PartialAnswerError(f"{message}; the {len(rows)} rows answered are logged", answered)

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        c, spec = self.config, self.spec
        if bool((x < spec.lower).any() or (x > spec.upper).any()):  # never reached: validate() clips or rejects
            raise DeviceError(f"{self.address}: refusing to drive outputs outside the declared limits")
        rows: list[list[float]] = []
        for i, values in enumerate(x.tolist()):
            last = ""
            for attempt in range(c.retries + 1):
                try:
                    if not self.is_open:
                        self._reconnect()
                    rows.append(self._row(values))
                    break
                except Retryable as exc:
                    last = str(exc)
                    if self.reopen_after_retryable:
                        self._close()
                        self.faults.reopened += 1
                except DeviceError as exc:  # the instrument refused: asking again will not help
                    raise self._partial(str(exc), rows) from exc
                except Exception as exc:  # the port or connection went away: reopen it
                    last = f"transport error: {exc}"
                    self.faults.reconnects += 1
                    try:
                        self._reconnect()
                    except Exception as exc2:
                        last = f"transport error, and reopening failed for {c.reconnect_timeout_s} s: {exc2}"
                if attempt < c.retries:
                    self.faults.retries += 1
                    time.sleep(c.backoff_s * 2**attempt)
            else:
                raise self._partial(f"{self.address}: no valid answer to row {i} after {c.retries + 1} attempts "
                                    f"({last}); check {self.what_to_check}", rows)
            if self.settle_after_row and c.settle_s > 0:
                time.sleep(c.settle_s)
        return _stack(rows, spec.output_shape)


def _stack(rows: list, output_shape: tuple[int, ...]) -> torch.Tensor:
    """Answered rows (lists or arrays) as a ``len(rows) x *output_shape`` float32 tensor."""
    return torch.from_numpy(np.asarray(rows, dtype=np.float32).reshape(len(rows), *output_shape))
