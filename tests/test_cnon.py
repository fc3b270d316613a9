"""The CNON twin: physics, determinism, batching, exact gradients."""

from __future__ import annotations

import torch

from hil.registry import BLACKBOXES

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
