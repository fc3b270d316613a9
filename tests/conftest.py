"""Shared fixtures: a call-counting BlackBox and small configs."""

from __future__ import annotations

import pytest
import torch

from hil.blackbox import BlackBox, BlackBoxSpec


class CountingBox(BlackBox):
    """A trivial BlackBox that records every batch its private ``_query`` receives."""

    def __init__(self, d: int = 3, out_of_bounds: str = "reject") -> None:
        super().__init__(BlackBoxSpec("counting", d, torch.full((d,), -1.0), torch.ones(d), (2,),
                                      out_of_bounds=out_of_bounds))
        self.received: list[torch.Tensor] = []

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        self.received.append(x.clone())
        return torch.stack([x.sum(dim=1), (x**2).sum(dim=1)], dim=1)


@pytest.fixture
def counting_box():
    with CountingBox() as box:
        yield box


@pytest.fixture(autouse=True)
def _pin_torch_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small models: threads only contend on 2 cores
    yield
    torch.set_num_threads(threads)


def small_run_config(tmp_path, **optimizer) -> dict:
    return {
        "name": "small",
        "blackbox": {"type": "cnon_twin", "dim": 6, "horizon": 2.0, "steps": 10},
        "objective": {"type": "target_distance"},
        "estimator": {"type": "surrogate", "loss": "gradpie", "hidden": [32, 32], "epochs": 2},
        "optimizer": {"n_starts": 3, "iterations": 8, **optimizer},
        "log": {"dir": str(tmp_path)},
    }


def pytest_collection_modifyitems(config, items):
    """``@pytest.mark.gpu`` tests skip unless torch sees a GPU."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a GPU (torch.cuda.is_available() is False)")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)
