"""The ask/tell contract every optimiser implements.

An optimiser only *proposes* and *learns*; the driver loop (:mod:`hil.optim.loop`) does everything else:
querying through the validated, logged BlackBox path, budgets, convergence, the trace, the progress bar
and resume (a killed run's log is replayed through ``tell``).

Per round ``t`` the loop calls ``ask(t, max_queries)`` and gets an :class:`Ask`: points in the unit
cube ``[0, 1]^d`` (the BlackBox's declared parameter space, :mod:`hil.space`), what each row is for
(``step``, ``local_sample``, ``population``, ``initial``, ...) and which starting point it belongs to.
The loop queries them and calls ``tell(asked, y, value)`` with the measured outputs and their
objective values. An optimiser never queries the BlackBox itself, except a gradient estimator's probes
inside ``tell``, which it declares in advance as ``Ask.extra_queries`` so that budgets hold.

To add an optimiser: one module with a class that has a nested ``Config`` dataclass, a
``from_config(config, *, box, objective, estimator, seed, budget)`` classmethod (``budget``: the run's
total query budget, or ``None``), ``ask`` and ``tell``, decorated
with ``@OPTIMIZERS.register("name")``, and one import line in :mod:`hil.optim`; the shared conformance
test (``hil.testing.optimizers``) then checks it. Optionally ``recommend()`` gives what each start would
return now (``n_starts x d`` in the unit cube: an iterate, a search distribution's mean); without it a
stochastic benchmark scores each start's best measured point. Optionally ``checkpoint()`` and
``restore(state)`` hand the optimiser's state over (:mod:`hil.optim.checkpoint`), so that a resume does not
recompute it; worth it where ``ask`` or ``tell`` is expensive.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from hil.blackbox import PURPOSES
from hil.errors import OptimizerError


@dataclass
class Ask:
    """A batch an optimiser wants measured.

    ``u``: ``n x d`` points in ``[0, 1]^d``; ``purpose``: ``n`` names from :data:`hil.blackbox.PURPOSES`
    (the loop queries each contiguous run of one purpose as one batch, in order); ``start``: ``n``
    starting-point indices (``-1``: none); ``extra_queries``: queries ``tell`` will spend (probes);
    ``counted``: ``False`` for a preliminary design (an initial dataset) that is logged with iteration
    ``-1`` and is not an iteration of its own.
    """

    u: torch.Tensor
    purpose: tuple[str, ...]
    start: torch.Tensor
    extra_queries: int = 0
    counted: bool = True
    iteration: int = 0

    def __post_init__(self) -> None:
        if self.u.ndim != 2:
            raise OptimizerError(f"Ask.u must be n x d, got shape {tuple(self.u.shape)}")
        n = self.u.shape[0]
        self.purpose = tuple(self.purpose)
        self.start = torch.as_tensor(self.start, dtype=torch.long).reshape(-1)
        if len(self.purpose) != n or self.start.numel() != n:
            raise OptimizerError(f"Ask: {n} points but {len(self.purpose)} purposes and {self.start.numel()} starts")
        bad = [p for p in set(self.purpose) if p not in PURPOSES]
        if bad:
            raise OptimizerError(f"Ask: unknown purpose {bad[0]!r}; allowed: {', '.join(PURPOSES)}")

    def __len__(self) -> int:
        return self.u.shape[0]

    @property
    def queries(self) -> int:
        """What measuring this ask costs: its rows plus the declared probes."""
        return len(self) + self.extra_queries

    def groups(self) -> list[tuple[int, int, str]]:
        """``(first row, end row, purpose)`` of each contiguous run of one purpose."""
        out, lo = [], 0
        for i in range(1, len(self) + 1):
            if i == len(self) or self.purpose[i] != self.purpose[lo]:
                out.append((lo, i, self.purpose[lo]))
                lo = i
        return out


def make_ask(u: torch.Tensor, purpose: str | Sequence[str], start: torch.Tensor | Sequence[int] | int,
             **kw: Any) -> Ask:
    """An :class:`Ask` with one purpose (or a list) and one start (or one per row) broadcast over ``u``."""
    n = u.shape[0]
    purposes = (purpose,) * n if isinstance(purpose, str) else tuple(purpose)
    starts = torch.full((n,), start, dtype=torch.long) if isinstance(start, int) else torch.as_tensor(start)
    return Ask(u, purposes, starts, **kw)


class Optimizer:
    """Base class of the ask/tell optimisers (see the module docstring).

    ``n_starts``: how many starting points (independent searches) the optimiser runs; every ``Ask`` row
    with a start index in ``0..n_starts-1`` counts towards that start's best in the trace.
    ``uses_gradient``: whether it takes an ``estimator`` section (a config with one for an optimiser that
    does not use it is rejected on load, and one without it for an optimiser that does).
    """

    uses_gradient: ClassVar[bool] = False
    n_starts: int = 1

    def ask(self, iteration: int, max_queries: int | None) -> Ask | None:
        """The next batch to measure, costing at most ``max_queries`` (``None``: no limit), or ``None``
        when nothing more fits in the budget or the optimiser has finished."""
        raise NotImplementedError

    def tell(self, asked: Ask, y: torch.Tensor, value: torch.Tensor) -> None:
        """Learn from the answers to ``asked``: ``y`` is ``n x *output_shape``, ``value`` its ``n`` objective
        values (NaN for an invalid measurement)."""
        raise NotImplementedError

    def state_summary(self) -> dict[str, Any]:
        """A few numbers worth printing or logging about the optimiser's state."""
        return {}

    def checkpoint(self) -> dict[str, Any] | None:
        """The optimiser's whole state as a picklable dict, such that :meth:`restore` on a fresh optimiser of
        the same config and seed continues exactly as this one would; ``None`` (the default): not supported,
        a resume replays the whole log through ``ask`` and ``tell`` instead."""
        return None

    def restore(self, state: dict[str, Any]) -> None:
        """Take back a state :meth:`checkpoint` returned (called on a fresh optimiser before its first ask)."""
        raise NotImplementedError(f"{type(self).__name__} does not restore checkpoints")

    @property
    def overlaps_measurement(self) -> bool:
        """Whether :meth:`while_measuring` has work to overlap with a measurement (default: the estimator's say):
        the loop then measures in a worker thread and calls :meth:`while_measuring` in its own meanwhile."""
        return bool(getattr(getattr(self, "estimator", None), "overlaps_measurement", False))

    def while_measuring(self) -> None:
        """Called by the loop as it sends an ask to the BlackBox: work that can overlap the measurement, done in
        the loop's thread while a worker measures when :attr:`overlaps_measurement`, else before measuring;
        default: the estimator's :meth:`~hil.estimators.GradientEstimator.while_measuring`."""
        estimator = getattr(self, "estimator", None)
        if estimator is not None:
            estimator.while_measuring()

    def close(self) -> None:
        """Called by the loop when it stops for any reason (threads, files of its own); default: the
        estimator's ``close``."""
        estimator = getattr(self, "estimator", None)
        if estimator is not None:
            estimator.close()


def minimisation_values(value: torch.Tensor, sense: str) -> torch.Tensor:
    """``value`` as a float64 loss to minimise (negated when maximising), with every non-finite entry (an
    invalid measurement) replaced by a value worse than the worst finite one, so that a population method
    ranks it last without seeing NaN."""
    loss = value.detach().to(torch.float64).cpu()
    loss = loss if sense == "min" else -loss
    finite = torch.isfinite(loss)
    if bool(finite.all()):
        return loss
    worst = float(loss[finite].max()) if bool(finite.any()) else 0.0
    spread = float(loss[finite].max() - loss[finite].min()) if int(finite.sum()) > 1 else 1.0
    return torch.where(finite, loss, torch.full_like(loss, worst + max(spread, 1.0)))


def given_start(x0: float | Sequence[float], box: Any, key: str = "optimizer.x0") -> torch.Tensor:
    """A starting point the user gave in physical units (one value broadcasts to every input) as a point of
    ``box``'s unit cube (``d``); a wrong length, a non-finite value or a point outside the bounds fails
    naming ``key``."""
    from hil.errors import ConfigError

    spec = box.space.spec  # the physical inputs (``box`` is the unit-cube view)
    values = [x0] * spec.input_dim if isinstance(x0, (int, float)) else list(x0)
    if len(values) != spec.input_dim or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                for v in values):
        raise ConfigError(f"{key}: expected one number or a list of {spec.input_dim} numbers (the blackbox's "
                          f"inputs), got {x0!r}")
    x = torch.tensor(values, dtype=torch.float64)
    lower, upper = spec.lower.to(torch.float64), spec.upper.to(torch.float64)
    bad = ~torch.isfinite(x) | (x < lower) | (x > upper)
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        raise ConfigError(f"{key}[{i}] = {values[i]} is outside input {i}'s bounds [{float(lower[i]):g}, "
                          f"{float(upper[i]):g}]; give a point inside the box")
    return box.space.to_unit(x[None].to(torch.float32))[0]
