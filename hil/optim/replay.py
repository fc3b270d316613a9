"""Resume by replay: a killed run's log answers the same optimiser's queries again, through ``tell``.

An optimiser is deterministic given its config and seed, so re-running it from the start asks, query by
query, for exactly what it asked before the kill. :class:`ReplayBox` sits in front of the real box and
answers those queries from the log (nothing reaches the device, nothing is logged twice), checking
that each one is the logged one (same purpose, iteration, starting points and inputs); once the log is
used up, queries go to the device and into the log as usual. The resumed run therefore rebuilds
everything the log does not hold (a surrogate's training, Adam's moments, CMA-ES's covariance, the random
streams) exactly as it was, at the cost of recomputing it, without a single repeated device query.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from hil.blackbox import BlackBox, BlackBoxWrapper
from hil.errors import LogError
from hil.querylog import LogData

#: inputs of a replayed query may differ from the logged ones by this fraction of each input's range
#: (float rounding under another thread count); anything more is a different run
REPLAY_TOLERANCE = 1e-4


class ReplayBox(BlackBoxWrapper):
    """Answers queries from ``log`` while it lasts, then from ``inner`` (whose log records them)."""

    def __init__(self, inner: BlackBox, log: LogData, path: str | Path = "the log") -> None:
        super().__init__(inner)
        self.path = str(path)
        self._x = torch.from_numpy(np.asarray(log.x, dtype=np.float32))
        self._y = torch.from_numpy(np.asarray(log.y))
        self._purpose = log.purpose_labels()
        self._iteration = np.asarray(log.iteration, dtype=np.int64)
        self._start = np.asarray(log.start, dtype=np.int64)
        self.pos = 0
        self.replayed = 0
        self._connected = True

    @property
    def remaining(self) -> int:
        return self._x.shape[0] - self.pos

    def skip(self, rows: int) -> None:
        """Count the log's next ``rows`` rows as answered without asking for them again (a checkpoint restored
        the state they built, :mod:`hil.optim.checkpoint`)."""
        if not 0 <= rows <= self.remaining:
            raise LogError(f"resume: cannot skip {rows} rows of {self.path}, {self.remaining} remain")
        labels, counts = np.unique(self._purpose[self.pos:self.pos + rows], return_counts=True)
        for label, count in zip(labels, counts, strict=True):
            self.stats.by_purpose[str(label)] = self.stats.by_purpose.get(str(label), 0) + int(count)
        self.pos += rows
        self.replayed += rows
        self.stats.queries += rows

    def query(self, x: torch.Tensor, *, purpose: str = "step", iteration: int = -1,
              start: torch.Tensor | np.ndarray | Sequence[int] | None = None) -> torch.Tensor:
        if self.remaining == 0:
            return self._live(x, purpose, iteration, start)
        x = self.inner.validate(x)
        n = x.shape[0]
        k = min(n, self.remaining)
        starts = None if start is None else np.asarray(start, dtype=np.int64).reshape(n)
        self._check(x[:k], purpose, iteration, None if starts is None else starts[:k])
        y = self._y[self.pos: self.pos + k]
        self.pos += k
        self.replayed += k
        self.stats.queries += k
        self.stats.batches += 1
        self.stats.by_purpose[purpose] = self.stats.by_purpose.get(purpose, 0) + k
        if k == n:
            return y
        rest = self._live(x[k:], purpose, iteration, None if starts is None else starts[k:])
        return torch.cat([y.to(rest.dtype), rest])

    def _live(self, x: torch.Tensor, purpose: str, iteration: int, start) -> torch.Tensor:
        busy = self.inner.stats.busy_s
        y = self.inner.query(x, purpose=purpose, iteration=iteration, start=start)
        self.stats.queries += x.shape[0]
        self.stats.batches += 1
        self.stats.busy_s += self.inner.stats.busy_s - busy
        self.stats.by_purpose[purpose] = self.stats.by_purpose.get(purpose, 0) + x.shape[0]
        return y

    def _check(self, x: torch.Tensor, purpose: str, iteration: int, start: np.ndarray | None) -> None:
        rows = slice(self.pos, self.pos + x.shape[0])
        where = (f"resume: row {self.pos} of {self.path} (logged as {self._purpose[self.pos]} of iteration "
                 f"{self._iteration[self.pos]})")
        fix = ("A resume replays the log through the same optimiser, so it needs the config and seed the log "
               "was written with; to use these data with another config, start afresh with them as an offline "
               "dataset (optimizer: {type: offline, dataset: log, dataset_log: ...})")
        if not (self._purpose[rows] == purpose).all() or not (self._iteration[rows] == iteration).all():
            raise LogError(f"{where} is not what the optimiser asks for again ({purpose} of iteration "
                           f"{iteration}). {fix}")
        if start is not None and not (self._start[rows] == start).all():
            raise LogError(f"{where}: the optimiser asks again for other starting points. {fix}")
        span = self.spec.upper - self.spec.lower
        gap = ((x - self._x[rows]).abs() / span).max()
        if float(gap) > REPLAY_TOLERANCE:
            raise LogError(f"{where}: the optimiser asks again for other inputs (they differ by {float(gap):.3g} "
                           f"of an input's range). {fix}")
