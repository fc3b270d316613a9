"""The benchmark machinery: JSON shape, checkpoints, queries-to-base, on a tiny task."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import numpy as np
import pytest

from hil.bench import CNON_TASK, _reference_marks, compare, queries_to_reach, run_task_benchmark

TINY = copy.deepcopy(CNON_TASK)
TINY["blackbox"].update(dim=4, steps=8)
TINY["optimizer"].update(n_starts=3, iterations=12)
SMALL = {"type": "surrogate", "hidden": [16], "epochs": 1}
METHODS = {"exact": ({"type": "exact"}, 0), "mse": ({**SMALL, "loss": "mse"}, 0),
           "gradpie_m1": ({**SMALL, "loss": "gradpie", "k": 3}, 1)}


@pytest.fixture(scope="module")
def tiny():
    summary, timing, results = run_task_benchmark(TINY, METHODS, checkpoints=[3, 6, 12], base="mse",
                                                  progress=False)
    timing["comparisons"] = compare(results, [("gradpie_m1", "mse"), ("exact", "mse")], 12)
    return summary, timing


def test_summary_has_the_documented_json_shape(tiny):
    summary, _ = tiny
    assert summary["task"] == "bench_cnon" and summary["sense"] == "min"
    assert set(summary["methods"]) == set(METHODS)
    for name, m in summary["methods"].items():
        assert m["iterations"] == [3, 6, 12]
        for key in ("queries", "mean", "std", "median", "q25", "q75"):
            assert len(m[key]) == 3, (name, key)
        assert m["q25"][0] <= m["median"][0] <= m["q75"][0]
        assert m["queries_to_base"] is None or isinstance(m["queries_to_base"], int)
    json.dumps(summary)  # serialisable
    # queries per start: 1 per iteration without local samples, 2 with M = 1
    assert summary["methods"]["exact"]["queries"] == [3, 6, 12]
    assert summary["methods"]["gradpie_m1"]["queries"] == [6, 12, 24]


def test_best_so_far_never_gets_worse(tiny):
    summary, _ = tiny
    for m in summary["methods"].values():
        assert m["mean"][0] >= m["mean"][1] >= m["mean"][2]


def test_queries_to_base_is_where_the_mean_first_reaches_the_base(tiny):
    summary, timing = tiny
    base_final = summary["methods"]["mse"]["mean"][-1]
    assert summary["methods"]["mse"]["queries_to_base"] <= 12
    exact = next(c for c in timing["comparisons"] if c["method"] == "exact")
    assert exact["level"] == pytest.approx(base_final)
    if exact["queries"] is not None:
        assert exact["ratio"] == pytest.approx(exact["queries"] / 12)


def test_plot_marks_the_base_level_and_where_each_method_reaches_it():
    comparisons = [
        {"method": "gradpie", "base": "mse", "level": 0.34, "base_queries": 200, "queries": 132, "ratio": 0.66},
        {"method": "mae", "base": "mse", "level": 0.34, "base_queries": 200, "queries": None, "ratio": None},
        {"method": "gradpie_m1", "base": "mse_m1", "level": 0.04, "base_queries": 400, "queries": 204,
         "ratio": 0.51},
    ]
    marks = _reference_marks(comparisons, "mse", 200)
    assert marks["reference"] == (0.34, "mse at 200 iterations")
    assert marks["crossings"] == {"gradpie": (132, "0.66x")}  # never reached: no marker; other bases: not here
    assert _reference_marks(comparisons, "random", 200) == {}


def test_queries_to_reach_on_a_constructed_trace():
    from hil.bench import MethodResult
    from hil.optimize import Trace

    tr = Trace(sense="min", best=[np.array([3.0, 3.0]), np.array([2.0, 1.0]), np.array([1.0, 0.5])],
               queries=[2, 4, 6])
    res = MethodResult("m", tr, n_starts=2, wall_s=1.0, busy_s=0.5)
    assert queries_to_reach(res, 1.5, "min") == 2  # mean 1.5 at the second iteration: 4 queries / 2 starts
    assert queries_to_reach(res, 0.1, "min") is None
    assert compare({"m": res}, [("m", "missing")], 3) == []


def test_cli_bench_rejects_unknown_task():
    proc = subprocess.run([sys.executable, "-m", "hil.cli", "bench", "opamp_unknown"], capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown benchmark 'opamp_unknown'; allowed: cnon, owms, opamp, log" in proc.stderr


def test_overrides_parse_as_yaml_and_name_what_is_wrong():
    from hil.bench import parse_overrides
    from hil.errors import ConfigError

    got = parse_overrides(["optimizer.adam_beta1=0.5", "surrogate.hidden=[8, 8]", "blackbox.dim=4",
                           "surrogate.lr=0.001"])
    assert got == {"optimizer": {"adam_beta1": 0.5}, "surrogate": {"hidden": [8, 8], "lr": 1e-3},
                   "blackbox": {"dim": 4}}
    for bad, says in [("optimizer.lr", "expected SECTION.KEY=VALUE"), ("lr=0.1", "expected SECTION.KEY=VALUE"),
                      ("estimator.k=3", "unknown section 'estimator'"), ("optimizer.lr=[1", "not valid YAML")]:
        with pytest.raises(ConfigError, match=says):
            parse_overrides([bad])


def test_overrides_apply_to_every_method_and_are_validated_before_anything_runs():
    from hil.bench import apply_overrides
    from hil.errors import ConfigError

    task, methods = apply_overrides(TINY, METHODS, {"optimizer": {"adam_beta1": 0.5}, "surrogate": {"k": 2}})
    assert task["optimizer"]["adam_beta1"] == 0.5 and TINY["optimizer"].get("adam_beta1") is None  # a copy
    assert methods["mse"][0]["k"] == 2 and methods["gradpie_m1"][0]["k"] == 2
    assert "k" not in methods["exact"][0]  # surrogate.* leaves other estimators alone
    assert methods["gradpie_m1"][1] == 1  # M kept
    with pytest.raises(ConfigError, match="method 'exact'.*optimizer: unknown key 'adam_beta'"):
        apply_overrides(TINY, METHODS, {"optimizer": {"adam_beta": 0.5}})
    with pytest.raises(ConfigError, match="method 'mse'.*estimator.k must be >= 1"):
        apply_overrides(TINY, METHODS, {"surrogate": {"k": 0}})


def test_cli_bench_bad_override_fails_before_running():
    proc = subprocess.run([sys.executable, "-m", "hil.cli", "bench", "cnon", "--set", "optimizer.adam_beta1=1.5"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "optimizer.adam_beta1 must be in [0, 1), got 1.5" in proc.stderr
    assert "bench" not in proc.stdout  # no table: nothing ran
    proc = subprocess.run([sys.executable, "-m", "hil.cli", "bench", "log", "--set", "optimizer.lr=0.1"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--set applies to the estimator benchmarks" in proc.stderr


def test_benchmark_plot_draws_the_reference_line_and_markers(tmp_path):
    import matplotlib.image

    from hil.report import plot_objective_vs_queries

    q = np.arange(1, 21, dtype=float)
    curves = {"mse": (q, np.linspace(1, 0.5, 20)[:, None].repeat(3, 1)),
              "gradpie": (q, np.linspace(1, 0.2, 20)[:, None].repeat(3, 1))}
    plain = plot_objective_vs_queries(tmp_path / "plain.png", curves, sense="min", title="t")
    marked = plot_objective_vs_queries(tmp_path / "marked.png", curves, sense="min", title="t",
                                       reference=(0.5, "mse at 20 iterations"), crossings={"gradpie": (13.0, "0.65x")})
    a, b = matplotlib.image.imread(plain), matplotlib.image.imread(marked)
    assert a.shape == b.shape and not np.array_equal(a, b)


def test_seed_sets_rerun_every_method_with_each_seed(tiny):
    from hil.bench import format_seed_sets, seed_sets

    summary, _ = tiny  # seed 0 for the starts and the surrogates
    pairs = [("gradpie_m1", "mse"), ("exact", "mse")]
    sets = seed_sets(TINY, METHODS, seeds=[0, 1], checkpoints=[3, 6, 12], base="mse", pairs=pairs, progress=False)
    assert sets["seeds"] == [0, 1]
    for name, values in sets["final_mean"].items():
        assert len(values) == 2
        assert values[0] == pytest.approx(summary["methods"][name]["mean"][-1])  # seed 0 reproduces the run
    assert sets["final_mean"]["mse"][0] != sets["final_mean"]["mse"][1]  # seed 1 is another run
    assert [(c["method"], c["base"]) for c in sets["comparisons"]] == pairs
    assert all(len(c["ratios"]) == 2 for c in sets["comparisons"])
    lines = format_seed_sets(sets)
    assert lines[0].startswith("over 2 seed sets") and any("gradpie_m1  vs mse" in line for line in lines)


def test_format_seed_sets_counts_the_ratios_that_meet_the_target():
    from hil.bench import format_seed_sets

    sets = {"seeds": [0, 1, 2], "final_mean": {"mse": [0.3, 0.2, 0.4]},
            "comparisons": [{"method": "gradpie", "base": "mse", "ratios": [0.4, None, 0.6],
                             "queries": [80, None, 120]},
                            {"method": "mae", "base": "mse", "ratios": [None, None, None], "queries": [None] * 3}]}
    lines = format_seed_sets(sets)
    assert "0.40 never 0.60" in lines[1] and "mean 0.50 ± 0.10 over the 2 that got there, <= 0.5 in 1 of 3" in lines[1]
    assert lines[2].endswith("(never)")
    assert "mean at the last checkpoint: 0.3000 ± 0.0816" in lines[3]


def test_cli_bench_seeds_only_for_estimator_benchmarks():
    proc = subprocess.run([sys.executable, "-m", "hil.cli", "bench", "log", "--seeds", "3"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "--seeds applies to the estimator benchmarks" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "hil.cli", "bench", "cnon", "--seeds", "0"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "--seeds must be >= 1, got 0" in proc.stderr
