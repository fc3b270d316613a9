"""Where a benchmark's runs execute: one after the other, in local processes, or on a Ray cluster.

Every run (a method under a seed set) is independent and seeded, so the executor changes wall times and
nothing else: a parallel or Ray sweep gives the same curves as a serial one (tested). Results arrive as runs
finish; the harness keeps each as it arrives, so an interrupted sweep resumes without rerunning them.

* ``serial``: in this process.
* ``process`` (the default): ``workers`` spawned processes (default: one per CPU core), each with
  ``max(1, cores // workers)`` torch threads so that the processes do not contend for cores.
* ``ray`` (``pip install 'hil[ray]'``): one Ray task per run, on a local Ray instance started for the sweep or on
  the cluster at ``address`` (``ray start --head`` on one machine, ``ray start --address=HEAD:6379`` on the
  others, then ``hil bench TASK --executor ray --address HEAD:6379``). Each task asks Ray for one CPU.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

from hil.errors import ConfigError

EXECUTORS = ("serial", "process", "ray")


def default_workers() -> int:
    return os.cpu_count() or 1


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def check_executor(executor: str, workers: int | None, address: str | None) -> None:
    """Fail before anything runs on a bad ``--executor`` / ``--jobs`` / ``--address``."""
    if executor not in EXECUTORS:
        raise ConfigError(f"--executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    if workers is not None and workers < 1:
        raise ConfigError(f"--jobs must be >= 1, got {workers}")
    if address is not None and executor != "ray":
        raise ConfigError("--address joins a Ray cluster: use it with --executor ray")
    if executor == "ray":
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise ConfigError("--executor ray needs Ray: pip install 'hil[ray]'")


def run_all(fn: Callable[..., Any], jobs: dict[Any, tuple], *, executor: str = "process", workers: int | None = None,
            address: str | None = None) -> Iterator[tuple[Any, Any]]:
    """Call ``fn(*args)`` for every ``key: args`` of ``jobs``; yield ``(key, result)`` as each finishes.

    ``fn`` and its arguments must be picklable (a module-level function and plain data) for ``process`` and
    ``ray``. A run that fails in a worker is raised here as a RuntimeError naming the run's key.
    """
    check_executor(executor, workers, address)
    if not jobs:
        return
    one_process = executor == "process" and (len(jobs) == 1 or (workers or default_workers()) == 1)
    if executor == "serial" or one_process:
        for key, args in jobs.items():
            yield key, fn(*args)
        return
    if executor == "process":
        yield from _processes(fn, jobs, workers or default_workers())
    else:
        yield from _ray(fn, jobs, address)


def parallel_slots(executor: str, workers: int | None, n_jobs: int, address: str | None = None) -> int | None:
    """How many runs :func:`run_all` runs at once (``None``: a Ray cluster joined at ``address``, its size
    unknown here; a local Ray instance takes every core)."""
    if executor == "serial" or n_jobs <= 1:
        return 1
    if executor == "process":
        return min(workers or default_workers(), n_jobs)
    return None if address is not None else min(default_workers(), n_jobs)


def _processes(fn: Callable[..., Any], jobs: dict[Any, tuple], workers: int) -> Iterator[tuple[Any, Any]]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    workers = min(workers, len(jobs))
    threads = max(1, default_workers() // workers)
    # spawn, not fork: a forked child of a process that has started torch's thread pools can deadlock
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(threads,)) as pool:
        futures = {pool.submit(fn, *args): key for key, args in jobs.items()}
        try:
            for future in as_completed(futures):
                key = futures[future]
                try:
                    result = future.result()
                except Exception as exc:
                    raise RuntimeError(f"run {key} failed in a worker process: {exc}") from exc
                yield key, result
        finally:
            for future in futures:
                future.cancel()


def _ray(fn: Callable[..., Any], jobs: dict[Any, tuple], address: str | None) -> Iterator[tuple[Any, Any]]:
    import ray

    started = not ray.is_initialized()
    if started:
        if address is None:
            ray.init(include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    try:
        remote = ray.remote(num_cpus=1)(_ray_task)
        refs = {remote.remote(fn, args): key for key, args in jobs.items()}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            key = refs[done[0]]
            try:
                result = ray.get(done[0])
            except Exception as exc:
                raise RuntimeError(f"run {key} failed on a Ray worker: {exc}") from exc
            yield key, result
    finally:
        if started:
            ray.shutdown()


def _ray_task(fn: Callable[..., Any], args: tuple) -> Any:
    _init_worker(1)
    return fn(*args)
