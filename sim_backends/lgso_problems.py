"""The stochastic problems of the L-GSO paper (Shirobokov et al. 2020, ``papers/003_*``), as seeded twins.

Each query row is a parameter ``psi``; the answer is one stochastic draw ``y`` of the simulator at ``psi``
(``batch x 1``), from the twin's own seeded generator. The objective is ``E[R(y)]``: ``R`` is the paper's
(``objective: {type: sigmoid_window}`` for the hump problems, ``{type: mean_output}`` for Rosenbrock), and
each problem computes its expectation deterministically (``expected_objective``, by quadrature where it has no
closed form), so a benchmark can score a ``psi`` without noise.

* ``three_hump`` (2-D): ``y ~ N(mu_i, 1)``, ``mu_i ~ N(x_i h(psi), 1)``, ``x_1 ~ U[-2, 0]``, ``x_2 ~ U[2, 5]``,
  ``P(i) = |psi_i| / sum |psi|`` (the authors' code; the paper prints ``psi_1 / ||psi||``), ``h`` the three-hump
  camel function; ``R(y) = sigmoid(y - 10) - sigmoid(y)``. Start (2, 0), box ``[-5, 5]^2``.
* ``rosenbrock`` (10-D): ``y ~ N(g(psi) + x, 1)``, ``x ~ N(mu, 1)``, ``mu ~ U[-10, 10]`` (the paper's noise);
  ``g`` the Rosenbrock sum ``sum (psi_{i+1} - psi_i^2)^2 + (1 - psi_i)^2`` (the authors' code; the paper prints
  ``(psi_i - psi_{i+1})^2``); ``R(y) = y``, so ``E[R] = g(psi)``: 0 at ``psi = 1``. Start 2, box ``[-5, 5]^10``.
* ``submanifold_rosenbrock`` (100-D): the same on ``psi' = Q^T psi``, ``Q`` (100 x 10) orthonormal from the QR
  decomposition of a seeded normal matrix (seed 1337): 0 on the 90-D affine set ``Q^T psi = 1``, e.g.
  ``psi = Q 1``. Start 0, box ``[-5, 5]^100``.
* ``submanifold_hump`` (40-D): three-hump on ``B tanh(A psi)`` (``A`` 16 x 40, ``B`` 2 x 16, orthonormal rows from
  seeded QR decompositions, seeds 1338 and 1339: the authors' code leaves numpy unseeded here). Start
  ``0.1``, box ``[-5, 5]^40``.

The exact gradient exists for the Rosenbrock problems (``forward_differentiable`` is ``E[y]``, and ``R`` is
linear); the hump problems have none through the BlackBox (their ``R`` is not).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import torch

from hil.blackbox import BlackBox, BlackBoxSpec
from hil.config import Range, Seed
from hil.objectives import Objective
from hil.registry import BLACKBOXES, OBJECTIVES

_GL_X, _GL_W = np.polynomial.legendre.leggauss(48)  # on [-1, 1]
_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(48)  # for N(0, 1): sum w f(x) / sqrt(2 pi)


def three_hump(p: torch.Tensor) -> torch.Tensor:
    """The three-hump camel function of ``p`` (``batch x 2``): ``batch``."""
    a, b = p[:, 0], p[:, 1]
    return 2 * a**2 - 1.05 * a**4 + a**6 / 6 + a * b + b**2


def rosenbrock(p: torch.Tensor) -> torch.Tensor:
    """``sum (p_{i+1} - p_i^2)^2 + (1 - p_i)^2`` of ``p`` (``batch x d``): ``batch``."""
    return ((p[:, 1:] - p[:, :-1] ** 2) ** 2).sum(dim=1) + ((1 - p[:, :-1]) ** 2).sum(dim=1)


def orthonormal(rows: int, cols: int, seed: int) -> torch.Tensor:
    """``rows x cols`` with orthonormal columns: QR of a seeded standard normal matrix (the paper's B.1)."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((rows, cols)))
    return torch.tensor(q, dtype=torch.float64)


def sigmoid_window(y: torch.Tensor) -> torch.Tensor:
    """The hump problems' ``R(y) = sigmoid(y - 10) - sigmoid(y)``: lowest (about -1) for ``y`` between 0 and 10."""
    return torch.sigmoid(y - 10) - torch.sigmoid(y)


class _Problem(BlackBox):
    """Shared: a box, a seeded generator, one draw per row, the deterministic expectation of ``R``."""

    dim = 2
    start = 0.0
    name = ""
    #: the lowest E[R] (known, or found by Adam on the expectation from 64 starts: ``_best_hump``)
    optimum_value = 0.0

    @dataclass
    class Config:
        seed: Seed = 0
        # the box is [-bound, bound]^d: from 1e-6 float32 keeps it; up to 1e6 the three-hump's psi^6 / 6 stays within
        # float32's answers
        bound: Annotated[float, Range(ge=1e-6, le=1e6)] = 5.0

    def __init__(self, config: Config | None = None) -> None:
        c = self.config = config or self.Config()
        super().__init__(BlackBoxSpec(name=self.name, input_dim=self.dim, lower=torch.full((self.dim,), -c.bound),
                                      upper=torch.full((self.dim,), c.bound), output_shape=(1,), stochastic=True,
                                      out_of_bounds="clip"))
        self.generator = torch.Generator().manual_seed(c.seed)

    @classmethod
    def from_config(cls, config: Config) -> _Problem:
        return cls(config)

    def initial_point(self) -> torch.Tensor:
        """The paper's starting point (``d``)."""
        return torch.full((self.dim,), float(self.start))

    def optimum(self) -> torch.Tensor | None:
        """A parameter where ``E[R]`` is ``optimum_value`` (``d``), or None if none is declared."""
        return None

    def embed(self, psi: torch.Tensor) -> torch.Tensor:
        """The parameters the simulator sees (the submanifold problems project ``psi``; the others use it)."""
        return psi

    def expected_objective(self, psi: torch.Tensor) -> torch.Tensor:
        """``E[R(y)]`` at each row of ``psi`` (``batch x d``): ``batch``, deterministic, differentiable."""
        raise NotImplementedError


class _Hump(_Problem):
    def _draw(self, q: torch.Tensor) -> torch.Tensor:
        g = self.generator
        n = q.shape[0]
        h = three_hump(q.double())
        p = q.double().abs() + 1e-12
        pick_second = torch.rand(n, generator=g, dtype=torch.float64) < p[:, 1] / p.sum(dim=1)
        x = torch.where(pick_second, 2 + 3 * torch.rand(n, generator=g, dtype=torch.float64),
                        -2 * torch.rand(n, generator=g, dtype=torch.float64))
        mu = x * h + torch.randn(n, generator=g, dtype=torch.float64)
        return (mu + torch.randn(n, generator=g, dtype=torch.float64)).reshape(n, 1)

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        return self._draw(self.embed(x.double())).to(torch.float32)

    def expected_objective(self, psi: torch.Tensor) -> torch.Tensor:
        q = self.embed(psi.double())
        h = three_hump(q)  # batch
        p = q.abs() + 1e-12
        p = p / p.sum(dim=1, keepdim=True)
        gl_x, gl_w = torch.tensor(_GL_X), torch.tensor(_GL_W) / 2  # mean over the interval
        gh_x, gh_w = torch.tensor(_GH_X), torch.tensor(_GH_W) / math.sqrt(2 * math.pi)
        total = torch.zeros_like(h)
        for i, (lo, hi) in enumerate(((-2.0, 0.0), (2.0, 5.0))):
            xs = lo + (hi - lo) * (gl_x + 1) / 2  # nodes
            y = xs[None, :, None] * h[:, None, None] + math.sqrt(2.0) * gh_x[None, None, :]  # y ~ N(x h, 2)
            r = (sigmoid_window(y) * gh_w[None, None, :]).sum(dim=2)  # E over y
            total = total + p[:, i] * (r * gl_w[None, :]).sum(dim=1)
        return total


class _Rosenbrock(_Problem):
    def _query(self, x: torch.Tensor) -> torch.Tensor:
        g = self.generator
        n = x.shape[0]
        mu = -10 + 20 * torch.rand(n, generator=g, dtype=torch.float64)
        noise = mu + torch.randn(n, generator=g, dtype=torch.float64)  # x ~ N(mu, 1)
        y = rosenbrock(self.embed(x.double())) + noise + torch.randn(n, generator=g, dtype=torch.float64)
        return y.reshape(n, 1).to(torch.float32)

    def expected_objective(self, psi: torch.Tensor) -> torch.Tensor:
        return rosenbrock(self.embed(psi.double()))

    def forward_differentiable(self, x: torch.Tensor) -> torch.Tensor:
        """``E[y]`` (``batch x 1``): with ``R(y) = y`` its gradient is the objective's."""
        return self.expected_objective(x).reshape(-1, 1).to(x.dtype)


@BLACKBOXES.register("three_hump")
class ThreeHump(_Hump):
    """``batch x 2`` parameters -> ``batch x 1`` draws; ``E[R]`` lowest near -0.97 (see ``OPTIMA``)."""

    dim, name = 2, "three_hump"
    optimum_value = -0.94566  # at (0, 1.1606): all the weight on x_2 ~ U[2, 5], and h = 1.347 puts y in the window

    def initial_point(self) -> torch.Tensor:
        return torch.tensor([2.0, 0.0])

    def optimum(self) -> torch.Tensor:
        return torch.tensor([0.0, 1.1606])


@BLACKBOXES.register("rosenbrock")
class Rosenbrock(_Rosenbrock):
    """``batch x 10`` -> ``batch x 1``; ``E[R] = 0`` at ``psi = 1``."""

    dim, start, name = 10, 2.0, "rosenbrock"

    def optimum(self) -> torch.Tensor:
        return torch.ones(self.dim)


@BLACKBOXES.register("submanifold_rosenbrock")
class SubmanifoldRosenbrock(_Rosenbrock):
    """``batch x 100`` -> ``batch x 1``; ``E[R] = 0`` where ``Q^T psi = 1``."""

    dim, start, name = 100, 0.0, "submanifold_rosenbrock"

    def __init__(self, config: _Problem.Config | None = None) -> None:
        super().__init__(config)
        self.q = orthonormal(100, 10, 1337)

    def embed(self, psi: torch.Tensor) -> torch.Tensor:
        return psi @ self.q.to(psi)

    def optimum(self) -> torch.Tensor:
        return (self.q @ torch.ones(10, dtype=torch.float64)).to(torch.float32)  # Q^T Q 1 = 1


@BLACKBOXES.register("submanifold_hump")
class SubmanifoldHump(_Hump):
    """``batch x 40`` -> ``batch x 1``: three-hump on ``B tanh(A psi)`` (an intrinsic dimension of 2)."""

    dim, start, name = 40, 0.1, "submanifold_hump"
    optimum_value = -0.94566  # the three-hump optimum is reachable through B tanh(A psi) (found: -0.94550)

    def __init__(self, config: _Problem.Config | None = None) -> None:
        super().__init__(config)
        self.a = orthonormal(40, 16, 1338).T  # 16 x 40
        self.b = orthonormal(16, 2, 1339).T  # 2 x 16

    def embed(self, psi: torch.Tensor) -> torch.Tensor:
        return torch.tanh(psi @ self.a.T.to(psi)) @ self.b.T.to(psi)


@OBJECTIVES.register("sigmoid_window")
class SigmoidWindow(Objective):
    """``R(y) = sigmoid(y - 10) - sigmoid(y)`` of a one-value answer (lower is better)."""

    @dataclass
    class Config:
        pass

    @classmethod
    def from_config(cls, config: Config, *, output_shape: tuple[int, ...]) -> SigmoidWindow:
        return cls()

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        return sigmoid_window(y.reshape(y.shape[0], -1).to(torch.float32)).mean(dim=1)


@OBJECTIVES.register("mean_output")
class MeanOutput(Objective):
    """The mean of the answer's values (the Rosenbrock problems' ``R(y) = y``; lower is better)."""

    @dataclass
    class Config:
        pass

    @classmethod
    def from_config(cls, config: Config, *, output_shape: tuple[int, ...]) -> MeanOutput:
        return cls()

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        return y.reshape(y.shape[0], -1).to(torch.float32).mean(dim=1)


def _best_hump(problem: Any, starts: int = 64, steps: int = 300, seed: int = 0) -> tuple[torch.Tensor, float]:
    """The lowest ``E[R]`` found by Adam on the deterministic expectation from ``starts`` random starts."""
    gen = torch.Generator().manual_seed(seed)
    b = problem.config.bound
    psi = ((torch.rand(starts, problem.dim, generator=gen, dtype=torch.float64) * 2 - 1) * b).requires_grad_(True)
    opt = torch.optim.Adam([psi], lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        problem.expected_objective(psi.clamp(-b, b)).sum().backward()
        opt.step()
    with torch.no_grad():
        values = problem.expected_objective(psi.clamp(-b, b))
        i = int(values.argmin())
        return psi[i].detach().clamp(-b, b), float(values[i])
