"""Conformance checks for gradient estimators (:class:`hil.protocols.EstimatorImplementation`).

::

    from hil.testing.conformance import EstimatorConformance

    class TestMyEstimator(EstimatorConformance):
        estimator = {"type": "my_estimator", "step": 0.01}
        min_cosine = 0.9        # optional: agreement with the exact VJP of the problem's differentiable model

The problem is ``blackbox`` (default: :class:`hil.testing.problems.ShiftedBox`, the identity on ``[-2, 3]^3``,
whose exact VJP is the cotangent itself); any registered, differentiable box works.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import pytest
import torch

import hil.testing.problems  # noqa: F401  (registers the default problem)
from hil.blackbox import PURPOSES, BlackBox, Differentiable
from hil.config import parse, parse_typed, undeclared_numbers
from hil.errors import EstimatorError
from hil.estimators import GradientEstimator
from hil.layer import PhysicalLayer
from hil.registry import ESTIMATORS
from hil.sections import parse_blackbox
from hil.testing.common import Conformance, RecordingLog, check, options_of, valid_inputs

#: purposes an estimator's own queries may carry
PROBE_PURPOSES = ("probe", "local_sample")


class EstimatorConformance(Conformance):
    """The checks every gradient estimator passes. Set ``estimator`` (its section, small and fast); optionally
    ``blackbox`` (the problem's section), ``observed`` (measured pairs it sees first), ``batch``,
    ``min_cosine``, ``minimal_section``, ``xfail_checks``."""

    estimator: ClassVar[Mapping[str, Any]]
    blackbox: ClassVar[Mapping[str, Any]] = {"type": "hil_test_shifted", "dim": 3}
    #: the options ``from_config(parse(Config, ...))`` is checked with (default ``{}``)
    minimal_section: ClassVar[Mapping[str, Any] | None] = None
    observed: ClassVar[int] = 24
    batch: ClassVar[int] = 2
    #: when set: the cosine between its VJP and the exact one (autograd through the problem's model) is at least this
    min_cosine: ClassVar[float | None] = None
    seed: ClassVar[int] = 0

    @classmethod
    def covers(cls) -> list[tuple[str, str]]:
        return [("estimator", cls.estimator["type"])]

    def build(self) -> GradientEstimator:
        return parse_typed(ESTIMATORS, dict(self.estimator), "estimator").build()

    @pytest.fixture
    def conformance_problem(self) -> Iterator[BlackBox]:
        box = parse_blackbox(dict(self.blackbox), "blackbox").build()
        with box:
            yield box

    def _data(self, box: BlackBox, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` measured pairs at seeded points inside the box (the centre and the corners excluded)."""
        x = valid_inputs(box.spec, n + 3, seed)[3:]
        return x, box.query(x, purpose="initial").to(torch.float32)

    def _probes(self, box: BlackBox, est: Any, call: Any) -> tuple[torch.Tensor, RecordingLog]:
        """Run ``call()`` with a recording log attached; check the queries it made are the declared probes."""
        log = RecordingLog()
        box.attach_log(log)
        try:
            out = call()
        finally:
            box.attach_log(None)
        declared = int(est.probes_per_point) * self.batch
        assert log.rows == declared, f"{log.rows} queries during the gradient; probes_per_point declares " \
                                     f"{est.probes_per_point} per point ({declared} for {self.batch} points)"
        for batch in log.batches:
            assert batch["purpose"] in PROBE_PURPOSES, f"an estimator's query has purpose {batch['purpose']!r}"
            assert batch["iteration"] == 5, "the iteration given to the estimator must label its queries"
            assert batch["start"] is not None and set(batch["start"].tolist()) <= set(range(self.batch)), \
                "the starting points given to the estimator must label its queries"
        return out, log

    def _check_gradient(self, g: Any, box: BlackBox) -> torch.Tensor:
        assert isinstance(g, torch.Tensor)
        assert tuple(g.shape) == (self.batch, box.spec.input_dim), f"gradient shape {tuple(g.shape)}"
        assert g.dtype == torch.float32, f"gradient dtype {g.dtype}, expected float32"
        assert bool(torch.isfinite(g).all()), "non-finite gradient"
        return g

    # -- the checks ---------------------------------------------------------------------------------------
    @check
    def test_config_declares_a_range_for_every_number(self) -> None:
        cls = ESTIMATORS.get(self.estimator["type"])
        assert dataclasses.is_dataclass(getattr(cls, "Config", None)), f"{cls.__name__} has no Config dataclass"
        missing = undeclared_numbers(cls.Config)
        assert not missing, f"{cls.__name__}.Config: numbers without a declared range: {missing}"

    @check
    def test_builds_from_its_config(self) -> None:
        cls = ESTIMATORS.get(self.estimator["type"])
        est = cls.from_config(parse(cls.Config, dict(self.minimal_section or {}), cls.__name__))
        assert isinstance(est, GradientEstimator)
        est.close()
        est = cls.from_config(parse(cls.Config, options_of(self.estimator), cls.__name__))
        assert isinstance(est, cls)
        est.close()

    @check
    def test_vjp_after_observe_has_the_input_shape_is_finite_and_probes_as_declared(
            self, conformance_problem: BlackBox) -> None:
        box = conformance_problem
        est = self.build()
        assert est.bind(box) is est, "bind() returns the estimator"
        try:
            assert isinstance(est.probes_per_point, int) and est.probes_per_point >= 0
            est.observe(*self._data(box, self.observed, self.seed))
            x, y = self._data(box, self.batch, self.seed + 1)
            est.observe(x, y)
            grad_y = torch.randn(y.shape, generator=torch.Generator().manual_seed(self.seed))
            start = torch.arange(self.batch)
            g, _ = self._probes(box, est, lambda: est.vjp(x, y, grad_y, iteration=5, start=start))
            self._check_gradient(g, box)
            assert isinstance(est.state_summary(), dict)
            est.while_measuring()
        finally:
            est.close()

    @check
    def test_vjp_agrees_with_the_exact_gradient(self, conformance_problem: BlackBox) -> None:
        if self.min_cosine is None:
            pytest.skip("set min_cosine to check agreement with the exact VJP")
        box = conformance_problem
        assert isinstance(box, Differentiable), "the problem needs forward_differentiable for the reference"
        est = self.build().bind(box)
        try:
            est.observe(*self._data(box, self.observed, self.seed))
            x, y = self._data(box, self.batch, self.seed + 1)
            est.observe(x, y)
            grad_y = torch.randn(y.shape, generator=torch.Generator().manual_seed(self.seed))
            g = est.vjp(x, y, grad_y, iteration=5, start=torch.arange(self.batch))
        finally:
            est.close()
        xr = x.clone().requires_grad_(True)
        with torch.enable_grad():
            (ref,) = torch.autograd.grad(box.forward_differentiable(xr), xr, grad_outputs=grad_y)
        cos = torch.nn.functional.cosine_similarity(g.to(torch.float64), ref.to(torch.float64), dim=1)
        assert bool((cos >= self.min_cosine).all()), f"cosine with the exact VJP {cos.tolist()} < {self.min_cosine}"

    @check
    def test_objective_gradient_if_it_gives_one(self, conformance_problem: BlackBox) -> None:
        est = self.build()
        if not callable(getattr(est, "objective_gradient", None)):
            est.close()
            pytest.skip("no objective_gradient")
        box = conformance_problem
        est.bind(box)
        shape = box.spec.output_shape
        try:
            est.observe(*self._data(box, self.observed, self.seed))
            x, _ = self._data(box, self.batch, self.seed + 1)

            def loss(y: torch.Tensor) -> torch.Tensor:
                assert tuple(y.shape[1:]) == tuple(shape), "the loss is given m x *output_shape answers"
                return y.reshape(y.shape[0], -1).pow(2).sum(dim=1)

            g, _ = self._probes(box, est, lambda: est.objective_gradient(x, loss, iteration=5,
                                                                         start=torch.arange(self.batch)))
            self._check_gradient(g, box)
        finally:
            est.close()

    @check
    def test_without_data_it_gives_a_gradient_or_raises_estimator_error(self, conformance_problem: BlackBox) -> None:
        box = conformance_problem
        est = self.build().bind(box)
        x, y = self._data(box, self.batch, self.seed)
        try:
            g = est.vjp(x, y, torch.ones_like(y), iteration=5, start=torch.arange(self.batch))
        except EstimatorError:
            return  # a clean refusal: hil's loop reports it
        finally:
            est.close()
        self._check_gradient(g, box)

    @check
    def test_backward_pass_of_a_physical_layer(self, conformance_problem: BlackBox) -> None:
        box = conformance_problem
        est = self.build()
        layer = PhysicalLayer(box, est)
        try:
            est.observe(*self._data(box, self.observed, self.seed))
            x = self._data(box, self.batch, self.seed + 2)[0].requires_grad_(True)
            y = layer(x)
            assert tuple(y.shape) == (self.batch, *box.spec.output_shape)
            y.pow(2).sum().backward()
            assert x.grad is not None and tuple(x.grad.shape) == tuple(x.shape)
            assert bool(torch.isfinite(x.grad).all())
        finally:
            est.close()
        assert set(box.stats.by_purpose) <= set(PURPOSES)
