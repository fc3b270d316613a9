"""A run described by a config: build the pieces, run the loop, write the log and the report.

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
import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hil.blackbox import BlackBox, find_attribute
from hil.calib.record import CalibrationRecord, apply_corrections, load_records, parse_calibrations, record_summary
from hil.calib.runner import parse_calibrate
from hil.config import TypedSection, load_yaml, parse, parse_typed
from hil.errors import ConfigError, LogError
from hil.optim.loop import Trace, run_loop
from hil.optim.replay import ReplayBox
from hil.optim.section import OptimizerSection, check_estimator, parse_optimizer
from hil.querylog import QueryLog, read_log
from hil.registry import ESTIMATORS, OBJECTIVES
from hil.report import plot_run_report
from hil.sections import BlackBoxSection, load_blackbox_file, parse_blackbox
from hil.space import UnitCubeView

TOP_LEVEL_KEYS = ("name", "description", "blackbox", "calibrations", "calibrate", "objective", "estimator", "optimizer",
                  "log")


@dataclass
class LogConfig:
    dir: str = "runs"
    report: bool = True


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


@dataclass
class RunResult:
    trace: Trace
    log_path: Path
    report_path: Path | None
    queries: int
    wall_s: float
    busy_s: float


def method_label(config: RunConfig) -> str:
    """``gradient: surrogate (gradpie), M=2`` / ``cmaes``: what a run's curve is called in its report."""
    label = config.optimizer.type
    if config.estimator is not None:
        loss = getattr(config.estimator.options, "loss", None)
        label += f": {config.estimator.type}" + ("" if loss is None else f" ({loss})")
    m = getattr(config.optimizer.options, "local_samples", None)
    return label if m is None else f"{label}, M={m}"


def _queries_per_start(trace: Trace, n_starts: int) -> np.ndarray:
    return np.asarray(trace.queries, dtype=np.float64) / n_starts


def report_images(blackbox: BlackBox, objective: Any, trace: Trace) -> dict[str, np.ndarray]:
    """Image panels for the report, when the pieces are images: the best start's input (reshaped to the
    box's ``input_image_shape``, e.g. an SLM's pixels or its macro-pixels), its measured output (if 2-D)
    and the objective's ``target`` (if 2-D)."""
    images: dict[str, np.ndarray] = {}
    if trace.x_best is None or not trace.best:
        return images
    final = trace.best[-1]
    score = final if objective.sense == "min" else -final
    i = int(np.nanargmin(score))
    label = f"start {i}, objective {final[i]:.4g}"
    shape = find_attribute(blackbox, "input_image_shape")
    if shape is not None and int(np.prod(shape)) == blackbox.spec.input_dim:
        images[f"best SLM phase (rad)\n{label}"] = trace.x_best[i].reshape(*shape).numpy()
    if trace.y_best is not None and len(blackbox.spec.output_shape) == 2:
        images["its camera image"] = trace.y_best[i].numpy()
    target = getattr(objective, "target", None)
    if isinstance(target, torch.Tensor) and target.ndim == 2:
        images["target"] = target.numpy()
    return images


def execute(config: RunConfig, *, log_path: str | Path | None = None, resume: str | Path | None = None,
            progress: Callable[[int, Trace], None] | None = None, recommendations: bool = False,
            say: Callable[[str], None] | None = None) -> RunResult:
    """Run ``config`` end to end: connect, optimise with every query logged, write the report.

    ``resume``: a killed run's log; the optimiser runs again from the start and the log answers every
    query it had answered before (:mod:`hil.optim.replay`), then new queries are appended to it.
    ``say``: where a line for the person running it goes (what a resume does)."""
    blackbox = config.blackbox.build()
    objective = config.objective.build(output_shape=blackbox.spec.output_shape)
    estimator = config.estimator.build() if config.estimator is not None else None
    run_id = f"{config.name}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    config_dict = config.as_dict()
    old = None
    if resume is not None:
        path = Path(resume)
        old = read_log(path)
        if old.attrs.get("config", {}) != json.loads(json.dumps(config_dict)):
            raise LogError(f"{path} was written by a different config; resume it with the config it was run with")
        log = QueryLog.open_append(path, run_id=run_id)
        if say is not None:
            say(f"resume: the optimiser runs again from the start and the {len(old)} logged queries answer it "
                f"(its state is rebuilt; nothing is sent to the device) before new queries go to the device")
    else:
        path = Path(log_path) if log_path else Path(config.log.dir) / f"{run_id}.h5"
        path.parent.mkdir(parents=True, exist_ok=True)
        log = QueryLog.create(
            path,
            input_dim=blackbox.spec.input_dim,
            output_shape=blackbox.spec.output_shape,
            output_dtype=np.dtype(str(blackbox.spec.output_dtype).replace("torch.", "")),
            run_id=run_id,
            config=config_dict,
            attrs={"sense": objective.sense, "blackbox": blackbox.spec.name,
                   "calibrations": record_summary(config.calibrations)},
        )
    t0 = time.perf_counter()
    with log, blackbox:
        blackbox.attach_log(log)
        try:
            counted = blackbox if old is None else ReplayBox(blackbox, old, path)
            view = UnitCubeView(counted)
            optimizer = config.optimizer.build(box=view, objective=objective, estimator=estimator)
            trace = run_loop(view, objective, optimizer, config.optimizer.loop, progress, recommendations)
        finally:
            blackbox.attach_log(None)
        wall = time.perf_counter() - t0
        log.record_run_summary({"queries": blackbox.stats.queries, "wall_s": wall, "busy_s": blackbox.stats.busy_s,
                                "duty_cycle": blackbox.stats.busy_s / wall if wall > 0 else None,
                                "iterations": trace.iterations, "stopped": trace.stopped})
    report = None
    if config.log.report and trace.iterations:
        report = plot_run_report(
            path.with_suffix(".png"),
            {method_label(config): (_queries_per_start(trace, trace.n_starts), trace.best_array())},
            sense=objective.sense,
            title=config.name if config.name == blackbox.spec.name else f"{config.name}: {blackbox.spec.name}",
            images=report_images(blackbox, objective, trace),
        )
    return RunResult(trace, path, report, blackbox.stats.queries, wall, blackbox.stats.busy_s)
