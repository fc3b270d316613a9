"""Every registered gradient estimator through hil.testing's conformance mixin, one line each
(hil.testing.estimators): a finite batch x d_in VJP after observe, exactly the declared probes, logged with their
purpose, iteration and start; a clean EstimatorError (or a gradient) without data; a physical layer's backward
pass; ranged configs."""

from __future__ import annotations

from pathlib import Path

from hil.testing.conformance import EstimatorConformance, missing_conformance

SMALL_SURROGATE = {"type": "surrogate", "loss": "gradpie", "hidden": [16, 16], "epochs": 2, "k": 4}
SMALL_BOUNDED = {k: v for k, v in SMALL_SURROGATE.items() if k != "epochs"}  # trained with steps instead


class TestSurrogateGradPIE(EstimatorConformance):
    estimator = SMALL_SURROGATE


class TestSurrogateMSEBoundedSteps(EstimatorConformance):
    estimator = {**SMALL_BOUNDED, "loss": "mse", "steps": 4, "batch_size": 8}


class TestExact(EstimatorConformance):
    estimator, min_cosine = {"type": "exact"}, 0.999


class TestFiniteDifference(EstimatorConformance):
    estimator, min_cosine = {"type": "finite_difference", "step": 0.01}, 0.999


class TestSPSA(EstimatorConformance):
    estimator = {"type": "spsa", "n_directions": 2}


class TestLGSO(EstimatorConformance):
    estimator = {"type": "lgso", "samples": 4, "hidden": [16], "epochs": 2, "gradient_samples": 16, "components": 2}


def test_every_registered_estimator_has_a_conformance_line():
    missing = missing_conformance(globals(), ["estimator"], package="hil")
    assert not missing, f"registered without a conformance line in {Path(__file__).name}: {missing}"
