"""hil's conformance kit on this package's plug-ins: one class each (hil.testing.conformance). A plug-in this
package registers without a line here fails the last test."""

from __future__ import annotations

from hil.testing.conformance import BlackBoxConformance, EstimatorConformance, missing_conformance

TARGET = {"type": "target_distance", "target": [0.3, -0.5]}


class TestDampedPendulum(BlackBoxConformance):
    section, objective = {"type": "damped_pendulum", "steps": 20}, {"type": "swing_energy"}


class TestNoisyPendulum(BlackBoxConformance):
    section, objective = {"type": "damped_pendulum", "noise_rad": 0.01, "out_of_bounds": "clip"}, TARGET


class TestAngleEncoder(BlackBoxConformance):
    section = {"type": "damped_pendulum", "wrappers": [{"type": "angle_encoder", "counts_per_rev": 1024}]}


# hil's own estimators on this twin: the exact VJP through its RK4, and finite differences agreeing with it
class TestExactGradientOfThePendulum(EstimatorConformance):
    estimator, blackbox, min_cosine = {"type": "exact"}, {"type": "damped_pendulum"}, 0.999


class TestFiniteDifferencesOnThePendulum(EstimatorConformance):
    estimator, blackbox, min_cosine = {"type": "finite_difference", "step": 1e-3}, {"type": "damped_pendulum"}, 0.99


def test_every_plugin_of_this_package_has_a_conformance_line():
    kinds = ["blackbox", "wrapper", "objective", "estimator", "optimizer", "calibration"]
    assert not missing_conformance(globals(), kinds, package="hil_example_plugin")
