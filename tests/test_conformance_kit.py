"""The conformance kit itself: its checks fail on implementations that break the contract (a kit that cannot fail
checks nothing), xfail_checks is strict, missing_conformance sees a new registration, every registered
implementation has what its protocol in hil.protocols names, and the optimiser checks work as a mixin."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Annotated

import pytest
import torch

from hil.blackbox import BlackBox, BlackBoxSpec, BlackBoxWrapper
from hil.config import Range
from hil.errors import DeviceError
from hil.protocols import PLUGIN_KINDS, missing_members, protocol_members, registered
from hil.registry import BLACKBOXES
from hil.testing.conformance import (
    BlackBoxConformance,
    DriverConformance,
    OptimizerConformance,
    missing_conformance,
)
from hil.testing.optimizers import CASES

BROKEN = (AssertionError, pytest.fail.Exception)


class Good(BlackBox):
    """Twice the input, deterministic, with a ranged config."""

    @dataclass
    class Config:
        dim: Annotated[int, Range(ge=1, le=8)] = 2

    def __init__(self, dim: int = 2, **spec) -> None:
        super().__init__(BlackBoxSpec("good", dim, -1.0, 1.0, (dim,), **spec))

    @classmethod
    def from_config(cls, config: Config) -> Good:
        return cls(config.dim)

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * x


class Unranged(Good):
    @dataclass
    class Config:
        dim: int = 2


class WrongDtype(Good):
    def _query(self, x: torch.Tensor) -> torch.Tensor:
        return (2 * x).double()


class Noisy(Good):  # declares itself deterministic
    def _query(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * x + torch.randn_like(x)


class Bypass(Good):  # skips the validated path
    def query(self, x, **kw):
        return self._query(torch.as_tensor(x, dtype=torch.float32))


class ShapeOnConnect(Good):  # declares its output only once connected
    def _connect(self) -> None:
        self.spec = replace(self.spec, output_shape=(5,))


class LeakyWrapper(BlackBoxWrapper):  # queries the inner box's public path: validated and counted twice
    @dataclass
    class Config:
        pass

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner.query(x)


class OneShot(Good):  # a driver that cannot reconnect
    opened = 0

    def _connect(self) -> None:
        self.opened += 1
        if self.opened > 1:
            raise DeviceError("the port is gone")


def kit(box_factory, base=BlackBoxConformance, **attrs):
    """A conformance class on an unregistered box."""
    cls = type("TestProbe", (base,), {"make_blackbox": lambda self, section: box_factory(), **attrs})
    return cls()


def connected(box):
    return box.connect()


def test_the_checks_pass_a_good_box(tmp_path):
    k = kit(Good)
    k.test_spec_is_consistent_and_fixed_by_the_constructor(None)
    k.test_answers_a_valid_batch_with_batch_x_output_shape(connected(Good()))
    k.test_bad_inputs_never_reach_the_device(connected(Good()))
    k.test_out_of_bounds_inputs_follow_the_declared_policy(connected(Good()))
    k.test_out_of_bounds_inputs_follow_the_declared_policy(connected(Good(out_of_bounds="clip")))
    k.test_every_query_is_logged_once_with_its_purpose(connected(Good()), tmp_path)
    k.test_a_deterministic_box_answers_the_same_input_the_same(connected(Good()))
    k.test_config_declares_a_range_for_every_number(None)
    k.test_builds_from_its_config_without_io(None)
    kit(Good, DriverConformance).test_connect_and_close_twice_then_reconnect(None)


def test_the_checks_fail_a_box_that_breaks_the_contract(tmp_path):
    with pytest.raises(BROKEN, match="numbers without a declared range"):
        kit(Unranged).test_config_declares_a_range_for_every_number(None)
    with pytest.raises(BROKEN, match="spec declares torch.float32"):
        kit(WrongDtype).test_answers_a_valid_batch_with_batch_x_output_shape(connected(WrongDtype()))
    with pytest.raises(BROKEN, match="same input gave different answers"):
        kit(Noisy).test_a_deterministic_box_answers_the_same_input_the_same(connected(Noisy()))
    with pytest.raises(BROKEN):
        kit(Bypass).test_bad_inputs_never_reach_the_device(connected(Bypass()))
    with pytest.raises(BROKEN, match="connect\\(\\) changed the spec"):
        kit(ShapeOnConnect).test_spec_is_consistent_and_fixed_by_the_constructor(None)
    with pytest.raises(BROKEN, match="never inner.query"):
        kit(lambda: LeakyWrapper(Good())).test_every_query_is_logged_once_with_its_purpose(
            connected(LeakyWrapper(Good())), tmp_path)
    with pytest.raises(DeviceError, match="the port is gone"):
        kit(OneShot, DriverConformance).test_connect_and_close_twice_then_reconnect(None)


def test_xfail_checks_are_strict():
    check = "test_a_deterministic_box_answers_the_same_input_the_same"
    with pytest.raises(pytest.xfail.Exception, match="known noisy"):
        kit(Noisy, xfail_checks={check: "known noisy"}).test_a_deterministic_box_answers_the_same_input_the_same(
            connected(Noisy()))
    with pytest.raises(pytest.fail.Exception, match="but passes: remove it"):
        kit(Good, xfail_checks={check: "fixed since"}).test_a_deterministic_box_answers_the_same_input_the_same(
            connected(Good()))
    with pytest.raises(AssertionError, match="names no check"):
        kit(Good, xfail_checks={"test_misspelt": "?"}).test_xfail_checks_name_real_checks()


def test_missing_conformance_sees_a_new_registration():
    class NewTwin(Good):
        pass

    NewTwin.__module__ = "hil.kit_probe"
    BLACKBOXES.register("hil_kit_probe_twin")(NewTwin)
    try:
        assert "blackbox hil_kit_probe_twin" in missing_conformance({}, ["blackbox"], package="hil")

        class TestNewTwin(BlackBoxConformance):
            section = {"type": "hil_kit_probe_twin"}

        assert "blackbox hil_kit_probe_twin" not in missing_conformance([TestNewTwin], ["blackbox"], package="hil")
        assert missing_conformance({}, ["blackbox"], package="hil.kit_probe") == ["blackbox hil_kit_probe_twin"]
    finally:
        BLACKBOXES._items.pop("hil_kit_probe_twin")


@pytest.mark.parametrize("kind", sorted(PLUGIN_KINDS))
def test_every_registered_implementation_has_what_its_protocol_names(kind):
    spec = PLUGIN_KINDS[kind]
    assert protocol_members(spec.protocol)
    for name, cls in registered(kind, "hil"):
        assert spec.base is None or issubclass(cls, spec.base), f"{kind} {name}: not a {spec.base.__name__}"
        assert not missing_members(cls, spec.protocol), f"{kind} {name} lacks {missing_members(cls, spec.protocol)}"


class TestRandomSearchThroughTheMixin(OptimizerConformance):
    case = next(c for c in CASES if c.name == "random")
