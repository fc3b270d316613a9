"""Measurements a task file can add beside its table (``extras: [...]``): throughput and duty cycle."""

from __future__ import annotations

import copy
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from hil.bench.task import BenchTask


def twin_throughput(blackbox_section: dict[str, Any], *, batch: int = 1024, repeats: int = 5,
                    threads: int | None = None) -> dict[str, float]:
    """Queries per second of a twin through the public, validated ``query`` path, best of ``repeats``,
    with ``threads`` torch threads (default: one per CPU core, as a run with the whole machine would)."""
    import torch

    from hil.sections import parse_blackbox
    from hil.space import ParameterSpace

    previous = torch.get_num_threads()
    torch.set_num_threads(threads or os.cpu_count() or 1)
    try:
        bb = parse_blackbox(blackbox_section).build()
        gen = torch.Generator().manual_seed(0)
        x = ParameterSpace(bb.spec).to_physical(torch.rand(batch, bb.spec.input_dim, generator=gen))
        best = float("inf")
        with bb:
            bb.query(x[:8])  # warm-up
            for _ in range(repeats):
                t = time.perf_counter()
                bb.query(x)
                best = min(best, time.perf_counter() - t)
        return {"queries_per_s": batch / best, "batch": batch, "threads": torch.get_num_threads(),
                "cores": os.cpu_count() or 1}
    finally:
        torch.set_num_threads(previous)


def _throughput(task: BenchTask, quick: bool) -> tuple[list[str], dict[str, Any]]:
    target = 10_000  # issue 15: batched FFT in float32, no needless copies, plan reuse
    tp = twin_throughput(task.problem["blackbox"], repeats=3 if quick else 5)
    one = twin_throughput(task.problem["blackbox"], repeats=3 if quick else 5, threads=1)
    line = (f"twin throughput: {tp['queries_per_s']:.0f} queries/s (batches of {tp['batch']}, {tp['threads']} "
            f"torch threads on {tp['cores']} cores; target {target}/s: {tp['queries_per_s'] / target:.2f}x); "
            f"1 thread: {one['queries_per_s']:.0f} queries/s")
    return [line], {"twin_throughput": tp, "twin_throughput_1_thread": one}


def _simulator_throughput(task: BenchTask, quick: bool) -> tuple[list[str], dict[str, Any]]:
    target, batch = 40, (200 if quick else 600)
    section = task.problem["blackbox"]
    fast = twin_throughput(section, batch=batch, repeats=2)
    slow = twin_throughput({**section, "reload_per_design": True}, batch=batch, repeats=2)
    line = (f"simulator throughput: {fast['queries_per_s']:.0f} designs/s with alterparam + reset "
            f"({section.get('n_workers', 2)} processes, batches of {batch}; target {target}/s: "
            f"{fast['queries_per_s'] / target:.2f}x); reloading the netlist per design: {slow['queries_per_s']:.0f} "
            f"designs/s (alterparam / reload = {fast['queries_per_s'] / slow['queries_per_s']:.2f}x)")
    return [line], {"simulator_throughput": fast, "simulator_throughput_reload": slow}


def _surrogate_method(task: BenchTask) -> Any:
    """The task's first gradient method with a surrogate estimator, or None."""
    return next((m for m in task.methods.values() if m.kind == "gradient" and m.estimator is not None
                 and m.estimator.get("type") == "surrogate"), None)


def _run_method(task: BenchTask, method: Any, estimator: dict[str, Any], iterations: int, *,
                delay_s: float | None = None, progress: Any = None) -> tuple[Any, Any, float]:
    """``method`` with ``estimator`` for ``iterations`` (no query budget) under the task's first seed set, on the
    task's box (slowed by ``delay_s`` a query when given); returns the trace, the box and the wall seconds."""
    from hil.blackbox import Delayed
    from hil.optim.section import optimize
    from hil.run import load_run_config

    data = task.run_config(method, task.seeds[0])
    data["estimator"] = estimator
    data["optimizer"] = {**data["optimizer"], "iterations": iterations, "max_queries": None}
    cfg = load_run_config(data)
    box = cfg.blackbox.build()
    if delay_s is not None:
        box = Delayed(box, delay_s)
    objective = cfg.objective.build(output_shape=box.spec.output_shape)
    t0 = time.perf_counter()
    with box:
        trace = optimize(box, objective, cfg.optimizer, cfg.estimator.build(), progress=progress)
    return trace, box, time.perf_counter() - t0


#: per-query delays the duty cycle is measured at: a 20 ms bench (the target: busy at least 95 % of the time) and a
#: 5 ms one
DUTY_DELAYS_S = (0.02, 0.005)


def _duty_cycle(task: BenchTask, quick: bool) -> tuple[list[str], dict[str, Any]]:
    """The first gradient method with a surrogate, as configured, for 400 iterations (10 quick) on the twin slowed
    to a 20 ms- and a 5 ms-per-query bench, the surrogate trained between measurements and while the bench
    measures, side by side: the share of the wall time the bench is busy."""
    method = _surrogate_method(task)
    if method is None:
        return [], {}
    iterations = 10 if quick else 400
    out: dict[str, Any] = {}
    lines = []
    for delay_s in DUTY_DELAYS_S:
        for concurrent in (False, True):
            trace, box, wall = _run_method(task, method, {**method.estimator, "concurrent": concurrent}, iterations,
                                           delay_s=delay_s)
            ms = round(delay_s * 1000)
            key = f"duty_cycle_{ms}ms" + ("_concurrent" if concurrent else "")
            out[key] = {"busy_s": box.stats.busy_s, "wall_s": wall, "duty_cycle": box.stats.busy_s / wall,
                        "iterations": iterations, "delay_s_per_query": delay_s, "method": method.name,
                        "concurrent": concurrent, "best": float(trace.best_overall[-1])}
            how = "training while the bench measures" if concurrent else "training between measurements"
            lines.append(f"duty cycle with the twin slowed to a {ms} ms-per-query bench ({method.name}, {iterations} "
                         f"iterations, {how}): BlackBox {box.stats.busy_s:.2f} s / wall {wall:.2f} s = "
                         f"{100 * box.stats.busy_s / wall:.1f} %; best {trace.best_overall[-1]:.4g}")
    return lines, out


#: full epochs an iteration when a task's method gives none (the paper's E)
PAPER_EPOCHS = 5
ITERATION_MARKS = (10, 100, 400, 1000)


def _per_iteration_s(wall_s: list[float], at: int, window: int = 5) -> float:
    """Median seconds per iteration over ``window`` iterations ending at iteration ``at`` (1-based)."""
    import numpy as np

    w = np.diff(np.concatenate([[0.0], np.asarray(wall_s)]))
    return float(np.median(w[max(0, at - window): at]))


def _iteration_cost(task: BenchTask, quick: bool) -> tuple[list[str], dict[str, Any]]:
    """The first surrogate gradient method for 1,000 iterations (100 quick), with full epochs and with bounded
    steps, side by side: seconds per iteration (wall, and the process's CPU time, which other work on the
    machine does not inflate) at iterations 10, 100, 400, 1,000, and the final best."""
    method = _surrogate_method(task)
    if method is None:
        return [], {}
    iterations = 100 if quick else ITERATION_MARKS[-1]
    marks = [m for m in ITERATION_MARKS if m <= iterations]
    from hil.estimator_configs import DEFAULT_STEPS

    others = {k: v for k, v in method.estimator.items() if k not in ("steps", "epochs")}
    trainings = {"epochs": {**others, "epochs": method.estimator.get("epochs") or PAPER_EPOCHS},
                 "bounded": {**others, "steps": method.estimator.get("steps") or DEFAULT_STEPS}}
    out: dict[str, Any] = {"method": method.name, "iterations": iterations, "marks": marks}
    for name, estimator in trainings.items():
        cpu_s: list[float] = []  # the process's CPU time after each iteration: what a busy machine does not inflate
        cpu0 = time.process_time()
        def record(t: int, tr: Any, cpu_s: list[float] = cpu_s, cpu0: float = cpu0) -> None:
            cpu_s.append(time.process_time() - cpu0)

        trace, _, _ = _run_method(task, method, estimator, iterations, progress=record)
        out[name] = {"s_per_iteration": [_per_iteration_s(trace.wall_s, m) for m in marks],
                     "cpu_s_per_iteration": [_per_iteration_s(cpu_s, m) for m in marks],
                     "best": float(trace.best_overall[-1]), "queries": int(trace.queries[-1]),
                     "wall_s": float(trace.wall_s[-1]),
                     "training": {k: estimator.get(k) for k in ("epochs", "steps", "batch_size")}}
    e, b = out["epochs"], out["bounded"]
    head = " / ".join(str(m) for m in marks)
    lines = [f"time per iteration of {method.name} at iterations {head} ({iterations} iterations, "
             f"{e['queries']} queries, seed set {task.seeds[0]}):"]
    for name, r in (("full epochs", e), (f"bounded, {b['training']['steps']} steps", b)):
        for what, key in (("wall", "s_per_iteration"), ("CPU", "cpu_s_per_iteration")):
            per = " / ".join(f"{t:.3f}" for t in r[key])
            lines.append(f"  {name:<20} {what:<4} {per} s  (last / first = {r[key][-1] / r[key][0]:.2f}x)")
        lines.append(f"  {name:<20} final best {r['best']:.4g}; run {r['wall_s']:.0f} s")
    return lines, {"iteration_cost": out}


EXTRAS = {"iteration_cost": _iteration_cost, "twin_throughput": _throughput,
          "simulator_throughput": _simulator_throughput, "duty_cycle": _duty_cycle}


def run_extras(task: BenchTask, quick: bool) -> tuple[list[str], dict[str, Any]]:
    lines: list[str] = []
    out: dict[str, Any] = {}
    for name in task.extras:
        got_lines, got = EXTRAS[name](copy.deepcopy(task), quick)
        lines += got_lines
        out.update(got)
    return lines, out


def bench_log(*, rows: int, quick: bool) -> int:
    """``hil bench log``: append throughput of the crash-safe query log."""
    from hil.querylog import benchmark_append

    rows = min(rows, 4000) if quick else rows
    with tempfile.TemporaryDirectory() as tmp:
        r = benchmark_append(Path(tmp) / "bench.h5", rows=rows)
    target = 20000
    print(f"query-log append (crash-safe, flushed per batch): {r['rows']} rows of {r['row_bytes']} bytes "
          f"(3600 float32 inputs + 64x64 uint16 frame) in batches of {r['batch']}")
    print(f"  {r['rows_per_s']:.0f} rows/s, {r['mb_per_s']:.0f} MB/s  (target {target} rows/s: "
          f"{r['rows_per_s'] / target:.2f}x)")
    return 0
