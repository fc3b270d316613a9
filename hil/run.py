"""A run described by a config: build the pieces, run the loop, write the log and the report.

Config sections (every key validated before anything runs)::

    name: cnon_twin
    blackbox:  {type: cnon_twin, ..., wrappers: [...]}  # hil.sections.parse_blackbox
    objective: {type: target_distance, ...}    # hil.registry.OBJECTIVES
    estimator: {type: surrogate, loss: gradpie, ...}   # hil.registry.ESTIMATORS
    optimizer: {mode: online, n_starts: 16, ...}       # hil.optimize.OptimizerConfig
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
from hil.config import TypedSection, load_yaml, parse, parse_typed
from hil.errors import ConfigError, LogError
from hil.optimize import OptimizerConfig, Trace, make_optimizer, optimize_offline
from hil.querylog import QueryLog, read_log
from hil.registry import ESTIMATORS, OBJECTIVES
from hil.report import plot_run_report
from hil.sections import BlackBoxSection, parse_blackbox

TOP_LEVEL_KEYS = ("name", "description", "blackbox", "objective", "estimator", "optimizer", "log")


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
    estimator: TypedSection
    optimizer: OptimizerConfig
    log: LogConfig

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "blackbox": self.blackbox.as_dict(),
            "objective": self.objective.as_dict(),
            "estimator": self.estimator.as_dict(),
            "optimizer": dataclasses.asdict(self.optimizer),
            "log": dataclasses.asdict(self.log),
        }


def is_pnn_config(data: Mapping[str, Any]) -> bool:
    """A PNN experiment config (``hil pnn``) rather than a run config (``hil run``)."""
    return "dataset" in data and "bench" in data


def load_run_config(source: str | Path | Mapping[str, Any]) -> RunConfig:
    """Validate a run config (a YAML path or a mapping); raises :class:`ConfigError` naming the bad key."""
    data = dict(source) if isinstance(source, Mapping) else load_yaml(source)
    if is_pnn_config(data):
        raise ConfigError("this is a physical-neural-network config (it has 'dataset' and 'bench'): "
                          "run it with `hil pnn CONFIG`")
    unknown = [k for k in data if k not in TOP_LEVEL_KEYS]
    if unknown:
        raise ConfigError(f"unknown top-level key {unknown[0]!r}; allowed keys: {', '.join(TOP_LEVEL_KEYS)}")
    for key in ("blackbox", "objective", "estimator"):
        if key not in data:
            raise ConfigError(f"missing section {key!r}")
    name = data.get("name", "run")
    if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"name: expected a string of letters, digits, '-' and '_', got {name!r}")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise ConfigError("description: expected a string")
    return RunConfig(
        name=name,
        description=description,
        blackbox=parse_blackbox(data["blackbox"], "blackbox"),
        objective=parse_typed(OBJECTIVES, data["objective"], "objective"),
        estimator=parse_typed(ESTIMATORS, data["estimator"], "estimator"),
        optimizer=parse(OptimizerConfig, data.get("optimizer"), "optimizer"),
        log=parse(LogConfig, data.get("log"), "log"),
    )


@dataclass
class RunResult:
    trace: Trace
    log_path: Path
    report_path: Path | None
    queries: int
    wall_s: float
    busy_s: float


def _method_label(config: RunConfig) -> str:
    loss = getattr(config.estimator.options, "loss", None)
    label = config.estimator.type if loss is None else f"{config.estimator.type} ({loss})"
    return f"{label}, M={config.optimizer.local_samples}"


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
            progress: Callable[[int, Trace], None] | None = None) -> RunResult:
    """Run ``config`` end to end: connect, optimise with every query logged, write the report."""
    blackbox = config.blackbox.build()
    objective = config.objective.build(output_shape=blackbox.spec.output_shape)
    estimator = config.estimator.build()
    run_id = f"{config.name}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    config_dict = config.as_dict()
    if resume is not None:
        path = Path(resume)
        old = read_log(path)
        if old.attrs.get("config", {}) != json.loads(json.dumps(config_dict)):
            raise LogError(f"{path} was written by a different config; resume it with the config it was run with")
        log = QueryLog.open_append(path, run_id=run_id)
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
            attrs={"sense": objective.sense, "blackbox": blackbox.spec.name},
        )
    t0 = time.perf_counter()
    with log, blackbox:
        blackbox.attach_log(log)
        try:
            if config.optimizer.mode == "offline":
                dataset = None
                if config.optimizer.dataset == "log":
                    d = read_log(config.optimizer.dataset_log)
                    dataset = (torch.from_numpy(d.x), torch.from_numpy(d.y).to(torch.float32))
                trace = optimize_offline(blackbox, objective, estimator, config.optimizer, dataset, progress)
            else:
                opt = make_optimizer(blackbox, objective, estimator, config.optimizer)
                first, replay = 0, None
                if resume is not None:
                    d = read_log(path)
                    first, replay = opt.replay(d.x, d.y, d.iteration, d.start, d.purpose_labels())
                trace = opt.run(progress, first_iteration=first, replay=replay)
        finally:
            blackbox.attach_log(None)
    wall = time.perf_counter() - t0
    report = None
    if config.log.report and trace.iterations:
        report = plot_run_report(
            path.with_suffix(".png"),
            {_method_label(config): (_queries_per_start(trace, config.optimizer.n_starts), trace.best_array())},
            sense=objective.sense,
            title=config.name if config.name == blackbox.spec.name else f"{config.name}: {blackbox.spec.name}",
            images=report_images(blackbox, objective, trace),
        )
    return RunResult(trace, path, report, blackbox.stats.queries, wall, blackbox.stats.busy_s)
