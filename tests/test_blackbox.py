"""Bad inputs never reach a BlackBox implementation, and the errors say what was wrong."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import CountingBox

from hil.blackbox import BlackBox, BlackBoxSpec, Delayed
from hil.errors import DeviceError, HilError, InputError, NotConnectedError
from hil.querylog import QueryLog, read_log


@pytest.mark.parametrize(
    "x, message",
    [
        (torch.tensor([[0.0, float("nan"), 0.0]]), "1 NaN and 0 inf"),
        (torch.tensor([[0.0, 0.0, float("inf")]]), "0 NaN and 1 inf"),
        (torch.tensor([[0.0, 0.0, float("-inf")], [float("nan")] * 3]), "3 NaN and 1 inf"),
        (torch.zeros(3), "always batched"),
        (torch.zeros(2, 4), "expects shape (batch, 3), got (2, 4)"),
        (torch.zeros(2, 3, 1), "expects shape (batch, 3), got (2, 3, 1)"),
        (torch.zeros(0, 3), "empty batch"),
        (torch.zeros(2, 3, dtype=torch.int64), "floating-point"),
        (torch.tensor([[0.0, 1.5, 0.0]]), "out of bounds at row 0, column 1: 1.5 not in [-1, 1]"),
        (torch.tensor([[0.0, 0.0, 0.0], [-1.01, 0.0, 0.0]]), "row 1, column 0"),
        ([[0.0, 0.0, 0.0]], "torch.Tensor"),
    ],
)
def test_bad_inputs_never_reach_the_implementation(counting_box, x, message):
    with pytest.raises(InputError) as info:
        counting_box.query(x)
    assert message in str(info.value)
    assert counting_box.received == []
    assert counting_box.stats.queries == 0


def test_valid_inputs_reach_it_once_as_float32(counting_box):
    x = torch.tensor([[0.5, -0.5, 1.0], [-1.0, 0.0, 0.25]], dtype=torch.float64)
    y = counting_box.query(x)
    assert len(counting_box.received) == 1
    assert counting_box.received[0].dtype == torch.float32
    assert torch.allclose(counting_box.received[0], x.float())
    assert y.shape == (2, 2)
    assert counting_box.stats.queries == 2 and counting_box.stats.batches == 1


def test_numpy_input_is_accepted(counting_box):
    counting_box.query(np.zeros((4, 3), dtype=np.float32))
    assert counting_box.received[0].shape == (4, 3)


def test_clip_policy_clips_before_the_implementation():
    with CountingBox(out_of_bounds="clip") as box:
        box.query(torch.tensor([[2.0, -3.0, 0.5]]))
        assert box.received[0].tolist() == [[1.0, -1.0, 0.5]]
        assert box.stats.clipped_rows == 1


def test_query_before_connect_fails():
    box = CountingBox()
    with pytest.raises(NotConnectedError, match="connect"):
        box.query(torch.zeros(1, 3))
    assert box.received == []


def test_constructor_does_no_io_and_context_manager_connects():
    events = []

    class Device(CountingBox):
        def _connect(self):
            events.append("connect")

        def _close(self):
            events.append("close")

    box = Device()
    assert events == []
    with box:
        assert box.connected
    assert events == ["connect", "close"] and not box.connected


def test_wrong_output_shape_is_a_device_error():
    class Broken(CountingBox):
        def _query(self, x):
            return torch.zeros(x.shape[0], 5)

    with Broken() as box, pytest.raises(DeviceError, match=r"answered with shape \(1, 5\), expected \(1, 2\)"):
        box.query(torch.zeros(1, 3))


def test_errors_share_one_hierarchy():
    assert issubclass(InputError, HilError) and issubclass(DeviceError, HilError)


def test_spec_rejects_inverted_bounds():
    with pytest.raises(ValueError, match="lower bound"):
        BlackBoxSpec("bad", 2, torch.ones(2), torch.zeros(2), (1,))


def test_every_answered_query_is_logged_with_its_purpose(tmp_path):
    path = tmp_path / "log.h5"
    with QueryLog.create(path, input_dim=3, output_shape=(2,), run_id="r") as log, CountingBox() as box:
        box.attach_log(log)
        box.query(torch.zeros(2, 3), purpose="step", iteration=0, start=[0, 1])
        with pytest.raises(InputError):
            box.query(torch.full((1, 3), float("nan")), purpose="step", iteration=1)
        box.query(torch.ones(1, 3), purpose="probe", iteration=1)
    data = read_log(path)
    assert len(data) == 3
    assert data.purpose_labels().tolist() == ["step", "step", "probe"]
    assert data.start.tolist() == [0, 1, -1]
    assert data.iteration.tolist() == [0, 0, 1]


def test_delayed_wrapper_adds_latency_per_query():
    import time

    with Delayed(CountingBox(), 0.01) as box:
        t0 = time.perf_counter()
        box.query(torch.zeros(5, 3))
        assert time.perf_counter() - t0 >= 0.05
        assert box.stats.busy_s >= 0.05


class BlackBoxConformance:
    """Checks every BlackBox must pass; a test class lists instances in ``make``."""

    def make(self) -> BlackBox:
        raise NotImplementedError

    def test_spec_and_batched_shapes(self):
        with self.make() as box:
            spec = box.spec
            u = torch.rand(5, spec.input_dim)
            x = spec.lower + u * (spec.upper - spec.lower)
            y = box.query(x)
            assert y.shape == (5, *spec.output_shape)
            assert torch.isfinite(y.float()).all()
            y1 = box.query(x[:1])
            if not spec.stochastic:
                assert torch.allclose(y1, y[:1], atol=1e-5)

    def test_rejects_nan(self):
        with self.make() as box, pytest.raises(InputError):
            box.query(torch.full((1, box.spec.input_dim), float("nan")))


class TestCNONConformance(BlackBoxConformance):
    def make(self):
        from hil.registry import BLACKBOXES

        cls = BLACKBOXES.get("cnon_twin")
        return cls(cls.Config(dim=7))


class TestCountingConformance(BlackBoxConformance):
    def make(self):
        return CountingBox()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"start": [0, 1]}, "one starting point per row: 4 rows, got 2"),
        ({"start": [0, 1, 2, 3, 4]}, "4 rows, got 5"),
        ({"start": [0, 1, -2, 3]}, "integers >= -1"),
        ({"start": [0.5, 1, 2, 3]}, "one integer per row"),
        ({"start": ["a", "b", "c", "d"]}, "one integer per row"),
        ({"purpose": "stepp"}, "purpose must be one of step, local_sample"),
        ({"iteration": 1.5}, "iteration must be an integer"),
        ({"iteration": -7}, "iteration must be an integer >= -1"),
    ],
)
def test_bad_metadata_fails_before_the_device_sees_the_batch(tmp_path, kwargs, message):
    path = tmp_path / "q.h5"
    with QueryLog.create(path, input_dim=3, output_shape=(2,), run_id="r") as log, CountingBox() as box:
        box.attach_log(log)
        with pytest.raises(InputError, match="nothing was sent") as info:
            box.query(torch.zeros(4, 3), **kwargs)
        assert message in str(info.value)
        assert box.received == [] and box.stats.queries == 0
        box.query(torch.zeros(4, 3), start=np.arange(4), iteration=2)
    assert read_log(path).start.tolist() == [0, 1, 2, 3]


def test_float64_beyond_float32_range_is_named_or_clipped_not_inf(counting_box):
    big = torch.tensor([[0.0, 1e300, 0.0]], dtype=torch.float64)
    with pytest.raises(InputError) as info:
        counting_box.query(big)
    assert "1e+300 not in [-1, 1]" in str(info.value) and "inf" not in str(info.value).split("not in")[0]
    with CountingBox(out_of_bounds="clip") as box:
        box.query(torch.tensor([[-1e300, 1e300, 0.5]], dtype=torch.float64))
        assert box.received[0].tolist() == [[-1.0, 1.0, 0.5]] and box.received[0].dtype == torch.float32
