"""Conformance checks a plug-in author runs on their own implementation (``from hil.testing import ...``).

:mod:`hil.testing.problems` holds small problems with a known optimum; :mod:`hil.testing.optimizers` the
checks every registered optimiser must pass (find the optimum within its budget, never exceed the budget, log
every query once, resume from a killed log to the same queries).
"""
