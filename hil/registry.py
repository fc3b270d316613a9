"""Name -> implementation registries, so a config can say ``type: cnon_twin``.

Registries reject duplicate names (a second registration is a bug, not an
override). Plug-in packages (``hil.sim_backends``, ``hil.drivers``, third-party
drivers) register their classes when imported; :func:`load_plugins` imports every
module named in the ``hil.plugins`` entry-point group, so the core never imports
a plug-in layer by name.

A type may also be *declared* ahead of its implementation: its ``Config`` dataclass,
in a module that imports neither torch nor the implementation, says
``@BLACKBOXES.declare("owms_twin", "hil.sim_backends.owms:OWMSTwin")``. A config
naming it is then parsed and checked without importing the implementation
(``hil validate`` stays fast); the implementation is imported when the type is built.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from hil.errors import RegistryError

T = TypeVar("T")
C = TypeVar("C", bound=type)

PLUGIN_GROUP = "hil.plugins"
#: Entry points naming where one type is declared or registered (``"blackbox:cnon_twin" =
#: "hil.sim_backends.cnon_config"``), so a config that names a type imports that module alone (``hil validate``
#: stays fast); a type missing from it is still found by importing every ``hil.plugins`` module
TYPE_GROUP = "hil.types"


class Registry(Generic[T]):
    """A duplicate-rejecting mapping from names to implementations."""

    def __init__(self, kind: str, core: str | None = None, declarations: str | None = None,
                 attributes: dict[str, Any] | None = None) -> None:
        self.kind = kind
        #: class attributes a config check reads (with their defaults), known for a declared type without its import
        self.attributes = dict(attributes or {})
        self._items: dict[str, T] = {}
        #: a core module whose import registers the built-in implementations (e.g. ``hil.optim.builtin``)
        self.core = core
        #: a core module declaring built-in types ahead of their implementations (e.g. ``hil.optim.configs``)
        self.declarations = declarations
        #: this registry's prefix in the ``hil.types`` entry points (``blackbox``, ``blackbox_wrapper``, ...)
        self.key = kind.replace(" ", "_")
        #: name -> (Config dataclass, "module:Class" of the implementation, class attributes known before import)
        self._declared: dict[str, tuple[type, str, dict[str, Any]]] = {}

    def _load(self) -> None:
        if self.core is not None:
            import_module(self.core)
        load_plugins()

    def _load_one(self, name: str) -> None:
        """Import what registers ``name``: the implementation of a declared type, else the module the ``hil.types``
        index names, else the core package."""
        self._load_declaration(name)
        if name in self._declared and name not in self._items:
            import_module(self._declared[name][1].split(":")[0])
        if name not in self._items and self.core is not None:
            import_module(self.core)

    def _load_declaration(self, name: str) -> None:
        """Import the module the ``hil.types`` index names for ``name`` (a declaration or the implementation)."""
        if name in self._declared or name in self._items or not isinstance(name, str):
            return
        if self.declarations is not None:
            import_module(self.declarations)
            if name in self._declared:
                return
        module = _type_index().get(f"{self.key}:{name}")
        if module is not None:
            import_module(module)

    def declare(self, name: str, implementation: str, **attributes: Any) -> Callable[[C], C]:
        """Decorator on a ``Config`` dataclass: ``@BLACKBOXES.declare("owms_twin", "hil.sim_backends.owms:OWMSTwin")``.
        ``attributes``: the registry's :attr:`attributes` (an optimiser's ``uses_gradient``, an objective's ``sense``)
        where the class's differ from the defaults; :meth:`register` checks that the class agrees."""

        unknown = set(attributes) - set(self.attributes)
        if unknown:
            raise RegistryError(f"{self.kind} {name!r}: cannot declare {sorted(unknown)}; what {self.kind} types may "
                                f"declare: {', '.join(sorted(self.attributes)) or 'nothing'}")

        def decorate(config: C) -> C:
            if name in self._declared and self._declared[name][0] is not config:
                raise RegistryError(f"{self.kind} {name!r} is declared twice ({self._declared[name][0]!r} and "
                                    f"{config!r})")
            self._declared[name] = (config, implementation, attributes)
            return config

        return decorate

    def config(self, name: str) -> type:
        """The ``Config`` dataclass of type ``name``; a declared type's implementation is not imported."""
        if name not in self._items:
            self._load_declaration(name)
            if name in self._declared:
                return self._declared[name][0]
        return self.get(name).Config

    def attribute(self, name: str, key: str) -> Any:
        """Class attribute ``key`` (one of :attr:`attributes`) of type ``name``; a declared type's is read from its
        declaration, without importing the implementation."""
        default = self.attributes[key]
        if name not in self._items:
            self._load_declaration(name)
            if name in self._declared:
                return self._declared[name][2].get(key, default)
        return getattr(self.get(name), key, default)

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@BLACKBOXES.register("cnon_twin")``."""

        def decorate(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise RegistryError(f"{self.kind} {name!r} is registered twice ({self._items[name]!r} and {obj!r})")
            if name in self._declared:
                config, _, attributes = self._declared[name]
                if getattr(obj, "Config", None) is not config:
                    raise RegistryError(f"{self.kind} {name!r}: {obj!r} must use the declared Config {config!r}")
                for key, default in self.attributes.items():
                    if getattr(obj, key, default) != attributes.get(key, default):
                        raise RegistryError(f"{self.kind} {name!r}: {obj!r}.{key} is {getattr(obj, key, default)!r}, "
                                            f"declared {attributes.get(key, default)!r}")
            self._items[name] = obj
            return obj

        return decorate

    def get(self, name: str) -> T:
        """The implementation of ``name``, imported if it is not yet."""
        if name not in self._items:
            self._load_one(name)
        if name not in self._items:
            self._load()
        if name not in self._items:
            raise RegistryError(
                f"unknown {self.kind} type {name!r}; allowed: {', '.join(sorted(self._items)) or '(none registered)'}"
            )
        return self._items[name]

    def knows(self, name: object) -> bool:
        """Whether ``name`` is a type here, without importing its implementation when an index or a declaration
        names it (every plug-in is imported only when neither does)."""
        if not isinstance(name, str):
            return False
        if name not in self._items and name not in self._declared and self.declarations is not None:
            import_module(self.declarations)
        if name in self._items or name in self._declared or f"{self.key}:{name}" in _type_index():
            return True
        self._load_one(name)
        if name not in self._items:
            self._load()
        return name in self._items

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items or name in self._declared

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
ESTIMATORS: Registry = Registry("estimator", core="hil.estimators", declarations="hil.estimator_configs")
OBJECTIVES: Registry = Registry("objective", declarations="hil.objective_configs", attributes={"sense": "min"})
#: Ask/tell optimisers (``optimizer: {type: gradient | random | cmaes | ...}``), see :mod:`hil.optim.base`
OPTIMIZERS: Registry = Registry("optimizer", core="hil.optim.builtin", declarations="hil.optim.configs",
                                 attributes={"uses_gradient": False, "estimator_types": None})
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
