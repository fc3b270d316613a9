"""The ``optimizer:`` config section: a registered optimiser ``type`` plus the loop's keys.

::

    optimizer:
      type: gradient        # hil.registry.OPTIMIZERS: gradient, offline, random, cmaes, ...
      iterations: 200       # the loop's keys (LoopConfig): iterations, max_queries, max_wall_s, tol, patience, seed
      n_starts: 16          # the rest are the type's own (its Config)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hil.config import parse
from hil.errors import ConfigError, RegistryError
from hil.optim.configs import LoopConfig
from hil.registry import OPTIMIZERS

LOOP_KEYS = tuple(f.name for f in dataclasses.fields(LoopConfig))
DEFAULT_TYPE = "gradient"


@dataclass
class OptimizerSection:
    type: str
    options: Any
    loop: LoopConfig

    @property
    def cls(self) -> Any:
        """The optimiser's class (imported here, not when the section is parsed)."""
        return OPTIMIZERS.get(self.type)

    @property
    def uses_gradient(self) -> bool:
        return bool(OPTIMIZERS.attribute(self.type, "uses_gradient"))

    def build(self, *, box: Any, objective: Any, estimator: Any = None) -> Any:
        """The optimiser on ``box`` (a :class:`~hil.space.UnitCubeView`), seeded with ``loop.seed`` and told the
        query budget ``loop.max_queries`` (``None``: unlimited) for methods that plan with it."""
        return self.cls.from_config(self.options, box=box, objective=objective, estimator=estimator,
                                    seed=self.loop.seed, budget=self.loop.max_queries)

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.type, **dataclasses.asdict(self.loop), **dataclasses.asdict(self.options)}


def parse_optimizer(data: Any, where: str = "optimizer") -> OptimizerSection:
    """Validate an optimizer section; errors name ``where.key`` and list what is allowed."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping of options, got {data!r}")
    data = dict(data)
    if "mode" in data:
        raise ConfigError(f"{where}.mode: replaced by {where}.type; write type: gradient for mode: online, "
                          f"type: offline for mode: offline, type: random for mode: random")
    name = data.pop("type", DEFAULT_TYPE)
    if not isinstance(name, str):
        raise ConfigError(f"{where}.type: expected the name of an optimiser, got {name!r}; allowed: "
                          f"{', '.join(OPTIMIZERS.names())}")
    try:
        config = OPTIMIZERS.config(name)
    except RegistryError as exc:
        raise ConfigError(f"{where}.type: {exc}") from None
    own = {f.name for f in dataclasses.fields(config)}
    unknown = [k for k in data if k not in own and k not in LOOP_KEYS]
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key for type {name!r}; allowed keys: "
                          f"{', '.join(sorted(own | set(LOOP_KEYS) | {'type'}))}")
    loop = parse(LoopConfig, {k: v for k, v in data.items() if k in LOOP_KEYS}, where)
    options = parse(config, {k: v for k, v in data.items() if k not in LOOP_KEYS}, where)
    return OptimizerSection(name, options, loop)


def check_estimator(optimizer: OptimizerSection, estimator: Mapping[str, Any] | None) -> None:
    """A gradient optimiser needs an ``estimator`` section (of an allowed type); any other takes none."""
    if optimizer.uses_gradient and estimator is None:
        raise ConfigError(f"estimator: optimizer type {optimizer.type!r} follows a gradient, so it needs an estimator "
                          f"section, e.g. estimator: {{type: surrogate, loss: gradpie}}")
    if not optimizer.uses_gradient and estimator is not None:
        raise ConfigError(f"estimator: optimizer type {optimizer.type!r} does not use a gradient, so it takes no "
                          f"estimator section; remove it (or use an optimizer type that follows a gradient: "
                          f"{', '.join(gradient_types())})")
    allowed = OPTIMIZERS.attribute(optimizer.type, "estimator_types")
    if estimator is not None and allowed and isinstance(estimator, Mapping) and estimator.get("type") not in allowed:
        raise ConfigError(f"estimator.type: optimizer type {optimizer.type!r} needs estimator type "
                          f"{' or '.join(map(repr, allowed))}, got {estimator.get('type')!r}")


def gradient_types() -> list[str]:
    return [n for n in OPTIMIZERS.names() if OPTIMIZERS.attribute(n, "uses_gradient")]


def optimize(blackbox: Any, objective: Any, section: OptimizerSection, estimator: Any = None,
             progress: Any = None, recommendations: bool = False) -> Any:
    """Build ``section``'s optimiser on the unit-cube view of ``blackbox`` (connected here if it is not) and
    run the loop; returns the :class:`~hil.optim.loop.Trace`."""
    from hil.optim.loop import run_loop
    from hil.space import UnitCubeView

    view = blackbox if isinstance(blackbox, UnitCubeView) else UnitCubeView(blackbox)
    view.connect()
    optimizer = section.build(box=view, objective=objective, estimator=estimator)
    return run_loop(view, objective, optimizer, section.loop, progress, recommendations)
