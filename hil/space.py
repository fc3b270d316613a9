"""The unit-cube view of a BlackBox's declared parameter space.

Every optimiser works in ``[0, 1]^d``; :class:`ParameterSpace` maps a unit-cube point to the physical
value each input declares in its :class:`~hil.blackbox.BlackBoxSpec` (``lower``/``upper``, ``scale``,
``integer``) and back:

* linear: ``x = lower + u (upper - lower)``;
* log: ``x = lower (upper / lower)^u`` (log-uniform: a width of 2-32 um spends as much of the cube on
  2-4 um as on 16-32 um);
* integer: the ``n = upper - lower + 1`` whole numbers each own ``1/n`` of the unit interval,
  ``x = lower + min(floor(u n), n - 1)``; the optimiser (and a surrogate) sees the continuous ``u``,
  the device the whole number.

:class:`UnitCubeView` is a BlackBox over ``[0, 1]^d`` that maps each query to physical values and sends
it through the wrapped box's own validated, logged ``query``: the log holds what the device received.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from hil.blackbox import BlackBox, BlackBoxSpec, Differentiable


class ParameterSpace:
    """Maps ``batch x d`` unit-cube points to physical values (and back) for one BlackBoxSpec."""

    def __init__(self, spec: BlackBoxSpec) -> None:
        self.spec = spec
        self.lower, self.upper = spec.lower, spec.upper
        self.log = torch.tensor([s == "log" for s in spec.scale], dtype=torch.bool)
        self.integer = torch.tensor(spec.integer, dtype=torch.bool)
        self._log_lower = torch.where(self.log, self.lower.clamp_min(1e-38).log(), torch.zeros_like(self.lower))
        self._log_span = torch.where(self.log, self.upper.clamp_min(1e-38).log() - self._log_lower,
                                     torch.ones_like(self.lower))
        self._n_int = torch.where(self.integer, self.upper - self.lower + 1, torch.ones_like(self.lower))

    def to_physical(self, u: torch.Tensor) -> torch.Tensor:
        """``batch x d`` in ``[0, 1]`` -> ``batch x d`` physical values inside ``[lower, upper]`` (float32).

        Differentiable in ``u`` for linear and log inputs; integer inputs pass the gradient straight through
        (the derivative of the continuous map ``lower + u (n - 1)``)."""
        u = u.to(torch.float32).clamp(0, 1)
        lower, upper = self.lower.to(u.device), self.upper.to(u.device)
        x = lower + u * (upper - lower)
        if bool(self.log.any()):
            logx = (self._log_lower.to(u.device) + u * self._log_span.to(u.device)).exp()
            x = torch.where(self.log.to(u.device), logx, x)
        if bool(self.integer.any()):
            n = self._n_int.to(u.device)
            whole = lower + torch.minimum(torch.floor(u * n), n - 1)
            x = torch.where(self.integer.to(u.device), x + (whole - x).detach(), x)
        return torch.maximum(torch.minimum(x, upper), lower)  # float rounding never leaves the bounds

    def to_unit(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Physical ``batch x d`` -> unit cube (an integer maps to the centre of its share)."""
        x = torch.as_tensor(x).to(torch.float32)
        u = (x - self.lower) / (self.upper - self.lower)
        if bool(self.log.any()):
            ulog = (x.clamp_min(1e-38).log() - self._log_lower) / self._log_span
            u = torch.where(self.log, ulog, u)
        if bool(self.integer.any()):
            uint = (x.round() - self.lower + 0.5) / self._n_int
            u = torch.where(self.integer, uint, u)
        return u.clamp(0, 1)


class UnitCubeView(BlackBox):
    """``[0, 1]^d`` in front of ``inner``: each query is mapped to physical values and sent through
    ``inner.query`` (validated, bounds-checked and logged there, with its purpose, iteration and start).

    Inputs outside the cube are clipped to it (an optimiser's step may overshoot; the physical bounds are
    still enforced by ``inner``). Shares ``inner``'s connection: connecting the view connects ``inner``.
    """

    def __init__(self, inner: BlackBox | Any) -> None:
        spec = inner.spec
        d = spec.input_dim
        super().__init__(BlackBoxSpec(name=spec.name, input_dim=d, lower=torch.zeros(d), upper=torch.ones(d),
                                      output_shape=spec.output_shape, stochastic=spec.stochastic,
                                      out_of_bounds="clip", output_dtype=spec.output_dtype))
        self.inner = inner
        self.space = ParameterSpace(spec)

    def _connect(self) -> None:
        self.inner.connect()

    def _close(self) -> None:
        """The view does not own ``inner``'s connection: whoever connected ``inner`` closes it."""

    @property
    def connected(self) -> bool:
        return bool(getattr(self.inner, "connected", True))

    def query(self, x: torch.Tensor, *, purpose: str = "step", iteration: int = -1,
              start: torch.Tensor | np.ndarray | Sequence[int] | None = None) -> torch.Tensor:
        """``batch x d`` unit-cube points -> ``batch x *output_shape`` answers of ``inner`` at their
        physical values."""
        u = self.validate(x)
        y = self.inner.query(self.space.to_physical(u), purpose=purpose, iteration=iteration, start=start)
        self.stats.queries += u.shape[0]
        self.stats.batches += 1
        self.stats.by_purpose[purpose] = self.stats.by_purpose.get(purpose, 0) + u.shape[0]
        return y

    def forward_differentiable(self, u: torch.Tensor) -> torch.Tensor:
        if not isinstance(self.inner, Differentiable):
            raise AttributeError(f"{self.inner.spec.name} has no differentiable forward model")
        return self.inner.forward_differentiable(self.space.to_physical(u))

    @property
    def is_differentiable(self) -> bool:
        return isinstance(self.inner, Differentiable)

    def view_of(self, model: BlackBox) -> UnitCubeView:
        """Another box seen through this view's map (e.g. a model twin used as the backward pass of a bench):
        the same unit-cube point reaches both as the same physical value."""
        view = UnitCubeView(model)
        view.space = self.space
        return view

