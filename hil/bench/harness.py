"""One harness for every benchmark task: run each method under each seed set at the same total query
budget, then report what a lab needs to choose a method.

Per method and seed set the loop's trace gives two step curves over total queries (all starts, all
purposes, probes included): the best objective found over everything measured, and the mean over starts
of each start's best. The table reports both at ``fractions`` of the budget (mean ± std over seed sets);
for every gradient method, the queries it needs to reach each peer's final best (on the seed-mean curves)
and that as a ratio of the peer's queries. JSON (stable; other tools read it)::

    {"task", "sense", "budget", "fractions",
     "methods": {name: {"kind", "total_queries", "best", "best_std", "mean", "mean_std", ...}},
     "comparisons": [{"method", "peer", "queries", "ratio", ...}]}
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hil.bench.task import BenchTask, Method


@dataclass
class RunCurve:
    """One method under one seed set: cumulative queries per round and the two best curves."""

    seed: int
    queries: np.ndarray  # rounds
    best: np.ndarray  # rounds: best over everything measured so far
    mean: np.ndarray  # rounds: mean over starts of each start's best so far
    wall_s: float
    busy_s: float
    stopped: str
    n_starts: int

    def at(self, q: float, which: str = "best") -> float:
        """The curve's value after at most ``q`` queries (NaN before its first round)."""
        values = self.best if which == "best" else self.mean
        i = int(np.searchsorted(self.queries, q, side="right")) - 1
        return float(values[i]) if i >= 0 else math.nan


@dataclass
class MethodRuns:
    method: Method
    runs: list[RunCurve] = field(default_factory=list)


def run_one(task: BenchTask, method: Method, seed: int, log_dir: str | None = None) -> RunCurve:
    """Run ``method`` under ``seed`` on a fresh box; every query goes through the validated path (and into
    ``log_dir``'s HDF5 log when given). ``score: expected`` scores each round by the problem's
    ``expected_objective`` at each start's recommended point instead of the best noisy answer so far."""
    from hil.run import execute, load_run_config

    cfg = load_run_config(task.run_config(method, seed))
    expected = task.score == "expected"
    t0 = time.perf_counter()
    box = cfg.blackbox.build() if expected or log_dir is None else None  # no I/O: built, not connected
    if expected and not hasattr(box, "expected_objective"):
        from hil.errors import ConfigError

        raise ConfigError(f"benchmark {task.name}: score: expected needs a blackbox with expected_objective; "
                          f"{type(box).__name__} has none (use score: measured)")
    if log_dir is not None:
        cfg.log.report = False
        log_path = Path(log_dir) / f"{task.name}-{method.name}-seed{seed}.h5"
        resume = log_path if log_path.exists() else None  # a killed run continues from its log (and checkpoint)
        res = execute(cfg, log_path=log_path, resume=resume, recommendations=expected)
        trace, busy = res.trace, res.busy_s
    else:
        from hil.optim.section import optimize

        objective = cfg.objective.build(output_shape=box.spec.output_shape)
        estimator = cfg.estimator.build() if cfg.estimator is not None else None
        with box:
            trace = optimize(box, objective, cfg.optimizer, estimator, recommendations=expected)
        busy = box.stats.busy_s
    if expected:
        scores = _expected_scores(box, trace.recommended)
        best, mean = scores.min(axis=1) if trace.sense == "min" else scores.max(axis=1), scores.mean(axis=1)
    else:
        best = np.asarray(trace.best_overall, dtype=np.float64)
        per_start = trace.best_array()
        with np.errstate(all="ignore"):
            mean = np.array([np.nanmean(r) if np.isfinite(r).any() else np.nan for r in per_start])
    # a resumed run's trace carries the time spent before the kill (up to its checkpoint)
    wall = max(time.perf_counter() - t0, trace.wall_s[-1] if trace.wall_s else 0.0)
    busy = max(busy, trace.busy_s[-1] if trace.busy_s else 0.0)
    return RunCurve(seed, np.asarray(trace.queries, dtype=np.float64), best, mean, wall, busy, trace.stopped,
                    trace.n_starts)


def _expected_scores(box: Any, recommended: list[np.ndarray]) -> np.ndarray:
    """``rounds x n_starts`` expected objectives of the recommended points (one batched, deterministic call)."""
    import torch

    if not recommended:
        return np.empty((0, 1))
    points = np.stack(recommended)  # rounds x P x d
    flat = torch.from_numpy(points.reshape(-1, points.shape[2]))
    with torch.no_grad():
        values = box.expected_objective(flat).to(torch.float64).numpy()
    return values.reshape(points.shape[0], points.shape[1])


def run_fingerprint(task: BenchTask, method: Method, seed: int) -> str:
    """What a run's result depends on: its whole run config (problem, method, seed, budget) and hil's version."""
    from hil.versions import package_versions

    scoring = {} if task.score == "measured" else {"score": task.score}
    blob = json.dumps({"config": task.run_config(method, seed), "hil": package_versions().get("hil"), **scoring},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _save_run(path: Path, fingerprint: str, run: RunCurve) -> None:
    data = {"fingerprint": fingerprint, **{k: v.tolist() if isinstance(v, np.ndarray) else v
                                           for k, v in dataclasses.asdict(run).items()}}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)  # atomic: a killed benchmark leaves a whole run or none


def _load_run(path: Path, fingerprint: str) -> RunCurve | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if data.pop("fingerprint", None) != fingerprint:
        return None
    try:
        for key in ("queries", "best", "mean"):
            data[key] = np.asarray([math.nan if v is None else v for v in data[key]], dtype=np.float64)
        return RunCurve(**data)
    except (KeyError, TypeError, ValueError):  # written by another version of hil: run it again
        return None


@dataclass
class RunPlan:
    """One task's runs: those kept from an earlier sweep and those still to run (keyed by method and seed)."""

    task: BenchTask
    order: list[tuple[str, int]]
    done: dict[tuple[str, int], RunCurve]
    pending: dict[tuple[str, int], tuple]
    paths: dict[tuple[str, int], tuple[Path, str]]

    def results(self, kept_only: bool = False) -> dict[str, MethodRuns]:
        """Every method's runs in seed order; ``kept_only``: only the runs that have finished, leaving out a
        method with none (a report on an unfinished benchmark)."""
        out = {name: MethodRuns(m) for name, m in self.task.methods.items()}
        for name, seed in self.order:
            if (name, seed) in self.done:
                out[name].runs.append(self.done[(name, seed)])
            elif not kept_only:
                raise KeyError(f"{name} seed {seed} has not run")
        return {name: mr for name, mr in out.items() if mr.runs}

    def missing(self) -> list[tuple[str, int]]:
        """The (method, seed) runs not finished yet, in run order."""
        return [key for key in self.order if key not in self.done]


def plan_runs(task: BenchTask, *, log_dir: str | None = None, runs_dir: str | None = None) -> RunPlan:
    """The runs of ``task``, a seed set at a time; with ``runs_dir``, a run kept there with the same
    fingerprint (:func:`run_fingerprint`) is read back instead of queued."""
    order = [(name, seed) for seed in task.seeds for name in task.methods]
    plan = RunPlan(task, order, {}, {}, {})
    if runs_dir is not None:
        Path(runs_dir).mkdir(parents=True, exist_ok=True)
    for name, seed in order:
        method = task.methods[name]
        if runs_dir is not None:
            path, fingerprint = Path(runs_dir) / f"{name}-seed{seed}.json", run_fingerprint(task, method, seed)
            plan.paths[(name, seed)] = (path, fingerprint)
            kept = _load_run(path, fingerprint)
            if kept is not None:
                plan.done[(name, seed)] = kept
                continue
        plan.pending[(name, seed)] = (task, method, seed, log_dir)
    return plan


@dataclass
class PoolStats:
    """How well a pool kept its workers busy: ``runs`` run in ``wall_s`` on ``slots`` workers at once, their own
    times adding up to ``run_s`` (``slots`` is ``None`` for a Ray cluster of unknown size)."""

    runs: int
    wall_s: float
    run_s: float
    slots: int | None

    def describe(self) -> str:
        line = (f"pool: {self.runs} runs in {self.wall_s:.1f} s wall; their own times add up to {self.run_s:.1f} s "
                f"({self.run_s / self.wall_s:.2f}x faster than one after another")
        if self.slots:
            line += (f"; wall / (sum / {self.slots} workers) = {self.wall_s * self.slots / self.run_s:.2f}, 1.00 when "
                     f"no worker idles")
        return line + ")"


def execute_plans(plans: list[RunPlan], *, progress: bool = True, executor: str = "serial",
                  workers: int | None = None, address: str | None = None, desc: str = "bench") -> PoolStats:
    """Run every pending run of ``plans`` in one pool (:mod:`hil.bench.executors`), keeping each as it arrives;
    prints (and returns) how busy the pool kept its workers."""
    from tqdm import tqdm

    from hil.bench.executors import parallel_slots, run_all

    jobs = {(i, *key): args for i, plan in enumerate(plans) for key, args in plan.pending.items()}
    total = sum(len(p.order) for p in plans)
    bar = tqdm(total=total, initial=total - len(jobs), desc=desc, disable=not progress, unit="run")
    t0, run_s = time.perf_counter(), 0.0
    for (i, name, seed), run in run_all(run_one, jobs, executor=executor, workers=workers, address=address):
        plan = plans[i]
        if (name, seed) in plan.paths:
            _save_run(*plan.paths[(name, seed)], run)
        plan.done[(name, seed)] = run
        del plan.pending[(name, seed)]
        run_s += run.wall_s
        bar.update(1)
        bar.set_postfix(finished=f"{plan.task.name}/{name}/seed{seed}")
    bar.close()
    stats = PoolStats(len(jobs), time.perf_counter() - t0, run_s, parallel_slots(executor, workers, len(jobs), address))
    if stats.runs > 1:
        print(stats.describe())
    return stats


def run_task(task: BenchTask, *, progress: bool = True, log_dir: str | None = None, runs_dir: str | None = None,
             executor: str = "serial", workers: int | None = None, address: str | None = None
             ) -> dict[str, MethodRuns]:
    """Every method under every seed set, on ``executor``; with ``runs_dir`` each finished run is kept there
    as it arrives and reused when the same command runs again (an interrupted benchmark resumes)."""
    plan = plan_runs(task, log_dir=log_dir, runs_dir=runs_dir)
    execute_plans([plan], progress=progress, executor=executor, workers=workers, address=address,
                  desc=f"bench {task.name}")
    return plan.results()


def _stats(values: list[float]) -> tuple[float | None, float | None]:
    v = np.asarray([x for x in values if math.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return None, None
    return float(v.mean()), float(v.std())


def seed_mean_curve(runs: list[RunCurve], grid: np.ndarray, which: str = "best") -> np.ndarray:
    """The seed-set mean of a step curve at each grid point (NaN until every seed set has a value)."""
    values = np.array([[r.at(q, which) for q in grid] for r in runs])
    with np.errstate(all="ignore"):
        return np.where(np.isfinite(values).all(axis=0), values.mean(axis=0), np.nan)


def queries_to_reach(curve: np.ndarray, grid: np.ndarray, level: float, sense: str, stay: bool = False) -> int | None:
    """The first grid point where ``curve`` is at ``level`` or better (``stay``: and stays there to the end,
    for curves that are not monotonic: the expected objective at a noisy iterate)."""
    hit = (curve <= level) if sense == "min" else (curve >= level)
    hit &= np.isfinite(curve)
    if stay:
        hit = np.flip(np.logical_and.accumulate(np.flip(hit)))
    return int(grid[int(np.argmax(hit))]) if hit.any() else None


def summarize(task: BenchTask, results: dict[str, MethodRuns], sense: str, grid_points: int = 400) -> dict[str, Any]:
    """The JSON summary (module docstring)."""
    budget = task.budget
    checkpoints = [int(round(f * budget)) for f in task.fractions]
    out: dict[str, Any] = {"task": task.name, "title": task.title, "sense": sense, "budget": budget,
                           "fractions": task.fractions, "seeds": task.seeds, "methods": {}, "comparisons": []}
    for name, mr in results.items():
        entry: dict[str, Any] = {"kind": mr.method.kind, "total_queries": checkpoints}
        for which in ("best", "mean"):
            stats = [_stats([r.at(q, which) for r in mr.runs]) for q in checkpoints]
            entry[which] = [s[0] for s in stats]
            entry[f"{which}_std"] = [s[1] for s in stats]
        entry["seeds"] = [r.seed for r in mr.runs]
        entry["queries_used"] = [int(r.queries[-1]) if r.queries.size else 0 for r in mr.runs]
        entry["final_best_per_seed"] = [r.at(budget) for r in mr.runs]
        entry["n_starts"] = mr.runs[0].n_starts if mr.runs else None
        entry["wall_s"] = [r.wall_s for r in mr.runs]
        entry["stopped"] = [r.stopped for r in mr.runs]
        entry["optimizer"] = mr.method.optimizer
        if mr.method.estimator is not None:
            entry["estimator"] = mr.method.estimator
        out["methods"][name] = entry
    grid = np.linspace(budget / grid_points, budget, grid_points)
    curves = {name: seed_mean_curve(mr.runs, grid) for name, mr in results.items()}
    for g, gr in results.items():
        if gr.method.kind != "gradient":
            continue
        for p, pr in results.items():
            if pr.method.kind != "peer":
                continue
            out["comparisons"].append(_compare(g, gr, p, pr, curves, grid, sense, stay=task.score == "expected"))
    return out


def _compare(g: str, gr: MethodRuns, p: str, pr: MethodRuns, curves: dict[str, np.ndarray], grid: np.ndarray,
             sense: str, stay: bool = False) -> dict[str, Any]:
    """Queries ``g`` needs to reach ``p``'s final best: on the seed-mean curves, and per seed set (``stay``:
    to reach it and stay there)."""
    level = curves[p][-1]
    peer_q = float(np.mean([r.queries[-1] for r in pr.runs]))
    q = queries_to_reach(curves[g], grid, level, sense, stay) if math.isfinite(level) else None
    per_seed = []
    for rg, rp in zip(gr.runs, pr.runs, strict=False):
        lvl = rp.at(grid[-1])
        qs = (queries_to_reach(np.array([rg.at(x) for x in grid]), grid, lvl, sense, stay) if math.isfinite(lvl)
              else None)
        per_seed.append(None if qs is None else qs / float(rp.queries[-1]))
    return {"method": g, "peer": p, "level": None if not math.isfinite(level) else float(level),
            "peer_queries": peer_q, "queries": q, "ratio": None if q is None else q / peer_q,
            "ratios_per_seed": per_seed}


def _seed_note(summary: dict[str, Any], m: dict[str, Any]) -> str:
    """`` (seed sets 0)`` for a method that has run under fewer seed sets than the task's (a report on kept runs
    of an unfinished benchmark), else nothing."""
    return "" if m["seeds"] == list(summary["seeds"]) else f" (seed sets {', '.join(map(str, m['seeds']))})"


def _fmt(mean: float | None, std: float | None, one_seed: bool = False) -> str:
    if mean is None:
        return "      n/a      "
    return (f"{mean:.4g}" if one_seed else f"{mean:.4g} ± {std:.2g}").ljust(15)


def format_table(summary: dict[str, Any]) -> list[str]:
    """The printed table: best over all starts and mean over starts at each fraction, then the ratios."""
    fr = summary["fractions"]
    head = f"{'method':<19}{'kind':<10}" + "".join(f"| best @{int(100 * f)}%".ljust(18) for f in fr)
    head += f"| mean over starts @{int(100 * fr[-1])}%  | queries used | wall s"
    lines = [head, "-" * len(head)]
    for name, m in summary["methods"].items():
        one = len(m["seeds"]) == 1
        cells = "".join(f"| {_fmt(b, s, one)} " for b, s in zip(m["best"], m["best_std"], strict=True))
        used = int(np.mean(m["queries_used"]))
        lines.append(f"{name:<19}{m['kind']:<10}{cells}| {_fmt(m['mean'][-1], m['mean_std'][-1], one)}     | "
                     f"{used:>12} | {np.mean(m['wall_s']):6.1f}{_seed_note(summary, m)}")
    if summary["comparisons"]:  # a task with no peers (the offline suite) has nothing to compare with
        lines.append("")
        lines.append("queries a gradient method needs to reach a peer's final best (seed-mean curves; ratio = of "
                     "the peer's queries; per seed set in brackets):")
    for c in summary["comparisons"]:
        got = "never" if c["queries"] is None else f"{c['queries']:>6} = {c['ratio']:.2f}x"
        per = " ".join("never" if r is None else f"{r:.2f}" for r in c["ratios_per_seed"])
        level = "n/a" if c["level"] is None else f"{c['level']:.4g}"
        lines.append(f"  {c['method']:<16} vs {c['peer']:<12} (level {level}): {got}   [{per}]")
    lines.extend(verdict(summary))
    return lines


def verdict(summary: dict[str, Any], target: float = 0.5) -> list[str]:
    """The goal: hil's best gradient method reaches the best peer's final best with <= ``target`` x its queries."""
    sense = summary["sense"]
    peers = {n: m for n, m in summary["methods"].items() if m["kind"] == "peer" and m["best"][-1] is not None}
    if not peers or not summary["comparisons"]:
        return []
    pick = min if sense == "min" else max
    best_peer = pick(peers, key=lambda n: peers[n]["best"][-1])
    against = [c for c in summary["comparisons"] if c["peer"] == best_peer]
    reached = [c for c in against if c["ratio"] is not None]
    if not reached:
        return [f"goal (<= {target}x the best peer's queries): NOT MET: no gradient method reaches {best_peer}'s "
                f"final best {peers[best_peer]['best'][-1]:.4g} within the budget"]
    top = min(reached, key=lambda c: c["ratio"])
    status = "met" if top["ratio"] <= target else "NOT MET"
    return [f"goal (<= {target}x the best peer's queries): {status}: {top['method']} reaches {best_peer}'s final best "
            f"{peers[best_peer]['best'][-1]:.4g} with {top['ratio']:.2f}x its queries"]


def plot(path: str, summary: dict[str, Any], results: dict[str, MethodRuns], grid_points: int = 200) -> str:
    """Objective (best over all starts) against total queries: seed-mean lines with min-max bands over seed sets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budget = summary["budget"]
    grid = np.linspace(budget / grid_points, budget, grid_points)
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    styles = {"gradient": "-", "peer": "--", "reference": ":"}
    for name, mr in results.items():
        values = np.array([[r.at(q) for q in grid] for r in mr.runs])
        mean = seed_mean_curve(mr.runs, grid)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns before a method's first round
            lo, hi = np.nanmin(values, axis=0), np.nanmax(values, axis=0)
        label = f"{name} ({mr.method.kind}){_seed_note(summary, summary['methods'][name])}"
        (line,) = ax.plot(grid, mean, styles[mr.method.kind], label=label)
        if len(mr.runs) > 1:
            ax.fill_between(grid, lo, hi, color=line.get_color(), alpha=0.15, linewidth=0)
    ax.set_xlabel("total device queries (all starts, probes included)")
    sense = summary["sense"]
    ax.set_ylabel(f"best objective found ({'lower' if sense == 'min' else 'higher'} is better)")
    finals = [m["best"][-1] for m in summary["methods"].values() if m["best"][-1] is not None]
    if sense == "min" and finals and min(finals) > 0:
        ax.set_yscale("log")
    n = len(summary["seeds"])
    ax.set_title(f"{summary['title']}\nbudget {budget} queries, {n} seed set{'s' if n > 1 else ''}"
                 + (" (band: min-max over seed sets)" if n > 1 else ""), fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def markdown_table(summary: dict[str, Any]) -> str:
    """The summary as a markdown table (best over all starts and mean over starts, mean ± std over seed sets),
    followed by the query ratios; written beside the JSON."""

    def cell(mean: float | None, std: float | None, one: bool) -> str:
        return "n/a" if mean is None else (f"{mean:.4g}" if one else f"{mean:.4g} ± {std:.2g}")

    fr = summary["fractions"]
    cols = [f"best @{int(100 * f)} %" for f in fr] + [f"mean over starts @{int(100 * fr[-1])} %"]
    lines = ["| method | kind | " + " | ".join(cols) + " | queries used |", "|---|---|" + "---|" * (len(cols) + 1)]
    for name, m in summary["methods"].items():
        one = len(m["seeds"]) == 1
        cells = [cell(b, s, one) for b, s in zip(m["best"], m["best_std"], strict=True)]
        cells.append(cell(m["mean"][-1], m["mean_std"][-1], one))
        lines.append(f"| {name}{_seed_note(summary, m)} | {m['kind']} | " + " | ".join(cells)
                     + f" | {int(np.mean(m['queries_used']))} |")
    if summary["comparisons"]:
        lines += ["", "| gradient method | peer | peer's final best | queries to reach it | ratio | per seed set |",
                  "|---|---|---|---|---|---|"]
    for c in summary["comparisons"]:
        per = ", ".join("never" if r is None else f"{r:.2f}" for r in c["ratios_per_seed"])
        level = "n/a" if c["level"] is None else f"{c['level']:.4g}"
        got = "never" if c["queries"] is None else str(c["queries"])
        ratio = "—" if c["ratio"] is None else f"{c['ratio']:.2f}x"
        lines.append(f"| {c['method']} | {c['peer']} | {level} | {got} | {ratio} | {per} |")
    lines += ["", *verdict(summary)]
    return "\n".join(lines) + "\n"
