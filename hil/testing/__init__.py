"""Conformance checks a plug-in author runs on their own implementation (``from hil.testing import ...``).

The contracts themselves are documented in :mod:`hil.protocols`. The checks are pytest mixins: subclass one,
say what to build, and pytest runs every check on it (hil's own tests do exactly this, one line per registered
implementation; ``examples/hil-example-plugin`` shows a third-party package doing the same):

- :mod:`hil.testing.blackbox`: ``BlackBoxConformance`` (twins, wrappers, objectives) and ``DriverConformance``
  (a driver on its simulated device: the fake firmware, the loopback SCPI server, slmsuite's simulated pair);
- :mod:`hil.testing.estimators`: ``EstimatorConformance``;
- :mod:`hil.testing.calibrations`: ``CalibrationConformance``;
- :mod:`hil.testing.optimizers` and :mod:`hil.testing.conformance`: ``OptimizerConformance`` (find the optimum
  within the budget, never exceed it, log every query once, resume from a killed log to the same queries);
- :mod:`hil.testing.problems`: small problems with a known optimum.
"""
