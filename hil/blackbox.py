"""The BlackBox interface: every device, rig and simulated twin is one.

A BlackBox is a batched, non-differentiable map ``y = F(x)``. Its public
:meth:`BlackBox.query` takes a ``batch x d_in`` float tensor and returns a
``batch x *output_shape`` tensor. It checks dtype, shape, finiteness and the
declared bounds *before* the implementation's private :meth:`BlackBox._query`
sees anything, applies the declared out-of-bounds policy (``reject`` or
``clip``), times the call and appends it to the attached query log.
Implementations write only ``_query`` (and, if they talk to something,
``_connect`` / ``_close``); constructors do no I/O.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import torch

from hil.errors import DeviceError, InputError, NotConnectedError, PartialAnswerError
from hil.purposes import PURPOSES

OutOfBounds = Literal["reject", "clip"]
Scale = Literal["linear", "log"]



@dataclass(frozen=True)
class BlackBoxSpec:
    """What a BlackBox declares about itself.

    ``lower`` / ``upper`` are ``d_in`` tensors of inclusive input bounds (a scalar broadcasts).
    ``scale`` (``"linear"`` or ``"log"``) and ``integer`` declare, per input (a single value broadcasts),
    how an optimiser's unit-cube coordinate maps to the physical value (:mod:`hil.space`): ``log`` is
    log-uniform between positive bounds, ``integer`` gives each whole number in the bounds an equal share
    of the unit interval. The device always receives physical values.
    """

    name: str
    input_dim: int
    lower: torch.Tensor
    upper: torch.Tensor
    output_shape: tuple[int, ...]
    stochastic: bool = False
    out_of_bounds: OutOfBounds = "reject"
    output_dtype: torch.dtype = torch.float32
    scale: Scale | tuple[Scale, ...] = "linear"
    integer: bool | tuple[bool, ...] = False

    def __post_init__(self) -> None:
        lower = torch.as_tensor(self.lower, dtype=torch.float32).reshape(-1)
        upper = torch.as_tensor(self.upper, dtype=torch.float32).reshape(-1)
        if lower.numel() == 1:
            lower = lower.expand(self.input_dim).clone()
        if upper.numel() == 1:
            upper = upper.expand(self.input_dim).clone()
        if lower.numel() != self.input_dim or upper.numel() != self.input_dim:
            raise ValueError(f"{self.name}: bounds must have {self.input_dim} entries")
        if not bool((lower < upper).all()):
            raise ValueError(f"{self.name}: every lower bound must be below its upper bound")
        if self.out_of_bounds not in ("reject", "clip"):
            raise ValueError(f"{self.name}: out_of_bounds must be 'reject' or 'clip', got {self.out_of_bounds!r}")
        scale = (self.scale,) * self.input_dim if isinstance(self.scale, str) else tuple(self.scale)
        integer = (bool(self.integer),) * self.input_dim if isinstance(self.integer, bool) else tuple(self.integer)
        if len(scale) != self.input_dim or len(integer) != self.input_dim:
            raise ValueError(f"{self.name}: scale and integer must have one entry per input ({self.input_dim})")
        for i, (sc, whole) in enumerate(zip(scale, integer, strict=True)):
            if sc not in ("linear", "log"):
                raise ValueError(f"{self.name}: input {i}: scale must be 'linear' or 'log', got {sc!r}")
            if sc == "log" and float(lower[i]) <= 0:
                raise ValueError(f"{self.name}: input {i} is on a log scale, so its lower bound must be > 0, "
                                 f"got {float(lower[i]):.6g}")
            if whole and (sc == "log" or float(lower[i]) != round(float(lower[i]))
                          or float(upper[i]) != round(float(upper[i]))):
                raise ValueError(f"{self.name}: integer input {i} needs a linear scale and whole-number bounds")
        object.__setattr__(self, "lower", lower)
        object.__setattr__(self, "upper", upper)
        object.__setattr__(self, "output_shape", tuple(int(s) for s in self.output_shape))
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "integer", tuple(bool(w) for w in integer))

    @property
    def output_dim(self) -> int:
        return int(np.prod(self.output_shape)) if self.output_shape else 1


@runtime_checkable
class QueryLogLike(Protocol):
    """What a BlackBox needs from a log (see :class:`hil.querylog.QueryLog`)."""

    def append(
        self,
        x: np.ndarray,
        y: np.ndarray,
        t_start: float,
        t_end: float,
        iteration: int,
        purpose: str,
        start: np.ndarray | None = None,
    ) -> None: ...


@runtime_checkable
class SupportsQuery(Protocol):
    """What callers need from a BlackBox."""

    spec: BlackBoxSpec

    def query(self, x: torch.Tensor, *, purpose: str = "step", iteration: int = -1) -> torch.Tensor: ...


@runtime_checkable
class Differentiable(Protocol):
    """A twin whose forward map can be differentiated (the exact-gradient reference)."""

    def forward_differentiable(self, x: torch.Tensor) -> torch.Tensor:
        """``batch x d_in`` -> ``batch x *output_shape``, differentiable, no validation, not logged."""
        ...


@dataclass
class QueryStats:
    """Counters kept by every BlackBox: rows answered, batches, seconds spent inside ``_query``."""

    queries: int = 0
    batches: int = 0
    busy_s: float = 0.0
    clipped_rows: int = 0
    by_purpose: dict[str, int] = field(default_factory=dict)


class BlackBox:
    """Base class: validation, out-of-bounds policy, timing, logging around ``_query``."""

    spec: BlackBoxSpec

    def __init__(self, spec: BlackBoxSpec) -> None:
        self.spec = spec
        self.stats = QueryStats()
        self._log: QueryLogLike | None = None
        self._connected = False

    # -- lifecycle -----------------------------------------------------------------
    def connect(self) -> BlackBox:
        if not self._connected:
            self._connect()
            self._connected = True
        return self

    def close(self) -> None:
        if self._connected:
            self._connected = False
            self._close()

    def __enter__(self) -> BlackBox:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        return self._connected

    def attach_log(self, log: QueryLogLike | None) -> None:
        """Append every answered query to ``log`` (``None`` detaches)."""
        self._log = log

    # -- the public, validated path ------------------------------------------------
    def validate(self, x: Any) -> torch.Tensor:
        """Return ``x`` as a contiguous float32 ``batch x d_in`` tensor, or raise :class:`InputError`."""
        name, d = self.spec.name, self.spec.input_dim
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(x)
        if not isinstance(x, torch.Tensor):
            raise InputError(f"{name}: query expects a torch.Tensor of shape (batch, {d}), got {type(x).__name__}")
        if not x.dtype.is_floating_point:
            raise InputError(
                f"{name}: query expects a floating-point tensor, got dtype {x.dtype}; convert with x.float()"
            )
        if x.ndim != 2 or x.shape[1] != d:
            hint = " (queries are always batched: use x[None] for one point)" if x.ndim == 1 else ""
            raise InputError(f"{name}: query expects shape (batch, {d}), got {tuple(x.shape)}{hint}")
        if x.shape[0] == 0:
            raise InputError(f"{name}: query got an empty batch")
        # checked in the caller's precision, so a float64 beyond float32's range is reported (or clipped) as the
        # value it is, not as the inf a cast would make of it
        x = x.detach().to(device="cpu")
        if x.dtype not in (torch.float32, torch.float64):
            x = x.to(torch.float32)
        finite = torch.isfinite(x)
        if not bool(finite.all()):
            bad = (~finite).nonzero()[0].tolist()
            n_nan = int(torch.isnan(x).sum())
            n_inf = int(torch.isinf(x).sum())
            raise InputError(
                f"{name}: query input has {n_nan} NaN and {n_inf} inf entries "
                f"(first at row {bad[0]}, column {bad[1]}); nothing was sent"
            )
        lower, upper = self.spec.lower.to(x.dtype), self.spec.upper.to(x.dtype)
        below = x < lower
        above = x > upper
        out = below | above
        if bool(out.any()):
            if self.spec.out_of_bounds == "clip":
                self.stats.clipped_rows += int(out.any(dim=1).sum())
                x = torch.maximum(torch.minimum(x, upper), lower)
            else:
                r, c = out.nonzero()[0].tolist()
                raise InputError(
                    f"{name}: query input out of bounds at row {r}, column {c}: {float(x[r, c]):.6g} not in "
                    f"[{float(self.spec.lower[c]):.6g}, {float(self.spec.upper[c]):.6g}] "
                    f"({int(out.sum())} entries out of bounds); nothing was sent. Clip the input or "
                    f"declare out_of_bounds: clip"
                )
        x = x.to(torch.float32).contiguous()
        # a value inside float32's range near a bound can round across it: the device never sees that
        x = torch.maximum(torch.minimum(x, self.spec.upper), self.spec.lower)
        return x

    def query(
        self,
        x: torch.Tensor,
        *,
        purpose: str = "step",
        iteration: int = -1,
        start: torch.Tensor | np.ndarray | Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Evaluate the BlackBox on a ``batch x d_in`` tensor; returns ``batch x *output_shape``.

        ``purpose`` (one of :data:`PURPOSES`), ``iteration`` and ``start`` (the
        starting-point index of each row, ``batch`` ints) go to the query log.
        """
        if not self._connected:
            raise NotConnectedError(f"{self.spec.name}: call connect() (or use 'with') before query()")
        x = self.validate(x)
        start = self.validate_metadata(x.shape[0], purpose, iteration, start)
        t_start = time.time()
        try:
            y = self._query(x)
        except PartialAnswerError as exc:  # keep what was answered, then fail
            answered = torch.as_tensor(exc.answered)
            if answered.shape[0] > 0:
                self._record(x[: answered.shape[0]], answered, t_start, time.time(), purpose, iteration,
                             None if start is None else start[: answered.shape[0]])
            raise
        return self._record(x, y, t_start, time.time(), purpose, iteration, start)

    def validate_metadata(self, batch: int, purpose: Any, iteration: Any, start: Any) -> np.ndarray | None:
        """Check what goes to the log beside a batch of ``batch`` rows, *before* the device sees the batch:
        ``purpose`` one of :data:`PURPOSES`, ``iteration`` an integer >= -1, ``start`` ``None`` or ``batch``
        integers >= -1. Returns ``start`` as an int32 array (or ``None``); raises :class:`InputError`."""
        name = self.spec.name
        if purpose not in PURPOSES:
            raise InputError(f"{name}: purpose must be one of {', '.join(PURPOSES)}, got {purpose!r}; nothing was "
                             f"sent")
        if isinstance(iteration, bool) or not isinstance(iteration, (int, np.integer)) or iteration < -1:
            raise InputError(f"{name}: iteration must be an integer >= -1 (-1: none), got {iteration!r}; nothing "
                             f"was sent")
        if start is None:
            return None
        if isinstance(start, torch.Tensor):
            start = start.detach().cpu().numpy()
        arr = np.asarray(start)
        if arr.dtype.kind not in "iu" and not (arr.dtype.kind == "f" and np.all(np.isfinite(arr))
                                              and np.all(arr == np.round(arr))):
            raise InputError(f"{name}: start must hold one integer per row (the starting point of each), got "
                             f"{start!r}; nothing was sent")
        arr = arr.reshape(-1)
        if arr.size != batch:
            raise InputError(f"{name}: start must give one starting point per row: {batch} rows, got {arr.size} "
                             f"entries; nothing was sent")
        if arr.size and (int(arr.min()) < -1 or int(arr.max()) > np.iinfo(np.int32).max):
            raise InputError(f"{name}: start entries must be integers >= -1 (-1: none), got {arr.tolist()}; "
                             f"nothing was sent")
        return arr.astype(np.int32)

    def _record(self, x: torch.Tensor, y: Any, t_start: float, t_end: float, purpose: str, iteration: int,
                start: Any) -> torch.Tensor:
        """Check an answer's shape, count it and append it to the log."""
        y = torch.as_tensor(y)
        expected = (x.shape[0], *self.spec.output_shape)
        if tuple(y.shape) != expected:
            raise DeviceError(f"{self.spec.name}: answered with shape {tuple(y.shape)}, expected {expected}")
        y = y.detach()
        n = x.shape[0]
        st = self.stats
        st.queries += n
        st.batches += 1
        st.busy_s += t_end - t_start
        st.by_purpose[purpose] = st.by_purpose.get(purpose, 0) + n
        if self._log is not None:
            starts = None if start is None else np.asarray(start, dtype=np.int32).reshape(n)
            self._log.append(x.numpy(), y.numpy(), t_start, t_end, iteration, purpose, starts)
        return y

    # -- what implementations write ------------------------------------------------
    def _query(self, x: torch.Tensor) -> torch.Tensor:
        """``batch x d_in`` float32, validated and in bounds -> ``batch x *output_shape``."""
        raise NotImplementedError

    def _connect(self) -> None:
        """Open the device / start the simulator. Default: nothing to open."""

    def _close(self) -> None:
        """Release what ``_connect`` opened."""


class BlackBoxWrapper(BlackBox):
    """A BlackBox around a BlackBox (imperfections, latency). The inner box is never logged twice."""

    def __init__(self, inner: BlackBox, spec: BlackBoxSpec | None = None) -> None:
        super().__init__(spec or inner.spec)
        self.inner = inner

    def _connect(self) -> None:
        self.inner.connect()

    def _close(self) -> None:
        self.inner.close()

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner._query(x)

    def forward_differentiable(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(self.inner, Differentiable):
            raise AttributeError(f"{self.inner.spec.name} has no differentiable forward model")
        return self.inner.forward_differentiable(x)


def find_attribute(blackbox: BlackBox, name: str, default: Any = None) -> Any:
    """``blackbox.name``, looked up through wrappers down to the innermost BlackBox (e.g. ``slm_shape``)."""
    box: Any = blackbox
    while box is not None:
        if name in vars(box) or hasattr(type(box), name):
            return getattr(box, name)
        box = getattr(box, "inner", None)
    return default


class Delayed(BlackBoxWrapper):
    """Adds fixed latency: ``delay_s_per_query`` per queried row plus ``delay_s_per_batch`` per call. Turns a
    fast twin into a slow bench (e.g. 20 ms per query)."""

    def __init__(self, inner: BlackBox, delay_s_per_query: float, delay_s_per_batch: float = 0.0) -> None:
        super().__init__(inner)
        if delay_s_per_query < 0 or delay_s_per_batch < 0:
            raise ValueError("delays must be >= 0")
        self.delay_s_per_query = delay_s_per_query
        self.delay_s_per_batch = delay_s_per_batch

    def delay_s(self, batch: int) -> float:
        return self.delay_s_per_batch + batch * self.delay_s_per_query

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        t_end = time.perf_counter() + self.delay_s(x.shape[0])
        y = self.inner._query(x)
        remaining = t_end - time.perf_counter()
        if remaining > 0:
            time.sleep(remaining)
        return y
