"""The conformance checks every registered optimiser passes, on :class:`~hil.testing.problems.ShiftedBox`.

A case is an optimiser section (with its budget allocation), its estimator section if it follows a
gradient, the query budget and the objective it must reach. ``CASES`` lists hil's own; a lab testing its
plug-in adds one :class:`Case` and runs the same checks (``check_finds_optimum``, ``check_budget_and_log``,
``check_resume``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hil.testing.problems import SHIFTED_TARGET


@dataclass
class Case:
    name: str
    optimizer: dict[str, Any]
    estimator: dict[str, Any] | None = None
    budget: int = 300
    reach: float = 0.05  # the best rms distance to the optimum it must reach within the budget
    needs: str | None = None  # a package the optimiser needs (the check skips without it)
    extra: dict[str, Any] = field(default_factory=dict)


SMALL_SURROGATE = {"type": "surrogate", "loss": "gradpie", "hidden": [32, 32], "epochs": 3, "k": 4}
#: the same trained with bounded steps (give ``steps``) instead of full epochs
SMALL_BOUNDED = {k: v for k, v in SMALL_SURROGATE.items() if k != "epochs"}

CASES = [
    Case("gradient", {"type": "gradient", "n_starts": 2, "local_samples": 2, "lr": 0.05, "sigma": 0.02},
         SMALL_SURROGATE, budget=300, reach=0.15),
    Case("gradient_bounded_training", {"type": "gradient", "n_starts": 2, "local_samples": 2, "lr": 0.05,
                                       "sigma": 0.02}, {**SMALL_BOUNDED, "steps": 4, "batch_size": 32},
         budget=300, reach=0.15),
    Case("gradient_concurrent_training", {"type": "gradient", "n_starts": 2, "local_samples": 2, "lr": 0.05,
                                          "sigma": 0.02},
         {**SMALL_BOUNDED, "steps": 4, "batch_size": 32, "concurrent": True}, budget=300, reach=0.15),
    Case("gradient_exact", {"type": "gradient", "n_starts": 2, "lr": 0.05}, {"type": "exact"}, budget=200,
         reach=0.02),
    Case("offline", {"type": "offline", "n_starts": 2, "lr": 0.05, "dataset_size": 100, "fit_epochs": 100},
         {**SMALL_SURROGATE, "loss": "mse"}, budget=300, reach=0.15),
    Case("offline_matchopt", {"type": "offline", "n_starts": 2, "lr": 0.05, "dataset_size": 100, "fit_epochs": 100,
                              "start": "top", "search": "surrogate"},
         {**SMALL_SURROGATE, "loss": "matchopt", "bins": 16}, budget=300, reach=0.15),
    Case("gradient_lgso", {"type": "gradient", "n_starts": 1, "lr": 0.05},
         {"type": "lgso", "epsilon": 0.05, "hidden": [32, 32], "epochs": 10, "gradient_samples": 64}, budget=300,
         reach=0.15),
    Case("gradient_tr", {"type": "gradient_tr", "n_starts": 2, "local_samples": 2, "sigma": 0.02,
                         "length_init": 0.05, "length_max": 0.1}, SMALL_SURROGATE, budget=300, reach=0.15),
    Case("random", {"type": "random", "n_starts": 4, "per_start": 2}, budget=400, reach=0.4),
    Case("guided_es", {"type": "guided_es", "n_starts": 1, "pairs": 2, "sigma": 0.05, "lr": 0.05},
         {**SMALL_SURROGATE, "loss": "gradpie"}, budget=300, reach=0.15),
    Case("cmaes", {"type": "cmaes"}, budget=300, reach=0.02, needs="cma"),
    Case("cmaes_noise_handling", {"type": "cmaes", "noise_handling": True}, budget=300, reach=0.05, needs="cma"),
    Case("nevergrad", {"type": "nevergrad", "batch": 4}, budget=300, reach=0.1, needs="nevergrad"),
    Case("botorch", {"type": "botorch", "method": "gp_logei"}, budget=30, reach=0.15, needs="botorch"),
]


def run_config(case: Case, *, seed: int = 0, dim: int = 3, log_dir: str | Path = ".") -> dict[str, Any]:
    """The run config of ``case`` on the shifted problem."""
    cfg: dict[str, Any] = {
        "name": f"conformance-{case.name}",
        "blackbox": {"type": "hil_test_shifted", "dim": dim},
        "objective": {"type": "target_distance", "target": SHIFTED_TARGET[:dim], "norm": "rms"},
        "optimizer": {"iterations": 100000, **case.optimizer, "max_queries": case.budget, "seed": seed},
        "log": {"dir": str(log_dir), "report": False},
    }
    if case.estimator is not None:
        cfg["estimator"] = dict(case.estimator)
    return cfg


def check_finds_optimum(case: Case, tmp_path: Path) -> Any:
    """Within its budget the optimiser gets within ``reach`` of the optimum (0); returns the run's result."""
    from hil.run import execute, load_run_config

    res = execute(load_run_config(run_config(case, log_dir=tmp_path)), log_path=tmp_path / f"{case.name}.h5")
    best = float(np.nanmin(res.trace.best_overall))
    assert best <= case.reach, f"{case.name}: best {best:.4g} after {res.queries} queries, needs <= {case.reach}"
    return res


def check_budget_and_log(case: Case, result: Any) -> None:
    """No more queries than the budget, and every query in the log exactly once (rows == queries counted)."""
    from hil.querylog import read_log

    log = read_log(result.log_path)
    assert result.queries <= case.budget, f"{case.name}: {result.queries} queries > budget {case.budget}"
    assert len(log) == result.queries == result.trace.queries[-1], (len(log), result.queries)
    pairs = np.unique(np.concatenate([log.x, log.iteration[:, None], log.purpose[:, None]], axis=1), axis=0)
    assert len(pairs) >= len(log) * 0.99, f"{case.name}: rows logged twice"


def run_killed(config: Any, log_path: Path, kill_after_batches: int) -> None:
    """Run ``config`` (a loaded run config on the shifted problem) into ``log_path`` and stop it, as ``kill -9``
    would, when the problem is asked for batch ``kill_after_batches + 1``: the batches before it are committed."""
    import pytest

    from hil.blackbox import BlackBox
    from hil.run import execute

    query, calls = BlackBox.query, {"n": 0}

    def dying_query(self, x, **kw):
        if type(self).__name__ == "ShiftedBox":
            calls["n"] += 1
            if calls["n"] > kill_after_batches:
                raise KeyboardInterrupt
        return query(self, x, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(BlackBox, "query", dying_query)
        with pytest.raises(KeyboardInterrupt):
            execute(config, log_path=log_path)


def check_resume(case: Case, tmp_path: Path, kill_after_batches: int = 3,
                 checkpoint_every_s: float | None = None) -> list[str]:
    """A run killed after a few batches and resumed from its log ends with the log an uninterrupted run
    writes: the same rows in the same order, none asked twice of the device. ``checkpoint_every_s``: the runs'
    ``log.checkpoint_every_s`` (default: none saved, the whole log is replayed). Returns what the resume said."""
    from hil.querylog import read_log
    from hil.run import execute, load_run_config

    def config_of() -> Any:
        cfg = run_config(case, log_dir=tmp_path)
        cfg["log"]["checkpoint_every_s"] = checkpoint_every_s
        return load_run_config(cfg)

    config = config_of()
    whole = execute(config, log_path=tmp_path / "whole.h5")
    killed = tmp_path / "killed.h5"
    run_killed(config, killed, kill_after_batches)
    before = read_log(killed)
    said: list[str] = []
    resumed = execute(config_of(), resume=killed, say=said.append)
    a, b = read_log(tmp_path / "whole.h5"), read_log(killed)
    assert 0 < len(before) < len(a), "the kill did not happen part-way"
    assert len(b) == len(a), f"{case.name}: resumed log has {len(b)} rows, an uninterrupted run {len(a)}"
    np.testing.assert_allclose(b.x, a.x, rtol=1e-5, atol=1e-6, err_msg=f"{case.name}: resumed queries differ")
    np.testing.assert_array_equal(b.purpose, a.purpose)
    assert resumed.queries == len(a) - len(before), "the resumed session re-queried logged points"
    assert resumed.trace.iterations == whole.trace.iterations
    np.testing.assert_allclose(resumed.trace.best_overall, whole.trace.best_overall, rtol=1e-5,
                               err_msg=f"{case.name}: the resumed trace differs from an uninterrupted run's")
    assert resumed.trace.queries == whole.trace.queries
    return said
