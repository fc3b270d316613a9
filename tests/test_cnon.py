"""The CNON twin: physics, determinism, batching, exact gradients."""

from __future__ import annotations

import pytest
import torch

from hil.config import undeclared_numbers
from hil.errors import ConfigError
from hil.registry import BLACKBOXES
from hil.run import load_run_config
from hil.sections import parse_blackbox

CNON = BLACKBOXES.get("cnon_twin")


def test_uncoupled_undriven_oscillator_matches_the_pendulum_energy():
    twin = CNON(CNON.Config(dim=1, coupling=0.0, drive=0.0, horizon=2.0, steps=400))
    q0 = torch.tensor([[0.8]])
    q = twin.forward_differentiable(q0)
    # energy conservation of q'' = -sin q with q'(0) = 0: the amplitude never exceeds q0
    assert abs(float(q)) <= 0.8 + 1e-5
    # small-angle limit: q(T) ~ q0 cos(T)
    small = twin.forward_differentiable(torch.tensor([[1e-3]]))
    assert torch.allclose(small, torch.tensor([[1e-3 * torch.cos(torch.tensor(2.0))]]), rtol=1e-3)


def test_coupling_is_symmetric_and_seeded():
    a, b, c = (CNON(CNON.Config(dim=5, seed=s)) for s in (0, 0, 1))
    assert torch.equal(a.coupling_matrix, a.coupling_matrix.T)
    assert torch.equal(a.coupling_matrix, b.coupling_matrix) and torch.equal(a.drive, b.drive)
    assert not torch.equal(a.coupling_matrix, c.coupling_matrix)


def test_batched_rows_are_independent():
    twin = CNON(CNON.Config(dim=4))
    x = torch.rand(6, 4) * 2 - 1
    together = twin.forward_differentiable(x)
    apart = torch.cat([twin.forward_differentiable(x[i: i + 1]) for i in range(6)])
    assert torch.allclose(together, apart, atol=1e-6)


def test_exact_gradient_matches_finite_differences():
    twin = CNON(CNON.Config(dim=4, horizon=3.0, steps=60))
    x = (torch.rand(1, 4, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    jac = torch.autograd.functional.jacobian(lambda z: twin.forward_differentiable(z)[0], x)[:, 0, :]
    h = 1e-6
    fd = torch.stack([(twin.forward_differentiable(x + h * e) - twin.forward_differentiable(x - h * e))[0] / (2 * h)
                      for e in torch.eye(4, dtype=torch.float64)], dim=1)
    assert torch.allclose(jac, fd, atol=1e-6)
    assert torch.isfinite(jac).all()


# -- the config: every number declared, non-finite and out-of-range values fail on parse naming the key ----------

INF, NAN = float("inf"), float("nan")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"coupling": INF}, r"^blackbox.coupling: expected a finite number, got inf"),
        ({"coupling": NAN}, r"^blackbox.coupling: expected a finite number, got nan"),
        ({"coupling": -0.1}, r"^blackbox.coupling: must be >= 0, got -0.1"),
        ({"horizon": INF}, r"^blackbox.horizon: expected a finite number, got inf"),
        ({"horizon": 0.0}, r"^blackbox.horizon: must be > 0, got 0.0"),
        ({"drive": NAN}, r"^blackbox.drive: expected a finite number, got nan"),
        ({"input_bound": -1.0}, r"^blackbox.input_bound: must be >= 1e-06, got -1.0"),
        ({"input_bound": 1e-300}, r"^blackbox.input_bound: must be >= 1e-06"),  # float32 would make the box empty
        ({"dim": 0}, r"^blackbox.dim: must be >= 1 and <= 10000, got 0"),
        ({"dim": 10**6}, r"^blackbox.dim: must be >= 1 and <= 10000, got 1000000"),
        ({"steps": 0}, r"^blackbox.steps: must be >= 1 and <= (1000000|1e\+06), got 0"),
        ({"steps": 10**30}, r"^blackbox.steps: must be >= 1 and <= (1000000|1e\+06)"),  # a query that never ends
        ({"seed": 2**64}, r"^blackbox.seed: must be >= 0 and <= "),
        ({"device": "tpu"}, r"^blackbox.device: must be one of auto, cpu, cuda or cuda:N, got 'tpu'"),
    ],
)
def test_bad_numbers_fail_on_parse_naming_the_key(options, message):
    with pytest.raises(ConfigError, match=message):
        parse_blackbox({"type": "cnon_twin", **options})


def test_the_config_declares_the_range_of_every_number():
    assert undeclared_numbers(CNON.Config) == []


def test_an_infinite_or_overflowing_coupling_fails_validation_not_the_run():
    """Regression: ``coupling: .inf`` passed validation and the run failed later with a misleading message (the
    coupling matrix's diagonal became inf - inf = NaN). A finite coupling so large that float32 overflows is
    rejected too, naming coupling."""
    base = {"name": "c", "objective": {"type": "target_distance", "target_seed": 1},
            "optimizer": {"type": "cmaes", "iterations": 2}}
    with pytest.raises(ConfigError, match=r"^blackbox.coupling: expected a finite number, got inf"):
        load_run_config({**base, "blackbox": {"type": "cnon_twin", "dim": 3, "coupling": INF}})
    with pytest.raises(ConfigError, match=r"^blackbox.coupling: input_bound \+ horizon\^2 \* \(coupling \* dim "
                                          r"\+ 1 \+ drive\) = .* must be <= 1e\+30"):
        load_run_config({**base, "blackbox": {"type": "cnon_twin", "dim": 3, "coupling": 1e300}})
    twin = parse_blackbox({"type": "cnon_twin", "dim": 3, "coupling": 1e20}).build()  # large, but finite answers
    assert torch.isfinite(twin.k_matrix).all() and torch.isfinite(twin.forward_differentiable(torch.zeros(2, 3))).all()
