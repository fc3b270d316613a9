"""``hil bench sim2real``: what a fitted twin buys, side by side in one command.

1. **PNN digits** (``configs/pnn_digits.yaml``): the bench is calibrated with ``twin_fit`` (its model twin's
   geometry, phase response, crosstalk and readout fitted to 176 bench queries), then the PNN is trained
   ``in_silico`` (on the model, deployed on the bench) and ``pat_model_twin`` (physics-aware: bench forward,
   model backward) with three models: the nominal model twin, the fitted twin, and the bench itself (the
   ideal: a model that is the bench). Bench test accuracy over the seeds, and the share of the nominal ->
   ideal gap the fitted twin closes (target: 80 %).
2. **The main job** (``configs/owms_twin.yaml``): ``estimator: {type: exact, model: ...}`` through the nominal
   twin, the fitted twin and the bench's own noise-free model, seeds 0-9: the final two-spot objective.
"""

from __future__ import annotations

import copy
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from hil.registry import BENCHMARKS

REPO_CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def _configs_dir() -> Path:
    """The shipped configs: beside the package in a checkout, else ./configs."""
    return REPO_CONFIGS if REPO_CONFIGS.is_dir() else Path("configs")


def _imports() -> None:
    """Import every module the benchmarks use when one starts: a module edited while a long benchmark runs must
    not be half old, half new (later imports find these in ``sys.modules``)."""
    import hil.calib.runner  # noqa: F401
    import hil.datasets  # noqa: F401
    import hil.pnn  # noqa: F401
    import hil.run  # noqa: F401


def _fit(config_path: Path, model_section: dict[str, Any] | None, out: Path) -> tuple[dict[str, Any], Any]:
    from hil.calib.runner import load_rig_config, run_calibration

    model_file = None
    if model_section is not None:
        model_file = out / "nominal.yaml"
        out.mkdir(parents=True, exist_ok=True)
        model_file.write_text(yaml.safe_dump({"blackbox": model_section}))
    rig = load_rig_config(config_path, model=str(model_file) if model_file else None)
    record = run_calibration("twin_fit", rig, out_dir=out, echo=lambda s: None)
    fitted = yaml.safe_load((out / record.files["twin"]).read_text())["blackbox"]
    return fitted, record


def _calibrate_all(raw: dict[str, Any], name: str, tmp: str) -> tuple[list[Any], float]:
    """``hil calibrate all`` on the rig of the config ``raw`` (written to ``tmp``): the records and the seconds."""
    from hil.calib.runner import load_rig_config, run_all

    cfg_path = Path(tmp) / f"{name}.yaml"
    cfg_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    t = time.perf_counter()
    records = run_all(load_rig_config(cfg_path), out_dir=Path(tmp) / "cal", echo=lambda s: None)
    return records, time.perf_counter() - t


def _closure(nominal: float, fitted: float, ideal: float) -> float:
    """Share of the nominal -> ideal gap the fitted model closes (1 = all of it)."""
    return (fitted - nominal) / (ideal - nominal) if ideal != nominal else float("nan")


def pnn_part(seeds: list[int], epochs: int, tmp: Path, progress: bool,
             modes: tuple[str, ...] = ("in_silico", "pat_model_twin")) -> dict[str, Any]:
    from tqdm import tqdm

    from hil.datasets import load_dataset
    from hil.pnn import load_pnn_config, run_one

    path = _configs_dir() / "pnn_digits.yaml"
    raw = yaml.safe_load(path.read_text())
    t = time.perf_counter()
    fitted, record = _fit(path, None, tmp / "pnn_fit")
    fit_s = time.perf_counter() - t
    models = {"nominal": raw["model_twin"], "fitted": fitted, "ideal": copy.deepcopy(raw["bench"])}
    data = load_dataset("digits", raw["training"]["test_fraction"])
    results: dict[str, dict[str, list[float]]] = {}
    jobs = [(mode, name, seed) for mode in modes for name in models for seed in seeds]
    for mode, name, seed in tqdm(jobs, desc="sim2real pnn", unit="run", disable=not progress):
        cfg = copy.deepcopy(raw)
        cfg["model_twin"] = models[name]
        cfg["modes"] = [mode]
        cfg["training"]["epochs"] = epochs
        config = load_pnn_config(cfg)
        r = run_one(config, mode, seed, data)
        results.setdefault(mode, {}).setdefault(name, []).append(r["bench_accuracy"])
    return {"fit": {"fitted": record.fitted, "uncertainty": record.uncertainty, "wall_s": fit_s},
            "accuracy": results, "epochs": epochs, "seeds": seeds}


def main_job_part(seeds: list[int], iterations: int, tmp: Path, progress: bool) -> dict[str, Any]:
    from tqdm import tqdm

    from hil.run import execute, load_run_config

    path = _configs_dir() / "owms_twin.yaml"
    raw = yaml.safe_load(path.read_text())
    macro = [w for w in raw["blackbox"]["wrappers"] if w["type"] == "slm_macropixels"]
    nominal = {"type": "owms_twin", "wrappers": macro}
    fitted, record = _fit(path, nominal, tmp / "main_fit")
    models = {"nominal": nominal, "fitted": fitted, "ideal": copy.deepcopy(raw["blackbox"])}
    finals: dict[str, list[float]] = {}
    jobs = [(name, seed) for name in models for seed in seeds]
    for name, seed in tqdm(jobs, desc="sim2real main job", unit="run", disable=not progress):
        cfg = copy.deepcopy(raw)
        cfg["estimator"] = {"type": "exact", "model": models[name]}
        cfg["optimizer"].update(seed=seed, iterations=iterations)
        cfg["log"] = {"dir": str(tmp / "runs"), "report": False}
        result = execute(load_run_config(cfg))
        finals.setdefault(name, []).append(float(np.nanmean(result.trace.best_array()[-1])))
    return {"fit": {"fitted": record.fitted}, "final_mean_over_starts": finals, "iterations": iterations,
            "seeds": seeds}


@BENCHMARKS.register("sim2real")
def bench_sim2real(json_path: str | None, quick: bool) -> int:
    _imports()
    seeds = [0, 1] if quick else [0, 1, 2, 3, 4]
    epochs = 3 if quick else 10
    with tempfile.TemporaryDirectory() as tmp:
        pnn = pnn_part(seeds, epochs, Path(tmp), progress=True)
        # the main job's nominal-to-ideal gap is small (~4 % of its objective): ten seeds to see it
        main = main_job_part([0, 1] if quick else list(range(10)), 30 if quick else 100, Path(tmp), progress=True)
    lines = [f"PNN digits, bench test accuracy, {epochs} epochs, seeds {seeds} (mean ± std):",
             f"{'training':<16} {'nominal twin':>16} {'fitted twin':>16} {'ideal (bench)':>16} {'gap closed':>11}"]
    for mode, by in pnn["accuracy"].items():
        m = {k: (float(np.mean(v)), float(np.std(v))) for k, v in by.items()}
        close = _closure(m["nominal"][0], m["fitted"][0], m["ideal"][0])
        cells = " ".join(f"{m[k][0]:>9.4f} ± {m[k][1]:.3f}" for k in ("nominal", "fitted", "ideal"))
        lines.append(f"{mode:<16} {cells} {100 * close:>9.0f} %")
    f = main["final_mean_over_starts"]
    m = {k: (float(np.mean(v)), float(np.std(v))) for k, v in f.items()}
    close = _closure(m["nominal"][0], m["fitted"][0], m["ideal"][0])
    lines += [f"main job, exact gradient through the model, {main['iterations']} iterations, seeds "
              f"{main['seeds']}: final two-spot objective (mean over starts; lower is better)",
              "   " + ", ".join(f"{k} {v[0]:.4f} ± {v[1]:.4f}" for k, v in m.items())
              + f"; gap closed {100 * close:.0f} %"]
    print("\n".join(lines))
    if json_path:
        Path(json_path).write_text(json.dumps({"pnn": pnn, "main_job": main}, indent=1))
        print(f"json: {json_path}")
    return 0


#: wrappers that act on the light or its readout; what remains of a bench without them is its optics
READOUT = ("camera", "drift", "dark_subtraction", "frame_average", "latency", "detector_regions")


def optics_only(section: dict[str, Any]) -> dict[str, Any]:
    """The bench without its camera and drift: the light pattern a drive makes (for judging a pattern)."""
    out = copy.deepcopy(section)
    out["wrappers"] = [w for w in out.get("wrappers") or [] if w["type"] not in READOUT]
    return out


def light_objective(section: dict[str, Any], objective: dict[str, Any], x: Any) -> np.ndarray:
    """The two-spot objective of the light each row of ``x`` makes on the bench (noise-free, no dark level)."""
    import torch

    from hil.config import parse_typed
    from hil.registry import OBJECTIVES
    from hil.sections import parse_blackbox

    box = parse_blackbox(optics_only(section)).build()
    obj = parse_typed(OBJECTIVES, objective, "objective").build(output_shape=box.spec.output_shape)
    with box, torch.no_grad():
        return obj(box.forward_differentiable(x)).numpy()


@BENCHMARKS.register("calibrated")
def bench_calibrated(json_path: str | None, quick: bool) -> int:
    """The main job (GradPIE on the bench twin) without calibration, after ``hil calibrate all``, and on the
    ideal twin, same seeds. Each run's best patterns are judged by the light they make on the bench
    (noise-free, no dark level): the measured objectives of a corrected and an uncorrected camera differ."""
    _imports()
    from tqdm import tqdm

    from hil.run import execute, load_run_config

    seeds = [0, 1] if quick else [0, 1, 2]
    iterations = 30 if quick else 100
    path = _configs_dir() / "owms_twin.yaml"
    raw = yaml.safe_load(path.read_text())
    macro = [w for w in raw["blackbox"]["wrappers"] if w["type"] == "slm_macropixels"]
    ideal = {"type": "owms_twin", "wrappers": macro}
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        records, calibrate_s = _calibrate_all(raw, "owms_twin", tmp)
        listed = [str(r.path) for r in records]
        variants = {"uncalibrated": (raw["blackbox"], None), "calibrated": (raw["blackbox"], listed),
                    "ideal twin": (ideal, None)}
        jobs = [(name, seed) for name in variants for seed in seeds]
        for name, seed in tqdm(jobs, desc="calibrated main job", unit="run"):
            section, cal = variants[name]
            cfg = copy.deepcopy(raw)
            cfg["blackbox"] = copy.deepcopy(section)
            if cal:
                cfg["calibrations"] = cal
            cfg["optimizer"].update(seed=seed, iterations=iterations)
            cfg["log"] = {"dir": str(Path(tmp) / "runs"), "report": False}
            config = load_run_config(cfg)
            trace = execute(config).trace
            judged = config.blackbox.as_dict()  # with the corrections: the drives the rig really sent
            light = light_objective(judged, raw["objective"], trace.x_best)
            results.setdefault(name, []).append(float(np.mean(light)))
    m = {k: (float(np.mean(v)), float(np.std(v))) for k, v in results.items()}
    close = _closure(m["uncalibrated"][0], m["calibrated"][0], m["ideal twin"][0])
    print(f"main job (GradPIE, {iterations} iterations, seeds {seeds}): two-spot objective of the light the best "
          f"patterns make on the bench, mean over starts (lower is better); `hil calibrate all` took "
          f"{calibrate_s:.0f} s ({', '.join(r.name for r in records)})")
    print("   " + ", ".join(f"{k} {v[0]:.4f} ± {v[1]:.4f}" for k, v in m.items())
          + f"; calibration closes {100 * close:.0f} % of the gap to the ideal twin")
    if json_path:
        Path(json_path).write_text(json.dumps({"results": results, "iterations": iterations, "seeds": seeds,
                                               "records": [r.name for r in records]}, indent=1))
        print(f"json: {json_path}")
    return 0


@BENCHMARKS.register("slm_pnn")
def bench_slm_pnn(json_path: str | None, quick: bool) -> int:
    """The digits PNN on slmsuite's simulated SLM + camera with a non-ideal SLM (phase response 0.93 x 2 pi at
    gamma 1.2), trained with the nominal (ideal) Fourier twin as its model on the uncalibrated rig, and after
    ``hil calibrate all`` (slmsuite's Fourier and pixel calibrations, the lookup table applied; the twin fitted)
    with the fitted twin; the ideal: the rig's exact twin. Bench test accuracy over 3 seeds (target: 90 %)."""
    _imports()
    from tqdm import tqdm

    from hil.datasets import load_dataset
    from hil.pnn import load_pnn_config, run_one

    seeds = [0] if quick else [0, 1, 2]
    epochs = 3 if quick else 10
    raw = yaml.safe_load((_configs_dir() / "pnn_digits_rig.yaml").read_text())
    raw["bench"]["slm"]["kwargs"]["gamma_sim"] = (0.93 * (np.arange(256) / 256) ** 1.2).tolist()
    exact = {**raw["model_twin"], "gamma": 1.2, "scale": 0.93}
    data = load_dataset("digits", raw["training"]["test_fraction"])
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        records, calibrate_s = _calibrate_all(raw, "pnn_digits_rig", tmp)
        fit = {r.name: r for r in records}["twin_fit"]
        fitted = yaml.safe_load((fit.path.parent / fit.files["twin"]).read_text())["blackbox"]
        variants = {"uncalibrated, nominal twin": (None, raw["model_twin"]),
                    "calibrated, fitted twin": ([str(r.path) for r in records], fitted),
                    "uncalibrated, exact twin": (None, exact)}
        jobs = [(mode, name, seed) for mode in ("in_silico", "pat_model_twin") for name in variants for seed in seeds]
        for mode, name, seed in tqdm(jobs, desc="slm pnn", unit="run"):
            cal, model = variants[name]
            cfg = copy.deepcopy(raw)
            cfg.update(model_twin=model, modes=[mode])
            cfg["training"]["epochs"] = epochs
            if cal:
                cfg["calibrations"] = cal
            r = run_one(load_pnn_config(cfg), mode, seed, data)
            results.setdefault(mode, {}).setdefault(name, []).append(r["bench_accuracy"])
    print(f"digits PNN on slmsuite's simulated SLM (response 0.93 x 2 pi, gamma 1.2) + camera: bench test accuracy, "
          f"{epochs} epochs, seeds {seeds}; `hil calibrate all` took {calibrate_s:.0f} s "
          f"({', '.join(r.name for r in records)}); fitted twin gamma {fit.fitted['gamma']:.4f}, scale "
          f"{fit.fitted['scale']:.4f}")
    for mode, by in results.items():
        print(f"  {mode:<15} " + ", ".join(f"{k}: {np.mean(v):.4f} ± {np.std(v):.4f}" for k, v in by.items()))
    if json_path:
        Path(json_path).write_text(json.dumps({"results": results, "epochs": epochs, "seeds": seeds,
                                               "fit": fit.fitted, "calibrate_s": calibrate_s}, indent=1))
        print(f"json: {json_path}")
    return 0
