"""Physical neural networks: digital torch layers around a physical layer, trained physics-aware.

A :class:`HybridClassifier` is ``digital encoder -> periodic wrap into the
BlackBox's bounds -> PhysicalLayer (bench or twin) -> power-normalised features
-> digital readout``. Its physical layer can be swapped, which is all three
training regimes of the PNN literature need (Wright et al. 2022):

* ``in_silico``: train through the ideal *model twin* (forward and exact
  backward), then deploy on the bench;
* ``pat_model_twin``: physics-aware training, forward on the *bench*, backward
  through the model twin's exact gradient at the same input;
* ``pat_gradpie``: physics-aware training, forward on the bench, backward
  through a surrogate trained online (GradPIE) on the bench's own answers,
  with no model twin at all.

Accuracy is always measured on the bench. ``hil pnn CONFIG`` runs
:func:`run_pnn_experiment` (``configs/pnn_digits.yaml``).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hil.blackbox import BlackBox
from hil.config import parse_typed
from hil.datasets import load_dataset
from hil.errors import ConfigError
from hil.estimators import ExactEstimator, GradientEstimator, SurrogateEstimator
from hil.layer import PhysicalLayer
from hil.pnn_config import (  # noqa: F401  (re-exported: an experiment's config is read here too)
    MODES,
    Mode,
    PNNConfig,
    PNNLogConfig,
    TrainingConfig,
    check_same_io,
    load_pnn_config,
)
from hil.querylog import QueryLog
from hil.registry import ESTIMATORS
from hil.sections import parse_blackbox


class PeriodicBounds(nn.Module):
    """Map real values into ``[lower, upper)`` periodically (phases): ``lower + (x - lower) mod span``."""

    def __init__(self, lower: torch.Tensor, upper: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("lower", lower.clone())
        self.register_buffer("span", (upper - lower).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lower + torch.remainder(x - self.lower, self.span)


class HybridClassifier(nn.Module):
    """``batch x d_in`` features -> ``batch x n_classes`` logits through one physical layer.

    The physical layer's outputs (``batch x n_detectors``) are divided by their
    sum, so laser power and exposure drop out, before the linear readout.
    """

    def __init__(self, d_in: int, physical: PhysicalLayer, n_classes: int) -> None:
        super().__init__()
        spec = physical.blackbox.spec
        self.encoder = nn.Linear(d_in, spec.input_dim)
        self.wrap = PeriodicBounds(spec.lower, spec.upper)
        self.physical = physical
        self.n_detectors = spec.output_dim
        self.readout = nn.Linear(self.n_detectors, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        y = self.physical(self.wrap(self.encoder(x))).reshape(x.shape[0], -1).clamp_min(0)
        return y / y.sum(dim=1, keepdim=True).clamp_min(1e-12) * self.n_detectors - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.features(x))


def accuracy(model: HybridClassifier, x: torch.Tensor, labels: torch.Tensor, batch_size: int = 256) -> float:
    """Fraction of correct predictions, queries labelled ``evaluation``."""
    correct = 0
    with torch.no_grad(), model.physical.labels(purpose="evaluation"):
        for lo in range(0, len(x), batch_size):
            correct += int((model(x[lo: lo + batch_size]).argmax(dim=1) == labels[lo: lo + batch_size]).sum())
    return correct / len(x)


def train_classifier(model: HybridClassifier, x: torch.Tensor, labels: torch.Tensor, *, epochs: int,
                     batch_size: int, lr: float, seed: int,
                     progress: Callable[[int, int, float], None] | None = None) -> list[float]:
    """Adam on every digital parameter, cross-entropy; returns the mean loss per epoch."""
    gen = torch.Generator().manual_seed(seed)
    params = [p for name, p in model.named_parameters() if not name.startswith("physical.")]
    opt = torch.optim.Adam(params, lr=lr)
    losses, step = [], 0
    for epoch in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        total = 0.0
        for lo in range(0, len(x), batch_size):
            idx = perm[lo: lo + batch_size]
            with model.physical.labels(iteration=step):
                loss = nn.functional.cross_entropy(model(x[idx]), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            step += 1
        losses.append(total / len(x))
        if progress is not None:
            progress(epoch, epochs, losses[-1])
    return losses


# -- the experiment ----------------------------------------------------------------------------------------


def _estimator_for(mode: str, config: PNNConfig, model_twin: BlackBox) -> GradientEstimator:
    if mode == "pat_gradpie":
        return parse_typed(ESTIMATORS, config.surrogate, "surrogate").build()
    return ExactEstimator(model=model_twin)


def run_one(config: PNNConfig, mode: str, seed: int, data: tuple, bench_log: QueryLog | None = None,
            model_twin_log: QueryLog | None = None,
            progress: Callable[[int, int, float], None] | None = None) -> dict[str, Any]:
    """Train one model in ``mode`` from ``seed``; returns its bench (and model-twin) test accuracy.

    Bench queries go to ``bench_log``, model-twin queries to ``model_twin_log``:
    the two systems differ, so their answers never share a dataset.
    """
    x_tr, y_tr, x_te, y_te = data
    bench = parse_blackbox(config.bench, "bench").build()
    model_twin = parse_blackbox(config.model_twin, "model_twin").build()
    t0 = time.perf_counter()
    with bench, model_twin:
        bench.attach_log(bench_log)
        model_twin.attach_log(model_twin_log)
        torch.manual_seed(seed)
        train_box = model_twin if mode == "in_silico" else bench
        layer = PhysicalLayer(train_box, _estimator_for(mode, config, model_twin))
        model = HybridClassifier(x_tr.shape[1], layer, int(y_tr.max()) + 1)
        est = layer.estimator
        if isinstance(est, SurrogateEstimator) and config.training.warmup_queries > 0:
            gen = torch.Generator().manual_seed(seed)
            spec = bench.spec
            xw = spec.lower + (spec.upper - spec.lower) * torch.rand(config.training.warmup_queries, spec.input_dim,
                                                                    generator=gen)
            est.observe(xw, bench.query(xw, purpose="calibration").to(torch.float32))
            est.fit_now(config.training.warmup_epochs)
        tr = config.training
        losses = train_classifier(model, x_tr, y_tr, epochs=tr.epochs, batch_size=tr.batch_size, lr=tr.lr,
                                  seed=seed, progress=progress)
        model.physical = PhysicalLayer(model_twin, ExactEstimator())
        acc_model = accuracy(model, x_te, y_te)
        model.physical = PhysicalLayer(bench, ExactEstimator(model=model_twin))
        acc_bench = accuracy(model, x_te, y_te)
        bench.attach_log(None)
        model_twin.attach_log(None)
    return {"mode": mode, "seed": seed, "bench_accuracy": acc_bench, "model_twin_accuracy": acc_model,
            "final_train_loss": losses[-1], "bench_queries": bench.stats.queries,
            "model_twin_queries": model_twin.stats.queries, "wall_s": time.perf_counter() - t0}


def model_twin_log_path(bench_log_path: str | Path) -> Path:
    """Where the model twin's queries go: next to the bench log, ``<stem>-model_twin.h5``."""
    p = Path(bench_log_path)
    return p.with_name(f"{p.stem}-model_twin{p.suffix or '.h5'}")


def _open_run(path: Path, spec: Any, run_id: str, config: dict[str, Any], system: str) -> QueryLog:
    if path.exists():
        return QueryLog.open_append(path, run_id=run_id)
    calibrations = config.get("calibrations") if system == "bench" else None
    return QueryLog.create(path, input_dim=spec.input_dim, output_shape=spec.output_shape, output_dtype=np.float32,
                           run_id=run_id, config=config, attrs={"kind": "pnn", "system": system,
                                                                "calibrations": calibrations or []})


def run_pnn_experiment(config: PNNConfig, *, log_path: str | Path | None = None,
                       progress: bool = True) -> dict[str, Any]:
    """Every mode x seed on the same data split and bench; returns per-run results and per-mode summaries.

    One log per system (bench, model twin), one run per ``mode-seedN`` in each.
    """
    from tqdm import tqdm

    data = load_dataset(config.dataset, config.training.test_fraction)
    bench_spec = parse_blackbox(config.bench, "bench").build().spec
    twin_spec = parse_blackbox(config.model_twin, "model_twin").build().spec
    check_same_io(bench_spec, twin_spec)
    run_stamp = f"{config.name}-{time.strftime('%Y%m%dT%H%M%S')}"
    path = Path(log_path) if log_path else Path(config.log.dir) / f"{run_stamp}.h5"
    twin_path = model_twin_log_path(path)
    for p in (path, twin_path):
        if p.exists():
            raise ConfigError(f"log {p} already exists; pass another --log or remove it")
    path.parent.mkdir(parents=True, exist_ok=True)
    config_dict = copy.deepcopy(_as_dict(config))
    runs = []
    jobs = [(m, s) for m in config.modes for s in config.training.seeds]
    bar = tqdm(jobs, desc="pnn", unit="run", disable=not progress)
    for mode, seed in bar:
        bar.set_postfix(mode=mode, seed=seed)
        run_id = f"{mode}-seed{seed}"
        with _open_run(path, bench_spec, run_id, config_dict, "bench") as bench_log, \
                _open_run(twin_path, twin_spec, run_id, config_dict, "model_twin") as twin_log:
            runs.append(run_one(config, mode, seed, data, bench_log, twin_log))
        bar.set_postfix(mode=mode, seed=seed, acc=f"{runs[-1]['bench_accuracy']:.3f}")
    summary = {}
    for mode in config.modes:
        acc = np.array([r["bench_accuracy"] for r in runs if r["mode"] == mode])
        twin = np.array([r["model_twin_accuracy"] for r in runs if r["mode"] == mode])
        summary[mode] = {"bench_mean": float(acc.mean()), "bench_std": float(acc.std()),
                         "bench_min": float(acc.min()), "bench_max": float(acc.max()),
                         "model_twin_mean": float(twin.mean()), "n_seeds": int(len(acc))}
    return {"name": config.name, "log": str(path), "model_twin_log": str(twin_path), "runs": runs,
            "summary": summary}


def _as_dict(config: PNNConfig) -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(config)


def format_pnn_summary(result: dict[str, Any]) -> str:
    lines = [f"{'mode':<16}| bench test accuracy: mean ± std [min, max] over seeds | model twin | seeds"]
    for mode, s in result["summary"].items():
        lines.append(f"{mode:<16}| {s['bench_mean']:.4f} ± {s['bench_std']:.4f} [{s['bench_min']:.4f}, "
                     f"{s['bench_max']:.4f}]{'':<16}| {s['model_twin_mean']:.4f}     | {s['n_seeds']}")
    return "\n".join(lines)
