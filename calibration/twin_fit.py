"""Twin fit: fit the model twin's physical parameters to the rig's own answers, by gradient descent through the
differentiable twin; write the fitted twin as a config a run can use as its backward model.

The rig answers ``patterns`` random patterns and a split-screen series (half the SLM at the lowest phase, half
stepping through ``levels`` phases: what pins the phase response), plus ``repeats`` of a few patterns for the
noise. The model (:data:`hil.registry.TWIN_MODELS` of the model twin's type, e.g. the OWMS twin's geometry,
phase response, crosstalk and readout) starts from the model twin's values and a linear fit of the counts
scale, and L-BFGS minimises the noise-weighted squared residual. Uncertainties are the Gauss-Newton
covariance ``(J^T W J)^-1 * chi2 / dof`` with ``J`` by central differences. Outputs: ``twin_fit.yaml``
(``blackbox:`` the fitted twin; use it as ``estimator: {type: exact, model: twin_fit.yaml}`` or as a PNN's
``model_twin: twin_fit.yaml``) and the record. Nothing is corrected on the rig itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
import yaml

from hil.blackbox import BlackBox, find_attribute
from hil.calib.base import Calibration, CalibrationContext, CalibrationResult, CalibrationSession, figure
from hil.config import Range
from hil.errors import CalibrationError, RegistryError
from hil.registry import CALIBRATIONS, TWIN_MODELS
from hil.sections import parse_blackbox

TWO_PI = 2 * math.pi
#: wrappers that calibration records append to a rig (hil.calibration.corrections)
CORRECTION_WRAPPERS = ("slm_lut", "dark_subtraction", "frame_average")


@CALIBRATIONS.register("twin_fit")
class TwinFit(Calibration):
    name = "twin_fit"
    order = 90
    summary = "fit the model twin's physical parameters to the rig's answers; write the fitted twin config"

    @dataclass
    class Config:
        patterns: Annotated[int, Range(ge=16, le=65536)] = 128
        levels: Annotated[int, Range(ge=4, le=1024)] = 16
        noise_patterns: Annotated[int, Range(ge=1, le=4096)] = 4
        repeats: Annotated[int, Range(ge=2, le=1024)] = 8
        iterations: Annotated[int, Range(ge=1, le=10000)] = 60  # L-BFGS iterations
        fit: list[str] = field(default_factory=list)  # parameters to fit; empty: all the model has
        log: str | None = None  # an earlier query log of this rig whose rows join the fit

    def missing(self, rig: BlackBox, context: CalibrationContext) -> str | None:
        if context.model_section is None:
            return "it needs a model twin to fit: give --model TWIN.yaml, or name one in the config " \
                   "(a PNN config's model_twin, or estimator: {type: exact, model: ...})"
        kind = context.model_section.get("type")
        try:
            TWIN_MODELS.get(kind)
        except RegistryError:
            return f"the model twin {kind!r} has no differentiable model in its physical parameters " \
                   f"(twin models: {', '.join(TWIN_MODELS.names()) or 'none'})"
        model = parse_blackbox(context.model_section, "model").build()
        if (model.spec.input_dim, model.spec.output_shape) != (rig.spec.input_dim, rig.spec.output_shape):
            return f"the model twin maps {model.spec.input_dim} -> {list(model.spec.output_shape)} but the rig " \
                   f"{rig.spec.input_dim} -> {list(rig.spec.output_shape)}; give it the rig's macro-pixel and " \
                   f"readout wrappers"
        return None

    def measure(self, session: CalibrationSession) -> CalibrationResult:
        c, ctx = self.config, session.context
        spec = session.rig.spec
        # the corrections earlier records put on the rig go on the model too: it then maps what the corrected rig
        # maps, and the fitted twin keeps them
        corrections = [w for w in ctx.rig_section.get("wrappers") or [] if w.get("type") in CORRECTION_WRAPPERS]
        section = {**ctx.model_section, "wrappers": [*(ctx.model_section.get("wrappers") or []), *corrections]}
        try:
            model = TWIN_MODELS.get(section["type"])(section, tuple(c.fit) or None)
        except CalibrationError as exc:
            raise CalibrationError(f"twin_fit: {exc}") from None
        x = torch.cat([session.uniform(c.patterns), _split_screen(session.rig, c.levels)])
        y = session.query(x)
        if c.log:
            x_log, y_log = _rows_of_log(c.log, spec)
            x, y = torch.cat([x, x_log]), torch.cat([y, y_log])
        xn = session.uniform(c.noise_patterns)
        yn = session.query(xn.repeat(c.repeats, 1)).reshape(c.repeats, c.noise_patterns, -1).double()
        mean, var = yn.mean(0).reshape(-1), yn.var(0).reshape(-1)
        a, b = np.polyfit(mean.numpy(), var.numpy(), 1)[::-1]  # var = a + b * mean
        noise = {"read_noise_counts": math.sqrt(max(a, 0.0)), "gain_e_per_count": 1 / b if b > 0 else 1.0}
        target = y.double().reshape(len(x), -1)
        # inverse variance per output; at least an integer readout's rounding (1/12 count^2), so a noise-free rig
        # still has a scale for its residuals
        weight = 1.0 / (max(a, 1.0 / 12) + max(b, 0.0) * target.clamp_min(0))
        model.start_readout(x, target)
        before = model.values()
        chi2_before = float(_chi2(model, x, target, weight, model.theta.detach()))
        opt = torch.optim.LBFGS([model.theta], lr=1.0, max_iter=c.iterations, line_search_fn="strong_wolfe",
                                tolerance_change=1e-12, tolerance_grad=1e-10)

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = _chi2(model, x, target, weight, model.theta) / target.numel()
            loss.backward()
            return loss

        opt.step(closure)
        theta = model.theta.detach().clone()
        chi2 = float(_chi2(model, x, target, weight, theta))
        dof = max(1, target.numel() - theta.numel())
        cov = _covariance(model, x, target, weight, theta) * chi2 / dof
        after = model.values()
        sigma = model.uncertainties(theta, torch.sqrt(torch.diag(cov).clamp_min(0)))
        fitted, uncertainty = {}, {}
        for name in model.fit:
            value = after[name].detach().reshape(-1).tolist()
            fitted[name] = value if len(value) > 1 else value[0]
            uncertainty[name] = sigma[name] if len(sigma[name]) > 1 else sigma[name][0]
        fitted_twin = model.fitted_section(noise, rig=ctx.rig_section)
        ctx.out_dir.mkdir(parents=True, exist_ok=True)
        twin_path = ctx.out_dir / "twin_fit.yaml"
        twin_path.write_text("# the twin fitted to the rig by `hil calibrate twin_fit`; use it as a backward model:\n"
                             "#   estimator: {type: exact, model: twin_fit.yaml}   or a PNN's   model_twin: "
                             "twin_fit.yaml\n" + yaml.safe_dump({"blackbox": fitted_twin}, sort_keys=False))
        parse_blackbox(fitted_twin, str(twin_path))  # the fitted twin must be a valid config
        rms_before = math.sqrt(chi2_before / target.numel())
        rms_after = math.sqrt(chi2 / target.numel())
        self._plot_data = (model, x, target, theta, before, after)
        lines = [f"residual {rms_before:.3g} -> {rms_after:.3g} noise sigmas over {len(x)} patterns",
                 *(f"{k}: {_fmt(before[k])} -> {_fmt(after[k])} ± {_fmt(torch.tensor(uncertainty[k]))}"
                   for k in model.fit), f"fitted twin: {twin_path}"]
        return CalibrationResult(
            measured={"patterns": len(x), "noise": noise, "rms_noise_sigmas_before": rms_before},
            fitted={**fitted, "rms_noise_sigmas": rms_after, **{f"noise_{k}": v for k, v in noise.items()}},
            uncertainty=uncertainty, files={"twin": twin_path.name}, lines=lines)

    def plot(self, result: CalibrationResult, path: Path) -> Path:
        model, x, target, theta, before, after = self._plot_data
        with torch.no_grad():
            nominal = model(x, torch.zeros_like(theta)).reshape(len(x), -1).numpy()
            fitted = model(x, theta).reshape(len(x), -1).numpy()
        measured = target.numpy()
        side = int(round(math.sqrt(measured.shape[1])))
        with figure(path, 4, size=(16, 4)) as (fig, axes):
            vmax = float(measured[0].max())
            for ax, (img, title) in zip(axes[:3], [(measured[0], "rig"), (nominal[0], "nominal twin"),
                                                   (fitted[0], "fitted twin")], strict=True):
                if side * side == len(img):
                    ax.imshow(img.reshape(side, side), vmin=0, vmax=vmax)
                else:
                    ax.bar(range(len(img)), img)
                ax.set_title(f"{title}: pattern 0")
            pick = np.random.default_rng(0).choice(measured.size, size=min(4000, measured.size), replace=False)
            ax = axes[3]
            ax.plot(measured.reshape(-1)[pick], nominal.reshape(-1)[pick], ".", ms=2, color="0.6", label="nominal")
            ax.plot(measured.reshape(-1)[pick], fitted.reshape(-1)[pick], ".", ms=2, label="fitted")
            ax.set(xlabel="rig", ylabel="twin", title="every output of every pattern")
            ax.legend(fontsize=8)
            fig.suptitle(f"twin fit: residual {result.measured['rms_noise_sigmas_before']:.2f} -> "
                         f"{result.fitted['rms_noise_sigmas']:.2f} noise sigmas")
        return path


def _fmt(t: Any) -> str:
    values = torch.as_tensor(t).reshape(-1).tolist()
    return "[" + ", ".join(f"{v:.4g}" for v in values) + "]" if len(values) > 1 else f"{values[0]:.4g}"


def _chi2(model: Any, x: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    pred = model(x, theta).reshape(len(x), -1)
    return ((pred - target) ** 2 * weight).sum()


def _covariance(model: Any, x: torch.Tensor, target: torch.Tensor, weight: torch.Tensor,
                theta: torch.Tensor, h: float = 1e-3) -> torch.Tensor:
    """``(J^T W J)^-1`` in the normalised coordinates, ``J`` by central differences."""
    cols = []
    with torch.no_grad():
        for i in range(theta.numel()):
            e = torch.zeros_like(theta)
            e[i] = h
            cols.append(((model(x, theta + e) - model(x, theta - e)) / (2 * h)).reshape(-1))
    jac = torch.stack(cols, dim=1)
    normal = jac.T @ (jac * weight.reshape(-1, 1))
    return torch.linalg.pinv(normal)


def _split_screen(rig: BlackBox, levels: int) -> torch.Tensor:
    """Half the SLM at the lowest phase, the other half at ``levels`` phases (``levels x d_in``)."""
    shape = find_attribute(rig, "input_image_shape")
    lower = float(rig.spec.lower.min())
    span = float(rig.spec.upper.max()) - lower
    if shape is None or len(shape) != 2:
        return torch.empty(0, rig.spec.input_dim)
    rows, cols = shape
    img = torch.full((levels, rows, cols), lower)
    img[:, :, cols // 2:] = (lower + span * torch.arange(levels) / levels)[:, None, None]
    return img.reshape(levels, -1)


def _rows_of_log(path: str, spec: Any) -> tuple[torch.Tensor, torch.Tensor]:
    from hil.querylog import read_log

    log = read_log(path)
    if log.x.shape[1] != spec.input_dim or tuple(log.y.shape[1:]) != tuple(spec.output_shape):
        raise CalibrationError(f"twin_fit.log {path}: its rows map {log.x.shape[1]} -> {list(log.y.shape[1:])}, "
                               f"the rig {spec.input_dim} -> {list(spec.output_shape)}")
    return torch.as_tensor(np.asarray(log.x), dtype=torch.float32), torch.as_tensor(np.asarray(log.y),
                                                                                   dtype=torch.float32)
