"""Every registered optimiser through the same checks (hil.testing.optimizers): it finds the known optimum of
a small problem within its budget, never exceeds the budget, logs every query once and resumes from a killed
log to exactly the queries an uninterrupted run makes."""

from __future__ import annotations

import importlib.util

import pytest

import hil.testing.problems  # noqa: F401  (registers the test problems)
from hil.registry import OPTIMIZERS
from hil.testing.optimizers import CASES, check_budget_and_log, check_finds_optimum, check_resume


def _skip_without(case):
    if case.needs and importlib.util.find_spec(case.needs) is None:
        pytest.skip(f"{case.name} needs {case.needs} (pip install 'hil[peers]')")
    if case.optimizer["type"] not in OPTIMIZERS.names():
        pytest.skip(f"optimizer type {case.optimizer['type']!r} is not registered")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_finds_the_optimum_within_its_budget_and_logs_every_query_once(case, tmp_path):
    _skip_without(case)
    result = check_finds_optimum(case, tmp_path)
    check_budget_and_log(case, result)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_resumes_from_a_killed_log_to_the_same_queries(case, tmp_path):
    _skip_without(case)
    check_resume(case, tmp_path)


def _saves_checkpoints(case) -> bool:
    from hil.optim.base import Optimizer

    if case.optimizer["type"] not in OPTIMIZERS.names():
        return False
    cls = OPTIMIZERS.get(case.optimizer["type"])
    return getattr(cls, "checkpoint", Optimizer.checkpoint) is not Optimizer.checkpoint


@pytest.mark.parametrize("case", [c for c in CASES if _saves_checkpoints(c)], ids=lambda c: c.name)
def test_resumes_from_its_checkpoint_to_the_same_queries(case, tmp_path):
    """An optimiser that hands over its state resumes from the checkpoint saved beside the log (only the rows
    after it are replayed) and still ends exactly as an uninterrupted run."""
    _skip_without(case)
    said = check_resume(case, tmp_path, checkpoint_every_s=0)
    assert any("restored the run's checkpoint" in line for line in said), said
    assert not list(tmp_path.glob("*.ckpt")), "a finished run leaves no checkpoint behind"


def test_every_registered_optimiser_has_a_conformance_case():
    covered = {c.optimizer["type"] for c in CASES}
    missing = [name for name in OPTIMIZERS.names() if name not in covered]
    assert not missing, f"optimisers without a conformance case in hil.testing.optimizers.CASES: {missing}"
