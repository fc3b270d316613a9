"""A BlackBox's shapes as its config fixes them, known before anything is built (``hil validate`` checks a
config without importing torch or the implementations).

A type opts in through its ``Config`` (all optional; without them a config is checked by building it):

* a BlackBox's ``Config.static_spec(self) -> StaticSpec``;
* a wrapper's ``Config.static_spec(self, inner: StaticSpec) -> StaticSpec``, which checks that it fits the
  BlackBox it wraps (raising :class:`hil.config.FieldError` naming its own key) and returns what it turns it into;
* an objective's ``Config.check_output_shape(self, output_shape: tuple[int, ...]) -> None``.

``hil.testing``'s conformance tests check that a built BlackBox has the shapes its config's ``static_spec`` says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StaticSpec:
    """``input_dim`` inputs -> an output of ``output_shape``; ``slm_shape``: the SLM's ``(rows, cols)`` pixels
    when the BlackBox drives one (what SLM wrappers act on), else ``None``."""

    input_dim: int
    output_shape: tuple[int, ...]
    slm_shape: tuple[int, int] | None = None


def static_spec_of(box: Any) -> StaticSpec:
    """The :class:`StaticSpec` of a built BlackBox (its ``spec`` and the ``slm_shape`` of it or of what it wraps)."""
    from hil.blackbox import find_attribute

    shape = find_attribute(box, "slm_shape")
    return StaticSpec(int(box.spec.input_dim), tuple(int(s) for s in box.spec.output_shape),
                      None if shape is None else (int(shape[0]), int(shape[1])))
