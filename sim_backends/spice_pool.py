"""A pool of NGspice processes (:mod:`.spice_worker`): one libngspice per process, a timeout per design.

:meth:`SimulatorPool.simulate` hands the designs of a batch to idle workers one
at a time and waits on their pipes. A worker that does not answer within
``timeout_s`` (hung) is killed; one whose pipe closes (crashed) is reaped.
Either way its design comes back invalid with the reason, a fresh worker
replaces it, and the batch goes on: nothing is lost, nothing raises.
"""

from __future__ import annotations

import json
import math
import os
import selectors
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from hil.errors import DeviceError


def _invalid_row() -> list[float]:
    """``[valid, gain_db, ugbw_hz, phase_margin_deg, fom]`` of a design the pool could not simulate."""
    return [0.0, math.nan, math.nan, math.nan, math.nan]


@dataclass(eq=False)
class _Worker:
    proc: subprocess.Popen
    job: int | None = None  # index in the batch being simulated
    deadline: float = math.inf
    buffer: bytes = b""


@dataclass
class PoolStats:
    designs: int = 0
    timeouts: int = 0
    crashes: int = 0
    replaced: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


class SimulatorPool:
    """``n_workers`` simulator processes sharing one netlist.

    ``netlist``: the deck (``.param`` lines for every name a design sets);
    ``analysis``: the command run per design (``ac dec 20 1 10g``); ``output``:
    the complex vector measured (``v(out)``); ``reload``: parse the deck again
    per design instead of ``alterparam`` + ``reset`` (only to measure the difference).
    """

    def __init__(self, netlist: str, analysis: str, output: str, *, n_workers: int = 2, timeout_s: float = 10.0,
                 startup_timeout_s: float = 60.0, reload: bool = False) -> None:
        if n_workers < 1:
            raise DeviceError(f"n_workers must be >= 1, got {n_workers}")
        self.setup = {"netlist": netlist, "analysis": analysis, "output": output, "reload": reload}
        self.n_workers, self.timeout_s, self.startup_timeout_s = n_workers, timeout_s, startup_timeout_s
        self.workers: list[_Worker] = []
        self.stats = PoolStats()

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> None:
        while len(self.workers) < self.n_workers:
            self.workers.append(self._spawn())

    def close(self) -> None:
        for w in self.workers:
            self._stop(w)
        self.workers = []

    def __enter__(self) -> SimulatorPool:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def pids(self) -> list[int]:
        return [w.proc.pid for w in self.workers]

    def _spawn(self) -> _Worker:
        # libngspice is built with OpenMP; libgomp's spinning waits make two simulator processes on two
        # cores 20-30x slower each (51 ms instead of 2 ms a design, measured here) unless waits are passive
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
        proc = subprocess.Popen([sys.executable, "-m", "hil.sim_backends.spice_worker"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        worker = _Worker(proc)
        try:
            self._send(worker, self.setup)
            reply = self._read_line(worker, time.monotonic() + self.startup_timeout_s)
        except DeviceError:
            self._stop(worker)
            raise
        if reply is None or not reply.get("ready"):
            self._stop(worker)
            why = "no answer" if reply is None else reply.get("error", "unknown error")
            raise DeviceError(f"the NGspice worker could not load the netlist: {why}")
        os.set_blocking(proc.stdout.fileno(), False)
        return worker

    def _stop(self, worker: _Worker) -> None:
        proc = worker.proc
        if proc.poll() is None:
            try:
                proc.stdin.write(b'{"quit": true}\n')
                proc.stdin.flush()
                proc.wait(timeout=1.0)
            except (OSError, subprocess.TimeoutExpired, ValueError):
                proc.kill()
                proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass

    def _replace(self, worker: _Worker) -> None:
        worker.proc.kill()
        self._stop(worker)
        self.workers[self.workers.index(worker)] = self._spawn()
        self.stats.replaced += 1

    # -- I/O -----------------------------------------------------------------------------------------------
    @staticmethod
    def _send(worker: _Worker, obj: dict) -> None:
        try:
            worker.proc.stdin.write((json.dumps(obj) + "\n").encode())
            worker.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise DeviceError(f"NGspice worker {worker.proc.pid} is gone: {exc}") from exc

    @staticmethod
    def _read_line(worker: _Worker, deadline: float) -> dict | None:
        """Blocking read of one reply (start-up only); ``None`` on timeout or EOF."""
        sel = selectors.DefaultSelector()
        sel.register(worker.proc.stdout, selectors.EVENT_READ)
        try:
            while b"\n" not in worker.buffer:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    return None
                chunk = os.read(worker.proc.stdout.fileno(), 65536)
                if not chunk:
                    return None
                worker.buffer += chunk
        finally:
            sel.close()
        line, worker.buffer = worker.buffer.split(b"\n", 1)
        return json.loads(line)

    # -- the batch -------------------------------------------------------------------------------------------
    def simulate(self, designs: list[dict[str, float]], *,
                 on_dispatch: Callable[[int, int], None] | None = None) -> tuple[list[list[float]], list[str]]:
        """Rows ``[valid, gain_db, ugbw_hz, phase_margin_deg, fom]`` and reasons, one per design, in order.

        ``on_dispatch(index, pid)`` is called after each design is handed to a worker (fault-injection tests).
        """
        if not self.workers:
            self.start()
        rows: list[list[float] | None] = [None] * len(designs)
        reasons = [""] * len(designs)
        pending = list(range(len(designs)))[::-1]

        def finish(i: int, row: list[float], reason: str) -> None:
            rows[i], reasons[i] = row, reason
            if reason:
                key = reason.split(":")[0]
                self.stats.reasons[key] = self.stats.reasons.get(key, 0) + 1

        def dispatch(w: _Worker) -> None:
            while pending and w.job is None:
                i = pending.pop()
                try:
                    self._send(w, {"id": i, "params": designs[i]})
                except DeviceError:
                    pending.append(i)
                    self.stats.crashes += 1
                    self._replace(w)
                    return
                w.job, w.deadline = i, time.monotonic() + self.timeout_s
                if on_dispatch is not None:
                    on_dispatch(i, w.proc.pid)

        for w in list(self.workers):
            dispatch(w)
        sel = selectors.DefaultSelector()
        try:
            while any(r is None for r in rows):
                busy = [w for w in self.workers if w.job is not None]
                if not busy:  # a replacement died at dispatch time; hand the work out again
                    for w in list(self.workers):
                        dispatch(w)
                    continue
                sel = _reselect(sel, busy)
                wait = max(0.0, min(w.deadline for w in busy) - time.monotonic())
                ready = {key.data for key, _ in sel.select(wait)}
                now = time.monotonic()
                for w in busy:
                    if w in ready:
                        chunk = _read_available(w)
                        if chunk is None:  # EOF: the process died with a design in hand
                            i = w.job
                            finish(i, _invalid_row(), "simulator crashed: the NGspice process died; replaced")
                            self.stats.crashes += 1
                            w.job = None
                            self._replace(w)
                            continue
                        w.buffer += chunk
                        while b"\n" in w.buffer and w.job is not None:
                            line, w.buffer = w.buffer.split(b"\n", 1)
                            msg = json.loads(line)
                            finish(int(msg["id"]), [float(v) for v in msg["row"]], msg.get("reason", ""))
                            w.job = None
                    elif now >= w.deadline:
                        i = w.job
                        finish(i, _invalid_row(), f"simulator timeout: no answer within {self.timeout_s:g} s; "
                                                  "process replaced")
                        self.stats.timeouts += 1
                        w.job = None
                        self._replace(w)
                for w in list(self.workers):
                    if w.job is None:
                        dispatch(w)
        finally:
            sel.close()
        self.stats.designs += len(designs)
        return [r for r in rows if r is not None], reasons


def _reselect(sel: selectors.BaseSelector, busy: list[_Worker]) -> selectors.BaseSelector:
    sel.close()
    sel = selectors.DefaultSelector()
    for w in busy:
        sel.register(w.proc.stdout, selectors.EVENT_READ, w)
    return sel


def _read_available(worker: _Worker) -> bytes | None:
    try:
        chunk = os.read(worker.proc.stdout.fileno(), 65536)
    except BlockingIOError:
        return b""
    return chunk or None
