"""Imports the core optimisers, which registers them in :data:`hil.registry.OPTIMIZERS` (its ``core`` package).
The peers import their own packages (cma, nevergrad, BoTorch) only when used."""

from hil.optim import (  # noqa: F401  (registers the optimisers)
    bayesopt,
    cmaes,
    gradient,
    guided_es,
    ngopt,
    offline,
    random_search,
    trust_region,
)
