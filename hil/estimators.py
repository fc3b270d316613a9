"""Gradient estimators: the backward pass of a physical layer.

Each estimator gives ``vjp(x, y, grad_y) = J_F(x)^T grad_y`` for a BlackBox
``F`` at the points ``x`` it was queried at (``batch x d_in``), with ``y`` the
measured outputs and ``grad_y`` the cotangents (``batch x *output_shape``):

* ``surrogate`` - an MLP trained online on every measured pair (MSE, MAE or GradPIE loss);
* ``exact`` - autograd through a differentiable twin (the reference);
* ``finite_difference`` - central differences, ``2 d_in`` probe queries per point;
* ``spsa`` - simultaneous perturbation, ``2 n_directions`` probe queries per point;
* ``lgso`` - local generative surrogates of a stochastic BlackBox (:mod:`hil.lgso`).

An estimator may also give ``objective_gradient(x, loss, *, iteration, start)``, the gradient of the
*expected* loss at ``x`` (a model of the answers' distribution can; a single measured answer cannot): the
gradient optimiser then uses it instead of ``vjp`` on the measured answer.

Probing estimators query through the BlackBox's public, validated, logged path
with ``purpose="probe"``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from hil.blackbox import BlackBox, Differentiable
from hil.errors import EstimatorError
from hil.estimator_configs import ExactConfig, FiniteDifferenceConfig, SPSAConfig, SurrogateConfig
from hil.registry import ESTIMATORS
from hil.sections import parse_blackbox
from hil.surrogate import Surrogate


class GradientEstimator:
    """Interface. ``bind`` once to a BlackBox, ``observe`` every measured pair, ``vjp`` on the backward pass."""

    #: probe queries this estimator spends per point per ``vjp`` (for budgets and reports)
    probes_per_point: int = 0

    def bind(self, blackbox: BlackBox) -> GradientEstimator:
        self.blackbox = blackbox
        return self

    def observe(self, x: torch.Tensor, y: torch.Tensor, scores: torch.Tensor | None = None) -> None:
        """New measured pairs (``batch x d_in``, ``batch x *output_shape``) and, when the caller has an
        objective, each row's value to minimise (``batch``; the ``matchopt`` loss needs them); default: ignored."""

    def vjp(self, x: torch.Tensor, y: torch.Tensor, grad_y: torch.Tensor, *, iteration: int = -1,
            start: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    #: whether :meth:`while_measuring` has work to overlap with a measurement: the loop then measures in a worker
    #: thread while it calls :meth:`while_measuring` in its own
    overlaps_measurement: bool = False

    def while_measuring(self) -> None:
        """Work done while the BlackBox measures the next batch (in another thread when
        :attr:`overlaps_measurement`; default: nothing). It runs in the caller's thread and returns when done."""

    def close(self) -> None:
        """Stop background work (default: nothing)."""

    def state_summary(self) -> dict[str, Any]:
        return {}


@ESTIMATORS.register("surrogate")
class SurrogateEstimator(GradientEstimator):
    """Online surrogate: trains on the data seen whenever new data arrived (``epochs`` full passes, or ``steps``
    bounded minibatch steps), then differentiates.

    ``concurrent: true``: the training on everything answered so far runs while the BlackBox measures the next
    batch (:meth:`while_measuring`; the loop measures in a worker thread and trains in its own, where torch's
    intra-op threads serve it at full speed: the same fits ran 2.4x slower in a second Python thread here), and
    the step after that measurement uses the surrogate that training produced, so the device does not wait for
    the surrogate. The step waits for that training to finish (a fixed amount of work, so the result never
    depends on timing: a run is as reproducible from its seed as without concurrency); what changes is that each
    step's surrogate has not yet trained on the batch just measured (it is in the data, and is trained on during
    the next measurement). The first step, with nothing trained yet, trains first.
    """

    Config = SurrogateConfig

    def __init__(self, config: SurrogateConfig) -> None:
        self.config = config
        self.surrogate: Surrogate | None = None
        self._pending = False
        self.last_loss = float("nan")
        #: offline mode: keep the fitted surrogate as it is, ignore new data
        self.frozen = False
        #: the loop calls while_measuring (concurrent mode): pending data trains during the next measurement
        self._overlapping = False
        self.overlapped_fits = 0

    @property
    def overlaps_measurement(self) -> bool:  # type: ignore[override]
        return bool(self.config.concurrent)

    @classmethod
    def from_config(cls, config: SurrogateConfig) -> SurrogateEstimator:
        return cls(config)

    def bind(self, blackbox: BlackBox) -> SurrogateEstimator:
        super().bind(blackbox)
        spec = blackbox.spec
        self.surrogate = Surrogate(self.config, spec.lower, spec.upper, spec.output_shape)
        return self

    def observe(self, x: torch.Tensor, y: torch.Tensor, scores: torch.Tensor | None = None) -> None:
        if self.surrogate is None:
            raise EstimatorError("bind() the estimator to a BlackBox before use")
        if self.frozen:
            return
        if self.config.loss == "matchopt" and scores is None:
            raise EstimatorError("the matchopt loss sorts the data by their objective: it trains in an optimiser "
                                 "(optimizer type offline or gradient), not on a physical layer's data alone")
        self.surrogate.add(x, y, scores)
        self._pending = True

    def while_measuring(self) -> None:
        if not self.config.concurrent:
            return
        self._overlapping = True
        if self.frozen or not self._pending or self.surrogate is None:
            return
        self._fit_overlapped()

    def _fit_overlapped(self) -> None:
        try:
            self._fit()
        except Exception as exc:
            raise EstimatorError(f"the surrogate's training during a measurement failed: {exc}") from exc
        self.overlapped_fits += 1

    def fit_pending(self) -> None:
        """Train (the configured epochs or steps) if data arrived since the last fit (once per iteration)."""
        if self._pending:
            self.fit_now()

    def fit_now(self, epochs: int | None = None) -> None:
        """Train now on all data seen (``epochs`` defaults to the configured epochs per iteration)."""
        self._fit(epochs)

    def _fit(self, epochs: int | None = None) -> None:
        self._pending = False
        self.last_loss = self.surrogate.fit(epochs)

    def vjp(self, x, y, grad_y, *, iteration=-1, start=None):
        if self.surrogate is None or len(self.surrogate) == 0:
            raise EstimatorError("the surrogate has no data: observe() measured pairs before asking for a gradient")
        # concurrent in the loop: the data just observed trains during the next measurement; anywhere else (a
        # physical layer's backward pass, no measurement hook) or before any training: train now
        if not self._overlapping or self.surrogate.steps_trained == 0:
            self.fit_pending()
        return self.surrogate.vjp(x, grad_y)

    def state_summary(self) -> dict[str, Any]:
        n = 0 if self.surrogate is None else len(self.surrogate)
        out = {"loss": self.config.loss, "data": n, "train_loss": self.last_loss}
        if self.config.concurrent:
            out["overlapped_fits"] = self.overlapped_fits
        return out


@ESTIMATORS.register("exact")
class ExactEstimator(GradientEstimator):
    """Autograd through a differentiable model: the BlackBox's own ``forward_differentiable`` by default, or
    a separate ``model:`` (a blackbox section, e.g. the ideal model twin while the forward pass runs on a
    mismatched bench): physics-aware training with a digital twin as the backward pass."""

    Config = ExactConfig

    def __init__(self, model: BlackBox | None = None) -> None:
        super().__init__()
        self.model = model

    @classmethod
    def from_config(cls, config: Config) -> ExactEstimator:
        if config.model is None:
            return cls()
        return cls(parse_blackbox(config.model, "model").build())  # validated when the config was parsed

    def bind(self, blackbox: BlackBox) -> ExactEstimator:
        model = self.model if self.model is not None else blackbox
        if self.model is not None and hasattr(blackbox, "view_of"):  # an optimiser's unit-cube view: the same view
            model = blackbox.view_of(self.model)                       # of the model twin
        if not isinstance(model, Differentiable) or not getattr(model, "is_differentiable", True):
            raise EstimatorError(
                f"estimator 'exact' needs a differentiable twin; {model.spec.name} has no forward_differentiable"
            )
        if model is not blackbox and (model.spec.input_dim != blackbox.spec.input_dim
                                      or model.spec.output_shape != blackbox.spec.output_shape):
            raise EstimatorError(
                f"the exact estimator's model {model.spec.name} maps {model.spec.input_dim} -> "
                f"{model.spec.output_shape} but "
                f"the blackbox {blackbox.spec.name} maps {blackbox.spec.input_dim} -> {blackbox.spec.output_shape}"
            )
        self.differentiable = model
        return super().bind(blackbox)  # type: ignore[return-value]

    def vjp(self, x, y, grad_y, *, iteration=-1, start=None):
        xr = x.detach().to(torch.float32).requires_grad_(True)
        with torch.enable_grad():
            out = self.differentiable.forward_differentiable(xr)  # type: ignore[attr-defined]
            (g,) = torch.autograd.grad(out, xr, grad_outputs=grad_y.to(out.dtype).reshape(out.shape))
        return g


def _probe(blackbox: BlackBox, points: torch.Tensor, iteration: int, start: torch.Tensor | None,
           repeat: int) -> torch.Tensor:
    """Query ``points`` (``(batch*repeat) x d_in``) as probes; returns flattened float outputs."""
    starts = None if start is None else start.repeat_interleave(repeat)
    y = blackbox.query(points, purpose="probe", iteration=iteration, start=starts)
    return y.to(torch.float32).reshape(points.shape[0], -1)


def _probe_pairs(x: torch.Tensor, y: torch.Tensor | None, plus: torch.Tensor, minus: torch.Tensor, f_plus: torch.Tensor,
                 f_minus: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Differences of probe pairs around ``x`` (``b x d``; answers ``y``) that survive a failed probe.

    ``plus``/``minus`` (``b x n x d``) were answered ``f_plus``/``f_minus`` (``b x n x o``). Where both answers
    are finite the pair is the central difference; where one probe failed (a design the simulator could not
    solve, a dropped frame: a non-finite answer) the other is paired with the centre ``x``; where both failed,
    or one and the centre, the pair is unusable. Returns the answer differences (``b x n x o``, zero where
    unusable), the input differences (``b x n x d``) and the usable mask (``b x n``)."""
    b = plus.shape[0]
    if y is None:  # the centre's answer is unknown: a failed probe makes its pair unusable
        f_c = torch.full_like(f_plus[:, :1], math.nan)
    else:
        f_c = y.to(torch.float32).reshape(b, 1, -1)
    ok_p, ok_m = torch.isfinite(f_plus).all(-1), torch.isfinite(f_minus).all(-1)  # b x n
    ok_c = torch.isfinite(f_c).all(-1)  # b x 1
    usable = (ok_p & ok_m) | ((ok_p | ok_m) & ok_c)
    hi = torch.where(ok_p.unsqueeze(-1), f_plus, f_c)
    lo = torch.where(ok_m.unsqueeze(-1), f_minus, f_c)
    centre = x.unsqueeze(1)
    dx = torch.where(ok_p.unsqueeze(-1), plus, centre) - torch.where(ok_m.unsqueeze(-1), minus, centre)
    return torch.where(usable.unsqueeze(-1), hi - lo, 0.0), dx, usable


@ESTIMATORS.register("finite_difference")
class FiniteDifferenceEstimator(GradientEstimator):
    """Central differences with step ``step`` (a fraction of each input's range), kept inside the bounds;
    ``repeats`` draws per probe point are averaged (a stochastic BlackBox: the L-GSO paper's ``R-bar``)."""

    Config = FiniteDifferenceConfig

    def __init__(self, step: float = 1e-3, repeats: int = 1) -> None:
        self.step = step
        self.repeats = repeats

    @classmethod
    def from_config(cls, config: Config) -> FiniteDifferenceEstimator:
        return cls(config.step, config.repeats)

    def bind(self, blackbox: BlackBox) -> FiniteDifferenceEstimator:
        super().bind(blackbox)
        self.probes_per_point = 2 * blackbox.spec.input_dim * self.repeats
        return self

    def vjp(self, x, y, grad_y, *, iteration=-1, start=None):
        spec = self.blackbox.spec
        b, d = x.shape
        h = self.step * (spec.upper - spec.lower)  # d
        eye = torch.diag(h)  # d x d
        plus = torch.minimum(x.unsqueeze(1) + eye, spec.upper)  # b x d x d
        minus = torch.maximum(x.unsqueeze(1) - eye, spec.lower)
        points = torch.cat([plus, minus], dim=1).reshape(b * 2 * d, d)
        r = self.repeats
        out = _probe(self.blackbox, points.repeat_interleave(r, dim=0), iteration, start, 2 * d * r)
        out = out.reshape(b, 2, d, r, -1).mean(dim=3)  # a failed repeat fails its probe point
        diff, dx, usable = _probe_pairs(x, y, plus, minus, out[:, 0], out[:, 1])
        width = dx.diagonal(dim1=1, dim2=2)  # b x d
        safe = torch.where(usable, width, torch.ones_like(width))
        jac_t = torch.where(usable.unsqueeze(-1), diff / safe.unsqueeze(-1), 0.0)  # b x d x out  (J^T)
        return torch.einsum("bdo,bo->bd", jac_t, grad_y.to(torch.float32).reshape(b, -1))


@ESTIMATORS.register("spsa")
class SPSAEstimator(GradientEstimator):
    """Simultaneous perturbation: ``n_directions`` random +-1 directions, perturbation ``step`` of each range."""

    Config = SPSAConfig

    def __init__(self, step: float = 0.01, n_directions: int = 1, seed: int = 0) -> None:
        self.step = step
        self.n_directions = n_directions
        self.probes_per_point = 2 * n_directions
        self._gen = torch.Generator().manual_seed(seed)

    @classmethod
    def from_config(cls, config: Config) -> SPSAEstimator:
        return cls(config.step, config.n_directions, config.seed)

    def vjp(self, x, y, grad_y, *, iteration=-1, start=None):
        spec = self.blackbox.spec
        b, d = x.shape
        n = self.n_directions
        delta = torch.randint(0, 2, (b, n, d), generator=self._gen).to(torch.float32) * 2 - 1
        h = self.step * (spec.upper - spec.lower)
        plus = torch.minimum(x.unsqueeze(1) + delta * h, spec.upper)
        minus = torch.maximum(x.unsqueeze(1) - delta * h, spec.lower)
        points = torch.cat([plus, minus], dim=1).reshape(b * 2 * n, d)
        out = _probe(self.blackbox, points, iteration, start, 2 * n).reshape(b, 2, n, -1)
        diff, width, usable = _probe_pairs(x, y, plus, minus, out[:, 0], out[:, 1])  # a failed probe: one-sided
        g_out = grad_y.to(torch.float32).reshape(b, 1, -1)
        # directional derivative of <grad_y, F> along each perturbation, divided componentwise by it
        dirderiv = (diff * g_out).sum(-1)  # b x n
        ok = (width.abs() > 0) & usable.unsqueeze(-1)
        safe = torch.where(ok, width, torch.ones_like(width))
        est = torch.where(ok, dirderiv.unsqueeze(-1) / safe, torch.zeros_like(width))
        if bool(usable.all()):
            return est.mean(dim=1)
        return est.sum(dim=1) / usable.sum(dim=1, keepdim=True).clamp(min=1)  # the usable directions' mean


from hil import lgso  # noqa: E402, F401  (registers ``lgso``; it builds on GradientEstimator)
