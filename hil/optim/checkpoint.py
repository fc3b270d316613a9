"""Checkpoints of a run's state beside its query log, so that a resume does not recompute it.

Resume by replay (:mod:`hil.optim.replay`) rebuilds an optimiser by asking it everything again, the log
answering. That costs no device query, but it repeats the optimiser's own work: for BoTorch's GP + log-EI (a
GP fit and an acquisition optimisation each round, seconds of CPU a round) hours of it. An optimiser that can
hand over its state (``checkpoint()`` returns a picklable dict, ``restore(state)`` takes it back) lets the
loop save the run's whole state (the optimiser's, the trace, the round) every ``log.checkpoint_every_s``
seconds, as ``<log>.ckpt`` beside ``<log>.h5``. A resume restores the newest checkpoint that belongs to the
log and replays only the rows logged after it; without a usable checkpoint it replays the whole log, as
before, with the same result.

Crash safety: a checkpoint is written to ``<log>.ckpt.tmp`` and renamed over ``<log>.ckpt`` (atomic on one
file system), so a kill leaves the previous checkpoint or the new one, whole. It names the rows of the log it
has consumed and the first of them and the last, so a checkpoint of another run (a stale file at the same
path) or of rows the log does not hold is refused, not trusted. A run that finishes deletes its checkpoint.

A checkpoint is a pickle (``torch.save``): resume only from files your own runs wrote.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

#: identifies hil's checkpoint files; the version changes when their content does
FORMAT = "hil.checkpoint"
VERSION = 1


def checkpoint_path(log_path: str | Path) -> Path:
    """Where the checkpoint of the run logged at ``log_path`` goes: ``run.h5`` -> ``run.ckpt``."""
    return Path(log_path).with_suffix(".ckpt")


class Checkpointer:
    """Saves run states to ``path`` at most every ``every_s`` seconds (``0``: after every round).

    ``identity``: what makes a checkpoint this log's (the log's first run id); ``log``: the open
    :class:`~hil.querylog.QueryLog` (its rows fingerprint what a checkpoint consumed)."""

    def __init__(self, path: str | Path, every_s: float, identity: str, log: Any) -> None:
        self.path = Path(path)
        self.every_s = float(every_s)
        self.identity = identity
        self.log = log
        self._last = time.monotonic()

    def due(self) -> bool:
        return time.monotonic() - self._last >= self.every_s

    def save(self, state: dict[str, Any], rows: int) -> None:
        """Write ``state`` (the loop's and the optimiser's) as consuming the log's first ``rows`` rows."""
        if rows < 1 or rows > self.log.n_rows:
            return  # nothing consumed yet, or rows the log does not hold (cannot happen through the logged path)
        blob = {"format": FORMAT, "version": VERSION, "identity": self.identity, "rows": int(rows),
                "x_first": self.log.row_x(0), "x_last": self.log.row_x(rows - 1), "state": state}
        tmp = self.path.with_name(self.path.name + ".tmp")
        torch.save(blob, tmp)
        os.replace(tmp, self.path)
        self._last = time.monotonic()

    def discard(self) -> None:
        """Delete the checkpoint (the run finished: its log is complete)."""
        for p in (self.path, self.path.with_name(self.path.name + ".tmp")):
            p.unlink(missing_ok=True)


def load_checkpoint(path: str | Path, identity: str, log_x: np.ndarray) -> tuple[dict[str, Any] | None, str]:
    """The state saved at ``path`` and ``""``, or ``None`` and why it cannot be used with the log whose first
    run id is ``identity`` and whose committed inputs are ``log_x`` (``rows x d``)."""
    path = Path(path)
    if not path.exists():
        return None, f"no checkpoint at {path}"
    try:
        blob = torch.load(path, weights_only=False)
    except Exception as exc:  # noqa: BLE001 (any unreadable file means: replay the whole log)
        return None, f"{path} is unreadable ({type(exc).__name__}: {exc})"
    if not isinstance(blob, dict) or blob.get("format") != FORMAT or blob.get("version") != VERSION:
        return None, f"{path} is not a version-{VERSION} hil checkpoint"
    if blob.get("identity") != identity:
        return None, f"{path} belongs to another run (not to this log)"
    rows = int(blob["rows"])
    if rows < 1 or rows > log_x.shape[0]:
        return None, f"{path} consumed {rows} rows of the log, which holds {log_x.shape[0]}"
    for name, row in (("x_first", 0), ("x_last", rows - 1)):
        saved = blob.get(name)
        if saved is None or not np.allclose(np.asarray(saved), log_x[row], rtol=1e-6, atol=0.0):
            return None, f"{path} does not match the log's row {row}"
    return blob["state"], ""
