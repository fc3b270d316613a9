"""Name -> implementation registries, so a config can say ``type: cnon_twin``.

Registries reject duplicate names (a second registration is a bug, not an
override). Plug-in packages (``hil.sim_backends``, ``hil.drivers``, third-party
drivers) register their classes when imported; :func:`load_plugins` imports every
module named in the ``hil.plugins`` entry-point group, so the core never imports
a plug-in layer by name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib import import_module
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from hil.errors import RegistryError

T = TypeVar("T")

PLUGIN_GROUP = "hil.plugins"
#: Entry points naming where one type is registered (``"blackbox:cnon_twin" = "hil.sim_backends.cnon"``), so a
#: config that names a type imports that module alone (``hil validate`` stays fast); a type missing from it is
#: still found by importing every ``hil.plugins`` module
TYPE_GROUP = "hil.types"


class Registry(Generic[T]):
    """A duplicate-rejecting mapping from names to implementations."""

    def __init__(self, kind: str, core: str | None = None) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        #: a core package whose import registers the built-in implementations (e.g. ``hil.optim``)
        self.core = core
        #: this registry's prefix in the ``hil.types`` entry points (``blackbox``, ``blackbox_wrapper``, ...)
        self.key = kind.replace(" ", "_")

    def _load(self) -> None:
        if self.core is not None:
            import_module(self.core)
        load_plugins()

    def _load_one(self, name: str) -> None:
        """Import what registers ``name``: the core package, then the module the ``hil.types`` index names."""
        if self.core is not None:
            import_module(self.core)
        module = _type_index().get(f"{self.key}:{name}") if isinstance(name, str) else None
        if name not in self._items and module is not None:
            import_module(module)

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@BLACKBOXES.register("cnon_twin")``."""

        def decorate(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise RegistryError(f"{self.kind} {name!r} is registered twice ({self._items[name]!r} and {obj!r})")
            self._items[name] = obj
            return obj

        return decorate

    def get(self, name: str) -> T:
        if name not in self._items:
            self._load_one(name)
        if name not in self._items:
            self._load()
        if name not in self._items:
            raise RegistryError(
                f"unknown {self.kind} type {name!r}; allowed: {', '.join(sorted(self._items)) or '(none registered)'}"
            )
        return self._items[name]

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


_loaded_plugins = False
_types: dict[str, str] | None = None


def _type_index() -> dict[str, str]:
    """``"kind:name"`` -> module, from the ``hil.types`` entry points of every installed package (read once)."""
    global _types
    if _types is None:
        _types = {ep.name: ep.value.split(":")[0] for ep in entry_points(group=TYPE_GROUP)}
    return _types


def load_plugins() -> None:
    """Import every module of the ``hil.plugins`` entry-point group (once)."""
    global _loaded_plugins
    if _loaded_plugins:
        return
    _loaded_plugins = True
    for ep in entry_points(group=PLUGIN_GROUP):
        import_module(ep.value.split(":")[0])


BLACKBOXES: Registry = Registry("blackbox")
ESTIMATORS: Registry = Registry("estimator", core="hil.estimators")
OBJECTIVES: Registry = Registry("objective")
#: Ask/tell optimisers (``optimizer: {type: gradient | random | cmaes | ...}``), see :mod:`hil.optim.base`
OPTIMIZERS: Registry = Registry("optimizer", core="hil.optim")
#: BlackBoxes around a BlackBox (bench imperfections, latency), built with ``from_config(options, inner=...)``
WRAPPERS: Registry = Registry("blackbox wrapper")
#: Benchmarks that plug-ins bring (e.g. a transport's round trip on its simulated device): a function
#: ``(json_path: str | None, quick: bool) -> exit code``, run by ``hil bench NAME``
BENCHMARKS: Registry = Registry("benchmark")
#: Calibrations (``hil calibrate NAME``): plug-ins implementing :class:`hil.calib.base.Calibration`
CALIBRATIONS: Registry = Registry("calibration")
#: Differentiable models of a twin in its physical parameters, by twin type, for fitting a twin to a rig:
#: ``fn(section, fit=None) -> torch.nn.Module`` with ``forward(x)``, ``values()`` and ``fitted_section()``
TWIN_MODELS: Registry = Registry("twin model")
#: Conditional generative models ``p(y | c)`` for L-GSO (:mod:`hil.generative`): ``log_prob``, ``expectation``,
#: ``mean``, ``sample``
GENERATIVE_MODELS: Registry = Registry("generative model", core="hil.generative")
#: Simulated counterparts of rigs, by rig type, for dry runs (``hil run CONFIG --dry-run``): a context manager
#: ``fn(section: dict) -> Iterator[dict]`` that starts the simulated device, yields the rig section rewritten to
#: reach it, and stops it on exit (:mod:`hil.dryrun`)
SIMULATORS: Registry = Registry("simulated counterpart")
