"""A run's config (``hil run`` / ``hil validate``): read, checked and resolved without importing torch or the
implementations it names (:mod:`hil.registry` declarations); :mod:`hil.run` builds and runs it.

Config sections (every key validated before anything runs)::

    name: cnon_twin
    blackbox:  {type: cnon_twin, ..., wrappers: [...]}  # hil.sections.parse_blackbox
    calibrations: [calibrations/rig/camera.json, ...]  # records applied to the blackbox (hil.calib.record)
    objective: {type: target_distance, ...}    # hil.registry.OBJECTIVES
    optimizer: {type: gradient, n_starts: 16, ...}     # hil.optim.section (hil.registry.OPTIMIZERS)
    estimator: {type: surrogate, loss: gradpie, ...}   # hil.registry.ESTIMATORS; only for optimisers that
                                                       #   follow a gradient (rejected for any other)
    log:       {dir: runs, ...}                        # LogConfig
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hil.calib.record import CalibrationRecord, apply_corrections, load_records, parse_calibrations
from hil.calib.section import parse_calibrate
from hil.config import NonNegativeFloat, TypedSection, load_yaml, parse, parse_typed
from hil.errors import ConfigError
from hil.optim.section import OptimizerSection, check_estimator, parse_optimizer
from hil.registry import ESTIMATORS, OBJECTIVES
from hil.sections import BlackBoxSection, check_objective_shape, load_blackbox_file, parse_blackbox

TOP_LEVEL_KEYS = ("name", "description", "blackbox", "calibrations", "calibrate", "objective", "estimator", "optimizer",
                  "log")


@dataclass
class LogConfig:
    dir: str = "runs"
    report: bool = True
    #: how often the run's state is saved beside its log (``<log>.ckpt``, :mod:`hil.optim.checkpoint`) for an
    #: optimiser that supports it, so that ``--resume`` need not recompute it; 0: after every round, null: never
    checkpoint_every_s: NonNegativeFloat | None = 60.0


@dataclass
class RunConfig:
    name: str
    description: str
    blackbox: BlackBoxSection
    objective: TypedSection
    estimator: TypedSection | None
    optimizer: OptimizerSection
    log: LogConfig
    #: the calibration records applied to the blackbox (already folded into ``blackbox``)
    calibrations: list[CalibrationRecord] = dataclasses.field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "description": self.description,
            "blackbox": self.blackbox.as_dict(),
            "objective": self.objective.as_dict(),
            "optimizer": self.optimizer.as_dict(),
            "log": dataclasses.asdict(self.log),
        }
        if self.estimator is not None:
            out["estimator"] = self.estimator.as_dict()
        if self.calibrations:
            out["calibrations"] = [r.id for r in self.calibrations]
        return out


def is_pnn_config(data: Mapping[str, Any]) -> bool:
    """A PNN experiment config (``hil pnn``) rather than a run config (``hil run``)."""
    return "dataset" in data and "bench" in data


def load_run_config(source: str | Path | Mapping[str, Any], base: Path | None = None) -> RunConfig:
    """Validate a run config (a YAML path or a mapping); raises :class:`ConfigError` naming the bad key.
    ``base``: the folder relative paths in a mapping are relative to (default: the file's, or the working one)."""
    data = dict(source) if isinstance(source, Mapping) else load_yaml(source)
    if base is None:
        base = Path.cwd() if isinstance(source, Mapping) else Path(source).parent
    if is_pnn_config(data):
        raise ConfigError("this is a physical-neural-network config (it has 'dataset' and 'bench'): "
                          "run it with `hil pnn CONFIG`")
    unknown = [k for k in data if k not in TOP_LEVEL_KEYS]
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown top-level key; allowed keys: {', '.join(TOP_LEVEL_KEYS)}")
    for key in ("blackbox", "objective"):
        if key not in data:
            raise ConfigError(f"missing section {key!r}")
    name = data.get("name", "run")
    if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"name: expected a string of letters, digits, '-' and '_', got {name!r}")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise ConfigError("description: expected a string")
    parse_blackbox(data["blackbox"], "blackbox")  # the rig as written first: its errors name the user's keys
    parse_calibrate(data.get("calibrate"))  # hil calibrate's options: checked here too, so a typo fails early
    records = load_records(parse_calibrations(data.get("calibrations")), data["blackbox"], "blackbox", base=base)
    blackbox = parse_blackbox(apply_corrections(data["blackbox"], records), "blackbox")
    data = resolve_model_paths(data, base)
    objective = parse_typed(OBJECTIVES, data["objective"], "objective")
    optimizer = parse_optimizer(data.get("optimizer"), "optimizer")
    check_estimator(optimizer, data.get("estimator"))
    estimator = parse_typed(ESTIMATORS, data["estimator"], "estimator") if "estimator" in data else None
    return RunConfig(name=name, description=description, blackbox=blackbox, objective=objective,
                     estimator=estimator, optimizer=optimizer, log=parse(LogConfig, data.get("log"), "log"),
                     calibrations=records)


def resolve_model_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """``estimator: {type: exact, model: twin_fit.yaml}``: a twin config file (relative to the config's folder)
    read into the section it holds."""
    est = data.get("estimator")
    if isinstance(est, Mapping) and isinstance(est.get("model"), str):
        data = {**data, "estimator": {**est, "model": load_blackbox_file(est["model"], base=base)}}
    return data


def check_buildable(config: RunConfig) -> None:
    """Check what building the run would (each wrapper fits what it wraps, the objective fits the BlackBox's
    output) without building it when every type here says its shapes (:mod:`hil.shapes`: no torch, nothing
    imported); else by building the BlackBox and the objective (a BlackBox does no I/O before ``connect()``)."""
    spec = config.blackbox.static_spec("blackbox")
    if spec is not None and check_objective_shape(config.objective, spec.output_shape, "objective"):
        return
    box = config.blackbox.build()
    config.objective.build(output_shape=box.spec.output_shape)
