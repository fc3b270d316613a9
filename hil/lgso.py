"""L-GSO: local generative surrogates of a stochastic BlackBox (Shirobokov et al. 2020, ``papers/002_*``,
``003_*``), as a gradient estimator (``estimator: {type: lgso}``) for the ``gradient`` optimiser.

Per step and starting point, at the current point ``psi`` (unit cube, Algorithm 1 of the paper):

1. query ``samples`` points of a Latin hypercube in the box ``|psi' - psi|_inf <= epsilon`` (clipped to the
   cube), each ``repeats`` times (``purpose: local_sample``, declared as the step's probes);
2. take every point measured so far inside that box (the new ones, the history's: the paper's replay);
3. train the start's conditional generative model ``S(z, psi')`` (:mod:`hil.generative`) on them for
   ``epochs`` passes, continuing from its last weights, in local coordinates ``(psi' - psi) / epsilon``;
4. the gradient is ``d/dpsi E_z[R(S(z, psi))]``, with ``gradient_samples`` generated answers: the expected
   objective's gradient, not one noisy draw's (:meth:`LGSOEstimator.objective_gradient`).

On a physical layer's backward pass (no objective) :meth:`vjp` gives ``J^T grad_y`` of the model's mean
answer ``E[S(z, psi)]`` instead. ``epsilon`` is a fraction of each input's range: the paper's 0.2 on the
problems' ``[-5, 5]`` boxes is 0.02 (0.05 for three-hump's 0.5); ``samples: 0`` takes the dimension
(the paper finds ``O(D)`` enough, fewer on a submanifold).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import torch

from hil.blackbox import BlackBox
from hil.config import PositiveFloat, PositiveInt, Range, Seed, check
from hil.device import check_device, resolve_device
from hil.errors import EstimatorError
from hil.estimators import GradientEstimator
from hil.generative import GenerativeSurrogate
from hil.registry import ESTIMATORS, GENERATIVE_MODELS
from hil.sampling import latin_hypercube
from hil.surrogate import INT64_MAX, Count


@dataclass
class LGSOConfig:
    samples: Annotated[int, Range(ge=0, le=INT64_MAX)] = 0  # points per step in the box (0: the input dimension)
    epsilon: Annotated[float, Range(gt=0, le=0.5)] = 0.02  # the box's half-width, a fraction of each input's range
    repeats: Count = 1            # draws per point
    epochs: PositiveInt = 20      # passes over the box's data per step (warm-started model)
    gradient_samples: Count = 512  # generated answers for the expected objective's gradient
    model: str = "mdn"            # hil.generative.GENERATIVE_MODELS
    components: Count = 5
    hidden: list[Count] = field(default_factory=lambda: [64, 64])
    lr: PositiveFloat = 1e-3
    batch_size: Count = 256
    history: bool = True          # reuse every earlier measurement that falls in the box
    warm_start: bool = False      # true: continue from the start's last model (the paper trains a new one each step)
    device: str = "auto"
    seed: Seed = 0                # the model of start s is seeded seed + s

    def __post_init__(self) -> None:
        check(self.model in GENERATIVE_MODELS.names(), "model",
              f"unknown generative model {self.model!r}; allowed: {', '.join(GENERATIVE_MODELS.names())}")
        check(self.history or self.samples != 1 or self.repeats >= 2, "samples",
              "with history: false a box holds only its own draws, and a model needs at least 2: give samples * "
              "repeats >= 2 (or history: true)")
        check_device(self.device)


@ESTIMATORS.register("lgso")
class LGSOEstimator(GradientEstimator):
    """See the module docstring. One generative model per starting point (each has its own box)."""

    Config = LGSOConfig

    def __init__(self, config: LGSOConfig | None = None) -> None:
        self.config = config or LGSOConfig()
        self.device = resolve_device(self.config.device)
        self.models: dict[int, GenerativeSurrogate] = {}
        self.last_nll = math.nan
        self.last_box_points = 0

    @classmethod
    def from_config(cls, config: LGSOConfig) -> LGSOEstimator:
        return cls(config)

    def bind(self, blackbox: BlackBox) -> LGSOEstimator:
        super().bind(blackbox)
        spec = blackbox.spec
        self.d = spec.input_dim
        self.n_samples = self.config.samples or self.d
        self.probes_per_point = self.n_samples * self.config.repeats
        if not self.config.history and self.probes_per_point < 2:
            raise EstimatorError(f"L-GSO with history: false fits each box on its own {self.probes_per_point} "
                                 f"draw(s) ({spec.name} has {self.d} input(s)); give samples * repeats >= 2")
        self.lower, self.span = spec.lower.to(torch.float32), (spec.upper - spec.lower).to(torch.float32)
        self.d_out = math.prod(spec.output_shape)
        self.x = torch.empty(0, self.d)  # history, in the BlackBox's units
        self.y = torch.empty(0, self.d_out)
        self._fresh = torch.empty(0, dtype=torch.long)  # the last step's draws: the row of the centre of each
        self._gen = torch.Generator().manual_seed(self.config.seed)
        return self

    def observe(self, x: torch.Tensor, y: torch.Tensor, scores: torch.Tensor | None = None) -> None:
        if not hasattr(self, "d"):
            raise EstimatorError("bind() the estimator to a BlackBox before use")
        y = y.detach().to(torch.float32).reshape(y.shape[0], -1).cpu()
        keep = torch.isfinite(y).all(dim=1)
        self.x = torch.cat([self.x, x.detach().to(torch.float32).cpu()[keep]])
        self.y = torch.cat([self.y, y[keep]])

    # -- the local model -----------------------------------------------------------------------
    def _half_width(self) -> torch.Tensor:
        return self.config.epsilon * self.span  # d

    def _measure_box(self, centres: torch.Tensor, iteration: int, start: torch.Tensor | None) -> None:
        """Step 1: a Latin hypercube in each centre's box, ``repeats`` draws each, into the history."""
        n, r = self.n_samples, self.config.repeats
        eps = self._half_width()
        design = torch.stack([latin_hypercube(n, self.d, self._gen) for _ in range(centres.shape[0])])  # P x n x d
        points = centres.unsqueeze(1) + (2 * design - 1) * eps
        points = torch.maximum(torch.minimum(points, self.lower + self.span), self.lower)
        points = points.repeat_interleave(r, dim=1).reshape(-1, self.d)
        starts = None if start is None else start.repeat_interleave(n * r)
        y = self.blackbox.query(points, purpose="local_sample", iteration=iteration, start=starts)
        owner = torch.arange(centres.shape[0]).repeat_interleave(n * r)  # which centre each draw belongs to
        keep = torch.isfinite(y.detach().to(torch.float32).reshape(y.shape[0], -1).cpu()).all(dim=1)
        self.observe(points, y)  # keeps the same (finite) rows, at the end of the history
        self._fresh = owner[keep]

    def _local_model(self, centre: torch.Tensor, start: int, row: int) -> GenerativeSurrogate:
        """Steps 2-3: the start's model trained on the history inside the centre's box (``row``: the centre's
        row in this step's batch)."""
        cfg = self.config
        eps = self._half_width()
        inside = ((self.x - centre).abs() <= eps * (1 + 1e-6)).all(dim=1)
        if not cfg.history:  # only this step's fresh draws around this centre (among the newest rows)
            fresh = torch.zeros_like(inside)
            n_fresh = self._fresh.shape[0]
            if n_fresh:
                fresh[-n_fresh:] = self._fresh == row
            inside &= fresh
        if int(inside.sum()) < 2:
            raise EstimatorError(f"L-GSO: fewer than 2 measurements in the box around start {start}")
        model = self.models.get(start) if cfg.warm_start else None
        if model is None:
            model = self.models[start] = GenerativeSurrogate(
                self.d, self.d_out, model=cfg.model, components=cfg.components, hidden=cfg.hidden, lr=cfg.lr,
                batch_size=cfg.batch_size, seed=cfg.seed + start, device=self.device)
        local = (self.x[inside] - centre) / eps
        self.last_nll = model.fit(local, self.y[inside], cfg.epochs)
        self.last_box_points = int(inside.sum())
        return model

    def _gradients(self, x: torch.Tensor, value: Callable[[GenerativeSurrogate, torch.Tensor, int], torch.Tensor],
                   iteration: int, start: torch.Tensor | None) -> torch.Tensor:
        centres = x.detach().to(torch.float32).cpu()
        self._measure_box(centres, iteration, start)
        ids = range(centres.shape[0]) if start is None else start.tolist()
        eps = self._half_width().to(self.device)
        grads = []
        for i, s in enumerate(ids):
            model = self._local_model(centres[i], int(s), i)
            c = torch.zeros(1, self.d, device=self.device, requires_grad=True)
            with torch.enable_grad():
                (g,) = torch.autograd.grad(value(model, c, i).sum(), c)
            grads.append(g[0] / eps)  # local coordinates -> the BlackBox's units
        return torch.stack(grads).to(x.device, torch.float32)

    # -- the estimator contract ----------------------------------------------------------------
    def objective_gradient(self, x: torch.Tensor, loss: Callable[[torch.Tensor], torch.Tensor], *,
                           iteration: int = -1, start: torch.Tensor | None = None) -> torch.Tensor:
        """``d/dx E[loss(F(x))]`` at each row of ``x`` (``P x d_in``) through the local generative models;
        ``loss`` maps ``m x *output_shape`` answers to ``m`` values."""
        shape = self.blackbox.spec.output_shape
        n = self.config.gradient_samples

        def expected(model: GenerativeSurrogate, c: torch.Tensor, row: int) -> torch.Tensor:
            return model.expectation(c, lambda y: loss(y.reshape(y.shape[0], *shape)), n)

        return self._gradients(x, expected, iteration, start)

    def vjp(self, x, y, grad_y, *, iteration=-1, start=None):
        g_out = grad_y.to(torch.float32).reshape(x.shape[0], -1).to(self.device)

        def mean_dot(model: GenerativeSurrogate, c: torch.Tensor, row: int) -> torch.Tensor:
            return (model.mean(c) * g_out[row]).sum()

        return self._gradients(x, mean_dot, iteration, start)

    def state_summary(self) -> dict[str, Any]:
        return {"nll": self.last_nll, "box_points": self.last_box_points, "data": int(self.x.shape[0])}
