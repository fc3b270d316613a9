"""The benchmark harness: tasks as YAML, equal query budgets, the JSON format, comparisons, the CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from hil.bench import bench_task
from hil.bench.harness import RunCurve, queries_to_reach, summarize
from hil.bench.task import Method, load_task, parse_overrides, shipped_tasks
from hil.errors import ConfigError

SMALL = {"type": "surrogate", "hidden": [16], "epochs": 1, "k": 3}
TINY = {
    "name": "tiny",
    "title": "tiny CNON",
    "problem": {"blackbox": {"type": "cnon_twin", "dim": 4, "steps": 8},
                "objective": {"type": "target_distance", "target_seed": 1}},
    "budget": 60,
    "seeds": [0, 1],
    "fractions": [0.25, 0.5, 1.0],
    "quick": {"budget": 30, "seeds": [0], "methods": ["gradpie", "random"]},
    "methods": {
        "gradpie": {"kind": "gradient", "optimizer": {"type": "gradient", "n_starts": 3, "local_samples": 1},
                    "estimator": {**SMALL, "loss": "gradpie"}},
        "one_start": {"kind": "gradient", "optimizer": {"type": "gradient", "n_starts": 1, "local_samples": 5},
                      "estimator": {**SMALL, "loss": "gradpie"}},
        "random": {"kind": "peer", "optimizer": {"type": "random", "n_starts": 3, "per_start": 2}},
        "exact": {"kind": "reference", "optimizer": {"type": "gradient", "n_starts": 3},
                  "estimator": {"type": "exact"}},
    },
}


@pytest.fixture
def task_file(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


@pytest.fixture
def tiny_summary(task_file, tmp_path, capsys):
    summary = bench_task(str(task_file), json_path=str(tmp_path / "tiny.json"), progress=False)
    return summary, capsys.readouterr().out, tmp_path


def test_the_summary_has_the_documented_json_shape(tiny_summary):
    summary, _, tmp_path = tiny_summary
    on_disk = json.loads((tmp_path / "tiny.json").read_text())
    assert (tmp_path / "tiny.png").is_file()
    for s in (summary, on_disk):
        assert s["task"] == "tiny" and s["sense"] == "min" and s["budget"] == 60 and s["fractions"] == [0.25, 0.5, 1]
        assert set(s["methods"]) == set(TINY["methods"])
        for m in s["methods"].values():
            assert m["kind"] in ("gradient", "peer", "reference")
            assert m["total_queries"] == [15, 30, 60]
            for key in ("best", "best_std", "mean", "mean_std"):
                assert len(m[key]) == 3
        for c in s["comparisons"]:
            assert set(c) >= {"method", "peer", "queries", "ratio"}
            assert c["queries"] is None or isinstance(c["queries"], int)
    # every gradient method against every peer, and nothing else
    pairs = {(c["method"], c["peer"]) for c in summary["comparisons"]}
    assert pairs == {("gradpie", "random"), ("one_start", "random")}


def test_a_task_without_peers_prints_no_comparison_header(tiny_summary):
    from hil.bench.harness import format_table, markdown_table

    summary, _, _ = tiny_summary
    assert any("to reach a peer's final best" in line for line in format_table(summary))
    alone = {**summary, "comparisons": [], "methods": {k: v for k, v in summary["methods"].items()
                                                       if v["kind"] != "peer"}}
    assert not any("to reach a peer" in line for line in format_table(alone))
    assert "queries to reach it" not in markdown_table(alone) and "| gradpie |" in markdown_table(alone)


def test_every_method_stays_within_the_budget_and_best_never_gets_worse(tiny_summary):
    summary, _, _ = tiny_summary
    for name, m in summary["methods"].items():
        assert max(m["queries_used"]) <= 60, name
        best = [b for b in m["best"] if b is not None]
        assert best == sorted(best, reverse=True), name  # min: the best found only improves
        assert m["best"][-1] <= m["mean"][-1] + 1e-12  # the best over starts is at least the mean over starts


def test_the_table_prints_every_method_and_the_goal(tiny_summary):
    _, out, _ = tiny_summary
    for name in TINY["methods"]:
        assert name in out
    assert "queries a gradient method needs to reach a peer's final best" in out
    assert "goal (<= 0.5x the best peer's queries)" in out


def test_seed_sets_differ_and_a_seed_reproduces_its_run(task_file):
    a = bench_task(str(task_file), progress=False, methods=["gradpie"], seeds=2)
    b = bench_task(str(task_file), progress=False, methods=["gradpie"], seeds=1)
    per_seed = a["methods"]["gradpie"]["final_best_per_seed"]
    assert per_seed[0] != per_seed[1]
    assert b["methods"]["gradpie"]["final_best_per_seed"][0] == pytest.approx(per_seed[0])


def _curve(seed, queries, best):
    q = np.asarray(queries, dtype=float)
    return RunCurve(seed, q, np.asarray(best, dtype=float), np.asarray(best, dtype=float), 1.0, 0.5, "", 1)


def test_step_curves_and_queries_to_reach_on_constructed_runs():
    c = _curve(0, [10, 20, 40], [3.0, 2.0, 1.0])
    assert math.isnan(c.at(5)) and c.at(10) == 3.0 and c.at(39) == 2.0 and c.at(100) == 1.0
    grid = np.array([10.0, 20, 30, 40])
    assert queries_to_reach(np.array([3.0, 2, 2, 1]), grid, 2.0, "min") == 20
    assert queries_to_reach(np.array([3.0, 2, 2, 1]), grid, 0.5, "min") is None
    assert queries_to_reach(np.array([1.0, 2, 2, 3]), grid, 2.5, "max") == 40


def test_comparisons_use_the_peers_final_best_and_its_queries():
    from hil.bench.harness import MethodRuns
    from hil.bench.task import BenchTask

    g = MethodRuns(Method("g", "gradient", {}), [_curve(0, [10, 20, 30, 40], [3, 2, 1, 0.5])])
    p = MethodRuns(Method("p", "peer", {}), [_curve(0, [20, 40], [2.5, 1.0])])
    task = BenchTask("t", "t", {}, 40, [0], [0.5, 1.0], {"g": g.method, "p": p.method})
    s = summarize(task, {"g": g, "p": p}, "min", grid_points=4)
    (c,) = s["comparisons"]
    assert c["level"] == 1.0 and c["queries"] == 30 and c["ratio"] == pytest.approx(30 / 40)
    assert s["methods"]["p"]["best"] == [2.5, 1.0]


def test_shipped_tasks_load_and_every_method_validates():
    names = shipped_tasks()
    assert {"cnon", "owms", "owms_macro", "opamp", "lgso_three_hump", "offline_owms"} <= set(names)
    for name in names:
        task = load_task(name)
        kinds = {m.kind for m in task.methods.values()}
        # every task measures hil against what a lab would use instead, except the offline ones, which compare
        # surrogate losses from one dataset (MATCH-OPT's protocol)
        assert ({"gradient"} if name.startswith("offline_") else {"gradient", "peer"}) <= kinds, name
        assert task.budget >= 1000 and len(task.seeds) >= 3, name  # the full run: at least 3 seed sets
        assert set(task.quick["methods"]) <= set(task.methods)


def test_bad_task_files_name_the_key(tmp_path):
    for change, says in [
        ({"budget": 0}, "budget: expected an integer >= 1"),
        ({"methods": {"x": {"kind": "rival", "optimizer": {"type": "random"}}}}, "methods.x.kind: expected one of"),
        ({"methods": {"x": {"kind": "peer", "optimizer": {"type": "random", "lr": 1}}}},
         "methods.x.optimizer.lr: unknown key for type 'random'"),
        ({"methods": {"x": {"kind": "peer", "optimizer": {"type": "random"}, "estimator": {"type": "exact"}}}},
         "methods.x.estimator: optimizer type 'random' does not use a gradient"),
        ({"budgt": 3}, "budgt: unknown key"),
        ({"seeds": [0, -1]}, r"seeds\[1\]: expected an integer in \[0, 2\*\*32\)"),
        ({"quick": {"budgte": 3}}, "quick.budgte: unknown key"),
    ]:
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump({**TINY, "quick": {}, **change}))
        with pytest.raises(ConfigError, match=says):
            load_task(str(path))


def test_overrides_parse_as_yaml_and_reach_the_methods_that_take_them(task_file):
    got = parse_overrides(["optimizer.adam_beta1=0.5", "surrogate.hidden=[8, 8]", "blackbox.dim=4"])
    assert got == {"optimizer": {"adam_beta1": 0.5}, "surrogate": {"hidden": [8, 8]}, "blackbox": {"dim": 4}}
    for bad, says in [("optimizer.lr", "expected SECTION.KEY=VALUE"), ("estimator.k=3", "unknown section"),
                      ("optimizer.lr=[1", "not valid YAML")]:
        with pytest.raises(ConfigError, match=says):
            parse_overrides([bad])
    task = load_task(str(task_file)).with_overrides({"optimizer": {"adam_beta1": 0.5}, "surrogate": {"k": 2}})
    assert task.methods["gradpie"].optimizer["adam_beta1"] == 0.5
    assert "adam_beta1" not in task.methods["random"].optimizer  # random search has no Adam
    assert task.methods["gradpie"].estimator["k"] == 2 and "k" not in task.methods["exact"].estimator


def test_cli_bench_errors_before_running():
    def run(*args):
        return subprocess.run([sys.executable, "-m", "hil.cli", "bench", *args], capture_output=True, text=True,
                              timeout=120)

    proc = run("opamp_unknown")
    assert proc.returncode == 2 and "unknown benchmark 'opamp_unknown'; allowed: cnon" in proc.stderr
    proc = run("cnon", "--set", "optimizer.adam_beta1=1.5")
    assert proc.returncode == 2 and "optimizer.adam_beta1: must be >= 0 and < 1, got 1.5" in proc.stderr
    assert "benchmark (" not in proc.stdout  # no table: nothing ran
    proc = run("log", "--seeds", "3")
    assert proc.returncode == 2 and "--seeds, --set, --methods and --kept-only apply to benchmark tasks" in proc.stderr
    proc = run("cnon", "--seeds", "0")
    assert proc.returncode == 2 and "--seeds must be >= 1, got 0" in proc.stderr
    proc = run("cnon", "--methods", "gradpie,newton")
    assert proc.returncode == 2 and "--methods: 'newton' is not a method of cnon" in proc.stderr


def test_an_interrupted_benchmark_resumes_from_its_kept_runs(task_file, tmp_path, monkeypatch):
    """Finished runs are kept beside the JSON; the same command reuses them, a changed method reruns."""
    import hil.bench.harness as harness

    json_path = str(tmp_path / "out" / "tiny.json")
    first = bench_task(str(task_file), json_path=json_path, progress=False, methods=["gradpie", "random"])
    kept = sorted(p.name for p in (tmp_path / "out" / "tiny.runs").iterdir())
    assert kept == ["gradpie-seed0.json", "gradpie-seed1.json", "random-seed0.json", "random-seed1.json"]
    calls = []
    real = harness.run_one
    monkeypatch.setattr(harness, "run_one", lambda *a, **k: calls.append(a[1].name) or real(*a, **k))
    again = bench_task(str(task_file), json_path=json_path, progress=False, methods=["gradpie", "random"])
    assert calls == []  # nothing reran
    for name in ("gradpie", "random"):
        assert again["methods"][name]["best"] == first["methods"][name]["best"]
    bench_task(str(task_file), json_path=json_path, progress=False, methods=["gradpie", "random"],
               overrides={"optimizer": {"lr": 0.05}})
    assert calls == ["gradpie", "gradpie"]  # random has no lr: its runs are still valid
    (tmp_path / "out" / "tiny.runs" / "random-seed1.json").write_text("{truncated")
    bench_task(str(task_file), json_path=json_path, progress=False, methods=["random"])
    assert calls[-1:] == ["random"]


def test_a_run_whose_log_is_in_the_log_dir_continues_from_it(task_file, tmp_path):
    """With --log-dir, a run that has a log there (a killed benchmark's) resumes from it: the log answers the
    queries it holds, nothing is queried twice, and the curves are those of an uninterrupted run."""
    from hil.querylog import read_log

    logs = tmp_path / "logs"
    first = bench_task(str(task_file), json_path=str(tmp_path / "a" / "tiny.json"), progress=False,
                       methods=["gradpie"], log_dir=str(logs))
    rows = {p.name: len(read_log(p)) for p in logs.glob("*.h5")}
    assert sorted(rows) == ["tiny-gradpie-seed0.h5", "tiny-gradpie-seed1.h5"]
    again = bench_task(str(task_file), json_path=str(tmp_path / "b" / "tiny.json"), progress=False,
                       methods=["gradpie"], log_dir=str(logs))  # no kept runs there: both run, from their logs
    for p in logs.glob("*.h5"):
        log = read_log(p)
        assert len(log) == rows[p.name] and len(log.run_ids) == 2  # resumed, not one row added
    assert again["methods"]["gradpie"]["best"] == first["methods"]["gradpie"]["best"]


def test_kept_only_reports_an_unfinished_benchmark_without_running(task_file, tmp_path, monkeypatch):
    """--kept-only reads the runs folder back: each method over the seed sets it finished, marked where fewer."""
    import hil.bench.harness as harness

    json_path = tmp_path / "out" / "tiny.json"
    with pytest.raises(ConfigError, match="--kept-only reports the runs kept by an earlier"):
        bench_task(str(task_file), json_path=str(json_path), progress=False, kept_only=True)
    first = bench_task(str(task_file), json_path=str(json_path), progress=False, methods=["gradpie", "random"])
    (tmp_path / "out" / "tiny.runs" / "random-seed1.json").unlink()
    monkeypatch.setattr(harness, "run_one", lambda *a, **k: pytest.fail("--kept-only ran a method"))
    got = bench_task(str(task_file), json_path=str(json_path), progress=False, kept_only=True)
    assert list(got["methods"]) == ["gradpie", "random"]  # the task's other methods have no kept run
    assert got["methods"]["gradpie"]["seeds"] == [0, 1] and got["methods"]["random"]["seeds"] == [0]
    assert got["methods"]["gradpie"]["best"] == first["methods"]["gradpie"]["best"]
    assert got["methods"]["random"]["best"][-1] == first["methods"]["random"]["final_best_per_seed"][0]
    assert got["methods"]["random"]["best_std"][-1] == 0.0
    md = json_path.with_suffix(".md").read_text()
    assert "| random (seed sets 0) | peer |" in md and "| gradpie | gradient |" in md
    for name in ("gradpie", "random"):
        (tmp_path / "out" / "tiny.runs" / f"{name}-seed0.json").unlink()
        (tmp_path / "out" / "tiny.runs" / f"{name}-seed1.json").unlink(missing_ok=True)
    with pytest.raises(ConfigError, match="holds no finished run of tiny"):
        bench_task(str(task_file), json_path=str(json_path), progress=False, kept_only=True)


def test_iteration_cost_runs_the_surrogate_method_both_ways_at_equal_queries(task_file):
    from hil.bench.extras import run_extras
    from hil.estimator_configs import DEFAULT_STEPS

    task = load_task(str(task_file))
    task.extras = ["iteration_cost"]
    lines, out = run_extras(task, quick=True)
    cost = out["iteration_cost"]
    assert cost["method"] == "gradpie" and cost["marks"] == [10, 100]
    assert cost["epochs"]["training"]["steps"] is None
    assert cost["bounded"]["training"]["steps"] == DEFAULT_STEPS
    assert cost["epochs"]["queries"] == cost["bounded"]["queries"] == 100 * 3 * 2  # 3 starts x (step + 1 sample)
    for name in ("epochs", "bounded"):
        assert all(t > 0 for t in cost[name]["s_per_iteration"]) and math.isfinite(cost[name]["best"])
    assert any("bounded, 20 steps" in line and "CPU" in line for line in lines)
    assert all(t > 0 for t in cost["bounded"]["cpu_s_per_iteration"])


def test_an_unknown_extra_fails_before_anything_runs(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**TINY, "extras": ["duty_cycles"]}))
    with pytest.raises(ConfigError, match="extras: 'duty_cycles' is not a measurement.*duty_cycle"):
        bench_task(str(path), progress=False)


def _curves(summary):
    return {name: (m["best"], m["mean"], m["final_best_per_seed"]) for name, m in summary["methods"].items()}


def test_parallel_processes_give_the_serial_curves(task_file):
    serial = bench_task(str(task_file), progress=False, methods=["gradpie", "random"], executor="serial")
    parallel = bench_task(str(task_file), progress=False, methods=["gradpie", "random"], executor="process",
                          workers=2)
    assert _curves(parallel) == _curves(serial)


def test_a_ray_sweep_gives_the_serial_curves(task_file):
    pytest.importorskip("ray", reason="pip install 'hil[ray]'")
    serial = bench_task(str(task_file), progress=False, methods=["random", "exact"], seeds=1, executor="serial")
    on_ray = bench_task(str(task_file), progress=False, methods=["random", "exact"], seeds=1, executor="ray")
    assert _curves(on_ray) == _curves(serial)


def test_a_failing_run_names_itself_and_bad_executor_flags_fail_first(task_file):
    from hil.bench.executors import run_all

    with pytest.raises(RuntimeError, match=r"run \('sqrt', -1\) failed in a worker process: math domain error"):
        list(run_all(math.sqrt, {("sqrt", -1): (-1.0,), ("sqrt", 4): (4.0,)}, executor="process", workers=2))
    for kwargs, message in [({"executor": "dask"}, "--executor must be one of serial, process, ray"),
                            ({"executor": "process", "workers": 0}, "--jobs must be >= 1"),
                            ({"executor": "process", "address": "h:6379"}, "--address joins a Ray cluster")]:
        with pytest.raises(ConfigError, match=message):
            bench_task(str(task_file), progress=False, **kwargs)


def test_a_sweep_runs_tasks_x_variants_in_one_pool_and_resumes(task_file, tmp_path, monkeypatch, capsys):
    from hil.bench.sweep import run_sweep

    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"name": "g", "tasks": [str(task_file)], "methods": ["gradpie", "random"],
                                    "seeds": 2, "variants": {"base": [], "lr": ["optimizer.lr=0.05"]}}))
    out = tmp_path / "sweep"
    doc = run_sweep(str(grid), out_dir=str(out), progress=False, executor="process", workers=2)
    assert sorted(doc["results"]) == ["tiny/base", "tiny/lr"]
    base, lr = doc["results"]["tiny/base"], doc["results"]["tiny/lr"]
    assert base["methods"]["random"]["best"] == lr["methods"]["random"]["best"]  # random has no lr
    assert base["methods"]["gradpie"]["best"] != lr["methods"]["gradpie"]["best"]
    alone = bench_task(str(task_file), progress=False, methods=["gradpie", "random"], seeds=2)
    assert _curves(alone) == _curves(base)  # a sweep's pair is the same benchmark run alone
    for name in ("sweep.json", "sweep.md", "tiny-base.json", "tiny-lr.png"):
        assert (out / name).is_file()
    import hil.bench.harness as harness

    calls = []
    monkeypatch.setattr(harness, "run_one", lambda *a, **k: calls.append(a) or None)
    again = run_sweep(str(grid), out_dir=str(out), progress=False, executor="serial")
    assert calls == [] and _curves(again["results"]["tiny/lr"]) == _curves(lr)


@pytest.mark.parametrize("grid, message", [
    ({"tasks": []}, "tasks: expected a non-empty list"),
    ({"tasks": ["cnon"], "seed": 2}, "seed: unknown key"),
    ({"tasks": ["cnon"], "seeds": 0}, "seeds: expected a number of seed sets >= 1"),
    ({"tasks": ["cnon"], "extras": "yes"}, "extras: expected true or false"),
    ({"tasks": ["cnon"], "variants": {"a": "optimizer.lr=1"}}, "variants.a: expected a list"),
    ({"tasks": ["cnon"], "variants": {"a": ["optimiser.lr=1"]}}, "variants.a: .*unknown section 'optimiser'"),
    ({"tasks": ["cnon"], "methods": ["gradpie_2x4", "cma"]}, "methods: 'cma' is not a method of any task"),
    ({"tasks": ["nope"]}, "nope"),
])
def test_a_bad_grid_names_the_key(tmp_path, grid, message):
    from hil.bench.sweep import run_sweep

    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    with pytest.raises(ConfigError, match=message):
        run_sweep(str(path), out_dir=str(tmp_path / "o"), progress=False, executor="serial")


def test_expected_score_is_the_problems_expectation_at_each_iterate():
    import torch
    from hil.sim_backends.lgso_problems import rosenbrock

    from hil.bench.harness import run_one
    from hil.bench.task import BenchTask, Method

    method = Method("exact", "reference", {"type": "gradient", "n_starts": 1, "lr": 0.01, "x0": 2.0},
                    {"type": "exact"})
    task = BenchTask("t", "t", {"blackbox": {"type": "rosenbrock"}, "objective": {"type": "mean_output"}}, 3, [0],
                     [1.0], {"exact": method}, score="expected", reseed_blackbox=True)
    curve = run_one(task, method, 0)
    # Adam's first step moves every input by lr (0.1 of 10) against the gradient's sign: down, the last one up
    first = torch.full((1, 10), 1.9, dtype=torch.float64)
    first[0, -1] = 2.1
    assert curve.best[0] == pytest.approx(float(rosenbrock(first)), rel=1e-4)
    assert curve.best[-1] < curve.best[0] and list(curve.queries) == [1, 2, 3]


RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"


@pytest.mark.parametrize("name", sorted(p.name for p in RESULTS.glob("*.yaml")))
def test_every_task_and_grid_file_the_documentation_reruns_still_loads(name):
    """The documentation gives ``hil bench docs/results/X.yaml`` (or ``hil sweep``) to reproduce each result:
    each file must still be a valid task (every method's run config checked) or grid."""
    import yaml as _yaml

    from hil.bench.sweep import load_grid
    from hil.bench.task import load_task

    path = str(RESULTS / name)
    data = _yaml.safe_load(Path(path).read_text())
    if "methods" in data and "problem" in data:
        load_task(path)
    else:
        grid = load_grid(path)
        for task in grid.tasks:
            load_task(task)
