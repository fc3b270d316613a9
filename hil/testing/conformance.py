"""The conformance kit: one pytest mixin per kind of plug-in (:mod:`hil.protocols`), subclassed in one line.

::

    # tests/test_my_lab_conformance.py of a lab's plug-in package
    from hil.testing.conformance import (BlackBoxConformance, CalibrationConformance, DriverConformance,
                                         EstimatorConformance, OptimizerConformance, missing_conformance)
    from hil.testing.optimizers import Case

    class TestPendulum(BlackBoxConformance): section = {"type": "damped_pendulum"}
    class TestEncoder(BlackBoxConformance): section = {"type": "damped_pendulum", "wrappers": [{"type": "encoder"}]}
    class TestMyRig(DriverConformance): section = {"type": "my_rig", "address": "192.0.2.7"}
    class TestMyEstimator(EstimatorConformance): estimator = {"type": "my_estimator"}
    class TestMyOptimizer(OptimizerConformance): case = Case("mine", {"type": "my_optimizer"}, budget=300, reach=0.1)
    class TestMyCalibration(CalibrationConformance): calibration = "my_cal"; rig = {"type": "damped_pendulum"}

    def test_every_plugin_of_my_package_has_a_conformance_line():
        assert not missing_conformance(globals(), ["blackbox", "wrapper", "objective"], package="my_lab_hil")

Each check is a ``test_*`` method of the mixin; a subclass lists the checks it is known to fail, with the
reason, in ``xfail_checks`` (strict: a listed check that passes fails). The classes name what they check, so
:func:`missing_conformance` can tell which registered plug-ins have no line.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from typing import Any, ClassVar

import pytest

from hil.config import undeclared_numbers
from hil.registry import OPTIMIZERS
from hil.testing.blackbox import BlackBoxConformance, DriverConformance
from hil.testing.calibrations import CalibrationConformance
from hil.testing.common import Conformance, check, missing_conformance, simulated, valid_inputs
from hil.testing.estimators import EstimatorConformance
from hil.testing.optimizers import Case, check_budget_and_log, check_finds_optimum, check_resume

__all__ = ["BlackBoxConformance", "CalibrationConformance", "Case", "Conformance", "DriverConformance",
           "EstimatorConformance", "OptimizerConformance", "check", "missing_conformance", "simulated",
           "valid_inputs"]


class OptimizerConformance(Conformance):
    """The optimiser checks of :mod:`hil.testing.optimizers` as a mixin: set ``case`` (a
    :class:`~hil.testing.optimizers.Case`: the optimiser section, its estimator section if it follows a
    gradient, the budget and the objective it must reach on the shifted problem)."""

    case: ClassVar[Case]

    @classmethod
    def covers(cls) -> list[tuple[str, str]]:
        return [("optimizer", cls.case.optimizer["type"])]

    def _ready(self) -> None:
        case = self.case
        if case.needs and importlib.util.find_spec(case.needs) is None:
            pytest.skip(f"{case.name} needs {case.needs}")
        assert case.optimizer["type"] in OPTIMIZERS.names(), \
            f"optimizer type {case.optimizer['type']!r} is not registered (is its hil.plugins entry point installed?)"

    @check
    def test_config_declares_a_range_for_every_number(self) -> None:
        self._ready()
        cls = OPTIMIZERS.get(self.case.optimizer["type"])
        assert dataclasses.is_dataclass(getattr(cls, "Config", None)), f"{cls.__name__} has no Config dataclass"
        missing = undeclared_numbers(cls.Config)
        assert not missing, f"{cls.__name__}.Config: numbers without a declared range: {missing}"

    @check
    def test_finds_the_optimum_within_its_budget_and_logs_every_query_once(self, tmp_path: Any) -> None:
        self._ready()
        result = check_finds_optimum(self.case, tmp_path)
        check_budget_and_log(self.case, result)

    @check
    def test_resumes_from_a_killed_log_to_the_same_queries(self, tmp_path: Any) -> None:
        self._ready()
        check_resume(self.case, tmp_path)
