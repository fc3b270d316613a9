"""Benchmarks at equal device queries: tasks as YAML files (:mod:`hil.bench.task`), one harness
(:mod:`hil.bench.harness`), extra measurements (:mod:`hil.bench.extras`).

``hil bench TASK`` runs a shipped task (``hil/bench/tasks/TASK.yaml``) or a task file and prints the
table; ``--json`` writes the summary and a PNG of objective against total queries beside it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from hil.bench.task import BenchTask
from hil.errors import ConfigError


def prepare_task(name_or_path: str, *, quick: bool = False, overrides: dict[str, dict[str, Any]] | None = None,
                 seeds: int | None = None, methods: list[str] | None = None) -> BenchTask:
    """Load a task and apply ``--quick``, ``--set``, ``--seeds`` and ``--methods``; validate it all."""
    from hil.bench.extras import EXTRAS
    from hil.bench.task import load_task, validate_methods

    task = load_task(name_or_path, validate=False)
    if quick:
        task = task.quick_version()
    if overrides:
        task = task.with_overrides(overrides)
    if seeds is not None:
        if seeds < 1:
            raise ConfigError(f"--seeds must be >= 1, got {seeds}")
        task.seeds = list(range(seeds))
    if methods:
        unknown = [m for m in methods if m not in task.methods]
        if unknown:
            raise ConfigError(f"--methods: {unknown[0]!r} is not a method of {task.name}; its methods: "
                              f"{', '.join(task.methods)}")
        task.methods = {k: v for k, v in task.methods.items() if k in methods}
    validate_methods(task)
    unknown = [e for e in task.extras if e not in EXTRAS]
    if unknown:
        raise ConfigError(f"{task.name}: extras: {unknown[0]!r} is not a measurement hil has; known: "
                          f"{', '.join(sorted(EXTRAS))}")
    return task


def report_task(task: BenchTask, results: dict[str, Any], *, quick: bool = False, json_path: str | None = None,
                overrides: dict[str, dict[str, Any]] | None = None, extras: bool = True) -> dict[str, Any]:
    """Summarise a task's runs, print the table (and the extras' lines), write JSON, markdown and PNG."""
    from hil.bench.extras import run_extras
    from hil.bench.harness import format_table, summarize

    sense = _sense(task)
    summary = summarize(task, results, sense)
    print(f"{task.title} benchmark ({'quick' if quick else 'full'}): budget {task.budget} queries per method and "
          f"seed set; seed sets {task.seeds}; {'lower' if sense == 'min' else 'higher'} is better")
    print(f"problem: {json.dumps(task.problem['blackbox'])}; objective {json.dumps(task.problem['objective'])}")
    if overrides:
        print(f"overrides (--set): {json.dumps(overrides)}")
    for line in format_table(summary):
        print(line)
    lines, extra = run_extras(task, quick) if extras else ([], {})
    for line in lines:
        print(line)
    summary["extras"] = extra
    summary["overrides"] = overrides or {}
    summary["quick"] = quick
    if json_path:
        _write(summary, results, json_path)
    return summary


def bench_task(name_or_path: str, *, json_path: str | None = None, quick: bool = False, progress: bool = True,
               overrides: dict[str, dict[str, Any]] | None = None, seeds: int | None = None,
               methods: list[str] | None = None, log_dir: str | None = None,
               runs_dir: str | None = None, executor: str = "serial", workers: int | None = None,
               address: str | None = None, kept_only: bool = False) -> dict[str, Any]:
    """Run a task and print its table; returns the JSON summary. Finished runs are kept in ``runs_dir``
    (default with ``json_path``: beside it, ``NAME.runs/``) and reused when the command is rerun.
    ``kept_only``: run nothing; report the runs kept in ``runs_dir`` (each method over the seed sets it has
    finished, marked in the table when fewer than the task's)."""
    from hil.bench.executors import check_executor
    from hil.bench.harness import plan_runs, run_task

    task = prepare_task(name_or_path, quick=quick, overrides=overrides, seeds=seeds, methods=methods)
    check_executor(executor, workers, address)
    if log_dir is not None:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
    if runs_dir is None and json_path:
        runs_dir = str(Path(json_path).with_suffix(".runs"))
    if kept_only:
        if runs_dir is None or not Path(runs_dir).is_dir():
            raise ConfigError(f"--kept-only reports the runs kept by an earlier `hil bench`: give --runs-dir (or "
                              f"--json beside its NAME.runs/); {runs_dir or 'no runs folder'} is not a folder")
    elif runs_dir is not None:
        print(f"runs kept in {runs_dir}/ (rerun the same command to resume; delete it to start afresh)")
    t0 = time.perf_counter()
    if kept_only:
        plan = plan_runs(task, runs_dir=runs_dir)
        missing = plan.missing()
        results = plan.results(kept_only=True)
        if not results:
            raise ConfigError(f"--kept-only: {runs_dir}/ holds no finished run of {task.name} with the current "
                              f"config (a changed method's runs no longer count)")
        print(f"reporting the {len(plan.done)} runs kept in {runs_dir}/; not run yet: "
              + (", ".join(f"{name}/seed{seed}" for name, seed in missing) or "none"))
    else:
        results = run_task(task, progress=progress, log_dir=log_dir, runs_dir=runs_dir, executor=executor,
                           workers=workers, address=address)
    summary = report_task(task, results, quick=quick, json_path=None, overrides=overrides)
    summary["wall_s"] = time.perf_counter() - t0
    print(f"total benchmark time: {summary['wall_s']:.0f} s")
    if json_path:
        _write(summary, results, json_path)
    return summary


def _write(summary: dict[str, Any], results: dict[str, Any], json_path: str) -> None:
    from hil.bench.harness import markdown_table, plot

    Path(json_path).parent.mkdir(parents=True, exist_ok=True)
    Path(json_path).write_text(json.dumps(summary, indent=2))
    png = plot(str(Path(json_path).with_suffix(".png")), summary, results)
    md = Path(json_path).with_suffix(".md")
    md.write_text(markdown_table(summary))
    print(f"wrote {json_path}, {md} and {png}")


def _sense(task: Any) -> str:
    from hil.config import parse_typed
    from hil.registry import OBJECTIVES

    return OBJECTIVES.attribute(parse_typed(OBJECTIVES, task.problem["objective"], "objective").type, "sense")
