"""Conformance checks for BlackBoxes, wrappers and objectives (:class:`hil.protocols.BlackBoxImplementation`).

Subclass :class:`BlackBoxConformance` with the section of a small instance (a class named ``Test...``)::

    from hil.testing.conformance import BlackBoxConformance, DriverConformance

    class TestPendulum(BlackBoxConformance):
        section = {"type": "damped_pendulum", "steps": 20}
        objective = {"type": "target_distance", "target": [0.1, 0.0]}     # optional: checks the objective too

    class TestPendulumEncoder(BlackBoxConformance):            # a wrapper: the section lists it
        section = {"type": "damped_pendulum", "wrappers": [{"type": "encoder"}]}

    class TestMyBoard(DriverConformance):                      # a rig with a simulated counterpart
        section = {"type": "serial_board", "port": "/dev/ttyACM0", "n_dac": 4, "n_adc": 3}

A rig type with a simulated counterpart (:data:`hil.registry.SIMULATORS`) runs on it, started and stopped by
the test (:func:`hil.dryrun.dry_run`); a box that is not registered overrides :meth:`make_blackbox`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from hil.blackbox import PURPOSES, BlackBox, BlackBoxSpec, Differentiable
from hil.config import parse, parse_typed, undeclared_numbers
from hil.errors import InputError, NotConnectedError
from hil.registry import OBJECTIVES
from hil.sections import parse_blackbox
from hil.shapes import static_spec_of
from hil.testing.common import (
    Conformance,
    QuerySpy,
    RecordingLog,
    chain,
    check,
    finite_rows,
    options_of,
    simulated,
    valid_inputs,
)

_SPEC_FIELDS = ("input_dim", "output_shape", "out_of_bounds", "output_dtype", "scale", "integer", "stochastic")


class BlackBoxConformance(Conformance):
    """The checks every BlackBox (and every wrapper in its section) passes. Set ``section``; optionally
    ``objective`` (a paired objective section), ``minimal_section`` (the options ``from_config`` needs when
    ``{}`` is not enough), ``invalid_rows = True`` (answers may hold rows of NaN: invalid measurements),
    ``batch``, ``seed``, ``xfail_checks``."""

    #: a ``blackbox:`` section (``type``, options, ``wrappers``): small, fast
    section: ClassVar[Mapping[str, Any] | None] = None
    #: the options ``from_config(parse(Config, ...))`` is checked with (default ``{}``: every option defaulted)
    minimal_section: ClassVar[Mapping[str, Any] | None] = None
    #: an objective section paired with the box (``{"type": "target_distance"}``), checked on its answers
    objective: ClassVar[Mapping[str, Any] | None] = None
    #: whether a row of an answer may be all NaN (an invalid measurement, e.g. a design that does not simulate)
    invalid_rows: ClassVar[bool] = False
    batch: ClassVar[int] = 4
    seed: ClassVar[int] = 0

    # -- what a subclass may override ---------------------------------------------------------------------
    def device(self) -> AbstractContextManager[dict[str, Any]]:
        """The section the checks build from, valid for the whole class: a rig's section rewritten to reach its
        simulated counterpart (started on entry, stopped on exit); a twin's as it is."""
        if self.section is None:
            return _nothing()
        return simulated(self.section)

    def make_blackbox(self, section: Mapping[str, Any] | None) -> BlackBox:
        """A new, unconnected box (from the ``device()`` section)."""
        if section is None:
            raise NotImplementedError(f"{type(self).__name__}: set section = {{'type': ..., ...}} or override "
                                      f"make_blackbox")
        return parse_blackbox(dict(section), "blackbox").build()

    def valid_inputs(self, spec: BlackBoxSpec, n: int) -> torch.Tensor:
        """``n x d_in`` inputs the box must answer: the centre, both corners, seeded uniform points."""
        return valid_inputs(spec, n, self.seed)

    @classmethod
    def covers(cls) -> list[tuple[str, str]]:
        out = []
        if cls.section is not None:
            out.append(("blackbox", cls.section["type"]))
            out += [("wrapper", w["type"]) for w in cls.section.get("wrappers") or []]
        if cls.objective is not None:
            out.append(("objective", cls.objective["type"]))
        return out

    # -- fixtures ------------------------------------------------------------------------------------------
    @pytest.fixture(scope="class")
    @classmethod
    def conformance_section(cls) -> Iterator[dict[str, Any] | None]:
        # a class-scoped fixture is a classmethod (pytest 9 deprecates instance methods here); the device is the
        # class's, built from a throwaway instance's settings
        with cls().device() as section:
            yield section

    @pytest.fixture
    def conformance_box(self, conformance_section: Any) -> Iterator[BlackBox]:
        box = self.make_blackbox(conformance_section)
        with box:
            yield box

    # -- the checks ---------------------------------------------------------------------------------------
    @check
    def test_spec_is_consistent_and_fixed_by_the_constructor(self, conformance_section: Any) -> None:
        box = self.make_blackbox(conformance_section)
        assert isinstance(box, BlackBox), f"{type(box).__name__} is not a hil.blackbox.BlackBox"
        assert not box.connected, "a new box must not be connected: constructors do no I/O, connect() opens"
        spec = box.spec
        assert isinstance(spec, BlackBoxSpec)
        assert isinstance(spec.name, str) and spec.name, "spec.name: give the box a name"
        d = spec.input_dim
        assert isinstance(d, int) and d >= 1, f"spec.input_dim must be a positive integer, got {d!r}"
        for key in ("lower", "upper"):
            bound = getattr(spec, key)
            assert bound.dtype == torch.float32 and tuple(bound.shape) == (d,), f"spec.{key}: {bound.shape}"
            assert bool(torch.isfinite(bound).all()), f"spec.{key} must be finite (optimisers search the box)"
        assert bool((spec.lower < spec.upper).all())
        assert all(isinstance(s, int) and s >= 1 for s in spec.output_shape), spec.output_shape
        assert isinstance(spec.output_dtype, torch.dtype)
        assert spec.out_of_bounds in ("reject", "clip")
        assert len(spec.scale) == d and len(spec.integer) == d
        before = {k: getattr(spec, k) for k in _SPEC_FIELDS}
        bounds = spec.lower.clone(), spec.upper.clone()
        with box:
            after = box.spec
            assert {k: getattr(after, k) for k in _SPEC_FIELDS} == before, \
                "connect() changed the spec: the log is created from the spec before connecting, so the " \
                "constructor must declare it"
            assert torch.equal(after.lower, bounds[0]) and torch.equal(after.upper, bounds[1])
        assert not box.connected

    @check
    def test_the_configs_static_spec_is_what_is_built(self, conformance_section: Any) -> None:
        """A config whose types say their shapes (:mod:`hil.shapes`) is checked by ``hil validate`` without
        building it: what they say must be what the built box has."""
        section = parse_blackbox(dict(conformance_section), "blackbox")
        static = section.static_spec()
        if static is None:
            pytest.skip("a type in this section does not declare static_spec (it is checked by building it)")
        assert static == static_spec_of(section.build()), \
            "the Config's static_spec() differs from the built box's spec: hil validate would check a config " \
            "against shapes a run does not have"

    @check
    def test_answers_a_valid_batch_with_batch_x_output_shape(self, conformance_box: BlackBox) -> None:
        box = conformance_box
        spec = box.spec
        x = self.valid_inputs(spec, self.batch)
        y = box.query(x)
        assert isinstance(y, torch.Tensor)
        assert tuple(y.shape) == (self.batch, *spec.output_shape)
        assert y.dtype == spec.output_dtype, f"answers are {y.dtype} but the spec declares {spec.output_dtype}"
        assert y.device.type == "cpu" and not y.requires_grad
        self._check_rows(y)
        one = box.query(x[:1])
        assert tuple(one.shape) == (1, *spec.output_shape)

    def _check_rows(self, y: torch.Tensor) -> None:
        flat = y.reshape(y.shape[0], -1).to(torch.float64)
        ok = finite_rows(y)
        if self.invalid_rows:
            assert bool(ok.any()), "every row is invalid"
            assert bool(torch.isnan(flat[~ok]).all()), "an invalid row must be all NaN (no inf, no partial rows)"
        else:
            assert bool(ok.all()), f"non-finite answers in rows {(~ok).nonzero().flatten().tolist()} (set " \
                                   f"invalid_rows = True if a row of NaN is an invalid measurement)"

    @check
    def test_bad_inputs_never_reach_the_device(self, conformance_box: BlackBox) -> None:
        box = conformance_box
        spec = box.spec
        d = spec.input_dim
        good = self.valid_inputs(spec, 2)
        nan, inf, ninf = good.clone(), good.clone(), good.clone()
        nan[0, 0], inf[1, d - 1], ninf[0, d - 1] = float("nan"), float("inf"), float("-inf")
        bad: list[tuple[str, Any, dict[str, Any]]] = [
            ("NaN", nan, {}), ("inf", inf, {}), ("-inf", ninf, {}),
            ("one point without its batch axis", good[0], {}),
            ("one input too many", torch.cat([good, good[:, :1]], dim=1), {}),
            ("a 3-D tensor", good[:, :, None], {}),
            ("an empty batch", good[:0], {}),
            ("an integer tensor", good.round().to(torch.int64), {}),
            ("a list", good.tolist(), {}),
            ("an unknown purpose", good, {"purpose": "bogus"}),
            ("an iteration below -1", good, {"iteration": -2}),
            ("a start per row missing", good, {"start": [0]}),
        ]
        if d > 1:
            bad.append(("one input too few", good[:, :-1], {}))
        if spec.out_of_bounds == "reject":
            out = good.clone()
            out[0, 0] = spec.upper[0] + (spec.upper[0] - spec.lower[0])
            bad.append(("out of bounds under reject", out, {}))
        log = RecordingLog()
        box.attach_log(log)
        queries = box.stats.queries
        with QuerySpy(box) as spy:
            for what, x, kw in bad:
                with pytest.raises(InputError):
                    box.query(x, **kw)
                assert not spy.calls, f"{what} reached _query"
        box.attach_log(None)
        assert box.stats.queries == queries and not log.batches, "a refused input was counted or logged"

    @check
    def test_out_of_bounds_inputs_follow_the_declared_policy(self, conformance_box: BlackBox) -> None:
        box = conformance_box
        spec = box.spec
        d = spec.input_dim
        x = self.valid_inputs(spec, 2)
        span = spec.upper - spec.lower
        x[0, 0] = spec.upper[0] + 0.25 * span[0]
        x[1, d - 1] = spec.lower[d - 1] - 0.25 * span[d - 1]
        clipped = box.stats.clipped_rows
        with QuerySpy(box) as spy:
            if spec.out_of_bounds == "reject":
                with pytest.raises(InputError):
                    box.query(x)
                assert not spy.calls
                return
            y = box.query(x)
        assert len(spy.calls) == 1, "one batch, one call of _query"
        sent = spy.calls[0]
        assert bool(((sent >= spec.lower) & (sent <= spec.upper)).all()), "a value outside the bounds was sent"
        assert float(sent[0, 0]) == float(spec.upper[0]) and float(sent[1, d - 1]) == float(spec.lower[d - 1])
        assert box.stats.clipped_rows == clipped + 2
        assert tuple(y.shape) == (2, *spec.output_shape)

    @check
    def test_every_query_is_logged_once_with_its_purpose(self, conformance_box: BlackBox, tmp_path: Any) -> None:
        from hil.querylog import QueryLog, read_log

        box = conformance_box
        spec = box.spec
        n = max(self.batch, 2)
        x = self.valid_inputs(spec, n)
        dtype = np.dtype(str(spec.output_dtype).replace("torch.", ""))
        path = tmp_path / "conformance.h5"
        plan = [("initial", -1, None), ("step", 0, torch.arange(n)), ("probe", 3, torch.full((n,), 1)),
                ("calibration", 7, None)]
        before = dataclasses.replace(box.stats, by_purpose=dict(box.stats.by_purpose))
        answers = []
        with QueryLog.create(path, input_dim=spec.input_dim, output_shape=spec.output_shape, output_dtype=dtype,
                             run_id="conformance", config={"blackbox": spec.name}) as log:
            box.attach_log(log)
            try:
                for purpose, iteration, start in plan:
                    answers.append(box.query(x, purpose=purpose, iteration=iteration, start=start))
            finally:
                box.attach_log(None)
        data = read_log(path)
        assert len(data) == n * len(plan), f"{len(data)} rows logged for {n * len(plan)} answered"
        assert list(data.purpose_labels()) == [p for p, _, _ in plan for _ in range(n)]
        assert data.iteration.tolist() == [it for _, it, _ in plan for _ in range(n)]
        starts = [(-1 if s is None else int(s[i])) for _, _, s in plan for i in range(n)]
        assert data.start.tolist() == starts
        np.testing.assert_allclose(data.x, x.repeat(len(plan), 1).numpy(), rtol=0, atol=0)
        y = torch.cat(answers).reshape(n * len(plan), -1).to(torch.float64).numpy()
        np.testing.assert_allclose(data.y.reshape(n * len(plan), -1).astype(np.float64), y, rtol=1e-6,
                                   equal_nan=True)
        assert box.stats.queries - before.queries == n * len(plan)
        assert box.stats.batches - before.batches == len(plan)
        for purpose, _, _ in plan:
            assert box.stats.by_purpose.get(purpose, 0) - before.by_purpose.get(purpose, 0) == n
        for inner in chain(box)[1:]:
            assert inner.stats.queries == 0, \
                f"{type(inner).__name__} inside {type(box).__name__} counted queries: a wrapper calls " \
                f"inner._query, never inner.query (which validates and logs the row again)"
        assert set(data.purpose_labels()) <= set(PURPOSES)

    @check
    def test_query_before_connect_fails_and_sends_nothing(self, conformance_section: Any) -> None:
        box = self.make_blackbox(conformance_section)
        x = self.valid_inputs(box.spec, 1)
        with QuerySpy(box) as spy:
            with pytest.raises(NotConnectedError):
                box.query(x)
            assert not spy.calls

    @check
    def test_config_declares_a_range_for_every_number(self, conformance_section: Any) -> None:
        box = self.make_blackbox(conformance_section)
        classes = [type(b) for b in chain(box)]
        if self.objective is not None:
            classes.append(OBJECTIVES.get(self.objective["type"]))
        for cls in classes:
            assert dataclasses.is_dataclass(getattr(cls, "Config", None)), f"{cls.__name__} has no Config dataclass"
            missing = undeclared_numbers(cls.Config)
            assert not missing, f"{cls.__name__}.Config: numbers without a declared range: {missing} (use " \
                                f"hil.config.Range or an alias such as PositiveFloat)"

    @check
    def test_builds_from_its_config_without_io(self, conformance_section: Any) -> None:
        built = chain(self.make_blackbox(conformance_section))
        base_cls = type(built[-1])
        options = parse(base_cls.Config, dict(self.minimal_section or {}), base_cls.__name__)
        box = base_cls.from_config(options)
        assert isinstance(box, base_cls) and not box.connected
        written = list((self.section or {}).get("wrappers") or [])
        inner = built[-1]
        for i, wrapper in enumerate(reversed(built[:-1])):
            cls = type(wrapper)
            entry = options_of(written[i]) if i < len(written) else {}
            outer = cls.from_config(parse(cls.Config, entry, cls.__name__), inner=inner)
            assert isinstance(outer, cls) and outer.inner is inner and not outer.connected
            inner = outer

    @check
    def test_objective_is_differentiable_in_the_answers(self, conformance_box: BlackBox) -> None:
        if self.objective is None:
            pytest.skip("no objective paired with this box (set objective = {'type': ...})")
        box = conformance_box
        spec = box.spec
        objective = parse_typed(OBJECTIVES, dict(self.objective), "objective").build(output_shape=spec.output_shape)
        assert objective.sense in ("min", "max")
        y = box.query(self.valid_inputs(spec, self.batch)).to(torch.float32)
        ok = finite_rows(y)
        leaf = y.clone().requires_grad_(True)
        value = objective(leaf)
        assert tuple(value.shape) == (self.batch,), f"the objective gives shape {tuple(value.shape)}, not (batch,)"
        assert bool(torch.isfinite(value[ok]).all())
        loss = objective.loss(leaf)
        (grad,) = torch.autograd.grad(loss[ok].sum(), leaf, allow_unused=False)
        assert tuple(grad.shape) == tuple(y.shape) and bool(torch.isfinite(grad[ok]).all())
        expected = value if objective.sense == "min" else -value
        torch.testing.assert_close(loss.detach()[ok], expected.detach()[ok])

    @check
    def test_a_deterministic_box_answers_the_same_input_the_same(self, conformance_box: BlackBox) -> None:
        box = conformance_box
        if box.spec.stochastic:
            pytest.skip("the box declares itself stochastic")
        x = self.valid_inputs(box.spec, self.batch)
        a, b = box.query(x), box.query(x)
        torch.testing.assert_close(a, b, equal_nan=True, msg="spec.stochastic is False, yet the same input gave "
                                                             "different answers")

    @check
    def test_its_differentiable_model_maps_what_it_answers(self, conformance_box: BlackBox) -> None:
        box = conformance_box
        if not isinstance(box, Differentiable) or not getattr(box, "is_differentiable", True):
            pytest.skip("no forward_differentiable")
        spec = box.spec
        x = self.valid_inputs(spec, self.batch).requires_grad_(True)
        model = box.forward_differentiable(x)
        assert tuple(model.shape) == (self.batch, *spec.output_shape)
        (grad,) = torch.autograd.grad(model.to(torch.float32).sum(), x)
        assert tuple(grad.shape) == tuple(x.shape) and bool(torch.isfinite(grad).all())
        if spec.stochastic:
            return  # the model is the noise-free expectation: nothing to compare one draw with
        y = box.query(x.detach()).to(torch.float32)
        scale = float(y.abs().max()) or 1.0
        torch.testing.assert_close(model.detach().to(torch.float32), y, rtol=1e-3, atol=1e-3 * scale,
                                   msg="forward_differentiable differs from the answers of a deterministic box")


class DriverConformance(BlackBoxConformance):
    """:class:`BlackBoxConformance` for a rig driver on its simulated counterpart, plus its lifecycle: connect
    and close twice, reconnect, ``with`` closing on an error. ``section`` is the rig's section as a bench config
    writes it (its address may point nowhere: the checks build the rig from it without connecting, and query it
    on the simulated device)."""

    @property
    def minimal_section(self) -> dict[str, Any]:  # type: ignore[override]
        return options_of(self.section or {})

    @check
    def test_connect_and_close_twice_then_reconnect(self, conformance_section: Any) -> None:
        box = self.make_blackbox(conformance_section)
        x = self.valid_inputs(box.spec, 2)
        assert box.connect() is box and box.connected
        box.connect()  # a second connect on a connected box does nothing
        assert box.connected
        first = box.query(x)
        box.close()
        assert not box.connected
        box.close()  # a second close does nothing
        with pytest.raises(NotConnectedError):
            box.query(x)
        box.connect()  # a reconnect
        try:
            again = box.query(x)
        finally:
            box.close()
        assert again.shape == first.shape
        self._check_rows(again)

    @check
    def test_with_closes_the_rig_on_an_error(self, conformance_section: Any) -> None:
        box = self.make_blackbox(conformance_section)
        with pytest.raises(KeyError):
            with box:
                box.query(self.valid_inputs(box.spec, 1))
                raise KeyError("an error inside the with block")
        assert not box.connected
        with box:  # and it opens again
            box.query(self.valid_inputs(box.spec, 1))


class _nothing(AbstractContextManager):
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
