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

import numpy as np
import torch
from hil.drivers.rig_config import (  # noqa: F401  (re-exported: the config side of the rig base)
    F32_MAX,
    MAX_BACKOFF_TOTAL_S,
    MAX_SETTLE_S,
    Float32,
    RigOptions,
    check_bounds,
)

from hil.blackbox import BlackBox
from hil.errors import DeviceError, PartialAnswerError


class Retryable(Exception):
    """A reply that was late, garbled or 'busy': ask again."""


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
