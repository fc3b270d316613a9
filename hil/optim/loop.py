"""The one driver loop: ask, query through the validated and logged path, tell, record, stop.

Per round ``t``: the optimiser's ``ask(t, queries left)`` gives a batch in the unit cube; each contiguous
run of one purpose is queried as one batch through the box (a :class:`~hil.space.UnitCubeView`, so the
device receives physical values and the log records them); the objective is evaluated on the measured
output and ``tell`` gets both. The loop stops at ``iterations`` rounds, at ``max_queries`` (an optimiser
never gets an ask past it: it is told how many queries are left and the loop checks what it spent), at
``max_wall_s``, when the optimiser has nothing more to ask, or when the mean best over starts improved by
less than ``tol`` over ``patience`` rounds.

With a :class:`~hil.optim.checkpoint.Checkpointer`, the loop saves its state and the optimiser's (when the
optimiser supports ``checkpoint()``) after a round, at most every ``every_s`` seconds; ``restored`` (a state
saved so) continues a run from there.

The :class:`Trace` holds, per round: every start's best so far, this round's best per start, the best
over everything measured, the cumulative queries (probes included) and times.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from hil.errors import OptimizerError
from hil.objectives import Objective
from hil.optim.base import Ask, Optimizer
from hil.optim.configs import LoopConfig  # noqa: F401  (re-exported)
from hil.space import UnitCubeView

if TYPE_CHECKING:
    from hil.optim.checkpoint import Checkpointer


@dataclass
class Trace:
    """Per-round record of a run. Arrays are ``rounds x n_starts`` unless noted."""

    sense: str
    n_starts: int = 1
    objective: list[np.ndarray] = field(default_factory=list)  # this round's best measured value, per start
    best: list[np.ndarray] = field(default_factory=list)  # best measured so far, per start
    best_overall: list[float] = field(default_factory=list)  # best over every row measured so far (rounds)
    queries: list[int] = field(default_factory=list)  # cumulative BlackBox queries (all starts, all purposes)
    wall_s: list[float] = field(default_factory=list)  # cumulative wall time of the loop
    busy_s: list[float] = field(default_factory=list)  # cumulative time inside the BlackBox
    stopped: str = ""
    x_best: torch.Tensor | None = None  # n_starts x d_in, physical values
    #: with ``run_loop(..., recommendations=True)``: per round, what each start would return now (``n_starts x
    #: d_in``, physical): the optimiser's ``recommend()`` (an iterate, a search distribution's mean), else its best
    #: measured point. A stochastic problem is scored there, by its expectation (the benchmarks' ``score:``)
    recommended: list[np.ndarray] = field(default_factory=list)
    y_best: torch.Tensor | None = None  # n_starts x *output_shape

    @property
    def iterations(self) -> int:
        return len(self.objective)

    def best_array(self) -> np.ndarray:
        return np.stack(self.best) if self.best else np.empty((0, 0))


class _Recorder:
    """Keeps the running bests and appends one Trace row per counted round."""

    def __init__(self, trace: Trace, d: int) -> None:
        self.trace = trace
        self.minimise = trace.sense == "min"
        p = trace.n_starts
        self.best = np.full(p, np.nan)
        self.overall = math.nan
        self.x_best = torch.zeros(p, d)
        self.y_best: torch.Tensor | None = None

    def _better(self, new: np.ndarray, old: np.ndarray) -> np.ndarray:
        ok = np.isfinite(new)
        return ok & (np.isnan(old) | ((new < old) if self.minimise else (new > old)))

    def update(self, x: torch.Tensor, y: torch.Tensor, value: np.ndarray, start: np.ndarray) -> np.ndarray:
        """Fold one ask's rows in; returns this round's best per start (NaN where a start had no row)."""
        p = self.trace.n_starts
        if self.y_best is None:
            self.y_best = torch.full((p, *y.shape[1:]), float("nan"))
        finite = np.isfinite(value)
        if finite.any():
            top = np.nanargmin(value) if self.minimise else np.nanargmax(value)
            if self._better(np.array([value[top]]), np.array([self.overall]))[0]:
                self.overall = float(value[top])
        round_best = np.full(p, np.nan)
        for s in range(p):
            rows = np.flatnonzero((start == s) & finite)
            if rows.size == 0:
                continue
            r = rows[np.argmin(value[rows]) if self.minimise else np.argmax(value[rows])]
            round_best[s] = value[r]
            if self._better(np.array([value[r]]), self.best[s:s + 1])[0]:
                self.best[s] = value[r]
                self.x_best[s] = x[r]
                self.y_best[s] = y[r].to(self.y_best.dtype)
        return round_best

    def record(self, round_best: np.ndarray, queries: int, wall_s: float, busy_s: float) -> None:
        tr = self.trace
        tr.objective.append(round_best)
        tr.best.append(self.best.copy())
        tr.best_overall.append(self.overall)
        tr.queries.append(queries)
        tr.wall_s.append(wall_s)
        tr.busy_s.append(busy_s)
        tr.x_best, tr.y_best = self.x_best.clone(), None if self.y_best is None else self.y_best.clone()


def measure(box: UnitCubeView, asked: Ask) -> torch.Tensor:
    """Query ``asked`` through ``box``, one batch per contiguous run of one purpose; ``n x *output_shape``."""
    parts = [box.query(asked.u[lo:hi], purpose=purpose, iteration=asked.iteration, start=asked.start[lo:hi])
             for lo, hi, purpose in asked.groups()]
    return torch.cat([p.to(torch.float32) for p in parts])


def _busy_s(box: UnitCubeView) -> float:
    inner = getattr(box, "inner", None)
    return float(inner.stats.busy_s) if inner is not None else 0.0


def run_loop(box: UnitCubeView, objective: Objective, optimizer: Optimizer, config: LoopConfig,
             progress: Callable[[int, Trace], None] | None = None, recommendations: bool = False,
             checkpoints: Checkpointer | None = None, restored: dict[str, Any] | None = None) -> Trace:
    """Drive ``optimizer`` on ``box`` (connected) until a budget or the optimiser stops; see the module doc.
    ``restored``: a state ``checkpoints`` saved, whose queries ``box`` has already counted as answered."""
    # a worker thread measures while the optimiser works in this one (training a surrogate: torch's intra-op
    # threads serve the thread that started them at full speed, a second Python thread at less than half)
    measurer = ThreadPoolExecutor(1, thread_name_prefix="hil-measure") \
        if getattr(optimizer, "overlaps_measurement", False) else None
    try:
        return _drive(box, objective, optimizer, config, progress, recommendations, measurer, checkpoints, restored)
    finally:
        if measurer is not None:
            measurer.shutdown(wait=True)
        _call_optional(optimizer, "close")  # an optimiser (or its estimator) with threads or files of its own


def _measure_while(optimizer: Optimizer, box: UnitCubeView, asked: Ask,
                   measurer: ThreadPoolExecutor | None) -> torch.Tensor:
    """Measure ``asked``, the optimiser's ``while_measuring`` work overlapping it on ``measurer`` (a worker thread
    measures) or done first. The measurement is always waited for, so a failure of the work loses no answer."""
    if measurer is None:
        _call_optional(optimizer, "while_measuring")
        return measure(box, asked)
    pending = measurer.submit(measure, box, asked)
    try:
        optimizer.while_measuring()
    finally:
        y = pending.result()
    return y


def _drive(box: UnitCubeView, objective: Objective, optimizer: Optimizer, config: LoopConfig,
           progress: Callable[[int, Trace], None] | None, recommendations: bool = False,
           measurer: ThreadPoolExecutor | None = None, checkpoints: Checkpointer | None = None,
           restored: dict[str, Any] | None = None) -> Trace:
    trace = Trace(sense=objective.sense, n_starts=int(optimizer.n_starts))
    rec = _Recorder(trace, box.spec.input_dim)
    q0, busy0, t0 = box.stats.queries, _busy_s(box), time.perf_counter()
    best_history: list[float] = []
    t = 0
    if restored is not None:
        optimizer.restore(restored["optimizer"])
        rec, t, best_history = restored["recorder"], restored["round"], restored["best_history"]
        trace = rec.trace
        q0 -= restored["queries"]  # the box counted them already (answered from the log)
        busy0, t0 = busy0 - restored["busy_s"], t0 - restored["wall_s"]
    while True:
        used = box.stats.queries - q0
        if t >= config.iterations:
            trace.stopped = "iterations done"
            break
        if config.max_wall_s is not None and time.perf_counter() - t0 >= config.max_wall_s:
            trace.stopped = f"wall-time budget {config.max_wall_s:g} s reached"
            break
        left = None if config.max_queries is None else config.max_queries - used
        asked = optimizer.ask(t, left) if left is None or left > 0 else None
        if asked is None:
            reason = getattr(optimizer, "stop_reason", "")
            trace.stopped = reason or (f"query budget {config.max_queries} reached" if left is not None
                                       else "the optimiser has nothing more to ask")
            break
        if left is not None and asked.queries > left:
            raise OptimizerError(f"{type(optimizer).__name__} asked for {asked.queries} queries with {left} left "
                                 f"of the budget of {config.max_queries}; nothing was sent")
        asked.iteration = t if asked.counted else -1
        y = _measure_while(optimizer, box, asked, measurer)
        value = objective(y).detach()
        optimizer.tell(asked, y, value)
        spent = box.stats.queries - q0
        if config.max_queries is not None and spent > config.max_queries:
            raise OptimizerError(f"{type(optimizer).__name__} spent {spent} queries, past the budget of "
                                 f"{config.max_queries} (its probes exceed the {asked.extra_queries} it declared)")
        x_phys = box.space.to_physical(asked.u)
        round_best = rec.update(x_phys, y, value.to(torch.float64).cpu().numpy(), asked.start.numpy())
        if not asked.counted:
            continue
        rec.record(round_best, spent, time.perf_counter() - t0, _busy_s(box) - busy0)
        if recommendations:
            recommend = getattr(optimizer, "recommend", None)
            point = box.space.to_physical(recommend()) if callable(recommend) else rec.x_best
            trace.recommended.append(point.detach().to(torch.float64).cpu().numpy())
        if progress is not None:
            progress(t, trace)
        t += 1
        best_history.append(float(np.nanmean(trace.best[-1])) if np.isfinite(trace.best[-1]).any() else math.nan)
        if checkpoints is not None and checkpoints.due():
            _save_checkpoint(checkpoints, optimizer, rec, t, best_history, spent, time.perf_counter() - t0,
                             _busy_s(box) - busy0)
        if _converged(best_history, config, trace.sense):
            trace.stopped = f"converged: improvement < tol over {config.patience} iterations"
            break
    return trace


def _save_checkpoint(checkpoints: Checkpointer, optimizer: Optimizer, rec: _Recorder, t: int,
                     best_history: list[float], spent: int, wall_s: float, busy_s: float) -> None:
    """Save the loop's state after ``spent`` queries, if the optimiser can hand over its own."""
    method = getattr(optimizer, "checkpoint", None)
    state = method() if callable(method) else None
    if state is None:
        return
    checkpoints.save({"optimizer": state, "recorder": rec, "round": t, "best_history": list(best_history),
                      "queries": spent, "wall_s": wall_s, "busy_s": busy_s}, rows=spent)


def _call_optional(optimizer: Optimizer, hook: str) -> None:
    """Optional hooks (:class:`~hil.optim.base.Optimizer` has them; a plug-in may not subclass it)."""
    method = getattr(optimizer, hook, None)
    if callable(method):
        method()


def _converged(history: list[float], config: LoopConfig, sense: str) -> bool:
    if config.tol <= 0 or len(history) <= config.patience:
        return False
    now, then = history[-1], history[-1 - config.patience]
    gain = then - now if sense == "min" else now - then
    return bool(gain < config.tol)
