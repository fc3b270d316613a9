"""Benchmarks that print side-by-side numbers from one run.

``hil bench cnon``: gradient estimators on the CNON twin, from the same
starting points and seeds. The problem is chosen in the paper's regime (see
:data:`CNON_TASK`): the target lies outside the set the oscillators can reach,
so the floor is above zero, and the dynamics are nonlinear enough that the
surrogate methods have not all reached that floor by 200 iterations.

``hil bench log``: append throughput of the crash-safe query log.
"""

from __future__ import annotations

import copy
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hil.blackbox import Delayed
from hil.errors import ConfigError
from hil.optimize import Trace, make_optimizer
from hil.report import plot_objective_vs_queries
from hil.run import load_run_config

#: The CNON benchmark problem (documented choice; see README "Benchmarks"). 100 oscillators, horizon 2:
#: nonlinear enough that a surrogate needs thousands of points to get its Jacobian right, benign enough that
#: the exact gradient reaches the floor (~0.020: targets U(-1, 1) lie partly outside the reachable set) in
#: ~100 iterations. 8 starting points share one surrogate, so data are scarce and the methods separate.
CNON_TASK: dict[str, Any] = {
    "name": "bench_cnon",
    "blackbox": {"type": "cnon_twin", "dim": 100, "coupling": 0.5, "drive": 0.1, "horizon": 2.0, "steps": 20,
                 "input_bound": 1.0, "seed": 0},
    "objective": {"type": "target_distance", "target_low": -1.0, "target_high": 1.0, "target_seed": 1,
                  "norm": "rms"},
    "estimator": {"type": "exact"},
    "optimizer": {"mode": "online", "n_starts": 8, "iterations": 200, "lr": 0.02, "sigma": 0.01, "seed": 0},
}

#: Paper's CNON surrogate (2 x 256 GELU, Adam), E = 5 epochs per iteration; k = 20 neighbours for GradPIE.
SURROGATE = {"type": "surrogate", "hidden": [256, 256], "epochs": 5, "lr": 1e-3, "k": 20, "batch_size": 256}

#: name -> (estimator section, local samples M)
CNON_METHODS: dict[str, tuple[dict[str, Any], int]] = {
    "exact": ({"type": "exact"}, 0),
    "mse": ({**SURROGATE, "loss": "mse"}, 0),
    "mae": ({**SURROGATE, "loss": "mae"}, 0),
    "gradpie": ({**SURROGATE, "loss": "gradpie"}, 0),
    "exact_m1": ({"type": "exact"}, 1),
    "mse_m1": ({**SURROGATE, "loss": "mse"}, 1),
    "gradpie_m1": ({**SURROGATE, "loss": "gradpie"}, 1),
}
BASE = "mse"
#: (method, its base): printed as "queries to reach the base's final mean, and the ratio"
CNON_COMPARISONS = [("gradpie", "mse"), ("mae", "mse"), ("gradpie_m1", "mse"), ("gradpie_m1", "mse_m1")]


@dataclass
class MethodResult:
    name: str
    trace: Trace
    n_starts: int
    wall_s: float
    busy_s: float

    def queries_per_start(self) -> np.ndarray:
        return np.asarray(self.trace.queries, dtype=np.float64) / self.n_starts


def method_config(task: dict[str, Any], estimator: dict[str, Any], local_samples: int,
                  optimizer: dict[str, Any] | None = None) -> dict[str, Any]:
    """The run config of one benchmark method: ``task`` with its estimator, M local samples and the
    method's own optimizer overrides (e.g. ``{"mode": "random"}``)."""
    cfg_dict = copy.deepcopy(task)
    cfg_dict["estimator"] = estimator
    cfg_dict["optimizer"] = {**cfg_dict["optimizer"], "local_samples": local_samples, **(optimizer or {})}
    return cfg_dict


def _run_method(task: dict[str, Any], estimator: dict[str, Any], local_samples: int,
                delay_s_per_query: float = 0.0, optimizer: dict[str, Any] | None = None) -> MethodResult:
    cfg = load_run_config(method_config(task, estimator, local_samples, optimizer))
    bb = cfg.blackbox.build()
    if delay_s_per_query > 0:
        bb = Delayed(bb, delay_s_per_query)
    objective = cfg.objective.build(output_shape=bb.spec.output_shape)
    opt = make_optimizer(bb, objective, cfg.estimator.build(), cfg.optimizer)
    t0 = time.perf_counter()
    with bb:
        trace = opt.run()
    return MethodResult("", trace, cfg.optimizer.n_starts, time.perf_counter() - t0, bb.stats.busy_s)


def summarize_method(res: MethodResult, checkpoints: list[int]) -> dict[str, Any]:
    best = res.trace.best_array()  # T x P
    q = res.queries_per_start()
    rows = [min(c, best.shape[0]) - 1 for c in checkpoints]
    pick = best[rows]
    return {
        "iterations": checkpoints,
        "queries": [int(round(q[r])) for r in rows],
        "mean": np.nanmean(pick, axis=1).tolist(),
        "std": np.nanstd(pick, axis=1).tolist(),
        "median": np.nanmedian(pick, axis=1).tolist(),
        "q25": np.nanpercentile(pick, 25, axis=1).tolist(),
        "q75": np.nanpercentile(pick, 75, axis=1).tolist(),
    }


def queries_to_reach(res: MethodResult, level: float, sense: str) -> int | None:
    """Queries per start at which the method's mean best objective first reaches ``level``."""
    mean = np.nanmean(res.trace.best_array(), axis=1)
    hit = mean <= level if sense == "min" else mean >= level
    if not hit.any():
        return None
    return int(round(res.queries_per_start()[int(np.argmax(hit))]))


def format_table(summary: dict[str, Any]) -> str:
    lines = []
    checkpoints = next(iter(summary["methods"].values()))["iterations"]
    head = f"{'method':<12}" + "".join(f"| it {c:<4} mean ± std   median [q25, q75]    q/start " for c in checkpoints)
    lines.append(head + "| queries to base")
    lines.append("-" * len(head) + "-" * 18)
    for name, m in summary["methods"].items():
        cells = []
        for i in range(len(checkpoints)):
            cells.append(f"| {m['mean'][i]:.4f} ± {m['std'][i]:.4f}  {m['median'][i]:.4f} "
                         f"[{m['q25'][i]:.4f}, {m['q75'][i]:.4f}] {m['queries'][i]:>5}   ")
        qtb = m["queries_to_base"]
        lines.append(f"{name:<12}" + "".join(cells) + f"| {qtb if qtb is not None else 'never'}")
    return "\n".join(lines)


def compare(results: dict[str, MethodResult], pairs: list[tuple[str, str]], final: int) -> list[dict[str, Any]]:
    """For each (method, base): queries per start the method needs to reach the base's mean at ``final``."""
    out = []
    for name, base in pairs:
        if name not in results or base not in results:
            continue
        b = results[base]
        row = min(final, b.trace.iterations) - 1
        level = float(np.nanmean(b.trace.best_array()[row]))
        base_q = float(b.queries_per_start()[row])
        q = queries_to_reach(results[name], level, b.trace.sense)
        out.append({"method": name, "base": base, "level": level, "base_queries": base_q, "queries": q,
                    "ratio": None if q is None else q / base_q})
    return out


#: name -> (estimator section, local samples M[, optimizer overrides such as {"mode": "random"}])
Methods = dict[str, tuple]


def run_task_benchmark(task: dict[str, Any], methods: Methods, *,
                       checkpoints: list[int], base: str,
                       progress: bool = True) -> tuple[dict, dict, dict[str, MethodResult]]:
    """Run every method on ``task``; returns the JSON summary, per-method timing and the raw results."""
    from tqdm import tqdm

    results: dict[str, MethodResult] = {}
    bar = tqdm(methods.items(), desc="bench", disable=not progress, unit="method")
    for name, (estimator, m, *overrides) in bar:
        bar.set_postfix(method=name)
        res = _run_method(task, estimator, m, optimizer=overrides[0] if overrides else None)
        res.name = name
        results[name] = res
    sense = results[base].trace.sense
    summary: dict[str, Any] = {"task": task["name"], "sense": sense, "methods": {}}
    base_best = results[base].trace.best_array()
    base_level = float(np.nanmean(base_best[min(checkpoints[-1], base_best.shape[0]) - 1]))
    timing = {}
    for name, res in results.items():
        entry = summarize_method(res, checkpoints)
        entry["queries_to_base"] = queries_to_reach(res, base_level, sense)
        summary["methods"][name] = entry
        its = res.trace.iterations
        timing[name] = {"wall_s": res.wall_s, "busy_s": res.busy_s,
                        "overhead_s_per_iteration": (res.wall_s - res.busy_s) / max(its, 1)}
    return summary, timing, results


@dataclass
class BenchTask:
    """A benchmark: the problem, the methods, the base and which query ratios to print."""

    title: str
    task: dict[str, Any]
    methods: Methods
    base: str
    comparisons: list[tuple[str, str]]
    checkpoints: list[int]
    quick_iterations: int
    quick_checkpoints: list[int]
    quick_methods: list[str]
    extras: Any  # (task, quick) -> (printed lines, JSON entries): overhead, duty cycle, throughput


#: sections a ``--set SECTION.KEY=VALUE`` override may name; ``surrogate`` applies to every surrogate method
OVERRIDE_SECTIONS = ("blackbox", "objective", "optimizer", "surrogate")


def parse_overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["optimizer.adam_beta1=0.5", "surrogate.k=5"]`` -> ``{"optimizer": {"adam_beta1": 0.5}, ...}``
    (values are read as YAML, so ``[1, 2]``, ``true`` and ``1e-3`` work)."""
    import yaml

    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, eq, raw = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not eq or not dot or not name:
            raise ConfigError(f"--set {item!r}: expected SECTION.KEY=VALUE, e.g. optimizer.adam_beta1=0.5")
        if section not in OVERRIDE_SECTIONS:
            raise ConfigError(f"--set {item!r}: unknown section {section!r}; allowed: {', '.join(OVERRIDE_SECTIONS)}")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML: {exc}") from exc
        out.setdefault(section, {})[name] = value
    return out


def apply_overrides(task: dict[str, Any], methods: Methods,
                    overrides: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], Methods]:
    """The task and methods with ``overrides`` applied, every method's config validated before anything runs."""
    task = copy.deepcopy(task)
    for section in ("blackbox", "objective", "optimizer"):
        task[section] = {**task[section], **overrides.get(section, {})}
    surrogate = overrides.get("surrogate", {})
    changed: Methods = {}
    for name, (estimator, m, *rest) in methods.items():
        if estimator.get("type") == "surrogate":
            estimator = {**estimator, **surrogate}
        changed[name] = (estimator, m, *rest)
        try:
            load_run_config(method_config(task, estimator, m, rest[0] if rest else None))
        except ConfigError as exc:
            raise ConfigError(f"method {name!r} with the --set overrides: {exc}") from None
    return task, changed


def _add_seed_set(sets: dict[str, Any], seed: int, summary: dict[str, Any], comparisons: list[dict[str, Any]]) -> None:
    """Record one seed set's final means and query ratios in ``sets`` (see :func:`seed_sets`)."""
    sets["seeds"].append(seed)
    for name, entry in summary["methods"].items():
        sets["final_mean"].setdefault(name, []).append(entry["mean"][-1])
    got = {(c["method"], c["base"]): c for c in comparisons}
    for c in sets["comparisons"]:
        one = got.get((c["method"], c["base"]))
        c["ratios"].append(None if one is None else one["ratio"])
        c["queries"].append(None if one is None else one["queries"])


def _empty_seed_sets(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    return {"seeds": [], "final_mean": {},
            "comparisons": [{"method": m, "base": b, "ratios": [], "queries": []} for m, b in pairs]}


def seed_sets(task: dict[str, Any], methods: Methods, *, seeds: list[int], checkpoints: list[int], base: str,
              pairs: list[tuple[str, str]], progress: bool = True,
              into: dict[str, Any] | None = None) -> dict[str, Any]:
    """Rerun every method with other seeds (``optimizer.seed`` and every surrogate's ``seed`` set to each of
    ``seeds``; the problem itself stays fixed) and collect, per seed set, the query ratios of ``pairs`` and each
    method's final mean. Returns ``{"seeds", "comparisons": [{method, base, ratios, queries}], "final_mean"}``;
    ``into`` (such a dict, e.g. already holding the first set) is extended instead of starting afresh."""
    sets = into if into is not None else _empty_seed_sets(pairs)
    for seed in seeds:
        task_s, methods_s = apply_overrides(task, methods, {"optimizer": {"seed": seed}, "surrogate": {"seed": seed}})
        summary, _, results = run_task_benchmark(task_s, methods_s, checkpoints=checkpoints, base=base,
                                                 progress=progress)
        _add_seed_set(sets, seed, summary, compare(results, pairs, checkpoints[-1]))
    return sets


def format_seed_sets(sets: dict[str, Any], target_ratio: float = 0.5) -> list[str]:
    """Printed lines: each comparison's ratio per seed set, their mean and spread, and how many meet the target."""
    seeds = sets["seeds"]
    lines = [f"over {len(seeds)} seed sets (optimizer.seed and surrogate seed = {', '.join(map(str, seeds))}; "
             f"the problem fixed):"]
    for c in sets["comparisons"]:
        ratios = [r for r in c["ratios"] if r is not None]
        cells = " ".join("never" if r is None else f"{r:.2f}" for r in c["ratios"])
        if ratios:
            met = sum(r <= target_ratio for r in ratios)
            stats = (f"mean {np.mean(ratios):.2f} ± {np.std(ratios):.2f} over the {len(ratios)} that got there, "
                     f"<= {target_ratio} in {met} of {len(c['ratios'])}")
        else:
            stats = "never"
        lines.append(f"  {c['method']:<11} vs {c['base']:<7} ratio per seed set: {cells}  ({stats})")
    for name, values in sets["final_mean"].items():
        lines.append(f"  {name:<11} mean at the last checkpoint: {np.mean(values):.4f} ± {np.std(values):.4f} "
                     f"(per seed set: {' '.join(f'{v:.4f}' for v in values)})")
    return lines


def bench_task(task_name: str, *, json_path: str | None, quick: bool, progress: bool = True,
               overrides: dict[str, dict[str, Any]] | None = None, seeds: int = 1) -> int:
    """Run a task benchmark and print its table; ``seeds > 1`` repeats it with the next ``seeds - 1`` seed sets
    and prints the query ratios over all of them (the table, the PNG and the timing are of the first set)."""
    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {seeds}")
    if task_name not in BENCH_TASKS:
        raise ValueError(f"unknown benchmark task {task_name!r}; allowed: {', '.join(BENCH_TASKS)}")
    bt = BENCH_TASKS[task_name]()
    task = copy.deepcopy(bt.task)
    checkpoints, methods = bt.checkpoints, bt.methods
    if quick:
        task["optimizer"]["iterations"] = bt.quick_iterations
        checkpoints = bt.quick_checkpoints
        methods = {k: v for k, v in bt.methods.items() if k in bt.quick_methods}
    overrides = overrides or {}
    task, methods = apply_overrides(task, methods, overrides)
    t0 = time.perf_counter()
    summary, timing, results = run_task_benchmark(task, methods, checkpoints=checkpoints, base=bt.base,
                                                  progress=progress)
    comparisons = compare(results, bt.comparisons, checkpoints[-1])
    mode = "quick" if quick else "full"
    print(f"{bt.title} benchmark ({mode}): {json.dumps(task['blackbox'])}")
    if overrides:
        print(f"overrides (--set): {json.dumps(overrides)}")
    print(f"objective: {json.dumps(task['objective'])}; {task['optimizer']['n_starts']} starts; best objective "
          f"so far per start ({'lower' if summary['sense'] == 'min' else 'higher'} is better); "
          f"base = {bt.base} at {checkpoints[-1]} iterations")
    print(format_table(summary))
    print()
    print(f"queries per start needed to reach a base's mean best objective at {checkpoints[-1]} iterations:")
    for c in comparisons:
        got = "never" if c["queries"] is None else f"{c['queries']:>4} queries = {c['ratio']:.2f} x"
        print(f"  {c['method']:<11} vs {c['base']:<7} (level {c['level']:.4f}, base used "
              f"{c['base_queries']:.0f}): {got}")
    print()
    print("loop overhead (wall time outside the BlackBox per iteration, all starts together):")
    for name, t in timing.items():
        print(f"  {name:<12} {1e3 * t['overhead_s_per_iteration']:8.1f} ms/iteration   "
              f"(wall {t['wall_s']:.1f} s, BlackBox {t['busy_s']:.2f} s)")
    lines, extra = bt.extras(task, quick)
    for line in lines:
        print(line)
    if seeds > 1:
        first = int(task["optimizer"].get("seed", 0))
        pairs = [(c["method"], c["base"]) for c in comparisons]
        sets = _empty_seed_sets(pairs)
        _add_seed_set(sets, first, summary, comparisons)  # the first set is the run above
        seed_sets(task, methods, seeds=list(range(first + 1, first + seeds)), checkpoints=checkpoints,
                  base=bt.base, pairs=pairs, progress=progress, into=sets)
        print()
        for line in format_seed_sets(sets):
            print(line)
        summary["seed_sets"] = sets
    print(f"total benchmark time: {time.perf_counter() - t0:.0f} s")
    summary["timing"] = {"methods": timing, **extra}
    summary["comparisons"] = comparisons
    summary["overrides"] = overrides
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(summary, indent=2))
        curves = {name: (res.queries_per_start(), res.trace.best_array()) for name, res in results.items()}
        png = plot_objective_vs_queries(Path(json_path).with_suffix(".png"), curves, sense=summary["sense"],
                                        title=f"{bt.title} benchmark ({mode})",
                                        **_reference_marks(comparisons, bt.base, checkpoints[-1]))
        print(f"wrote {json_path} and {png}")
    return 0


def _reference_marks(comparisons: list[dict[str, Any]], base: str, final: int) -> dict[str, Any]:
    """The plot's dashed line at the base's final mean and, per method compared with it, where it gets there."""
    against = [c for c in comparisons if c["base"] == base]
    if not against:
        return {}
    crossings = {c["method"]: (c["queries"], f"{c['ratio']:.2f}x") for c in against if c["queries"] is not None}
    return {"reference": (against[0]["level"], f"{base} at {final} iterations"), "crossings": crossings}


def _cnon_extras(task: dict[str, Any], quick: bool) -> tuple[list[str], dict[str, Any]]:
    duty = duty_cycle(task, delay_s_per_query=0.02, iterations=10 if quick else 40)
    line = (f"duty cycle with the twin slowed to a 20 ms-per-query bench (gradpie, {task['optimizer']['n_starts']} "
            f"starts): BlackBox {duty['busy_s']:.2f} s / wall {duty['wall_s']:.2f} s = "
            f"{100 * duty['duty_cycle']:.1f} %")
    return [line], {"duty_cycle_20ms": duty}


def _cnon_bench() -> BenchTask:
    return BenchTask("CNON", CNON_TASK, CNON_METHODS, BASE, CNON_COMPARISONS, [50, 100, 200], 100, [25, 50, 100],
                     ["exact", "mse", "gradpie", "gradpie_m1"], _cnon_extras)


def duty_cycle(task: dict[str, Any], *, delay_s_per_query: float, iterations: int) -> dict[str, float]:
    t = copy.deepcopy(task)
    t["optimizer"]["iterations"] = iterations
    res = _run_method(t, {**SURROGATE, "loss": "gradpie"}, 0, delay_s_per_query=delay_s_per_query)
    return {"busy_s": res.busy_s, "wall_s": res.wall_s, "duty_cycle": res.busy_s / res.wall_s,
            "iterations": iterations, "delay_s_per_query": delay_s_per_query}


def bench_log(*, rows: int, quick: bool) -> int:
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


#: The OWMS benchmark problem: the ideal optical twin (the paper's setting), 60 x 60 SLM phases -> 32 x 32
#: camera, split the beam into two spots. 16 starting points share one surrogate; every method spends
#: 3 queries per start per iteration (the step and M = 2 local samples; random search: 3 uniform draws).
OWMS_TASK: dict[str, Any] = {
    "name": "bench_owms",
    "blackbox": {"type": "owms_twin"},
    "objective": {"type": "two_spots", "separation_px": 12.0, "waist_px": 3.0},
    "estimator": {"type": "exact"},
    "optimizer": {"mode": "online", "n_starts": 16, "iterations": 200, "lr": 0.02, "sigma": 0.01, "seed": 0},
}
#: Surrogate on cos/sin features of the phases (the inputs are periodic). Measured choices (README): local
#: samples are what give a surrogate gradient information here (without them neither loss beats an untrained
#: network); k = 5 keeps GradPIE's pairs among a point's local samples; one epoch per iteration is as good as
#: five at a fifth of the cost.
OWMS_SURROGATE = {"type": "surrogate", "hidden": [512, 512], "epochs": 1, "lr": 1e-3, "k": 5, "batch_size": 256,
                  "input_features": "phase"}
OWMS_M = 2
OWMS_METHODS: Methods = {
    "random": ({"type": "exact"}, OWMS_M, {"mode": "random"}),
    "exact": ({"type": "exact"}, OWMS_M),
    # control: the same loop with an untrained surrogate, i.e. what rank selection among local samples gives
    "untrained": ({**OWMS_SURROGATE, "loss": "mse", "epochs": 0}, OWMS_M),
    "mse": ({**OWMS_SURROGATE, "loss": "mse"}, OWMS_M),
    "gradpie": ({**OWMS_SURROGATE, "loss": "gradpie"}, OWMS_M),
}


def twin_throughput(blackbox_section: dict[str, Any], *, batch: int = 1024, repeats: int = 5,
                    threads: int | None = None) -> dict[str, float]:
    """Queries per second of a twin through the public, validated ``query`` path, best of ``repeats``,
    with ``threads`` torch threads (default: one per CPU core, as a run with the whole machine would)."""
    import os

    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads or os.cpu_count() or 1)
    try:
        return _throughput(blackbox_section, batch, repeats)
    finally:
        torch.set_num_threads(previous)


def _throughput(blackbox_section: dict[str, Any], batch: int, repeats: int) -> dict[str, float]:
    import os

    import torch

    cfg = load_run_config({"blackbox": blackbox_section, "objective": {"type": "target_distance"},
                           "estimator": {"type": "exact"}})
    bb = cfg.blackbox.build()
    gen = torch.Generator().manual_seed(0)
    x = bb.spec.lower + (bb.spec.upper - bb.spec.lower) * torch.rand(batch, bb.spec.input_dim, generator=gen)
    best = float("inf")
    with bb:
        bb.query(x[:8])  # warm-up
        for _ in range(repeats):
            t = time.perf_counter()
            bb.query(x)
            best = min(best, time.perf_counter() - t)
    return {"queries_per_s": batch / best, "batch": batch, "threads": torch.get_num_threads(),
            "cores": os.cpu_count() or 1}


def _owms_extras(task: dict[str, Any], quick: bool) -> tuple[list[str], dict[str, Any]]:
    target = 3000
    tp = twin_throughput(task["blackbox"], repeats=3 if quick else 5)
    one = twin_throughput(task["blackbox"], repeats=3 if quick else 5, threads=1)
    line = (f"twin throughput: {tp['queries_per_s']:.0f} queries/s (batches of {tp['batch']}, {tp['threads']} "
            f"torch threads on {tp['cores']} cores; target {target}/s: {tp['queries_per_s'] / target:.2f}x); "
            f"1 thread: {one['queries_per_s']:.0f} queries/s")
    return [line], {"twin_throughput": tp, "twin_throughput_1_thread": one}


def _owms_bench() -> BenchTask:
    return BenchTask("OWMS", OWMS_TASK, OWMS_METHODS, "mse",
                     [("gradpie", "mse"), ("untrained", "mse"), ("random", "mse")],
                     [50, 100, 200], 50, [12, 25, 50], ["random", "exact", "mse", "gradpie"], _owms_extras)


#: The op-amp benchmark: size the two-stage Miller op-amp (generic 130 nm-class models) for FoM from the same
#: 16 random initial sizings; every method spends 3 designs per start per iteration.
OPAMP_TASK: dict[str, Any] = {
    "name": "bench_opamp",
    "blackbox": {"type": "opamp_ngspice", "n_workers": 2},
    "objective": {"type": "opamp_fom"},
    "estimator": {"type": "exact"},
    "optimizer": {"mode": "online", "n_starts": 16, "iterations": 200, "lr": 0.02, "sigma": 0.02, "seed": 0},
}
OPAMP_SURROGATE = {"type": "surrogate", "hidden": [256, 256], "epochs": 5, "lr": 1e-3, "k": 5, "batch_size": 128,
                   "output_scale": "per_output"}
OPAMP_M = 2
OPAMP_METHODS: Methods = {
    "random": ({"type": "spsa"}, OPAMP_M, {"mode": "random"}),  # the estimator is unused in random mode
    "mse": ({**OPAMP_SURROGATE, "loss": "mse"}, OPAMP_M),
    "gradpie": ({**OPAMP_SURROGATE, "loss": "gradpie"}, OPAMP_M),
}


def _opamp_extras(task: dict[str, Any], quick: bool) -> tuple[list[str], dict[str, Any]]:
    target, batch = 40, (200 if quick else 600)
    fast = twin_throughput(task["blackbox"], batch=batch, repeats=2)
    slow = twin_throughput({**task["blackbox"], "reload_per_design": True}, batch=batch, repeats=2)
    workers = task["blackbox"].get("n_workers", 2)
    line = (f"simulator throughput: {fast['queries_per_s']:.0f} designs/s with alterparam + reset ({workers} "
            f"processes, batches of {batch}; target {target}/s: {fast['queries_per_s'] / target:.2f}x); "
            f"reloading the netlist per design: {slow['queries_per_s']:.0f} designs/s "
            f"(alterparam / reload = {fast['queries_per_s'] / slow['queries_per_s']:.2f}x)")
    return [line], {"simulator_throughput": fast, "simulator_throughput_reload": slow}


def _opamp_bench() -> BenchTask:
    return BenchTask("OpAmp", OPAMP_TASK, OPAMP_METHODS, "mse", [("gradpie", "mse"), ("random", "mse")],
                     [50, 100, 200], 50, [12, 25, 50], ["random", "mse", "gradpie"], _opamp_extras)


BENCH_TASKS = {"cnon": _cnon_bench, "owms": _owms_bench, "opamp": _opamp_bench}
