"""The ``blackbox:`` config section: a registered BlackBox plus an ordered list of wrappers.

::

    blackbox:
      type: owms_twin          # hil.registry.BLACKBOXES
      distance_m: 0.021
      wrappers:                # hil.registry.WRAPPERS, innermost first
        - {type: slm_quantisation, bits: 8}
        - {type: camera, bit_depth: 12}

Each wrapper is a BlackBox around the one before it, so input-side effects
(the SLM) and output-side effects (the camera) compose in the order written.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from hil.config import FieldError, TypedSection, join, load_yaml, parse_typed
from hil.errors import ConfigError
from hil.registry import BLACKBOXES, WRAPPERS
from hil.shapes import StaticSpec

if TYPE_CHECKING:
    from hil.blackbox import BlackBox

T = TypeVar("T")


@dataclass
class BlackBoxSection:
    base: TypedSection
    wrappers: list[TypedSection] = field(default_factory=list)

    @property
    def type(self) -> str:
        return self.base.type

    @property
    def options(self) -> Any:
        return self.base.options

    def build(self) -> BlackBox:
        box = self.base.build()
        for wrapper in self.wrappers:
            box = wrapper.build(inner=box)
        return box

    def static_spec(self, where: str = "blackbox") -> StaticSpec | None:
        """The built BlackBox's shapes, from the configs alone (:mod:`hil.shapes`), checking that each wrapper fits
        what it wraps; ``None`` when a type here does not say (then only building it checks it)."""
        if not hasattr(self.base.options, "static_spec"):
            return None
        spec = _named(self.base.options.static_spec, where)
        for i, wrapper in enumerate(self.wrappers):
            if not hasattr(wrapper.options, "static_spec"):
                return None
            spec = _named(wrapper.options.static_spec, f"{where}.wrappers[{i}]", spec)
        return spec

    def as_dict(self) -> dict[str, Any]:
        out = self.base.as_dict()
        if self.wrappers:
            out["wrappers"] = [w.as_dict() for w in self.wrappers]
        return out


def _named(compute: Callable[..., T], where: str, *args: Any) -> T:
    """``compute(*args)``, its :class:`~hil.config.FieldError` named by the path the user wrote (``where.key``)."""
    try:
        return compute(*args)
    except FieldError as exc:
        raise ConfigError(f"{join(where, exc.key) if exc.key else where}: {exc.detail}") from None


def check_objective_shape(objective: TypedSection, output_shape: tuple[int, ...], where: str = "objective") -> bool:
    """Check ``objective`` on a BlackBox's ``output_shape`` from its config alone; ``False`` when its type does not
    say (then only building it checks it)."""
    if not hasattr(objective.options, "check_output_shape"):
        return False
    _named(objective.options.check_output_shape, where, tuple(output_shape))
    return True


def parse_blackbox(data: Any, where: str = "blackbox") -> BlackBoxSection:
    """Validate a blackbox section (``type`` + options + optional ``wrappers`` list)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping with a 'type:' key, got {data!r}")
    data = dict(data)
    wrappers = data.pop("wrappers", None) or []
    if not isinstance(wrappers, list):
        raise ConfigError(f"{where}.wrappers: expected a list of {{type: ...}} mappings, got {wrappers!r}")
    base = parse_typed(BLACKBOXES, data, where)
    return BlackBoxSection(base, [parse_typed(WRAPPERS, w, f"{where}.wrappers[{i}]") for i, w in enumerate(wrappers)])


def load_blackbox_file(path: str | Path, base: Path | None = None) -> dict[str, Any]:
    """A twin config file (e.g. ``hil calibrate twin_fit``'s ``twin_fit.yaml``): a blackbox section itself
    (``type: ...``) or a file with a ``blackbox:`` section. A relative path not found as given is looked up
    in ``base`` (the folder of the config that names it)."""
    p = Path(path)
    if not p.is_absolute() and not p.exists() and base is not None:
        p = base / p
    data = load_yaml(p)
    section = data if "type" in data else data.get("blackbox")
    if not isinstance(section, Mapping):
        raise ConfigError(f"{p}: expected a blackbox section (type: ...) or a file with a 'blackbox:' section")
    parse_blackbox(section, str(p))
    return dict(section)
