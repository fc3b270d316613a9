"""A run described by a config: build the pieces, run the loop, write the log and the report.

The config's sections are read and checked by :mod:`hil.runconfig` (without torch); this module builds them.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hil.blackbox import BlackBox, find_attribute
from hil.calib.record import record_summary
from hil.errors import LogError
from hil.optim.checkpoint import Checkpointer, checkpoint_path, load_checkpoint
from hil.optim.loop import Trace, run_loop
from hil.optim.replay import ReplayBox
from hil.querylog import QueryLog, read_log
from hil.report import plot_run_report
from hil.runconfig import (  # noqa: F401  (re-exported: a run's config is read here too)
    TOP_LEVEL_KEYS,
    LogConfig,
    RunConfig,
    is_pnn_config,
    load_run_config,
    resolve_model_paths,
)
from hil.space import UnitCubeView


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


def _same_run_config(logged: dict[str, Any], config_dict: dict[str, Any]) -> bool:
    """Whether a log's stored config is ``config_dict``'s run, apart from the ``log`` section (where logs and
    reports go, and how often checkpoints are saved, change nothing a resume replays)."""
    now = json.loads(json.dumps(config_dict))
    return {k: v for k, v in logged.items() if k != "log"} == {k: v for k, v in now.items() if k != "log"}


def execute(config: RunConfig, *, log_path: str | Path | None = None, resume: str | Path | None = None,
            progress: Callable[[int, Trace], None] | None = None, recommendations: bool = False,
            say: Callable[[str], None] | None = None) -> RunResult:
    """Run ``config`` end to end: connect, optimise with every query logged, write the report.

    ``resume``: a killed run's log; the run's state is restored from its checkpoint beside the log when one
    fits (:mod:`hil.optim.checkpoint`), else the optimiser runs again from the start; either way the log answers
    every query it had answered before (:mod:`hil.optim.replay`), then new queries are appended to it.
    ``say``: where a line for the person running it goes (what a resume does)."""
    blackbox = config.blackbox.build()
    objective = config.objective.build(output_shape=blackbox.spec.output_shape)
    estimator = config.estimator.build() if config.estimator is not None else None
    run_id = f"{config.name}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    config_dict = config.as_dict()
    old = restored = None
    if resume is not None:
        path = Path(resume)
        old = read_log(path)
        if not _same_run_config(old.attrs.get("config", {}), config_dict):
            raise LogError(f"{path} was written by a different config; resume it with the config it was run with")
        log = QueryLog.open_append(path, run_id=run_id)
        identity = str(old.run_ids[0]) if old.run_ids else ""
        restored, why = load_checkpoint(checkpoint_path(path), identity, np.asarray(old.x))
        if say is not None and restored is not None:
            say(f"resume: restored the run's checkpoint after {restored['queries']} of the {len(old)} logged "
                f"queries; the rest answer the optimiser again (nothing is sent to the device) before new queries "
                f"go to the device")
        elif say is not None:
            say(f"resume: {why}, so the optimiser runs again from the start and the {len(old)} logged queries "
                f"answer it (its state is rebuilt; nothing is sent to the device) before new queries go to the "
                f"device")
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
        identity = run_id
    checkpoints = None
    if config.log.checkpoint_every_s is not None:
        checkpoints = Checkpointer(checkpoint_path(path), config.log.checkpoint_every_s, identity, log)
    t0 = time.perf_counter()
    with log, blackbox:
        blackbox.attach_log(log)
        try:
            counted = blackbox if old is None else ReplayBox(blackbox, old, path)
            if restored is not None:
                counted.skip(restored["queries"])
            view = UnitCubeView(counted)
            optimizer = config.optimizer.build(box=view, objective=objective, estimator=estimator)
            trace = run_loop(view, objective, optimizer, config.optimizer.loop, progress, recommendations,
                             checkpoints, restored)
        finally:
            blackbox.attach_log(None)
        if checkpoints is not None:
            checkpoints.discard()  # the run finished: its log is complete
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
