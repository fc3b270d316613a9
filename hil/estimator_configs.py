"""The options of the core gradient estimators (the ``estimator:`` section, and a PNN's ``surrogate:``), declared
without importing the estimators (or torch), so a config is checked without them; see :mod:`hil.estimators`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from hil.config import (
    FieldError,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Range,
    Seed,
    UnitFloat,
    check,
)
from hil.device import check_device
from hil.errors import ConfigError
from hil.registry import ESTIMATORS
from hil.sections import load_blackbox_file, parse_blackbox

LossName = Literal["mse", "mae", "gradpie", "matchopt"]

#: torch's sizes and seeds are 64-bit integers: a larger count overflows when the model or a batch is built
INT64_MAX = 2**63 - 1
#: a count that sizes a tensor (a layer's width, a batch, neighbours per point)
Count = Annotated[int, Range(ge=1, le=INT64_MAX)]

#: bounded minibatch steps a surrogate trains after each iteration unless the config says otherwise (measured against
#: full epochs on the CNON, op-amp and 144-phase OWMS tasks: docs/loop.md)
DEFAULT_STEPS = 20

#: a probe's step, a fraction of each input's range (central differences stay inside the bounds)
ProbeStep = Annotated[float, Range(gt=0, lt=0.5)]


def _nested_section_error(key: str, exc: ConfigError) -> FieldError:
    """An error from a section nested in a config (``model:``, validated with ``where=key``) as one naming that
    field, so that parse puts the outer section's path in front: ``estimator.model.wrappers[1].gamma: ...``."""
    message = str(exc)
    if message.startswith((f"{key}.", f"{key}:")):
        path, _, detail = message.partition(": ")
        return FieldError(path, detail)
    return FieldError(key, message)


@ESTIMATORS.declare("surrogate", "hil.estimators:SurrogateEstimator")
@dataclass
class SurrogateConfig:
    loss: LossName = "gradpie"
    k: Count = 5
    hidden: list[Count] = field(default_factory=lambda: [256, 256])
    layer_norm: bool = False
    #: after each iteration the surrogate trains ``steps`` bounded minibatch steps (the default, DEFAULT_STEPS: the
    #: same cost at iteration 10 and at iteration 10,000) or, when ``epochs`` is given instead, that many full passes
    #: over all data (the paper's E: an iteration's cost grows with the data, a run's quadratically)
    epochs: NonNegativeInt | None = None
    lr: PositiveFloat = 1e-3
    batch_size: Count = 256
    weight_decay: NonNegativeFloat = 0.0
    value_weight: NonNegativeFloat | None = None  # null: 0 for gradpie, 1 for matchopt (its regression term)
    pairs_per_anchor: PositiveInt = 1  # <= k
    pair_weight: Literal["uniform", "inverse_distance"] = "uniform"
    input_features: Literal["raw", "phase"] = "raw"
    # shared: one scale for all outputs (pixels of an image keep their relative weight);
    # per_output: each output standardised alone (figures in different units, e.g. dB, Hz, degrees)
    output_scale: Literal["shared", "per_output"] = "shared"
    bins: Annotated[int, Range(ge=2, le=INT64_MAX)] = 32  # matchopt: percentile bins, the points of a trajectory
    path_steps: PositiveInt = 5  # matchopt: Riemann points of each path integral (the authors' 5)
    steps: PositiveInt | None = None  # bounded training: minibatch steps per fit (null: DEFAULT_STEPS, or epochs)
    recent_fraction: UnitFloat = 0.5  # bounded training: share of each minibatch from the newest points
    recent_points: PositiveInt = 1024  # bounded training: how many of the newest points count as recent
    device: str = "auto"          # auto | cpu | cuda | cuda:N: where the model, its data and its pairs live
    concurrent: bool = False      # train in a background thread while the BlackBox measures (estimators.py)
    seed: Seed = 0

    def __post_init__(self) -> None:
        if self.value_weight is None:
            self.value_weight = 1.0 if self.loss == "matchopt" else 0.0
        check(self.pairs_per_anchor <= self.k, "pairs_per_anchor",
              f"must be <= k ({self.k}), got {self.pairs_per_anchor}")
        check(self.steps is None or self.epochs is None, "steps",
              f"give steps (bounded minibatch steps per iteration) or epochs (full passes over all data per "
              f"iteration), not both: got steps {self.steps} and epochs {self.epochs}")
        if self.steps is None and self.epochs is None:
            self.steps = DEFAULT_STEPS
        check_device(self.device)


@ESTIMATORS.declare("exact", "hil.estimators:ExactEstimator")
@dataclass
class ExactConfig:
    model: dict | str | None = None  # a blackbox section, or a twin config file (e.g. twin_fit.yaml)

    def __post_init__(self) -> None:
        try:
            if isinstance(self.model, str):
                self.model = load_blackbox_file(self.model)
            if self.model is not None:
                parse_blackbox(self.model, "model")  # fail on load, naming the key
        except ConfigError as exc:
            raise _nested_section_error("model", exc) from None


@ESTIMATORS.declare("finite_difference", "hil.estimators:FiniteDifferenceEstimator")
@dataclass
class FiniteDifferenceConfig:
    step: ProbeStep = 1e-3
    repeats: Count = 1


@ESTIMATORS.declare("spsa", "hil.estimators:SPSAEstimator")
@dataclass
class SPSAConfig:
    step: ProbeStep = 0.01
    n_directions: Count = 1
    seed: Seed = 0
