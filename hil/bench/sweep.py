"""``hil sweep GRID.yaml``: tasks x methods x seed sets x config variants, in one pool of runs.

A grid file::

    name: lr_study                 # the output folder's default name (sweeps/NAME/)
    tasks: [cnon, my_task.yaml]    # shipped tasks or task files
    methods: [gradpie_2x4, cmaes]  # optional: only these (each must be in at least one task)
    seeds: 3                       # optional: seed sets 0..N-1 (default: each task's own)
    quick: false                   # optional: each task's --quick version
    extras: false                  # optional: also each task's extra measurements (duty cycle, ...) per variant
    variants:                      # optional: named sets of --set overrides (default: one, "default", with none)
      default: []
      lr_0.05: [optimizer.lr=0.05]
    ranks: false                   # optional: also each method's normalised rank over the task x variant pairs

Shipped grids (``hil/bench/suites/NAME.yaml``) run as ``hil bench NAME``: ``lgso`` (the L-GSO paper's four
problems) and ``offline`` (three twins at two dataset sizes, with ranks).

Every run of every (task, variant) goes to one executor (:mod:`hil.bench.executors`), so the cores stay busy
across tasks. Output in the sweep's folder: ``TASK-VARIANT.{json,md,png}`` per pair, ``sweep.json`` (the
summaries, keyed ``TASK/VARIANT``), ``sweep.md`` (every table), and ``runs/TASK-VARIANT/`` (each finished
run, so an interrupted sweep resumes without rerunning them).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hil.errors import ConfigError

GRID_KEYS = ("name", "tasks", "methods", "seeds", "quick", "extras", "variants", "description", "ranks")


@dataclass
class Grid:
    name: str
    tasks: list[str]
    methods: list[str] | None = None
    seeds: int | None = None
    quick: bool = False
    extras: bool = False
    variants: dict[str, list[str]] = field(default_factory=lambda: {"default": []})
    ranks: bool = False


def _fail(where: str, key: str, message: str) -> None:
    raise ConfigError(f"{where}: {key}: {message}")


def load_grid(path: str) -> Grid:
    """Read and check a grid file; every error names the key as written in the file."""
    from hil.config import load_yaml

    where = str(path)
    if not Path(path).is_file():
        raise ConfigError(f"{where}: no such grid file")
    data = load_yaml(path)  # a mapping, or a ConfigError naming the file
    for key in data:
        if key not in GRID_KEYS:
            _fail(where, str(key), f"unknown key; allowed: {', '.join(GRID_KEYS)}")
    tasks = data.get("tasks")
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) for t in tasks):
        _fail(where, "tasks", "expected a non-empty list of task names or task files")
    methods = data.get("methods")
    if methods is not None and (not isinstance(methods, list) or not all(isinstance(m, str) for m in methods)):
        _fail(where, "methods", "expected a list of method names")
    seeds = data.get("seeds")
    if seeds is not None and (isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1):
        _fail(where, "seeds", f"expected a number of seed sets >= 1, got {seeds!r}")
    quick = data.get("quick", False)
    if not isinstance(quick, bool):
        _fail(where, "quick", f"expected true or false, got {quick!r}")
    extras = data.get("extras", False)
    if not isinstance(extras, bool):
        _fail(where, "extras", f"expected true or false, got {extras!r}")
    ranks = data.get("ranks", False)
    if not isinstance(ranks, bool):
        _fail(where, "ranks", f"expected true or false, got {ranks!r}")
    variants = data.get("variants", {"default": []})
    if not isinstance(variants, dict) or not variants:
        _fail(where, "variants", "expected a mapping of variant names to lists of SECTION.KEY=VALUE overrides")
    for vname, items in variants.items():
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            _fail(where, f"variants.{vname}", "expected a list of SECTION.KEY=VALUE strings, e.g. [optimizer.lr=0.05]")
    return Grid(str(data.get("name", Path(path).stem)), list(tasks), methods, seeds, quick, extras,
                {str(k): list(v) for k, v in variants.items()}, ranks)


def shipped_suites() -> list[str]:
    from importlib import resources

    folder = resources.files("hil.bench") / "suites"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def suite_path(name: str) -> str:
    from importlib import resources

    return str(resources.files("hil.bench") / "suites" / f"{name}.yaml")


def normalised_ranks(results: dict[str, Any]) -> dict[str, Any]:
    """Per task x variant, each method's rank by its final best (mean over seed sets; 1 = best, ties share the
    lower rank) divided by the number of methods ranked; per method, the mean over the pairs (MATCH-OPT's
    mean normalised rank: lower is better)."""
    per_pair: dict[str, dict[str, float]] = {}
    for key, summary in results.items():
        finals = {m: e["best"][-1] for m, e in summary["methods"].items() if e["best"][-1] is not None}
        if not finals:
            continue
        sign = 1.0 if summary["sense"] == "min" else -1.0
        values = sorted(sign * v for v in finals.values())
        per_pair[key] = {m: (values.index(sign * v) + 1) / len(finals) for m, v in finals.items()}
    methods = sorted({m for r in per_pair.values() for m in r})
    mean = {m: sum(r[m] for r in per_pair.values() if m in r) / sum(1 for r in per_pair.values() if m in r)
            for m in methods}
    return {"per_pair": per_pair, "mean": mean}


def ranks_table(ranks: dict[str, Any]) -> str:
    pairs = list(ranks["per_pair"])
    methods = sorted(ranks["mean"], key=ranks["mean"].get)
    lines = ["| method | " + " | ".join(pairs) + " | mean normalised rank |",
             "|---|" + "---|" * (len(pairs) + 1)]
    for m in methods:
        cells = [f"{ranks['per_pair'][p][m]:.2f}" if m in ranks["per_pair"][p] else "n/a" for p in pairs]
        lines.append(f"| {m} | " + " | ".join(cells) + f" | **{ranks['mean'][m]:.2f}** |")
    return "\n".join(lines)


def run_sweep(path: str, *, out_dir: str | None = None, progress: bool = True, executor: str = "process",
              workers: int | None = None, address: str | None = None, quick: bool | None = None) -> dict[str, Any]:
    """Run a grid (module docstring); returns ``{"sweep", "grid", "results": {"TASK/VARIANT": summary}}``
    (and ``"ranks"`` when the grid asks). ``quick`` overrides the grid's ``quick:``."""
    from hil.bench import prepare_task, report_task
    from hil.bench.executors import check_executor
    from hil.bench.harness import execute_plans, markdown_table, plan_runs
    from hil.bench.task import parse_overrides

    grid = load_grid(path)
    if quick is not None:
        grid.quick = quick
        if quick:
            grid.name += "_quick"
    check_executor(executor, workers, address)
    out = Path(out_dir or Path("sweeps") / grid.name)
    pairs = []  # (task, variant name, overrides), all validated before anything runs
    seen_methods: set[str] = set()
    for task_name in grid.tasks:
        for vname, items in grid.variants.items():
            try:
                overrides = parse_overrides(items)
            except ConfigError as exc:
                raise ConfigError(f"{path}: variants.{vname}: {exc}") from None
            base = prepare_task(task_name, quick=grid.quick, overrides=overrides, seeds=grid.seeds)
            if grid.methods is not None:
                base.methods = {k: v for k, v in base.methods.items() if k in grid.methods}
                if not base.methods:
                    raise ConfigError(f"{path}: methods: none of {grid.methods} is a method of task {base.name}")
            seen_methods |= set(base.methods)
            pairs.append((base, vname, overrides))
    missing = [m for m in (grid.methods or []) if m not in seen_methods]
    if missing:
        raise ConfigError(f"{path}: methods: {missing[0]!r} is not a method of any task of the sweep")
    plans = [plan_runs(task, runs_dir=str(out / "runs" / f"{task.name}-{vname}")) for task, vname, _ in pairs]
    kept = sum(len(p.done) for p in plans)
    total = sum(len(p.order) for p in plans)
    print(f"sweep {grid.name}: {len(pairs)} task x variant pairs, {total} runs ({kept} kept from before) -> {out}/")
    t0 = time.perf_counter()
    pool = execute_plans(plans, progress=progress, executor=executor, workers=workers, address=address,
                         desc=f"sweep {grid.name}")
    results: dict[str, Any] = {}
    tables: list[str] = []
    for (task, vname, overrides), plan in zip(pairs, plans, strict=True):
        summary = report_task(task, plan.results(), quick=grid.quick, overrides=overrides, extras=grid.extras,
                              json_path=str(out / f"{task.name}-{vname}.json"))
        results[f"{task.name}/{vname}"] = summary
        tables.append(f"## {task.title}: variant {vname} ({', '.join(grid.variants[vname]) or 'no overrides'})\n\n"
                      + markdown_table(summary))
    doc = {"sweep": grid.name, "grid": grid.__dict__, "wall_s": time.perf_counter() - t0,
           "pool": {"executor": executor, **dataclasses.asdict(pool)}, "results": results}
    if grid.ranks:
        doc["ranks"] = normalised_ranks(results)
        table = ranks_table(doc["ranks"])
        tables.append("## Normalised ranks (rank / methods; lower is better)\n\n" + table)
        print("normalised ranks (rank / methods by final best, mean over seed sets; lower is better):")
        print(table)
    (out / "sweep.json").write_text(json.dumps(doc, indent=2))
    (out / "sweep.md").write_text(f"# Sweep {grid.name}\n\n" + "\n\n".join(tables))
    print(f"wrote {out}/sweep.json, {out}/sweep.md and one JSON/MD/PNG per task x variant")
    return doc
