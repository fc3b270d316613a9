"""What the conformance mixins share: known failures, simulated devices, coverage, small helpers.

A conformance mixin is a pytest class of checks (``test_*`` methods) that a lab subclasses with one or two
class attributes; the subclass's name starts with ``Test`` so pytest collects it (:mod:`hil.testing.conformance`).
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, ClassVar

import numpy as np
import torch

from hil.blackbox import BlackBox
from hil.errors import HilError


def check(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a mixin method as a conformance check that a subclass may list in ``xfail_checks``
    (``{check name: reason}``): a listed check that fails is reported as an expected failure with its reason;
    one that passes fails, so the entry is removed once the implementation is fixed (a strict xfail)."""

    @functools.wraps(fn)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        reason = dict(getattr(self, "xfail_checks", None) or {}).get(fn.__name__)
        if reason is None:
            return fn(self, *args, **kwargs)
        import pytest

        try:
            fn(self, *args, **kwargs)
        except (AssertionError, HilError) as exc:
            pytest.xfail(f"{reason} [{type(exc).__name__}: {str(exc)[:300]}]")
        pytest.fail(f"{type(self).__name__}.{fn.__name__} is listed in xfail_checks ({reason!r}) but passes: remove "
                    f"it from xfail_checks")

    run.conformance_check = True  # type: ignore[attr-defined]
    return run


class Conformance:
    """Base of the mixins: ``xfail_checks`` and the check that it names real checks."""

    #: ``{check name: reason}``: checks this implementation is known to fail (strict: a pass fails)
    xfail_checks: ClassVar[Mapping[str, str]] = {}

    @classmethod
    def checks(cls) -> list[str]:
        return sorted(n for n in dir(cls) if n.startswith("test_") and getattr(getattr(cls, n), "conformance_check",
                                                                              False))

    def test_xfail_checks_name_real_checks(self) -> None:
        unknown = sorted(set(self.xfail_checks) - set(self.checks()))
        assert not unknown, f"xfail_checks names no check: {unknown}; the checks are {self.checks()}"

    @classmethod
    def covers(cls) -> list[tuple[str, str]]:
        """``(kind, registered name)`` pairs this conformance class checks (see :func:`missing_conformance`)."""
        return []


@contextlib.contextmanager
def simulated(section: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """``section`` (a ``blackbox:`` section) with its rig on the simulated counterpart hil's dry runs use
    (:data:`hil.registry.SIMULATORS`: the fake firmware, the loopback SCPI server, slmsuite's simulated pair),
    started here and stopped on exit; a twin's section comes back as it is."""
    from hil.dryrun import dry_run

    with dry_run({"blackbox": dict(section)}, say=lambda _: None) as data:
        yield dict(data["blackbox"])


def options_of(section: Mapping[str, Any]) -> dict[str, Any]:
    """A typed section's options: everything but ``type`` and ``wrappers``."""
    return {k: v for k, v in section.items() if k not in ("type", "wrappers")}


def chain(box: Any) -> list[Any]:
    """``[outermost, ..., innermost]`` through the ``inner`` attribute of wrappers."""
    out = [box]
    while getattr(out[-1], "inner", None) is not None:
        out.append(out[-1].inner)
    return out


def valid_inputs(spec: Any, n: int, seed: int = 0) -> torch.Tensor:
    """``n x d_in`` float32 inputs inside ``spec``'s bounds: the centre of the box, its lower corner, its upper
    corner, then seeded uniform points, each in the input's declared scale (log-uniform on a log scale) and
    whole numbers on an integer input."""
    d = spec.input_dim
    gen = torch.Generator().manual_seed(seed)
    u = torch.rand(n, d, generator=gen, dtype=torch.float64)
    for row, value in enumerate((0.5, 0.0, 1.0)[:n]):
        u[row] = value
    lower, upper = spec.lower.to(torch.float64), spec.upper.to(torch.float64)
    x = lower + u * (upper - lower)
    for i, (scale, whole) in enumerate(zip(spec.scale, spec.integer, strict=True)):
        if scale == "log":
            lo, hi = math.log(float(lower[i])), math.log(float(upper[i]))
            x[:, i] = torch.exp(lo + u[:, i] * (hi - lo))
        if whole:
            x[:, i] = torch.round(x[:, i])
    x = x.to(torch.float32)
    return torch.maximum(torch.minimum(x, spec.upper), spec.lower)


class QuerySpy:
    """Replaces a box's ``_query`` (on the instance) and records every batch that reaches it."""

    def __init__(self, box: BlackBox) -> None:
        self.box = box
        self.calls: list[torch.Tensor] = []
        self._original = box._query

    def __call__(self, x: torch.Tensor) -> Any:
        self.calls.append(x.detach().clone())
        return self._original(x)

    def __enter__(self) -> QuerySpy:
        self.box._query = self  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        del self.box._query


class RecordingLog:
    """A query log in memory (:class:`hil.blackbox.QueryLogLike`): every appended batch, as given."""

    def __init__(self) -> None:
        self.batches: list[dict[str, Any]] = []

    def append(self, x: np.ndarray, y: np.ndarray, t_start: float, t_end: float, iteration: int, purpose: str,
               start: np.ndarray | None = None) -> None:
        self.batches.append({"x": np.array(x), "y": np.array(y), "t_start": t_start, "t_end": t_end,
                             "iteration": iteration, "purpose": purpose,
                             "start": None if start is None else np.array(start)})

    @property
    def rows(self) -> int:
        return sum(len(b["x"]) for b in self.batches)


def finite_rows(y: torch.Tensor) -> torch.Tensor:
    """Which rows of an answer are entirely finite (``batch`` booleans)."""
    return torch.isfinite(y.reshape(y.shape[0], -1).to(torch.float64)).all(dim=1)


def missing_conformance(namespace: Mapping[str, Any] | Iterable[Any], kinds: Iterable[str],
                        package: str = "hil") -> list[str]:
    """``kind name`` of every plug-in of ``kinds`` (``blackbox``, ``wrapper``, ``objective``, ``estimator``,
    ``optimizer``, ``calibration``) defined in ``package`` and registered, that no conformance class in
    ``namespace`` (a test module's ``globals()``, or a list of classes) covers. A test asserting it is empty fails
    when someone registers an implementation and forgets its conformance line."""
    from hil.protocols import registered

    items = namespace.values() if isinstance(namespace, Mapping) else namespace
    covered: set[tuple[str, str]] = set()
    for obj in items:
        if isinstance(obj, type) and issubclass(obj, Conformance) and obj.__name__.startswith("Test"):
            covered.update(obj.covers())
    return [f"{kind} {name}" for kind in kinds for name, _ in registered(kind, package)
            if (kind, name) not in covered]
