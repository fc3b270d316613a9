"""A physical-neural-network experiment's config (``hil pnn`` / ``hil validate``), read and checked without importing
torch or the twins and rigs it names; :mod:`hil.pnn` runs it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from hil.calib.record import apply_corrections, load_records, parse_calibrations
from hil.calib.section import parse_calibrate
from hil.config import NonNegativeInt, PositiveFloat, PositiveInt, Range, Seed, check, load_yaml, parse, parse_typed
from hil.datasets import parse_dataset
from hil.errors import ConfigError
from hil.estimator_configs import INT64_MAX
from hil.purposes import MAX_RUNS
from hil.registry import ESTIMATORS
from hil.sections import load_blackbox_file, parse_blackbox

Mode = Literal["in_silico", "pat_model_twin", "pat_gradpie"]
MODES: tuple[str, ...] = ("in_silico", "pat_model_twin", "pat_gradpie")


@dataclass
class TrainingConfig:
    epochs: PositiveInt = 10
    batch_size: PositiveInt = 32
    lr: PositiveFloat = 0.02
    seeds: list[Seed] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    test_fraction: Annotated[float, Range(gt=0, lt=1)] = 0.3
    # pat_gradpie: random bench queries the surrogate starts from (one batch: a torch size)
    warmup_queries: Annotated[int, Range(ge=0, le=INT64_MAX)] = 1000
    warmup_epochs: NonNegativeInt = 30

    def __post_init__(self) -> None:
        check(len(self.seeds) >= 1, "seeds", "give at least one seed")
        for i, seed in enumerate(self.seeds):  # each run is logged as MODE-seedN
            check(seed not in self.seeds[:i], f"seeds[{i}]", f"seed {seed} is listed twice")


@dataclass
class PNNLogConfig:
    dir: str = "runs"


@dataclass
class PNNConfig:
    bench: dict
    model_twin: dict | str  # a blackbox section, or a twin config file (e.g. the twin fit's twin_fit.yaml)
    surrogate: dict
    name: str = "pnn"
    description: str = ""
    dataset: Any = "digits"  # digits, or {path: FILE.npz | FILE.h5, images_key, labels_key, limit} (hil.datasets)
    modes: list[str] = field(default_factory=lambda: list(MODES))
    training: TrainingConfig = field(default_factory=TrainingConfig)
    log: PNNLogConfig = field(default_factory=PNNLogConfig)
    #: calibration records applied to the bench (``[a.json, ...]`` or ``{records: [...], max_age_h: N}``)
    calibrations: Any = None
    #: options for ``hil calibrate`` on the bench (``{NAME: {...}, skip: [...]}``, see hil.calib.runner)
    calibrate: Any = None

    def __post_init__(self) -> None:
        self.dataset = parse_dataset(self.dataset)
        parse_calibrations(self.calibrations)
        parse_calibrate(self.calibrate)
        parse_blackbox(self.bench, "bench")
        if isinstance(self.model_twin, str):
            self.model_twin = load_blackbox_file(self.model_twin)
        parse_blackbox(self.model_twin, "model_twin")
        section = parse_typed(ESTIMATORS, self.surrogate, "surrogate")  # its errors name surrogate.KEY
        check(section.type == "surrogate", "surrogate.type",
              f"must be 'surrogate' (pat_gradpie's backward pass), got {section.type!r}")
        check(section.options.loss != "matchopt", "surrogate.loss",
              "matchopt sorts its data by an objective, which a physical layer's answers do not have; "
              "use gradpie, mse or mae")
        check(len(self.modes) >= 1, "modes", f"give at least one mode; allowed values: {', '.join(MODES)}")
        for i, mode in enumerate(self.modes):
            check(mode in MODES, f"modes[{i}]", f"{mode!r} is not allowed; allowed values: {', '.join(MODES)}")
            check(mode not in self.modes[:i], f"modes[{i}]", f"{mode!r} is listed twice")
        runs = len(self.modes) * len(self.training.seeds)
        check(runs <= MAX_RUNS, "training.seeds",
              f"{len(self.modes)} modes x {len(self.training.seeds)} seeds is {runs} runs; a log holds at most "
              f"{MAX_RUNS}")


def load_pnn_config(source: str | Path | dict, base: Path | None = None) -> PNNConfig:
    """Validate a PNN config; its ``calibrations:`` are applied to ``bench`` (``records`` holds them after).
    ``base``: the folder relative paths in a mapping are relative to (default: the file's, or the working one)."""
    data = dict(source) if isinstance(source, dict) else load_yaml(source)
    if base is None:
        base = Path.cwd() if isinstance(source, dict) else Path(source).parent
    if isinstance(data.get("model_twin"), str):
        try:
            data["model_twin"] = load_blackbox_file(data["model_twin"], base=base)
        except ConfigError as exc:
            raise ConfigError(f"model_twin: {exc}") from None
    try:
        config = parse(PNNConfig, data, "pnn")
    except ConfigError as exc:
        # the sections are at the top of the file: name them as written (training.epochs, not pnn.training.epochs)
        raise ConfigError(str(exc).removeprefix("pnn.")) from None
    records = load_records(parse_calibrations(config.calibrations), config.bench, "bench", base=base)
    config.bench = apply_corrections(config.bench, records, "bench")
    config.calibrations = [r.id for r in records] or None
    if not isinstance(config.dataset, str):  # a relative data file: next to the config when not found as given
        p = Path(config.dataset.path)
        if not p.is_absolute() and not p.exists() and (base / p).exists():
            config.dataset.path = str(base / p)
    return config


def check_buildable(config: PNNConfig) -> None:
    """The model twin takes and gives what the bench does (from their configs when both say their shapes,
    :mod:`hil.shapes`; else by building them, which connects to nothing)."""
    bench, twin = parse_blackbox(config.bench, "bench"), parse_blackbox(config.model_twin, "model_twin")
    shapes = [bench.static_spec("bench"), twin.static_spec("model_twin")]
    if None in shapes:
        shapes = [bench.build().spec, twin.build().spec]
    check_same_io(*shapes)


def check_same_io(bench: Any, twin: Any) -> None:
    """``bench`` and ``twin`` (BlackBox specs or :class:`~hil.shapes.StaticSpec`) map the same inputs to the same
    output shape."""
    if (bench.input_dim, tuple(bench.output_shape)) != (twin.input_dim, tuple(twin.output_shape)):
        raise ConfigError(f"model_twin must take and give what the bench does: bench {bench.input_dim} -> "
                          f"{list(bench.output_shape)}, model_twin {twin.input_dim} -> "
                          f"{list(twin.output_shape)}; give both the same macro-pixel and detector wrappers")
