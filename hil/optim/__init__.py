"""Ask/tell optimisers and the one loop that drives them (see :mod:`hil.optim.base`).

Importing this package registers the core optimisers; a new one is a module here plus one import line
below (third-party optimisers register from their own package through the ``hil.plugins`` entry points).
"""

from hil.optim import (  # noqa: F401  (registers the optimisers; the peers import their packages only when used)
    bayesopt,
    cmaes,
    gradient,
    guided_es,
    ngopt,
    offline,
    random_search,
    trust_region,
)
from hil.optim.base import Ask, Optimizer, make_ask
from hil.optim.loop import LoopConfig, Trace, run_loop
from hil.optim.section import OptimizerSection, optimize, parse_optimizer

__all__ = ["Ask", "LoopConfig", "Optimizer", "OptimizerSection", "Trace", "make_ask", "optimize",
           "parse_optimizer", "run_loop"]
