"""``hil log watch LOG``: follow a query log that another process is writing and redraw its PNG report.

The writer holds HDF5's file lock; the watcher opens the file read-only without taking it
(:func:`hil.querylog.read_log`), reads the committed rows, scores them with the objective of the config the
log records, and redraws ``LOG.watch.png`` (every query's objective, and the best so far, against queries)
whenever rows were added. A read that catches the writer's flush half-way is retried at the next tick. It
stops when the writer records its run summary (the run finished), when the log stops growing for
``idle_s``, or on Ctrl-C.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hil.errors import HilError, LogError


@dataclass
class LogProgress:
    """What a log holds now: ``rows`` committed rows, each row's objective (``rows``), the best so far."""

    rows: int
    objective: np.ndarray
    best: np.ndarray
    sense: str
    finished: bool
    name: str


def log_progress(path: str | os.PathLike[str]) -> LogProgress:
    """Score a log's committed rows with its config's objective (raises :class:`LogError` if the log has no
    run config, e.g. a calibration's log)."""
    import torch

    from hil.config import parse_typed
    from hil.querylog import read_log
    from hil.registry import OBJECTIVES

    data = read_log(path)
    config = data.attrs.get("config") or {}
    if not isinstance(config, dict) or "objective" not in config:
        raise LogError(f"{path}: the log records no run config with an objective, so there is nothing to score")
    objective = parse_typed(OBJECTIVES, config["objective"], "objective").build(output_shape=tuple(data.y.shape[1:]))
    values = objective(torch.as_tensor(data.y)).double().numpy() if len(data) else np.zeros(0)
    sense = str(data.attrs.get("sense", getattr(objective, "sense", "min")))
    finite = np.where(np.isfinite(values), values, np.inf if sense == "min" else -np.inf)
    best = np.minimum.accumulate(finite) if sense == "min" else np.maximum.accumulate(finite)
    run_ids = list(data.attrs.get("run_ids") or [])
    summaries = data.attrs.get("run_summaries") or {}
    finished = bool(run_ids) and run_ids[-1] in summaries
    return LogProgress(len(data), values, best, sense, finished, str(config.get("name", Path(path).stem)))


def plot_progress(progress: LogProgress, out: str | os.PathLike[str]) -> Path:
    """Draw ``progress`` to ``out`` (PNG), written to a temporary file and renamed, so a viewer never sees half
    a picture."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    q = np.arange(1, progress.rows + 1)
    ok = np.isfinite(progress.objective)
    ax.plot(q[ok], progress.objective[ok], ".", color="0.6", markersize=2, label="each query")
    shown = np.isfinite(progress.best)
    ax.plot(q[shown], progress.best[shown], color="C0", linewidth=1.8, label="best so far")
    ax.set_xlabel("queries")
    ax.set_ylabel(f"objective ({'lower' if progress.sense == 'min' else 'higher'} is better)")
    state = "finished" if progress.finished else "running"
    best = f", best {progress.best[-1]:.4g}" if progress.rows and np.isfinite(progress.best[-1]) else ""
    ax.set_title(f"{progress.name}: {progress.rows} queries ({state}{best})")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, out)
    return out


def watch(path: str | os.PathLike[str], *, out: str | os.PathLike[str] | None = None, interval_s: float = 2.0,
          idle_s: float | None = None, once: bool = False, say: Callable[[str], None] = print) -> Path:
    """Follow ``path`` until its run finishes (or ``idle_s`` without new rows, or ``once``); returns the PNG."""
    if interval_s <= 0:
        raise HilError(f"--interval must be > 0 seconds, got {interval_s}")
    png = Path(out) if out is not None else Path(path).with_suffix(".watch.png")
    last_rows, last_change = -1, time.monotonic()
    from hil.querylog import log_status

    finished = False
    while True:
        try:
            # the whole log is read and scored only when rows were added (the commit column and attributes say)
            rows, finished = log_status(path)
            progress = None if rows == last_rows else log_progress(path)
        except LogError as exc:
            if once or (last_rows < 0 and "retry" not in str(exc)):
                raise
            progress = None  # caught the writer mid-flush: try again at the next tick
        if progress is not None and progress.rows != last_rows:
            plot_progress(progress, png)
            best = f"{progress.best[-1]:.5g}" if progress.rows and np.isfinite(progress.best[-1]) else "none"
            say(f"{progress.rows} queries, best {best} -> {png}")
            last_rows, last_change = progress.rows, time.monotonic()
        if finished and last_rows >= 0:
            say("the run has finished")
            return png
        if once:
            return png
        if idle_s is not None and time.monotonic() - last_change > idle_s:
            say(f"no new queries for {idle_s:g} s; stopping")
            return png
        time.sleep(interval_s)
