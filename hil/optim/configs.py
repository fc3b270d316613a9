"""The options of the core optimisers and of the loop (the ``optimizer:`` section), declared without importing
the optimisers (or torch): a config names a type and is checked here; the optimiser is imported when it is built.

Each ``Config`` is declared in :data:`hil.registry.OPTIMIZERS` with the class that implements it
(``uses_gradient``: the type takes an ``estimator:`` section). A third-party optimiser needs none of this: a
nested ``Config`` on its registered class works the same, only its module is imported to check a config.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Literal

from hil.config import (
    FiniteFloat,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Range,
    Seed,
    check,
)
from hil.registry import OPTIMIZERS

#: Adam's moment decay rates: in [0, 1) (1 never forgets the first gradient and divides by zero in the bias correction)
AdamBeta = Annotated[float, Range(ge=0, lt=1)]
#: a step or a spread in the unit cube, a fraction of each input's range: > 0 and at most the whole range (a larger
#: Adam learning rate only lands on the bounds, and past float32's range it overflows inside Adam's update)
UnitStep = Annotated[float, Range(gt=0, le=1)]
#: a count of points a GP is fitted on: at least two
AtLeastTwo = Annotated[int, Range(ge=2)]
#: the most IPOP/BIPOP may multiply the first population by (``incpopsize ** max_restarts``): beyond it a restart
#: would ask for a population no device budget measures and cma allocates it whole (or the factor overflows)
MAX_POPSIZE_GROWTH = 1e6


@dataclass
class LoopConfig:
    """The loop's keys of the ``optimizer:`` section (the rest belong to the optimiser ``type``).

    ``max_wall_s: null`` (the default) sets no wall-time limit; a limit is a finite number of seconds > 0.
    ``.inf`` is refused rather than read as "no limit": ``null`` already says that, and the resolved config is
    stored in the query log as JSON, which has no infinity. ``seed`` seeds every optimiser's generators, and
    numpy's legacy ``RandomState`` (nevergrad) takes seeds in ``[0, 2**32 - 1]`` only.
    """

    iterations: PositiveInt = 200
    max_queries: PositiveInt | None = None
    max_wall_s: PositiveFloat | None = None
    tol: NonNegativeFloat = 0.0
    patience: PositiveInt = 25
    seed: Seed = 0


@OPTIMIZERS.declare("gradient", "hil.optim.gradient:GradientOptimizer", uses_gradient=True)
@dataclass
class GradientConfig:
    n_starts: PositiveInt = 16
    lr: UnitStep = 0.02
    #: Adam's moment decay rates for the step on x. Momentum (beta1) keeps successive steps parallel, so a
    #: surrogate trained on the path sees its Jacobian along few directions (docs/estimator-studies.md, CNON)
    adam_beta1: AdamBeta = 0.9
    adam_beta2: AdamBeta = 0.999
    local_samples: NonNegativeInt = 0
    sigma: UnitStep = 0.05
    init: Literal["uniform", "lhs"] = "uniform"
    #: every start from this physical point instead (one number broadcasts; e.g. a paper's starting point); its
    #: length and the blackbox's bounds are checked when the optimiser is built on the blackbox
    x0: FiniteFloat | list[FiniteFloat] | None = None
    #: a Latin-hypercube design measured before the first iteration (Algorithm 1's D), fed to the estimator
    init_samples: NonNegativeInt = 0


@OPTIMIZERS.declare("offline", "hil.optim.offline:OfflineOptimizer", uses_gradient=True,
                   estimator_types=("surrogate",))
@dataclass
class OfflineConfig(GradientConfig):
    dataset: Literal["lhs", "log"] = "lhs"
    #: the Latin-hypercube design's size (``dataset: lhs``); a surrogate fit needs two points
    dataset_size: Annotated[int, Range(ge=2)] = 1000
    dataset_log: str | None = None
    fit_epochs: NonNegativeInt = 200
    start: Literal["random", "top"] = "random"
    search: Literal["blackbox", "surrogate"] = "blackbox"

    def __post_init__(self) -> None:
        check(self.dataset != "log" or bool(self.dataset_log and self.dataset_log.strip()), "dataset_log",
              "give the path of a query log when dataset: log")
        check(self.start != "top" or self.dataset != "lhs" or self.n_starts <= self.dataset_size, "n_starts",
              f"start: top starts from the n_starts best points of the dataset, so n_starts must be <= dataset_size "
              f"({self.dataset_size}), got {self.n_starts}")


@OPTIMIZERS.declare("gradient_tr", "hil.optim.trust_region:TrustRegionGradient", uses_gradient=True)
@dataclass
class TrustRegionConfig(GradientConfig):
    length_init: UnitStep = 0.02     # the first trust length (Adam's lr) per start, in unit-cube units
    length_min: UnitStep = 0.002
    length_max: UnitStep = 0.08
    success_tolerance: PositiveInt = 3
    failure_tolerance: PositiveInt = 5
    restart: bool = True

    def __post_init__(self) -> None:
        check(self.length_min <= self.length_init, "length_init",
              f"must be >= length_min ({self.length_min}), got {self.length_init}")
        check(self.length_init <= self.length_max, "length_init",
              f"must be <= length_max ({self.length_max}), got {self.length_init}")


@OPTIMIZERS.declare("cmaes", "hil.optim.cmaes:CMAES")
@dataclass
class CMAESConfig:
    n_starts: PositiveInt = 1
    #: the first step size, a fraction of the unit cube's width (cma recommends about a quarter of it)
    sigma0: Annotated[float, Range(gt=0, le=1)] = 0.25
    #: ``uniform``, ``centre`` or a physical point (first runs; its length and the blackbox's bounds are
    #: checked when the optimiser is built on the blackbox)
    x0: Literal["uniform", "centre"] | FiniteFloat | list[FiniteFloat] = "uniform"
    #: None: cma's default 4 + 3 ln d. At most a million: cma allocates per-member arrays when it starts, and no
    #: device budget measures a larger round
    popsize: Annotated[int, Range(ge=2, le=1_000_000)] | None = None
    covariance: Literal["full", "diagonal", "auto"] = "auto"
    restarts: Literal["none", "ipop", "bipop"] = "ipop"
    max_restarts: NonNegativeInt = 9
    incpopsize: Annotated[float, Range(ge=1)] = 2.0  # IPOP's population factor per restart
    #: cma's UH-CMA noise handling for noisy objectives (see the module docstring)
    noise_handling: bool = False

    def __post_init__(self) -> None:
        if self.restarts != "none" and self.incpopsize > 1:
            most = math.log10(MAX_POPSIZE_GROWTH) / math.log10(self.incpopsize)  # restarts within the limit
            check(self.max_restarts <= most + 1e-9, "max_restarts",
                  f"the last restart's population would be incpopsize ** max_restarts = {self.incpopsize:g} ** "
                  f"{self.max_restarts} times the first, over the limit of {MAX_POPSIZE_GROWTH:g}: with "
                  f"incpopsize {self.incpopsize:g} give at most {math.floor(most + 1e-9)} restarts (cma recommends "
                  f"at most 9 with incpopsize 2), or a smaller incpopsize")


@OPTIMIZERS.declare("guided_es", "hil.optim.guided_es:GuidedES", uses_gradient=True)
@dataclass
class GuidedESConfig:
    n_starts: PositiveInt = 1
    pairs: PositiveInt = 4  # P antithetic pairs per iteration and start
    #: perturbation scale of the isotropic part, a fraction of each input's range. At least 1e-6: a smaller
    #: perturbation is lost in a float32 point of the unit cube (resolution ~1e-7), and the ES gradient divides
    #: by ``sigma**2``, which is 0.0 below ~1e-154
    sigma: Annotated[float, Range(ge=1e-6, lt=0.5)] = 0.02
    alpha: Annotated[float, Range(gt=0, le=1)] = 0.5  # share of the isotropic part of the search covariance
    beta: PositiveFloat = 2.0  # gradient scale (the paper's beta)
    subspace: PositiveInt = 1  # k surrogate gradients kept per start
    lr: UnitStep = 0.02  # Adam step on the unit cube
    adam_beta1: AdamBeta = 0.9
    adam_beta2: AdamBeta = 0.999


@OPTIMIZERS.declare("random", "hil.optim.random_search:RandomSearch")
@dataclass
class RandomSearchConfig:
    n_starts: PositiveInt = 16
    per_start: PositiveInt = 1
    init: Literal["uniform", "lhs"] = "uniform"


@OPTIMIZERS.declare("nevergrad", "hil.optim.ngopt:NevergradOptimizer")
@dataclass
class NevergradConfig:
    optimizer: str = "NGOpt"
    batch: PositiveInt = 1  # nevergrad's num_workers: candidates asked per round
    budget: PositiveInt = 1000  # the budget nevergrad plans for when the run has no max_queries

    def __post_init__(self) -> None:
        check(bool(self.optimizer.strip()), "optimizer",
              f"must name a nevergrad optimiser, e.g. NGOpt, got {self.optimizer!r}")


@OPTIMIZERS.declare("botorch", "hil.optim.bayesopt:BayesOpt")
@dataclass
class BayesOptConfig:
    method: Literal["auto", "gp_logei", "turbo"] = "auto"
    batch: PositiveInt | None = None  # candidates per round; None: from the method and the budget
    #: Sobol design (per TuRBO instance), at least 2 (a GP needs two points); None: 2d+1 (gp_logei) / 2d (turbo),
    #: capped
    n_init: AtLeastTwo | None = None
    num_restarts: PositiveInt = 10  # optimize_acqf (gp_logei)
    raw_samples: PositiveInt = 512  # optimize_acqf (gp_logei); at least num_restarts
    n_candidates: PositiveInt | None = None  # Thompson-sampling candidates (turbo); None: tutorial's, capped
    max_train_points: AtLeastTwo | None = None  # GP training set cap; None: 500 (gp_logei) / 300 (turbo)
    noise: Literal["auto", "learned", "small"] = "auto"
    warm_start: bool = True  # start each GP fit from the previous round's hyperparameters
    fit_maxiter: PositiveInt | None = None  # L-BFGS-B iterations per GP fit; None: 200 / 50 / 25 by d

    def __post_init__(self) -> None:
        check(self.raw_samples >= self.num_restarts, "raw_samples",
              f"must be >= num_restarts ({self.num_restarts}), got {self.raw_samples}")
